"""Exports to TF SavedModel and ONNX: endpoints, names, dynamic batch, equality with `generate`, atomic writes.

On the jax and torch backends `export` hands the weights to a TensorFlow-backend subprocess (checked once, from
torch, through the CLI); the export fixture's checks run where the export runs in-process, on tensorflow.
Loading the exports needs tensorflow and onnxruntime (the `export` extra).
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_ict import export as ex
from keras_ict.cli import main
from keras_ict.recipes import build_consistency_model, model_config, resolve_config
from keras_ict.sampling import generate, seed_noise, to_uint8

pytest.importorskip("onnxruntime", reason="onnxruntime is needed to check ONNX exports")
pytest.importorskip("tensorflow", reason="tensorflow is needed to write and read SavedModels")

TINY = {"model_channels": 8, "channel_mult": [1, 1], "attn_resolutions": [], "num_blocks": 1}
# One resolution: a third of the layers, a third of the export time (Keras traces every layer). The CLI test below
# exports TINY, so a fresh conversion of the FIR resampling ops to ONNX is still checked once per suite.
ONE_LEVEL = dict(TINY, channel_mult=[1])


def tiny_model(preset="mnist-cond", seed=1, network=TINY):
    config = model_config(resolve_config(preset, {"network_overrides": network}))
    keras.utils.set_random_seed(seed)
    model = build_consistency_model(config).build_for_images()
    # Non-trivial weights: an untrained output layer starts at zero in EDM's networks.
    rng = np.random.default_rng(seed)
    model.set_weights([w + 0.05 * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])
    model.sampling = config["sampling"]
    return model


# The export fixture's checks run in the TensorFlow pass, where `export` runs in-process. From JAX and torch,
# `export` hands the weights to a TensorFlow process in the same way (a .keras file); the torch pass checks that
# hand-off end to end (test_unconditional_export_through_the_cli: ONNX output equals torch's `generate`), and
# every backend's outputs equal the others' for the same weights (test_cross_backend.py): rebuilding the fixture
# through the hand-off in each pass cost minutes per pass.
tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                     reason="the export fixture is checked in the tensorflow pass")


_EXPORTED = {}  # per worker process: see `exported`


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export per worker process. Not left to the module scope alone: pytest tears a module fixture down
    whenever a worker's next test is in another module, and the `once` tests (sorted first) split this module's
    tests, which rebuilt the export four times per pass (~60 s each)."""
    if not _EXPORTED:
        model = tiny_model(network=ONE_LEVEL)
        out = tmp_path_factory.mktemp("export") / "out"
        _EXPORTED["value"] = (model, out, ex.export(model, out))
    return _EXPORTED["value"]


@tensorflow_only
@pytest.mark.xdist_group("export-fixture")  # one worker builds the module fixture once
def test_export_writes_every_endpoint_and_verifies(exported):
    model, out, report = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "denoise.onnx", "export.json", "generate_2step.onnx", "model.onnx", "saved_model"]
    assert json.loads((out / "export.json").read_text()) == report
    assert report["exported_with_backend"] == "tensorflow" and report["two_step_sigma"] == 0.821
    for name, entry in report["endpoints"].items():
        for fmt in ("saved_model", "onnx"):
            assert entry["max_abs_error_vs_keras"][fmt] <= 1e-4, (name, fmt)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


@tensorflow_only
@pytest.mark.xdist_group("export-fixture")  # one worker builds the module fixture once
def test_onnx_names_dynamic_batch_and_equality_with_generate(exported):
    model, out, _ = exported
    seeds, labels = [3, 9, 4, 100, 7], np.array([1, 2, 3, 4, 5], np.int32)
    session = ex.load_onnx(out / "model.onnx")
    assert [i.name for i in session.get_inputs()] == ["noise", "labels"]
    assert [o.name for o in session.get_outputs()] == ["images", "images_uint8"]
    noise = seed_noise(seeds, model.image_shape, 2)
    images, images_uint8 = session.run(None, {"noise": noise[0], "labels": labels})
    want = generate(model, seeds, sigmas=[80.0], labels=labels)
    np.testing.assert_allclose(images, want, atol=1e-4)
    assert images_uint8.dtype == np.uint8 and np.max(np.abs(images_uint8.astype(int) - to_uint8(want))) <= 1

    two = ex.load_onnx(out / "generate_2step.onnx")
    assert [i.name for i in two.get_inputs()] == ["noise", "noise2", "labels"]
    images2 = two.run(["images"], {"noise": noise[0], "noise2": noise[1], "labels": labels})[0]
    np.testing.assert_allclose(images2, generate(model, seeds, sigmas=[80.0, 0.821], labels=labels), atol=1e-4)

    den = ex.load_onnx(out / "denoise.onnx")
    assert [i.name for i in den.get_inputs()] == ["x", "sigma", "labels"]
    x = noise[0][:2] * 3.0
    sigma = np.array([3.0, 0.5], np.float32)
    got = den.run(["denoised"], {"x": x, "sigma": sigma, "labels": labels[:2]})[0]
    want = keras.ops.convert_to_numpy(model([x, sigma, labels[:2]]))
    np.testing.assert_allclose(got, want, atol=1e-4)


@tensorflow_only
@pytest.mark.xdist_group("export-fixture")  # one worker builds the module fixture once
def test_saved_model_signatures(exported):
    model, out, _ = exported
    saved = ex.load_saved_model(out)
    assert {"generate_1step", "generate_2step", "denoise"} <= set(saved.signatures)
    seeds, labels = [0, 1], np.array([7, 0], np.int32)
    noise = seed_noise(seeds, model.image_shape, 2)
    got = saved.signatures["generate_2step"](noise=noise[0], noise2=noise[1], labels=labels)
    np.testing.assert_allclose(got["images"].numpy(), generate(model, seeds, sigmas=[80.0, 0.821], labels=labels), atol=1e-4)
    assert got["images_uint8"].dtype.name == "uint8"


@pytest.mark.once("torch")
def test_unconditional_export_through_the_cli(tmp_path, capsys):
    from keras_ict.checkpoint import sha256_file, write_json

    model = tiny_model("mnist")
    folder = tmp_path / "final"
    folder.mkdir()
    model.save_weights(folder / "model.weights.h5")
    write_json(folder / "config.json", model_config(resolve_config("mnist", {"network_overrides": TINY})))
    write_json(folder / "metadata.json", {"files": {p.name: sha256_file(p) for p in folder.iterdir()}})
    assert main(["export", "--model", str(folder), "--out", str(tmp_path / "exp"), "--formats", "onnx"]) == 0
    assert "max abs error vs Keras" in capsys.readouterr().out
    session = ex.load_onnx(tmp_path / "exp" / "model.onnx")
    assert [i.name for i in session.get_inputs()] == ["noise"]
    noise = seed_noise([5], model.image_shape, 1)[0]
    np.testing.assert_allclose(session.run(["images"], {"noise": noise})[0], generate(model, [5]), atol=1e-4)
    assert not (tmp_path / "exp" / "saved_model").exists()
    # An existing output folder is refused without --overwrite, before anything is written.
    assert main(["export", "--model", str(folder), "--out", str(tmp_path / "exp")]) == 2
    assert "exists; add --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--formats", "tflite"], "--formats must list"),
        (["--formats", ""], "--formats must list"),
        (["--model", "{tmp}/nothing"], "neither a model folder"),
    ],
)
def test_export_cli_bad_input(args, message, tmp_path, capsys):
    argv = ["export", "--model", str(tmp_path), "--out", str(tmp_path / "out")] + [a.format(tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-ict: error:") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_export_api_bad_input(tmp_path):
    model = tiny_model()
    with pytest.raises(ValueError, match="formats"):
        ex.export(model, tmp_path / "a", formats=("pb",))
    with pytest.raises(ValueError, match="two_step_sigma"):
        ex.endpoint_models(model, 200.0)
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="overwrite"):
        ex.export(model, tmp_path / "exists")
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ValueError, match="bad.onnx"):
        ex.load_onnx(tmp_path / "bad.onnx")
    with pytest.raises(FileNotFoundError):
        ex.load_onnx(tmp_path / "missing.onnx")
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        ex.load_saved_model(tmp_path / "exists")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="in-process export runs on the TF backend only")
def test_failed_verification_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated mismatch")

    monkeypatch.setattr(ex, "verify", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        ex.export(tiny_model(network=ONE_LEVEL), tmp_path / "out", formats=("saved_model",))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.xdist_group("export-fixture")  # one worker builds the module fixture once
@pytest.mark.once("tensorflow")  # backend-independent, but it shares the fixture of the tensorflow pass
@pytest.mark.parametrize("script,steps", [("onnx_generate.py", 1), ("onnx_generate.py", 2), ("savedmodel_generate.py", 2)])
def test_inference_examples_without_keras_ict(exported, script, steps, tmp_path):
    """The examples import neither keras nor keras_ict and reproduce `generate` for the same seeds."""
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    from keras_ict.sampling import image_grid

    model, out, _ = exported
    repo = Path(__file__).resolve().parents[1]
    source = (repo / "examples" / script).read_text()
    assert "import keras" not in source and "keras_ict" not in source.replace("keras-ict", "")
    png = tmp_path / "grid.png"
    result = subprocess.run(
        [sys.executable, str(repo / "examples" / script), "--model", str(out), "--seeds", "0-5", "--steps", str(steps),
         "--out", str(png)],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = np.asarray(Image.open(png))
    sigmas = [80.0] if steps == 1 else [80.0, 0.821]
    want = image_grid(generate(model, range(6), sigmas=sigmas, labels=[s % 10 for s in range(6)]), ncols=3)[..., 0]
    assert got.shape == want.shape and np.max(np.abs(got.astype(int) - want.astype(int))) <= 1


@pytest.mark.backend_independent
@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_export_helper_process_dies_with_its_parent(tmp_path):
    """A SIGKILLed JAX/torch export must not leave its TensorFlow helper running (it would still write the export
    later): the helper is started with `_exit_with_parent`. Here the helper is a `sleep` whose parent is killed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time; from keras_ict.export import _exit_with_parent;"
        "child = subprocess.Popen(['sleep', '120'], preexec_fn=_exit_with_parent());"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(120)")])
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()):
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.1)
    child = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "Z" not in Path(f"/proc/{child}/stat").read_text().split(")")[1][:3]:
        assert time.monotonic() < deadline, "the helper outlived its killed parent"
        time.sleep(0.1)
