"""The benchmark scripts run end to end on a tiny configuration (no timings are checked: figures are produced
by the scripts, never asserted) and refuse bad input before any work."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras

REPO = Path(__file__).resolve().parents[1]


def _run(*args):
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def test_train_throughput_measures_one_row(tmp_path):
    out = tmp_path / "train.json"
    proc = _run("benchmarks/train_throughput.py", "--backends", keras.backend.backend(), "--jit", "false",
                "--preset", "ncsnpp_mnist_small", "--batch-size", "2", "--steps-per-repeat", "1", "--repeats", "2",
                "--warmup", "0", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["failures"] == []
    (row,) = report["results"]
    assert row["backend"] == keras.backend.backend() and row["batch_size"] == 2
    assert row["dtype_policy"] == "float32" and row["params"] > 1_000_000
    assert len(row["repeat_step_s"]) == 2 and row["img_per_s_median"] == 2 / row["step_s_median"]
    assert row["device_name"] is None and row["peak_device_mib"] is None  # CPU
    assert not list(tmp_path.glob("*.tmp"))


def test_train_throughput_rejects_bad_batch_sizes(tmp_path):
    out = tmp_path / "train.json"
    for bad in ("0,32", "12a"):
        proc = _run("benchmarks/train_throughput.py", "--batch-sizes", bad, "--json", str(out))
        assert proc.returncode == 2 and ("--batch-sizes" in proc.stderr or "batch sizes must be" in proc.stderr)
        assert not out.exists()
