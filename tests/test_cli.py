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


def test_parsers():
    assert parse_duration("45m") == 2700 and parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    from keras_ict.cli import UserError

    for bad in ("45x", "-5m", "0"):
        with pytest.raises(UserError):
            parse_duration(bad)
    with pytest.raises(UserError):
        parse_seeds("5-2")


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
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}", "--set", "batchsize=3"], "unknown config field 'batchsize'"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}", "--batch-size", "0"], "batch_size must be >= 1"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}", "--set", "resize=cubic"], "resize must be"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}", "--set", "network_overrides={{\"in_channels\": 2, \"out_channels\": 2}}"], "channels"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}", "--stop-at-step", "0"], "--stop-at-step"),
        (["sample", "--model", "{tmp}/nothing", "--num", "4", "--out", "{tmp}/g.png"], "no model folder or zoo entry"),
        (["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}", "--strategy", "tpu" if BACKEND != "tensorflow" else "data-parallel"], "not available on the"),
        (["sample", "--model", "{tmp}/nothing", "--num", "4", "--out", "{tmp}/g.jpg"], "must end in .png or .npz"),
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
    assert sorted(p.name for p in (straight / "samples").iterdir()) == ["step_000000002.png", "step_000000004.png", "step_000000006.png"]

    # Same command again: nothing left to do. A different config refuses to resume.
    again = run_cli(tiny_args(data, straight, "--steps", "6"))
    assert again.returncode == 0 and "already finished" in again.stdout
    other = run_cli(tiny_args(data, straight, "--steps", "8"))
    assert other.returncode == 2 and "different config" in other.stderr and "total_steps" in other.stderr

    assert main(["sample", "--model", str(final), "--seeds", "0-3", "--steps", "2", "--out", str(tmp_path / "g.png")]) == 0
    assert main(["sample", "--model", str(final), "--num", "3", "--out", str(tmp_path / "x.npz")]) == 0
    arrays = np.load(tmp_path / "x.npz")
    assert arrays["images"].shape == (3, 32, 32, 1) and arrays["images"].dtype == np.uint8


@pytest.mark.skipif(BACKEND == "torch", reason="no multi-device strategy on Keras' torch backend")
def test_train_with_strategy_flag(tmp_path, shared_dir):
    strategy = "mirrored" if BACKEND == "tensorflow" else "data-parallel"
    data = shared_dir / "datasets" / "mnist_small.npz"
    proc = run_cli(tiny_args(data, tmp_path / "run", "--steps", "2", "--strategy", strategy))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "final" / "model.weights.h5").is_file()
