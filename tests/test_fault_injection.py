"""SIGKILL during training and export (a short version of tools/fault_injection.py, which runs >= 10 kills).

Run once per suite, on torch: the tool drives `keras-ict` subprocesses (backend-independent CLI and file logic),
and torch processes start and train the tiny network fastest; its exports hand the weights to a
TensorFlow-backend process, as on JAX. Exact resume on every backend is checked in-process by
tests/test_checkpoint.py and tests/test_cli.py.
"""

import json
import os

import keras
import pytest

from harness import load_script


@pytest.mark.once("torch")
@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_killed_runs_resume_exactly_and_exports_are_never_half_written(tmp_path, shared_dir):
    pytest.importorskip("onnx")
    fault_injection = load_script("tools/fault_injection.py")

    out = tmp_path / "result.json"
    code = fault_injection.main([
        # One training kill (seed 5 lands it after step 3, where a checkpoint exists) and one export kill, 12-57 s
        # into the export (one takes longer than that: a torch process hands the weights to a TensorFlow one),
        # so no timing export is needed; tools/fault_injection.py runs the long version.
        "--kills", "1", "--export-kills", "1", "--export-seconds", "60", "--steps", "6",
        "--backend", keras.backend.backend(), "--seed", "5",
        "--work", str(tmp_path / "work"), "--data", str(shared_dir / "datasets" / "mnist_small.npz"), "--json", str(out),
    ])
    result = json.loads(out.read_text())
    assert code == 0
    train = [e for e in result["events"] if e["what"] == "train"]
    assert result["train_kills"] >= 1 and result["every_resume_from_intact_checkpoint"]
    assert result["resumes_compared"] >= 1
    # Every run after a kill that left a checkpoint said which one it resumed from, and it was that one.
    for before, after in zip(train, train[1:]):
        if (before["killed"] and before["latest_step"] and after["round"] == before["round"]
                and isinstance(after["resumed_from"], dict)):
            assert after["resumed_from"]["step"] == before["latest_step"]
    assert result["max_abs_weight_diff_vs_uninterrupted"] == 0.0 and result["final_weights_bitwise_equal"]
    exports = [e for e in result["events"] if e["what"] == "export"]
    assert result["exports_checked"] and len(exports) == 1 and result["export_kills"] <= 1
    assert all(e["export"] in ("absent", "complete") for e in exports)
