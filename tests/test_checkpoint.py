"""Checkpoints and model folders: atomic writes, resume state, sha256 checks, from_preset."""

import json

import keras
import numpy as np
import pytest
from keras import ops

import keras_ict
from harness import TINY_NETWORK
from keras_ict import recipes
from keras_ict.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_final
from keras_ict.zoo import from_preset

TINY = {"network_overrides": TINY_NETWORK}


def tiny_trainer(**overrides):
    """The mnist recipe on a tiny network: these tests need a trained state after two steps. TensorFlow and torch
    run the step eagerly (tracing it costs far more than running it twice; the compiled step is tested
    elsewhere); JAX compiles it, since its eager ops compile one by one (two steps: 23 s jitted, 40 s eager)."""
    config = recipes.resolve_config("mnist", dict(TINY, **overrides))
    trainer = recipes.build_trainer(config)
    trainer.compile(optimizer=trainer.optimizer, run_eagerly=keras.backend.backend() != "jax")
    return config, trainer


def images(n=8):
    return np.random.default_rng(0).uniform(-1, 1, (n, 32, 32, 1)).astype(np.float32)


def test_checkpoint_round_trip_keeps_everything(tmp_path):
    config, trainer = tiny_trainer()
    trainer.fit(images(), batch_size=4, epochs=1, verbose=0)
    path = save_checkpoint(trainer, tmp_path, {"wall_s": 1.5})
    assert latest_checkpoint(tmp_path) == path and path.name == "step_000000002"
    loaded, state = load_checkpoint(path)
    assert state == {"wall_s": 1.5, "step": 2}
    assert int(ops.convert_to_numpy(loaded.step)) == 2
    assert int(ops.convert_to_numpy(loaded.optimizer.iterations)) == 2
    for a, b in zip(trainer.ema_model.weights, loaded.ema_model.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    for a, b in zip(trainer.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_failed_checkpoint_write_leaves_previous_intact(tmp_path, monkeypatch):
    config, trainer = tiny_trainer()
    first = save_checkpoint(trainer, tmp_path)
    trainer.fit(images(), batch_size=4, epochs=1, verbose=0)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(trainer), "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(trainer, tmp_path)
    assert latest_checkpoint(tmp_path) == first
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_old_checkpoints_are_pruned(tmp_path):
    config, trainer = tiny_trainer()
    for _ in range(3):
        trainer.fit(images(4), batch_size=4, epochs=1, verbose=0)
        save_checkpoint(trainer, tmp_path, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert names == ["step_000000002", "step_000000003"]


def test_final_folder_loads_with_from_preset_and_detects_tampering(tmp_path):
    config, trainer = tiny_trainer()
    trainer.fit(images(), batch_size=4, epochs=1, verbose=0)
    folder = save_final(trainer, tmp_path / "final", recipes.model_config(config), {"steps": 2})
    meta = json.loads((folder / "metadata.json").read_text())
    assert set(meta["files"]) == {"config.json", "model.weights.h5"}
    model = from_preset(folder)
    want = keras_ict.generate(trainer.ema_model, [1, 2], sigmas=(80.0, 0.821))
    np.testing.assert_allclose(keras_ict.generate(model, [1, 2], sigmas=tuple(model.sampling["sigmas_2step"])), want, atol=1e-6)
    data = bytearray((folder / "model.weights.h5").read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte
    (folder / "model.weights.h5").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.weights.h5 does not match its sha256"):
        from_preset(folder)
    with pytest.raises(FileNotFoundError, match="no model folder or zoo entry"):
        from_preset(tmp_path / "missing")


def test_resume_compiles_the_step_as_this_backend_would(tmp_path):
    """A checkpoint keeps its backend's resolved jit_compile (False from TensorFlow on a CPU and from torch); a
    run resumed on JAX from one took its train steps op by op, hundreds of times slower on a GPU."""
    _, trainer = tiny_trainer()
    trainer.compile(optimizer=trainer.optimizer, jit_compile=False)
    loaded, _ = load_checkpoint(save_checkpoint(trainer, tmp_path, {"wall_s": 0.0}))
    assert loaded.jit_compile == (keras.backend.backend() == "jax")
