"""`init` (keras-ict train --init): class-conditional tuning from an unconditional model starts as that model."""

import numpy as np
import pytest
from keras import ops

from keras_ict.checkpoint import save_final
from keras_ict.initialization import check_init, initialize_trainer
from keras_ict.recipes import build_trainer, model_config, resolve_config

TINY = {"network_overrides": {"model_channels": 8, "channel_mult": [1], "attn_resolutions": [], "num_blocks": 1}}


def _saved_model(preset, folder, seed):
    config = resolve_config(preset, dict(TINY, seed=seed))
    trainer = build_trainer(config)
    save_final(trainer, folder, model_config(config), {"preset": preset})
    return trainer.ema_model


def test_conditional_run_from_an_unconditional_model_starts_as_that_model(tmp_path):
    source = _saved_model("mnist", tmp_path / "uncond", seed=1)
    config = resolve_config("mnist-cond", dict(TINY, seed=2, init=str(tmp_path / "uncond")))
    trainer = build_trainer(config)
    assert check_init(config) == tmp_path / "uncond"
    initialize_trainer(trainer, config)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 32, 32, 1)).astype(np.float32)
    sigma = np.array([0.01, 0.5, 5.0, 80.0], np.float32)
    expected = ops.convert_to_numpy(source([x, sigma]))
    for model in (trainer.model, trainer.ema_model):
        label_map = model.network.get_layer("map_label")
        assert all(not np.any(ops.convert_to_numpy(w)) for w in label_map.weights)
        for label in (0, 7):
            got = ops.convert_to_numpy(model([x, sigma, np.full((4,), label, np.int32)]))
            np.testing.assert_allclose(got, expected, atol=1e-5)
    # The label embedding is among the weights the run trains (from zero).
    assert any("map_label" in w.path for w in trainer.model.trainable_weights)


@pytest.mark.once("torch")  # config checks: the same on every backend
def test_init_refuses_another_architecture_and_a_conditional_source_for_an_unconditional_run(tmp_path):
    _saved_model("mnist-cond", tmp_path / "cond", seed=1)
    config = resolve_config("mnist", dict(TINY, init=str(tmp_path / "cond")))
    with pytest.raises(ValueError, match="label_dim: 10 vs 0"):
        check_init(config)
    wider = {"network_overrides": dict(TINY["network_overrides"], model_channels=16)}
    config = resolve_config("mnist-cond", dict(wider, init=str(tmp_path / "cond")))
    with pytest.raises(ValueError, match="model_channels: 8 vs 16"):
        check_init(config)
