"""The keras-ict command line: errors before any write, training end to end, exact resume, sampling."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from keras_ict.cli import main, parse_duration, parse_seeds

REPO = Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()
TINY_NET = '{"model_channels": 8, "channel_mult": [1, 1], "attn_resolutions": [], "num_blocks": 1}'


def tiny_args(data, out, *extra):
    return ["train", "--preset", "mnist", "--data", str(data), "--out", str(out), "--batch-size", "8",
            "--set", f"network_overrides={TINY_NET}", "--set", "log_every=2", "--set", "checkpoint_every=2",
            "--set", "sample_count=4", *extra]


def run_cli(args, **kwargs):
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "keras_ict", *args], capture_output=True, text=True, env=env, cwd=REPO, **kwargs)


@pytest.mark.backend_independent
def test_parsers():
    assert parse_duration("45m") == 2700 and parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    from keras_ict.cli import UserError

    for bad in ("45x", "-5m", "0"):
        with pytest.raises(UserError):
            parse_duration(bad)
    with pytest.raises(UserError):
        parse_seeds("5-2")


@pytest.mark.backend_independent
def test_presets_command(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("cifar10", "cifar10-deep", "imagenet64", "mnist", "mnist-cond", "cifar10-small"):
        assert name in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--preset", "nope", "--out", "{out}"], "unknown preset 'nope'"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{tmp}/missing.npz"], "missing.npz"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}", "--time-budget", "5x"], "cannot read duration"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}", "--set", "batchsize=3"],
         "unknown config field 'batchsize'"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}", "--batch-size", "0"], "batch_size must be >= 1"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}", "--set", "resize=cubic"], "resize must be"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}",
          "--set", "network_overrides={{\"in_channels\": 2, \"out_channels\": 2}}"], "channels"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}", "--stop-at-step", "0"], "--stop-at-step"),
        (["sample", "--model", "{tmp}/nothing", "--num", "4", "--out", "{tmp}/g.png"], "no model folder or zoo entry"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}",
          "--strategy", "tpu" if BACKEND != "tensorflow" else "data-parallel"], "not available on the"),
        (["sample", "--model", "{tmp}/nothing", "--num", "4", "--out", "{tmp}/g.jpg"], "must end in .png or .npz"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "mnist", "--data-pipeline", "numpy"],
         "TFDS source 'mnist' needs the tf data pipeline"),
        (["sample", "--model", "{tmp}/nothing", "--seeds", "3-1", "--out", "{tmp}/g.png"], "is empty"),
    ],
)
def test_user_errors_are_one_line_and_write_nothing(args, message, tmp_path, shared_dir, capsys):
    subs = {"out": tmp_path / "run", "tmp": tmp_path, "mnist": shared_dir / "datasets" / "mnist_small.npz"}
    code = main([a.format(**subs) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("keras-ict: error:") and message in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def weights_from_run(run_dir):
    from keras_ict.checkpoint import latest_checkpoint, load_checkpoint

    trainer, state = load_checkpoint(latest_checkpoint(run_dir))
    student = [ops.convert_to_numpy(w) for w in trainer.model.weights]
    ema = [ops.convert_to_numpy(w) for w in trainer.ema_model.weights]
    return student, ema, state


@pytest.mark.once("torch")
def test_train_resume_equals_uninterrupted_and_sample(tmp_path, shared_dir):
    data = shared_dir / "datasets" / "mnist_small.npz"
    straight, split = tmp_path / "straight", tmp_path / "split"
    first = run_cli(tiny_args(data, straight, "--steps", "6"))
    assert first.returncode == 0, first.stderr[-3000:]
    part = run_cli(tiny_args(data, split, "--steps", "6", "--stop-at-step", "3"))
    assert part.returncode == 0, part.stderr[-3000:]
    assert "stopped at step 3 of 6" in part.stdout
    assert not (split / "final").exists()
    rest = run_cli(tiny_args(data, split, "--steps", "6"))
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert "resuming from" in rest.stdout and "step 3" in rest.stdout

    s1, e1, state1 = weights_from_run(straight)
    s2, e2, state2 = weights_from_run(split)
    assert state1["step"] == state2["step"] == 6
    for a, b in zip(s1 + e1, s2 + e2):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(s1 + e1, s2 + e2))
    print(f"resume vs uninterrupted on {BACKEND}: max abs weight difference {diff:.3g} (bitwise: {diff == 0.0})")

    final = straight / "final"
    meta = json.loads((final / "metadata.json").read_text())
    assert meta["steps"] == 6 and meta["images_seen"] == 48 and meta["backend"] == BACKEND
    assert {"config.json", "model.weights.h5", "samples_1step.png", "samples_2step.png"} <= set(meta["files"])
    log = (straight / "log.csv").read_text().splitlines()
    assert log[0] == "step,images_seen,wall_s,loss,num_scales,mean_sigma" and len(log) == 4
    assert sorted(p.name for p in (straight / "samples").iterdir()) == [
        "step_000000002.png", "step_000000004.png", "step_000000006.png"]

    # Same command again: nothing left to do. A different config refuses to resume.
    again = run_cli(tiny_args(data, straight, "--steps", "6"))
    assert again.returncode == 0 and "already finished" in again.stdout
    other = run_cli(tiny_args(data, straight, "--steps", "8"))
    assert other.returncode == 2 and "different config" in other.stderr and "total_steps" in other.stderr

    assert main(["sample", "--model", str(final), "--seeds", "0-3", "--steps", "2", "--out", str(tmp_path / "g.png")]) == 0
    assert main(["sample", "--model", str(final), "--num", "3", "--out", str(tmp_path / "x.npz")]) == 0
    arrays = np.load(tmp_path / "x.npz")
    assert arrays["images"].shape == (3, 32, 32, 1) and arrays["images"].dtype == np.uint8


# The CLI in a process with 2 simulated CPU devices (they must exist before the framework initialises).
TWO_CPU_DEVICES = """
import os, sys
if os.environ["KERAS_BACKEND"] == "jax":
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
else:
    import tensorflow as tf
    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                               [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_ict.cli import main
sys.exit(main(sys.argv[1:]))
"""


# TensorFlow's MirroredStrategy over two devices of one process. JAX's data-parallel path through the CLI is the
# two-process test (tests/test_multiprocess.py), its 2-device step equality tests/test_distribution.py; torch's
# several-device path is ddp (several processes).
@pytest.mark.skipif(BACKEND != "tensorflow", reason="tensorflow's one-process multi-device strategy")
def test_train_with_strategy_flag_splits_the_batch_over_two_devices(tmp_path, shared_dir):
    strategy = "mirrored"
    data = shared_dir / "datasets" / "mnist_small.npz"
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="2")
    one_level = json.dumps(dict(json.loads(TINY_NET), channel_mult=[1]))  # a third of the layers to trace
    args = tiny_args(data, tmp_path / "run", "--steps", "2", "--strategy", strategy, "--set", f"network_overrides={one_level}")
    proc = subprocess.run([sys.executable, "-c", TWO_CPU_DEVICES, *args], capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "batch 8 over 2 replicas" in proc.stdout, proc.stdout
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(log) == 2 and np.isfinite(float(log[1].split(",")[3]))
    assert (tmp_path / "run" / "final" / "model.weights.h5").is_file()


@pytest.mark.once("torch")
def test_train_stops_at_nonfinite_loss_and_keeps_last_good_checkpoint(tmp_path, shared_dir, capsys, monkeypatch):
    """A loss that becomes NaN at step 5: exit 1 naming step 5, checkpoints up to step 4 intact, none after."""
    from keras_ict.checkpoint import latest_checkpoint, load_checkpoint
    from keras_ict.trainer import ConsistencyTrainer

    original = ConsistencyTrainer.consistency_loss

    def poisoned(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        # The 5th step runs with the step counter at 4; afterwards the counter (and the reported step) is 5.
        return ops.where(ops.greater_equal(self.step.value, 4), ops.full_like(loss, float("nan")), loss)

    monkeypatch.setattr(ConsistencyTrainer, "consistency_loss", poisoned)
    run = tmp_path / "run"
    code = main(tiny_args(shared_dir / "datasets" / "mnist_small.npz", run, "--steps", "8"))
    err = capsys.readouterr().err
    assert code == 1
    assert "the loss became NaN/Inf at step 5" in err, err
    last = latest_checkpoint(run)
    assert last is not None and last.name == "step_000000004" and f"Last good checkpoint: {last}" in err
    saved = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step_"))
    assert saved == ["step_000000002", "step_000000004"]
    assert not (run / "final").exists()
    trainer, state = load_checkpoint(last)
    assert state["step"] == 4 and int(ops.convert_to_numpy(trainer.step)) == 4
    assert all(np.isfinite(ops.convert_to_numpy(w)).all() for w in trainer.model.weights + trainer.ema_model.weights)


@pytest.mark.once("torch")
def test_time_budget_stops_cleanly_and_the_run_resumes(tmp_path, shared_dir, capsys):
    data, run = shared_dir / "datasets" / "mnist_small.npz", tmp_path / "run"
    # 0.1 s is spent before the first step ends (tracing alone takes longer), so the budget stops at step 1.
    assert main(tiny_args(data, run, "--set", "total_steps=50", "--time-budget", "0.1")) == 0
    out = capsys.readouterr().out
    assert "stopped at step 1 of 50 (time budget)" in out, out
    assert (run / "checkpoints" / "step_000000001").is_dir() and not (run / "final").exists()
    assert main(tiny_args(data, run, "--steps", "50", "--stop-at-step", "2")) == 0
    out = capsys.readouterr().out
    assert "resuming from" in out and "(step 1)" in out and "stopped at step 2 of 50 (stop requested)" in out


@pytest.mark.once("torch")
def test_a_run_with_its_own_curriculum_length_can_be_extended(tmp_path, shared_dir, capsys):
    """With curriculum_steps fixed, total_steps only says when to stop: a finished run continues to a larger
    total (how the recipe study and the zoo's long runs grow); without it, total_steps is part of the recipe."""
    from keras_ict.checkpoint import read_json

    data, run = shared_dir / "datasets" / "mnist_small.npz", tmp_path / "run"
    assert main(tiny_args(data, run, "--steps", "2", "--set", "curriculum_steps=4")) == 0
    assert main(tiny_args(data, run, "--steps", "4", "--set", "curriculum_steps=4")) == 0
    out = capsys.readouterr().out
    assert "resuming from" in out and "(step 2)" in out and "finished 4 steps" in out
    assert read_json(run / "config.json")["total_steps"] == 4
    assert json.loads((run / "final" / "metadata.json").read_text())["steps"] == 4
    assert main(tiny_args(data, run, "--steps", "6", "--set", "curriculum_steps=5")) == 2
    assert "curriculum_steps: 4 -> 5" in capsys.readouterr().err
