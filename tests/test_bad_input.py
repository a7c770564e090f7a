"""A catalogue of bad inputs through the public API and the command line.

Every case must raise (API) or exit != 0 (CLI) with one clear line that names the problem, print no traceback
for user errors, and leave nothing half-written. Each row: an id, a callable or CLI arguments, and a piece of
the expected message. Input checks of a single function (FID arrays, schedules, sampling arguments, presets,
model inputs) are tested beside that function (test_fid, test_schedules, test_sampling, test_presets,
test_parameterization, test_cli); this catalogue holds the rest, without repeating those.
"""

import errno
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_ict import checkpoint, evaluation, fid, zoo
from keras_ict.cli import main
from keras_ict.parameterization import ConsistencyModel
from keras_ict.sampling import generate
from tiny_network import TinyNet

TINY_NET = '{"model_channels": 8, "channel_mult": [1], "attn_resolutions": [], "num_blocks": 1}'


def tiny(label_dim=0):
    return ConsistencyModel(TinyNet(img_resolution=8, in_channels=1, label_dim=label_dim),
                            noise_label_scale=1.0).build_for_images()


@pytest.fixture(scope="module")
def files(tmp_path_factory, shared_dir):
    """Bad files, made once."""
    root = tmp_path_factory.mktemp("bad")
    np.savez(root / "float_images.npz", x_train=np.random.rand(4, 8, 8).astype(np.float32))
    np.savez(root / "empty.npz", x_train=np.zeros((0, 8, 8), np.uint8))
    np.savez(root / "rank5.npz", x_train=np.zeros((2, 2, 8, 8, 1), np.uint8))
    np.savez(root / "labels_mismatch.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(3, np.int64))
    np.savez(root / "stats_no_sigma.npz", mu=np.zeros(3))
    np.savez(root / "no_labels.npz", x_train=np.zeros((4, 28, 28), np.uint8))
    (root / "garbage.onnx").write_bytes(b"\x08\x07 not a protobuf")
    (root / "saved_model").mkdir()
    (root / "saved_model" / "saved_model.pb").write_bytes(b"\x00\x01 truncated")
    (root / "checkpoint").mkdir()
    (root / "checkpoint" / "trainer.keras").write_bytes(b"PK\x03\x04 cut short")
    (root / "checkpoint" / "state.json").write_text('{"step": 3}')
    (root / "empty_folder").mkdir()
    (root / "truncated.npz").write_bytes((shared_dir / "datasets" / "mnist_small.npz").read_bytes()[:1000])
    model = tiny()
    good = root / "model_ok"
    good.mkdir()
    model.save_weights(good / "model.weights.h5")
    (root / "not_a_model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    return root


def raises(exc, fn, message):
    with pytest.raises(exc) as info:
        fn()
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text.strip() or len(text) < 400, text


API_CASES = [
    # images given to the model
    ("x rank 3", lambda f: tiny()([np.zeros((8, 8, 1), np.float32), np.ones(1, np.float32)]), ValueError, "rank 4"),
    # FID input images
    ("fid stats missing", lambda f: fid.load_statistics(f / "nope.npz"), FileNotFoundError, "nope.npz"),
    # datasets
    ("data float pixels", lambda f: evaluation.reference_statistics(f / "float_images.npz", cache=False), ValueError,
     "must be uint8"),
    ("data empty", lambda f: _dataset(f / "empty.npz"), ValueError, "holds no images"),
    ("data rank 5", lambda f: _dataset(f / "rank5.npz"), ValueError, "(N, H, W)"),
    ("data missing", lambda f: _dataset(f / "missing.npz"), (FileNotFoundError, ValueError), "missing.npz"),
    ("data empty folder", lambda f: _dataset(f / "empty_folder"), ValueError, "no images"),
    ("data truncated", lambda f: _dataset(f / "truncated.npz"), ValueError, "truncated.npz"),
    ("labels count", lambda f: _dataset(f / "labels_mismatch.npz", labels=True), ValueError, "4 images but y_train has 3"),
    # labels
    # schedules and sampling
    ("no seeds", lambda f: generate(tiny(), []), ValueError, "non-empty"),
    # presets and configs
    # weights and models
    ("weights truncated", lambda f: _truncated_weights(f), ValueError, "model.weights.h5"),
    ("keras file corrupt", lambda f: _export(f / "not_a_model.keras"), ValueError, "not_a_model.keras"),
    ("onnx corrupt", lambda f: _onnx(f / "garbage.onnx"), ValueError, "garbage.onnx: not a loadable ONNX model"),
    ("saved_model corrupt", lambda f: _saved(f / "saved_model"), ValueError, "cannot load the SavedModel"),
    ("checkpoint corrupt", lambda f: checkpoint.load_checkpoint(f / "checkpoint"), ValueError, "cannot be loaded"),
]


def _onnx(path):
    pytest.importorskip("onnxruntime")
    from keras_ict.export import load_onnx

    return load_onnx(path)


def _saved(path):
    pytest.importorskip("tensorflow")
    from keras_ict.export import load_saved_model

    return load_saved_model(path)


def _dataset(path, labels=False):
    from keras_ict.data import load_dataset

    return load_dataset(path, image_size=8, batch_size=2, labels=labels)


def _preset(name, overrides=None):
    from keras_ict.recipes import resolve_config

    return resolve_config(name, overrides)


def _truncated_weights(root):
    """A run folder whose weights file was cut short (no metadata.json, so no sha256 check catches it first)."""
    from keras_ict.checkpoint import write_json
    from keras_ict.recipes import model_config, resolve_config

    folder = root / "truncated_model"
    if not folder.exists():
        folder.mkdir()
        config = model_config(resolve_config("mnist", {"network_overrides": TINY_NET}))
        write_json(folder / "config.json", config)
        from keras_ict.recipes import build_consistency_model

        build_consistency_model(config).build_for_images().save_weights(folder / "model.weights.h5")
        data = (folder / "model.weights.h5").read_bytes()
        (folder / "model.weights.h5").write_bytes(data[: len(data) // 2])
    return zoo.from_preset(folder)


def _export(path):
    from keras_ict.export import _load_model

    return _load_model(path)


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(case, files):
    _, fn, exc, message = case
    raises(exc, lambda: fn(files), message)


CLI_CASES = [
    ("unknown backend", ["train", "--preset", "mnist", "--out", "{out}", "--backend", "mxnet"], "invalid choice"),
    ("float data", ["train", "--preset", "mnist", "--out", "{out}", "--data", "{bad}/float_images.npz"], "uint8"),
    ("empty data", ["train", "--preset", "mnist", "--out", "{out}", "--data", "{bad}/empty.npz"], "holds no images"),
    ("zero steps", ["train", "--preset", "mnist", "--out", "{out}", "--data", "{mnist}", "--steps", "0"],
     "total_steps must be >= 1"),
    ("rank 5 data", ["train", "--preset", "mnist", "--out", "{out}", "--data", "{bad}/rank5.npz"], "must have shape (N, H, W)"),
    ("conditional without labels", ["train", "--preset", "mnist-cond", "--out", "{out}", "--data", "{bad}/no_labels.npz"],
     "has no labels"),
    ("more classes than label_dim",
     ["train", "--preset", "mnist-cond", "--out", "{out}", "--data", "{mnist}", "--set", "label_dim=5"], "10 classes"),
    ("negative sample count", ["sample", "--model", "{tmp}", "--num", "-3", "--out", "{tmp}/g.png"], "--num"),
    ("bad sigmas", ["sample", "--model", "{tmp}", "--num", "2", "--sigmas", "80,abc", "--out", "{tmp}/g.png"],
     "cannot read --sigmas"),
    ("fid one image", ["fid", "--model", "{tmp}", "--ref", "{mnist}", "--num", "1"], "--num must be >= 2"),
    ("export bad format", ["export", "--model", "{tmp}", "--out", "{out}", "--formats", "tflite"], "--formats"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(case, files, tmp_path, shared_dir, capsys):
    _, args, message = case
    subs = {"out": tmp_path / "run", "tmp": tmp_path, "bad": files, "mnist": shared_dir / "datasets" / "mnist_small.npz"}
    try:
        code = main([a.format(**subs) for a in args])
    except SystemExit as exit_:  # argparse's own errors (e.g. an unknown --backend choice) exit 2 with usage
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code not in (0, None)
    assert message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    from keras_ict.trainer import ConsistencyTrainer

    trainer = ConsistencyTrainer(tiny(), total_steps=10, seed=0)
    trainer.compile(optimizer="adam")
    trainer.fit(np.zeros((4, 8, 8, 1), np.float32), batch_size=4, epochs=1, verbose=0)
    first = checkpoint.save_checkpoint(trainer, tmp_path)
    trainer.fit(np.zeros((4, 8, 8, 1), np.float32), batch_size=4, epochs=1, verbose=0)

    real_save = keras.Model.save

    def full_disk(self, filepath, *args, **kwargs):
        real_save(self, filepath, *args, **kwargs)
        with open(filepath, "r+b") as f:  # the archive is cut short, then the device reports ENOSPC
            f.truncate(100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    monkeypatch.setattr(keras.Model, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save_checkpoint(trainer, tmp_path)
    monkeypatch.undo()
    assert checkpoint.latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", Path(first).name]
    restored, state = checkpoint.load_checkpoint(first)
    assert state["step"] == 1


def test_run_directory_from_another_config_is_refused(tmp_path, shared_dir, capsys):
    from keras_ict.checkpoint import write_json
    from keras_ict.recipes import resolve_config

    run = tmp_path / "run"
    run.mkdir()
    write_json(run / "config.json", resolve_config("mnist", {"batch_size": 16}))
    before = sorted(p.name for p in run.iterdir())
    code = main(["train", "--preset", "mnist", "--out", str(run), "--data", str(shared_dir / "datasets" / "mnist_small.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "holds a run with a different config" in err and "batch_size: 16 -> 32" in err
    assert sorted(p.name for p in run.iterdir()) == before
