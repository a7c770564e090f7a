"""Several training processes on localhost, each backend's own engine (TensorFlow: MultiWorkerMirroredStrategy with
TF_CONFIG; JAX: jax.distributed with a coordinator; PyTorch: torchrun and torch.distributed), against one process
on the same global batch: same losses and weights, one writer, exact resume after a SIGKILL of one worker and a
relaunch of all."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from harness import REPO, our_stderr_lines

TINY = {"model_channels": 8, "channel_mult": [1, 1], "attn_resolutions": [], "num_blocks": 1}
STEPS, BATCH = 4, 8
SETTINGS = dict(network_overrides=TINY, log_every=1, checkpoint_every=1, keep_checkpoints=10, sample_count=4)
# One resolution level: every engine traces or compiles a third of the layers of the two-level network.
SMALL = dict(SETTINGS, network_overrides=dict(TINY, channel_mult=[1]))


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _weights(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _checkpoint_weights(checkpoint):
    import io
    import zipfile

    with zipfile.ZipFile(checkpoint / "trainer.keras") as archive:
        return _weights(io.BytesIO(archive.read("model.weights.h5")))


def _losses(run_dir):
    rows = (run_dir / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    return {int(r.split(",")[0]): float(r.split(",")[header.index("loss")]) for r in rows[1:]}


def _launch_tf_workers(run_dir, data, tmp_root, ports):
    cluster = [f"127.0.0.1:{p}" for p in ports]
    procs = []
    for index in range(len(ports)):
        scratch = tmp_root / f"tmp{index}"
        scratch.mkdir(exist_ok=True)
        # The workers inherit this process's thread settings, as the one-process reference runs here: kernels may
        # sum in another order with another thread count.
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(scratch),
                   TF_CONFIG=json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}))
        log = open(tmp_root / f"worker{index}.log", "a")
        procs.append(subprocess.Popen([sys.executable] + _train_command(run_dir, data, "multiworker", SMALL),
                                      stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO))
    return procs


def _sets(settings):
    return [a for k, v in settings.items() for a in ("--set", f"{k}={json.dumps(v) if isinstance(v, dict) else v}")]


def _train_command(run_dir, data, strategy, settings):
    return ["-m", "keras_ict", "train", "--preset", "mnist", "--data", str(data), "--steps", str(STEPS),
            "--batch-size", str(BATCH), "--strategy", strategy, "--out", str(run_dir)] + _sets(settings)


def _launch_jax_processes(run_dir, data, tmp_root, ports):
    procs = []
    for index in range(2):
        scratch = tmp_root / f"tmp{index}"
        scratch.mkdir(exist_ok=True)
        # Inherits this process's XLA_FLAGS (the suite's code-generation flags), as the reference run here has them.
        env = dict(os.environ, KERAS_BACKEND="jax", TMPDIR=str(scratch))
        log = open(tmp_root / f"worker{index}.log", "a")
        # The NumPy pipeline (what a JAX user without TensorFlow trains with), against the one-process tf.data
        # reference: each process reads its own rows of every global batch (torch's ddp processes do so from tf.data).
        flags = ["--coordinator", f"127.0.0.1:{ports[0]}", "--num-processes", "2", "--process-id", str(index),
                 "--data-pipeline", "numpy"]
        procs.append(subprocess.Popen([sys.executable] + _train_command(run_dir, data, "data-parallel", SMALL) + flags,
                                      stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO))
    return procs


def _launch_torchrun(run_dir, data, tmp_root, ports):
    """torchrun with 2 local processes; its agent and both workers share TMPDIR (scratch names differ by rank)."""
    scratch = tmp_root / "tmp0"
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ, KERAS_BACKEND="torch", TMPDIR=str(scratch))
    log = open(tmp_root / "worker0.log", "a")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                "--master-port", str(ports[0]), "--tee", "3", "--log-dir", str(tmp_root / "torchrun")]
    return [subprocess.Popen(torchrun + _train_command(run_dir, data, "ddp", SMALL), stdout=log,
                             stderr=subprocess.STDOUT, env=env, cwd=REPO)]


def _children_by_rank(parent_pid):
    """{RANK: pid} of the processes whose parent is `parent_pid` (Linux /proc)."""
    ranks = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != parent_pid:
                continue
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        rank = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"RANK=")]
        if rank:
            ranks[int(rank[0])] = int(stat.parent.name)
    return ranks


def _kill_a_worker_then_all(procs, run_dir, logs, backend):
    """SIGKILL of the non-writing worker once the writer has checkpointed step 2, then of everything left (the
    writer waits on the dead worker's collectives; torchrun's agent tears its workers down itself)."""
    deadline = time.monotonic() + 480
    while not (run_dir / "checkpoints" / "step_000000002").is_dir():
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), (logs / "worker0.log").read_text()[-3000:]
        time.sleep(0.2)
    if backend == "torch":
        ranks = _children_by_rank(procs[0].pid)
        assert sorted(ranks) == [0, 1], ranks
        os.kill(ranks[1], signal.SIGKILL)
        try:
            procs[0].wait(timeout=120)
        except subprocess.TimeoutExpired:
            procs[0].kill()
        for pid in ranks.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    else:
        for p in reversed(procs):
            p.send_signal(signal.SIGKILL)
            p.wait()
    assert not (run_dir / "final").exists()


def _check_two_processes_equal_one(single_dir, run_dir, logs, worker_logs):
    """Same losses and weights as one process on the same global batch; the weights moved; one writer."""
    assert all("resuming from" in log and "over 2 replicas" in log for log in worker_logs)
    want, got = _losses(single_dir), _losses(run_dir)
    assert sorted(got) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([got[s] for s in sorted(want)], [want[s] for s in sorted(want)], rtol=1e-5)
    a, b = _weights(single_dir / "final" / "model.weights.h5"), _weights(run_dir / "final" / "model.weights.h5")
    assert sorted(a) == sorted(b) and max(float(np.max(np.abs(a[k] - b[k]))) for k in a) <= 1e-6
    first, last = (_checkpoint_weights(run_dir / "checkpoints" / f"step_{s:09d}") for s in (1, STEPS))
    assert max(float(np.max(np.abs(first[k] - last[k]))) for k in first) > 0
    # One writer: no keras-ict scratch folder is left (the engines' own temporary files may be), and the run
    # folder holds one run's files.
    assert [sorted(scratch.glob("keras-ict-*")) for scratch in sorted(logs.glob("tmp*"))] == [[]] * len(list(logs.glob("tmp*")))
    assert (run_dir / "final" / "model.weights.h5").is_file()
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in single_dir.iterdir() if not p.name.startswith("."))


@pytest.mark.once("tensorflow")
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF_CONFIG workers are TensorFlow's engine")
@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_two_tf_workers_equal_one_process_write_once_and_resume_after_a_kill(tmp_path, shared_dir):
    from keras_ict.training import train

    data = shared_dir / "datasets" / "mnist_small.npz"
    single = train("mnist", tmp_path / "single", data=str(data), steps=STEPS, batch_size=BATCH, **SMALL)
    assert single.status == "finished"

    run_dir, logs = tmp_path / "two", tmp_path / "logs"
    logs.mkdir()
    _kill_a_worker_then_all(_launch_tf_workers(run_dir, data, logs, _free_ports(2)), run_dir, logs, "tensorflow")
    procs = _launch_tf_workers(run_dir, data, logs, _free_ports(2))
    codes = [p.wait(timeout=480) for p in procs]
    worker_logs = [(logs / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], worker_logs[0][-3000:] + worker_logs[1][-3000:]
    _check_two_processes_equal_one(single.run_dir, run_dir, logs, worker_logs)


@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL of one torchrun worker reads /proc")
def test_two_processes_equal_one_write_once_and_resume_after_a_kill(backend, tmp_path, shared_dir):
    """JAX: two processes joined by a coordinator; torch: torchrun with two processes (gloo)."""
    if keras.backend.backend() != backend:
        pytest.skip(f"the {backend} pass runs it")
    from keras_ict.training import train

    data = shared_dir / "datasets" / "mnist_small.npz"
    single = train("mnist", tmp_path / "single", data=str(data), steps=STEPS, batch_size=BATCH, **SMALL)
    assert single.status == "finished"

    launch = _launch_jax_processes if backend == "jax" else _launch_torchrun
    run_dir, logs = tmp_path / "two", tmp_path / "logs"
    logs.mkdir()
    _kill_a_worker_then_all(launch(run_dir, data, logs, _free_ports(1)), run_dir, logs, backend)
    procs = launch(run_dir, data, logs, _free_ports(1))
    codes = [p.wait(timeout=480) for p in procs]
    log_text = [(logs / f"worker{i}.log").read_text() for i in range(len(procs))]
    assert codes == [0] * len(procs), "".join(t[-3000:] for t in log_text)
    if backend == "torch":  # one log with both workers' lines, each prefixed by its rank
        log_text = [[line for line in log_text[0].splitlines() if line.startswith(f"[default{r}]")] for r in (0, 1)]
        log_text = ["\n".join(lines) for lines in log_text]
    _check_two_processes_equal_one(single.run_dir, run_dir, logs, log_text)


@pytest.mark.backend_independent
def test_multiworker_input_errors_are_one_line_and_write_nothing(tmp_path, shared_dir, monkeypatch):
    from keras_ict.backends.distribution import multiworker_cluster

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        multiworker_cluster()
    for bad, message in (("{not json", "TF_CONFIG is malformed"), ('{"cluster": {}}', "TF_CONFIG is malformed"),
                         ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "is not in its cluster")):
        monkeypatch.setenv("TF_CONFIG", bad)
        with pytest.raises(ValueError, match=message):
            multiworker_cluster()
    two = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(two))
    assert multiworker_cluster() == (2, 1, False)
    two["cluster"]["chief"], two["task"] = ["127.0.0.1:3"], {"type": "chief", "index": 0}
    monkeypatch.setenv("TF_CONFIG", json.dumps(two))
    assert multiworker_cluster() == (3, 0, True)

    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               TF_CONFIG=json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                     "task": {"type": "worker", "index": 0}}))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "keras_ict", "train", "--preset", "mnist", "--data",
                           str(shared_dir / "datasets" / "mnist_small.npz"), "--steps", "2", "--batch-size", "7",
                           "--strategy", "multiworker", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "not divisible by the 2 workers" in proc.stderr
    assert len(our_stderr_lines(proc.stderr)) == 1 and not out.exists(), proc.stderr


@pytest.mark.backend_independent
def test_process_settings_errors_name_the_setting(monkeypatch):
    from keras_ict.backends import distribution

    for name in distribution.JAX_PROCESS_VARIABLES + distribution.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distribution.jax_process_settings() is None
    with pytest.raises(ValueError, match=r"needs --num-processes \(JAX_NUM_PROCESSES\), --process-id"):
        distribution.jax_process_settings(coordinator="127.0.0.1:1234")
    with pytest.raises(ValueError, match="must be HOST:PORT"):
        distribution.jax_process_settings("no-port", 2, 0)
    with pytest.raises(ValueError, match="--process-id 2 is not one of the 2 processes"):
        distribution.jax_process_settings("127.0.0.1:1234", 2, 2)
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES.* must be an integer"):
        distribution.jax_process_settings("127.0.0.1:1234", "two", 0)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:777")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert distribution.jax_process_settings() == ("10.0.0.1:777", 4, 3)
    assert distribution.jax_process_settings(process_id=1) == ("10.0.0.1:777", 4, 1)  # a flag wins

    with pytest.raises(ValueError, match="runs under torchrun.*RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set"):
        distribution.torchrun_settings()
    for name, value in (("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="RANK 2 is not one of the WORLD_SIZE=2 processes"):
        distribution.torchrun_settings()
    monkeypatch.setenv("RANK", "1")
    assert distribution.torchrun_settings() == (2, 1, "127.0.0.1:29500")

    (port,) = _free_ports(1)  # nothing listens there
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=f"could not reach the JAX coordinator at 127.0.0.1:{port} within 0.5 s"):
        distribution.wait_for_coordinator(f"127.0.0.1:{port}", 0.5, "JAX coordinator")
    assert time.monotonic() - start < 10


def _cli(args, env, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env)
    for name in ("TF_CONFIG", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "RANK", "WORLD_SIZE",
                 "MASTER_ADDR", "MASTER_PORT"):
        if name not in env or env[name] is None:
            env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "keras_ict", "train", "--preset", "mnist", "--steps", "2",
                           "--batch-size", "8", "--out", str(tmp_path / "run")] + args,
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


@pytest.mark.once("torch")
def test_process_launch_errors_are_one_line_and_write_nothing(tmp_path, shared_dir, monkeypatch):
    """Each an error naming the problem, before anything is written: ddp outside torchrun, a global batch that
    the processes cannot split, a coordinator nobody listens on (a bounded wait; from the CLI one line, for torch
    and JAX). A strategy of another backend: tests/test_backends.py."""
    from keras_ict.training import train

    data = str(shared_dir / "datasets" / "mnist_small.npz")
    out = tmp_path / "run"
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="--strategy ddp runs under torchrun"):
        train("mnist", out, data=data, steps=2, batch_size=8, strategy="ddp")
    (port,) = _free_ports(1)
    torchrun_env = {"RANK": "1", "WORLD_SIZE": "3", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for name, value in torchrun_env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="batch size 8 is not divisible by the 3 workers of WORLD_SIZE"):
        train("mnist", out, data=data, steps=2, batch_size=8, strategy="ddp")
    assert not out.exists()

    torchrun_env["WORLD_SIZE"] = "2"
    cases = [
        (["--strategy", "ddp"], dict(torchrun_env, KERAS_BACKEND="torch"),
         f"could not reach the torch.distributed store (MASTER_ADDR:MASTER_PORT) at 127.0.0.1:{port} within 1 s"),
        (["--strategy", "data-parallel", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "1"],
         {"KERAS_BACKEND": "jax"}, f"could not reach the JAX coordinator at 127.0.0.1:{port} within 1 s"),
    ]
    for args, env, message in cases:
        proc = _cli(args + ["--data", data, "--connect-timeout", "1"], env, tmp_path)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr[-2000:])
        assert len(our_stderr_lines(proc.stderr)) == 1, proc.stderr
        assert not out.exists()
