"""Training recipes (keras_ict.recipes): paper values, overrides, validation, building a trainer, old names."""

import pytest

from keras_ict import recipes


@pytest.mark.backend_independent
def test_paper_presets_hold_the_paper_values():
    c = recipes.resolve_config("cifar10")
    assert (c["network"], c["batch_size"], c["learning_rate"], c["total_steps"]) == ("ncsnpp_cifar10", 1024, 1e-4, 400_000)
    assert (c["dropout"], c["ema_decay"], c["two_step_sigma"], c["optimizer"]) == (0.3, 0.99993, 0.821, "radam")
    assert ((c["s0"], c["s1"], c["p_mean"], c["p_std"], c["sigma_min"], c["sigma_max"], c["sigma_data"])
            == (10, 1280, -1.1, 2.0, 0.002, 80.0, 0.5))
    i = recipes.resolve_config("imagenet64")
    assert (i["network"], i["label_dim"], i["huber_c"], i["two_step_sigma"]) == ("adm_imagenet64", 1000, 0.06, 1.526)
    assert recipes.resolve_config("cifar10-deep")["network"] == "ncsnpp_cifar10_deep"
    assert set(recipes.RECIPE_SOURCES) == set(recipes.RECIPES)


@pytest.mark.backend_independent
def test_overrides_are_coerced_and_checked():
    c = recipes.resolve_config("mnist", {"batch_size": "64", "flip": "true", "learning_rate": "3e-4",
                                         "network_overrides": '{"model_channels": 16}'})
    assert c["batch_size"] == 64 and c["flip"] is True and c["learning_rate"] == 3e-4
    assert c["network_overrides"] == {"model_channels": 16}
    with pytest.raises(ValueError, match="unknown config field 'batchsize'"):
        recipes.resolve_config("mnist", {"batchsize": 3})
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        recipes.resolve_config("mnist", {"batch_size": "lots"})
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        recipes.resolve_config("mnist", {"batch_size": 0})
    with pytest.raises(ValueError, match="unknown preset 'mnst'"):
        recipes.resolve_config("mnst")
    with pytest.raises(ValueError, match="two_step_sigma"):
        recipes.resolve_config("mnist", {"two_step_sigma": 100})
    with pytest.raises(ValueError, match="need 1 <= s0 <= s1 .* got s0 200, s1 150"):
        recipes.resolve_config("mnist", {"s0": 200})
    assert recipes.resolve_config("mnist", {"s0": 150})["s0"] == 150  # s0 = s1: N fixed at s1 + 1


def test_build_trainer_from_cpu_preset():
    config = recipes.resolve_config("mnist-cond",
                                    {"network_overrides": {"model_channels": 8, "channel_mult": [1, 1], "attn_resolutions": []}})
    trainer = recipes.build_trainer(config)
    assert trainer.model.conditional and trainer.model.label_dim == 10
    assert trainer.model.image_shape == (32, 32, 1)
    assert trainer.total_steps == config["total_steps"] == 2500 and trainer.ema_decay == 0.999 and trainer.ema_warmup
    assert type(trainer.optimizer).__name__ == "RAdam"
    assert trainer.model.network.get_config()["dropout"] == 0.1


def test_paper_values_have_one_home():
    import inspect

    from keras_ict import paper, schedules
    from keras_ict.parameterization import ConsistencyModel
    from keras_ict.trainer import ConsistencyTrainer

    trainer_defaults = {k: v.default for k, v in inspect.signature(ConsistencyTrainer).parameters.items()}
    model_defaults = {k: v.default for k, v in inspect.signature(ConsistencyModel).parameters.items()}
    assert (schedules.S0, schedules.S1, schedules.P_MEAN, schedules.P_STD) == (10, 1280, -1.1, 2.0)
    assert (model_defaults["sigma_min"], model_defaults["sigma_max"], model_defaults["sigma_data"]) == (0.002, 80.0, 0.5)
    assert trainer_defaults["ema_decay"] == paper.EMA_DECAY == 0.99993
    cifar = recipes.resolve_config("cifar10")
    for switch, allowed in paper.TRAINER_SWITCHES.items():
        assert trainer_defaults[switch] == cifar[switch] == allowed[0]  # iCT's value first
        with pytest.raises(ValueError, match=f"{switch} must be one of"):
            recipes.resolve_config("cifar10", {switch: "no-such-value"})
    assert (cifar["two_step_sigma"], recipes.resolve_config("imagenet64")["two_step_sigma"]) == (0.821, 1.526)


@pytest.mark.backend_independent
def test_old_names_are_aliases():
    from keras_ict import networks, presets
    from keras_ict.networks import architectures

    assert presets.PRESETS is recipes.RECIPES and presets.PRESET_SOURCES is recipes.RECIPE_SOURCES
    assert presets.resolve_config is recipes.resolve_config and presets.preset_names() == recipes.recipe_names()
    assert networks.NETWORK_PRESETS is architectures.ARCHITECTURES
    assert networks.network_from_preset is architectures.build_architecture


@pytest.mark.backend_independent
def test_cpu_recipes_hold_the_recipe_study_winner_and_paper_recipes_do_not():
    """The CPU recipes' studied fields are those of the study variant RECIPE_SOURCES names (whose run is the
    published `mnist` entry); the paper's recipes keep the paper's EMA, learning rate and curriculum."""
    from harness import load_script

    study = load_script("benchmarks/recipe_study.py")
    fields, batch = study.variant_overrides(recipes.RECIPE_SOURCES["mnist"]["study_variant"], 32)
    curriculum_steps = fields.pop("curriculum_steps")
    for name in ("mnist", "mnist-cond", "cifar10-small"):
        config = recipes.resolve_config(name)
        assert {k: config[k] for k in fields} == fields, name
        assert config["batch_size"] == batch and config["total_steps"] == curriculum_steps  # K = the whole run
        assert config["curriculum_steps"] is None
    for name in ("cifar10", "cifar10-deep", "imagenet64"):
        config = recipes.resolve_config(name)
        assert (config["ema_warmup"], config["lr_warmup_steps"], config["s1"]) == (False, 0, 1280), name
