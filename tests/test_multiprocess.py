"""Several training processes on localhost, each backend's own engine (TensorFlow: MultiWorkerMirroredStrategy with
TF_CONFIG), against one process on the same global batch: same losses and weights, one writer, exact resume after
a SIGKILL of one worker and a relaunch of all."""

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

REPO = Path(__file__).resolve().parents[1]
TINY = {"model_channels": 8, "channel_mult": [1, 1], "attn_resolutions": [], "num_blocks": 1}
STEPS, BATCH = 4, 8
SETTINGS = dict(network_overrides=TINY, log_every=1, checkpoint_every=1, keep_checkpoints=10, sample_count=4)


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
    sets = [a for k, v in SETTINGS.items() for a in ("--set", f"{k}={json.dumps(v) if isinstance(v, dict) else v}")]
    procs = []
    for index in range(len(ports)):
        scratch = tmp_root / f"tmp{index}"
        scratch.mkdir(exist_ok=True)
        # The workers inherit this process's thread settings, as the one-process reference runs here: kernels may
        # sum in another order with another thread count.
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(scratch),
                   TF_CONFIG=json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}))
        log = open(tmp_root / f"worker{index}.log", "a")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "keras_ict", "train", "--preset", "mnist", "--data", str(data), "--steps", str(STEPS),
             "--batch-size", str(BATCH), "--strategy", "multiworker", "--out", str(run_dir)] + sets,
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO))
    return procs


@pytest.mark.once("tensorflow")
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF_CONFIG workers are TensorFlow's engine")
@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_two_tf_workers_equal_one_process_write_once_and_resume_after_a_kill(tmp_path, shared_dir):
    from keras_ict.training import train

    data = shared_dir / "datasets" / "mnist_small.npz"
    single = train("mnist", tmp_path / "single", data=str(data), steps=STEPS, batch_size=BATCH, **SETTINGS)
    assert single.status == "finished"

    run_dir, logs = tmp_path / "two", tmp_path / "logs"
    logs.mkdir()
    procs = _launch_tf_workers(run_dir, data, logs, _free_ports(2))
    # Kill the non-chief worker once the chief has checkpointed step 2, then the chief (it waits on the dead
    # worker's collectives): a relaunch of all must resume from the chief's checkpoint.
    deadline = time.monotonic() + 480
    while not (run_dir / "checkpoints" / "step_000000002").is_dir():
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), (logs / "worker0.log").read_text()[-3000:]
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    assert not (run_dir / "final").exists()

    procs = _launch_tf_workers(run_dir, data, logs, _free_ports(2))
    codes = [p.wait(timeout=480) for p in procs]
    worker_logs = [(logs / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], worker_logs[0][-3000:] + worker_logs[1][-3000:]
    assert all("resuming from" in log and "over 2 replicas" in log for log in worker_logs)

    # Same losses and weights as one process on the same global batch; the weights moved.
    want, got = _losses(single.run_dir), _losses(run_dir)
    assert sorted(got) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([got[s] for s in sorted(want)], [want[s] for s in sorted(want)], rtol=1e-5)
    a, b = _weights(single.run_dir / "final" / "model.weights.h5"), _weights(run_dir / "final" / "model.weights.h5")
    assert sorted(a) == sorted(b) and max(float(np.max(np.abs(a[k] - b[k]))) for k in a) <= 1e-6
    first, last = (_checkpoint_weights(run_dir / "checkpoints" / f"step_{s:09d}") for s in (1, STEPS))
    assert max(float(np.max(np.abs(first[k] - last[k]))) for k in first) > 0
    # One writer: no keras-ict scratch folder is left (TensorFlow's own autograph files may be), and the run
    # folder holds one run's files.
    assert [sorted((logs / f"tmp{i}").glob("keras-ict-*")) for i in range(2)] == [[], []]
    assert (run_dir / "final" / "model.weights.h5").is_file()
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in single.run_dir.iterdir() if not p.name.startswith("."))


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
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
