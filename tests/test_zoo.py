"""Every zoo entry: files match their sha256, tampering is refused, and its exports match Keras."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from keras_ict import zoo
from keras_ict.cli import main
from keras_ict.sampling import generate, seed_noise

ENTRIES = zoo.available()


@pytest.mark.backend_independent
def test_listed_entries_are_folders():
    for name in ENTRIES:
        assert (zoo.zoo_dir() / name / "metadata.json").is_file(), name


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", ENTRIES)
def test_entry_loads_and_documents_itself(name):
    model = zoo.from_preset(name)
    folder = zoo.zoo_dir() / name
    meta = json.loads((folder / "metadata.json").read_text())
    for key in ("dataset", "dataset_sha256", "preset", "steps", "images_seen", "wall_time_s", "machine", "backend", "fid",
                "files"):
        assert meta.get(key) is not None, key
    from keras_ict.evaluation import metric_name

    num = meta["fid"][0]["num"]
    assert {r["metric"] for r in meta["fid"]} == {metric_name(num, 1), metric_name(num, 2)}
    assert all(r["reference"]["ref_sha256"] and r["seeds"] == f"0-{num - 1}" for r in meta["fid"])
    for required in ("config.json", "model.weights.h5", "saved_model/saved_model.pb", "model.onnx", "samples.png", "README.md"):
        assert required in meta["files"], required
    assert sum((folder / f).stat().st_size for f in meta["files"]) <= 60 * 2**20
    assert model.metadata["name"] == name


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", ENTRIES)
def test_tampered_entry_is_refused(name, tmp_path):
    copy = tmp_path / name
    shutil.copytree(zoo.zoo_dir() / name, copy)
    with open(copy / "model.weights.h5", "r+b") as f:
        f.seek(-64, 2)
        byte = f.read(1)
        f.seek(-64, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="model.weights.h5 does not match its sha256"):
        zoo.from_preset(copy)


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", ENTRIES)
def test_entry_exports_match_keras(name):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tensorflow")
    from keras_ict.export import load_onnx, load_saved_model

    model = zoo.from_preset(name)
    folder = zoo.zoo_dir() / name
    seeds = [0, 1, 2, 3]
    labels = np.array([s % model.label_dim for s in seeds], np.int32) if model.conditional else None
    noise = seed_noise(seeds, model.image_shape, 2)
    extra = {"labels": labels} if labels is not None else {}
    saved = load_saved_model(folder)  # loaded once per entry, for both step counts
    for steps, onnx_file in ((1, "model.onnx"), (2, "generate_2step.onnx")):
        want = generate(model, seeds, sigmas=model.sampling[f"sigmas_{steps}step"], labels=labels)
        feeds = {"noise": noise[0], **({"noise2": noise[1]} if steps == 2 else {}), **extra}
        got = load_onnx(folder / onnx_file).run(["images"], feeds)[0]
        np.testing.assert_allclose(got, want, atol=1e-4)
        np.testing.assert_allclose(saved.signatures[f"generate_{steps}step"](**feeds)["images"].numpy(), want, atol=1e-4)


# Every backend samples one entry by name (a conditional one: the labels path too); the others once, in the torch
# pass (the same CLI code; outputs per backend are compared in test_cross_backend).
PER_BACKEND_ENTRY = "mnist-cond" if "mnist-cond" in ENTRIES else (ENTRIES or [None])[0]


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == PER_BACKEND_ENTRY else pytest.mark.once("torch"))
                                  for n in ENTRIES])
def test_sample_command_by_zoo_name(name, tmp_path, capsys):
    assert main(["sample", "--model", name, "--num", "4", "--steps", "2", "--out", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").is_file()


@pytest.mark.backend_independent
def test_keras_ict_zoo_variable_moves_the_zoo_and_a_missing_zoo_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_ICT_ZOO", str(tmp_path / "my-zoo"))
    assert zoo.list() == []
    with pytest.raises(FileNotFoundError, match=r"\$KERAS_ICT_ZOO .*my-zoo does not exist.*set KERAS_ICT_ZOO"):
        zoo.from_preset("mnist")
    shutil.copytree(Path(__file__).resolve().parents[1] / "zoo" / ENTRIES[0], tmp_path / "my-zoo" / "copied")
    assert zoo.list() == ["copied"]
    with pytest.raises(FileNotFoundError, match="no model folder or zoo entry named 'mnist' in .*my-zoo; zoo entries: copied"):
        zoo.from_preset("mnist")
