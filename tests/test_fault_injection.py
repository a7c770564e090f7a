"""SIGKILL during training and export (a short version of tools/fault_injection.py, which runs >= 10 kills)."""

import json
import os
import sys
from pathlib import Path

import keras
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_killed_runs_resume_exactly_and_exports_are_never_half_written(tmp_path, shared_dir):
    pytest.importorskip("onnx")
    import fault_injection

    out = tmp_path / "result.json"
    backend = keras.backend.backend()
    # Exports are always written by a TensorFlow-backend process: their kill is exercised once, on tensorflow.
    kills, export_kills = ("2", "1") if backend == "tensorflow" else ("1", "0")
    code = fault_injection.main([
        "--kills", kills, "--export-kills", export_kills, "--steps", "6", "--backend", backend, "--seed", "1",
        "--work", str(tmp_path / "work"), "--data", str(shared_dir / "datasets" / "mnist_small.npz"), "--json", str(out),
    ])
    result = json.loads(out.read_text())
    assert code == 0
    assert result["train_kills"] == int(kills) and result["every_resume_from_intact_checkpoint"]
    assert result["max_abs_weight_diff_vs_uninterrupted"] == 0.0 and result["final_weights_bitwise_equal"]
    assert all(e["export"] in ("absent", "complete") for e in result["events"] if e["what"] == "export")
