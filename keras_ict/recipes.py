"""Training recipes as plain data: the paper's (CIFAR-10, ImageNet 64) and CPU-sized ones.

A recipe is what `keras-ict train --preset NAME` and `keras_ict.train(NAME, ...)` train (the CLI flag keeps
its name; "preset" alone means a trained model, as in `keras_ict.from_preset`). Every field of a recipe can be
overridden (`resolve_config(name, {"batch_size": 64})`, or on the command line
`--batch-size 64` / `--set key=value`). `build_trainer(config)` turns a resolved config into a compiled
`ConsistencyTrainer`. Which values are the paper's and which are our assumptions is listed per recipe in
`RECIPE_SOURCES` (and in BUILD_NOTES.md).
"""

import copy
import json

from keras_ict import paper

# Fields shared by every recipe; the paper's values where it states them (Song & Dhariwal 2024, Sec. 3-5).
_COMMON = {
    "description": "",
    "network": "ncsnpp_cifar10",  # a name in keras_ict.networks.ARCHITECTURES
    "network_overrides": {},  # constructor arguments replacing the architecture's
    "dropout": 0.3,
    "label_dim": 0,  # > 0: class-conditional with this many classes
    "data": "cifar10",  # tfds name, .npz, image folder or .tar.gz of one
    "flip": False,  # random horizontal flips
    "resize": None,  # None pads smaller images; "bilinear" / "area" / "nearest" resizes
    "tfds_data_dir": None,  # where a TFDS `data` is prepared; None: $TFDS_DATA_DIR or ~/tensorflow_datasets
    "batch_size": 1024,
    "learning_rate": 1e-4,
    "lr_warmup_steps": 0,  # > 0: linear warm-up to learning_rate over this many steps (not in the paper)
    "lr_decay_ref_steps": 0,  # > 0: lr / sqrt(step / this) from this step on (EDM2's decay; not in the paper)
    "optimizer": "radam",
    "total_steps": 400_000,
    "ema_decay": paper.EMA_DECAY,
    "ema_warmup": False,  # True: decay min(ema_decay, (1 + k) / (10 + k)) at step k (not in the paper)
    "huber_c": None,  # None: 0.00054 sqrt(H W C)
    "s0": paper.S0,
    "s1": paper.S1,
    "curriculum_steps": None,  # K of the curriculum's K' = floor(K / (log2 floor(s1/s0) + 1)); None: total_steps
    "p_mean": paper.P_MEAN,
    "p_std": paper.P_STD,
    "rho": paper.RHO,
    "sigma_min": paper.SIGMA_MIN,
    "sigma_max": paper.SIGMA_MAX,
    "sigma_data": paper.SIGMA_DATA,
    "two_step_sigma": paper.TWO_STEP_SIGMA_CIFAR10,
    # Original-CT switches for ablations (see ConsistencyTrainer); the defaults are iCT.
    **{switch: values[0] for switch, values in paper.TRAINER_SWITCHES.items()},
    "teacher_mu0": paper.TEACHER_MU0,
    # What is trained: "ict" (consistency training from scratch), "edm" (EDM diffusion pre-training, an
    # EDMDenoiser; keras_ict.diffusion) or "ect" (consistency tuning, keras_ict.ect, usually with `init`).
    "method": "ict",
    "init": None,  # start from: a run folder or its final/, a zoo entry, or an EDM state dict (.npz, .pt)
    "trust_pickle": False,  # allow `init` to be a pickled .pt state dict (runs code from the file)
    "ect_stage_steps": None,  # ECT's stage length in steps (its --double); None: total_steps // 4
    "ect_q": paper.ECT_Q,
    "ect_k": paper.ECT_K,
    "ect_b": paper.ECT_B,
    "seed": 0,
    "log_every": 100,
    "checkpoint_every": 5000,
    "keep_checkpoints": 2,
    "sample_count": 64,
    "fid_every": 0,  # > 0: FID of the EMA model every this many steps (logged as fid{num}_{steps}step)
    "fid_num": 1000,  # generated images per training-time FID
    "fid_ref": None,  # statistics .npz or dataset; None: the training data's train split
    "fid_steps": [1, 2],  # one- and/or two-step sampling
    "snapshot_every": 0,  # > 0: the student's and EMA's weights every this many steps (keras_ict.posthoc_ema)
}

RECIPES = {
    "cifar10": dict(
        _COMMON,
        description="iCT on CIFAR-10 (paper): NCSN++, batch 1024, RAdam 1e-4, 400k steps, dropout 0.3.",
        flip=True,
    ),
    "cifar10-deep": dict(
        _COMMON,
        description="iCT-deep on CIFAR-10 (paper): NCSN++ with twice the residual blocks.",
        network="ncsnpp_cifar10_deep",
        flip=True,
    ),
    "imagenet64": dict(
        _COMMON,
        description="iCT on class-conditional ImageNet 64x64 (paper): ADM, batch 4096, 800k steps, c = 0.06.",
        network="adm_imagenet64",
        dropout=0.2,
        label_dim=1000,
        data="imagenet_resized/64x64",
        batch_size=4096,
        learning_rate=1e-4,
        total_steps=800_000,
        ema_decay=0.99997,
        huber_c=0.06,
        two_step_sigma=paper.TWO_STEP_SIGMA_IMAGENET64,
    ),
}

# CPU-sized recipes share everything but the data, channels and labels. The values that are not the paper's
# come from the recipe study on MNIST (benchmarks/recipe_study.py, BUILD_NOTES.md "CPU recipe study"): an EMA
# whose decay grows with the step (decay 0.999 lagged a 1000-step run by most of its length) and lr 1e-3 with a
# 200-step warm-up; 2500 steps at batch 32 (80k images) is what one CPU session trains.
_CPU = dict(
    _COMMON,
    network="ncsnpp_mnist_small",
    dropout=0.1,
    data="mnist",
    batch_size=32,
    learning_rate=1e-3,
    lr_warmup_steps=200,
    total_steps=2500,
    ema_decay=0.999,
    ema_warmup=True,
    s1=150,  # the recipe study (session 11): s1 150 against the paper's 1280 over the same 80k images
    log_every=50,
    checkpoint_every=500,
)
RECIPES["mnist"] = dict(_CPU, description="CPU-sized: small NCSN++ on MNIST padded to 32x32, unconditional.")
RECIPES["mnist-cond"] = dict(
    _CPU, description="CPU-sized: small NCSN++ on MNIST padded to 32x32, class-conditional (10 classes).", label_dim=10
)
RECIPES["cifar10-small"] = dict(
    _CPU, description="CPU-sized: small NCSN++ on CIFAR-10 32x32, unconditional.", network="ncsnpp_small", data="cifar10",
    flip=True,
)

# Diffusion pre-training and consistency tuning on MNIST (issue 20): the CPU recipe's network, batch, EMA and
# learning rate; EDM's lognormal sigma for the diffusion stage, ECT's mapping for the tuning stage. The two step
# counts split one CPU session between the stages (measured against iCT at equal CPU time: BUILD_NOTES.md, ECT).
RECIPES["mnist-edm"] = dict(
    _CPU, description="CPU-sized: EDM diffusion pre-training of the mnist network (for mnist-ect).", method="edm",
    p_mean=paper.EDM_P_MEAN, p_std=paper.EDM_P_STD, total_steps=1500,
)
RECIPES["mnist-ect"] = dict(
    _CPU, description="CPU-sized: ECT consistency tuning of an mnist-edm run (--init RUN_DIR).", method="ect",
    total_steps=1000,
)

_PAPER = "Song & Dhariwal 2024"
RECIPE_SOURCES = {
    "cifar10": {
        "confirmed": f"{_PAPER}: NCSN++, batch 1024, RAdam lr 1e-4, 400k steps, dropout 0.3, EMA 0.99993, "
        "c = 0.00054 sqrt(3072) = 0.03, s0 10, s1 1280, P_mean -1.1, P_std 2.0, Fourier scale 0.02, "
        "two-step sigma 0.821",
        "assumed": "random horizontal flips (common CIFAR-10 practice, not stated as an iCT hyperparameter)",
    },
    "cifar10-deep": {
        "confirmed": f"{_PAPER}: iCT-deep doubles the residual blocks; other values as cifar10",
        "assumed": "same flips as cifar10",
    },
    "imagenet64": {
        "confirmed": f"{_PAPER}: ADM, class-conditional, c = 0.06, dropout 0.2, two-step sigma 1.526",
        "assumed": "batch 4096, 800k steps and EMA 0.99997 (from our reading of the paper's appendix; check before "
        "quoting)",
    },
    "mnist": {
        "confirmed": "method values as the paper (sigmas, c, P_mean, P_std, s0, RAdam, pseudo-Huber, lambda)",
        "measured": "from the recipe study on MNIST (benchmarks/results/recipe_study_mnist.json, BUILD_NOTES.md "
        "'CPU recipe study'): EMA warm-up (decay min(0.999, (1 + k) / (10 + k))), lr 1e-3 with a 200-step "
        "warm-up (against 2e-4), s1 150 (the paper's 1280 was worse over 80k images), curriculum over the run's 2500 steps",
        "assumed": "network size, batch 32, dropout 0.1, 2500 steps: what a 2-core CPU trains in one session",
        "study_variant": "ew-lr1e-3-s1-150-curr80k",
    },
    "mnist-cond": {"confirmed": "method values as the paper", "measured": "as mnist (studied unconditional only)",
                   "assumed": "as mnist"},
    "mnist-edm": {"confirmed": "Karras et al. 2022: EDM preconditioning, loss weight (s^2 + sd^2) / (s sd)^2, "
                  "P_mean -1.2, P_std 1.2",
                  "assumed": "network, batch, optimiser, EMA warm-up as mnist; 1500 steps"},
    "mnist-ect": {"confirmed": "Geng et al. 2024 (ECT, locuslab/ect ECMLoss): t lognormal -1.1 / 2.0, sigmoid "
                  "mapping q 2, k 8, b 1, weight 1 / (t - r), same noise and dropout mask, clean target at r = 0",
                  "assumed": "network, batch, optimiser, EMA warm-up as mnist; pseudo-Huber c of iCT (ECT's EDM code: "
                  "c 0); stage every total_steps / 4 steps; 1000 steps; the boundary-condition parametrisation "
                  "in training (ECT: EDM's in training, the boundary one at evaluation)"},
    "cifar10-small": {"confirmed": "method values as the paper",
                      "measured": "as mnist (studied on MNIST only, not yet on CIFAR-10)", "assumed": "as mnist, plus flips"},
}

# Fields that only say how long or how loudly to train, or where the data lies: changing them keeps a run
# directory resumable.
RUN_LENGTH_FIELDS = (
    "log_every", "checkpoint_every", "keep_checkpoints", "sample_count", "description",
    "fid_every", "fid_num", "fid_ref", "fid_steps", "tfds_data_dir", "snapshot_every",
)


# Fields added after runs were already written: a run directory without them used these values.
FIELD_DEFAULTS = {
    k: _COMMON[k]
    for k in ("distance", "weighting", "index_distribution", "curriculum", "teacher", "teacher_mu0", "lr_warmup_steps",
              "curriculum_steps", "ema_warmup", "tfds_data_dir", "method", "init", "trust_pickle", "ect_stage_steps",
              "ect_q", "ect_k", "ect_b", "lr_decay_ref_steps")
}

METHODS = ("ict", "edm", "ect")


def recipe_names():
    return sorted(RECIPES)


def resolve_config(preset, overrides=None):
    """The recipe's fields with `overrides` applied; unknown fields and wrong types raise ValueError."""
    if preset not in RECIPES:
        raise ValueError(f"unknown preset {preset!r}; available: {', '.join(recipe_names())}")
    config = copy.deepcopy(RECIPES[preset])
    config["preset"] = preset
    for key, value in (overrides or {}).items():
        if key not in config:
            raise ValueError(f"unknown config field {key!r}; fields: {', '.join(sorted(config))}")
        config[key] = _coerce(key, value, config[key])
    _validate(config)
    return config


# Fields whose default is None but whose value, when given, has a type.
_OPTIONAL_TYPES = {"curriculum_steps": 0, "huber_c": 0.0, "init": "", "ect_stage_steps": 0}


def _coerce(key, value, default):
    if default is None and key in _OPTIONAL_TYPES and value is not None:
        return _coerce(key, value, _OPTIONAL_TYPES[key])
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{key} must be true or false, got {value!r}")
            return value.lower() in ("true", "1", "yes")
        return bool(value)
    if isinstance(default, dict):
        value = json.loads(value) if isinstance(value, str) else value
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be a JSON object, got {value!r}")
        return value
    if isinstance(default, list):
        items = value.split(",") if isinstance(value, str) else value
        try:
            return [int(v) for v in items if str(v).strip()]
        except (TypeError, ValueError):
            raise ValueError(f"{key} must be a comma-separated list of integers, got {value!r}") from None
    try:
        if isinstance(default, int):
            as_float = float(value)
            if as_float != int(as_float):
                raise ValueError
            return int(as_float)
        return type(default)(value)
    except (TypeError, ValueError):
        kind = {int: "an integer", float: "a number", str: "a string"}.get(type(default), type(default).__name__)
        raise ValueError(f"{key} must be {kind}, got {value!r}") from None


def _validate(config):
    if config["fid_every"] < 0:
        raise ValueError(f"fid_every must be >= 0 (0 turns training-time FID off), got {config['fid_every']}")
    if config["snapshot_every"] < 0:
        raise ValueError(f"snapshot_every must be >= 0 (0 turns snapshots off), got {config['snapshot_every']}")
    if config["fid_num"] < 2:
        raise ValueError(f"fid_num must be >= 2 (FID needs a covariance), got {config['fid_num']}")
    if not config["fid_steps"] or any(s not in (1, 2) for s in config["fid_steps"]):
        raise ValueError(f"fid_steps must list 1 and/or 2, got {config['fid_steps']}")
    for key in ("batch_size", "total_steps", "log_every", "checkpoint_every", "keep_checkpoints", "sample_count"):
        if config[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {config[key]}")
    if not 1 <= config["s0"] <= config["s1"]:
        raise ValueError(f"need 1 <= s0 <= s1 (the curriculum's first and last N - 1; s0 = s1 keeps N fixed), got "
                         f"s0 {config['s0']}, s1 {config['s1']}")
    if config["lr_warmup_steps"] < 0:
        raise ValueError(f"lr_warmup_steps must be >= 0 (0: no warm-up), got {config['lr_warmup_steps']}")
    if config["lr_decay_ref_steps"] < 0:
        raise ValueError(f"lr_decay_ref_steps must be >= 0 (0: no decay), got {config['lr_decay_ref_steps']}")
    if config["curriculum_steps"] is not None and int(config["curriculum_steps"]) < 1:
        raise ValueError(f"curriculum_steps must be >= 1 (or None for total_steps), got {config['curriculum_steps']}")
    for key in ("learning_rate", "sigma_min", "sigma_data", "two_step_sigma"):
        if config[key] <= 0:
            raise ValueError(f"{key} must be positive, got {config[key]}")
    if not config["sigma_min"] < config["two_step_sigma"] < config["sigma_max"]:
        raise ValueError("need sigma_min < two_step_sigma < sigma_max")
    if not 0 <= config["dropout"] < 1:
        raise ValueError(f"dropout must be in [0, 1), got {config['dropout']}")
    if config["label_dim"] < 0:
        raise ValueError(f"label_dim must be >= 0, got {config['label_dim']}")
    if config["optimizer"] not in ("radam", "adam"):
        raise ValueError(f"optimizer must be 'radam' or 'adam', got {config['optimizer']!r}")
    for key, allowed in paper.TRAINER_SWITCHES.items():
        if config[key] not in allowed:
            raise ValueError(f"{key} must be one of {allowed}, got {config[key]!r}")
    if not 0 < config["teacher_mu0"] < 1:
        raise ValueError(f"teacher_mu0 must be in (0, 1), got {config['teacher_mu0']}")
    if config["method"] not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {config['method']!r}")
    if config["ect_stage_steps"] is not None and config["ect_stage_steps"] < 1:
        raise ValueError(f"ect_stage_steps must be >= 1 (or None for total_steps // 4), got {config['ect_stage_steps']}")
    if not config["ect_q"] > 1:
        raise ValueError(f"ect_q must be > 1, got {config['ect_q']}")
    if config["ect_k"] < 0 or not config["ect_b"] > 0:
        raise ValueError(f"need ect_k >= 0 and ect_b > 0, got {config['ect_k']}, {config['ect_b']}")
    if config["resize"] not in (None, "bilinear", "area", "nearest"):
        raise ValueError(f"resize must be None, 'bilinear', 'area' or 'nearest', got {config['resize']!r}")


def network_config(config):
    """(class name, constructor kwargs) of the network a resolved config describes."""
    from keras_ict.networks import ARCHITECTURES

    if config["network"] not in ARCHITECTURES:
        raise ValueError(f"unknown network architecture {config['network']!r}; available: {sorted(ARCHITECTURES)}")
    entry = ARCHITECTURES[config["network"]]
    kwargs = dict(copy.deepcopy(entry["config"]), dropout=config["dropout"], label_dim=config["label_dim"])
    kwargs.update(config["network_overrides"])
    return entry["class"], kwargs


MODEL_FORMAT = "keras-ict-model/1"  # the version of a model folder's config.json (checked by keras_ict.zoo)


def model_config(config):
    """What `keras_ict.from_preset` needs to rebuild the sampling model of a run (stored as final/config.json)."""
    cls, kwargs = network_config(config)
    return {
        "format": MODEL_FORMAT,
        # "consistency" (f with the boundary condition) or "edm_denoiser" (a diffusion model, EDMDenoiser).
        "kind": "edm_denoiser" if config.get("method") == "edm" else "consistency",
        "network": {"class": cls, "config": kwargs},
        "consistency_model": {k: config[k] for k in ("sigma_min", "sigma_max", "sigma_data")},
        "sampling": {"sigmas_1step": [config["sigma_max"]], "sigmas_2step": [config["sigma_max"], config["two_step_sigma"]]},
        "preset": config["preset"],
        "training": {k: v for k, v in config.items() if k not in ("description",)},
    }


def build_consistency_model(model_cfg, seed=None):
    from keras_ict.networks import network_class
    from keras_ict.parameterization import ConsistencyModel, EDMDenoiser

    kinds = {"consistency": ConsistencyModel, "edm_denoiser": EDMDenoiser}
    kind = model_cfg.get("kind", "consistency")  # model folders from before diffusion models have no kind
    if kind not in kinds:
        raise ValueError(f"unknown model kind {kind!r} in a model config; known: {', '.join(kinds)}")
    net = model_cfg["network"]
    network = network_class(net["class"])(**net["config"], seed=seed)
    return kinds[kind](network, **model_cfg["consistency_model"])


def build_trainer(config):
    """A compiled ConsistencyTrainer for a resolved config."""
    from keras_ict.trainer import ConsistencyTrainer

    model = build_consistency_model(model_config(config), seed=config["seed"])
    common = dict(ema_decay=config["ema_decay"], ema_warmup=config["ema_warmup"], seed=config["seed"])
    if config["method"] == "edm":
        from keras_ict.diffusion import DiffusionTrainer

        trainer = DiffusionTrainer(model, p_mean=config["p_mean"], p_std=config["p_std"], **common)
        return _compiled(trainer, config)
    if config["method"] == "ect":
        from keras_ict.ect import ConsistencyTuningTrainer

        trainer = ConsistencyTuningTrainer(
            model, total_steps=config["total_steps"], stage_steps=config["ect_stage_steps"], q=config["ect_q"],
            k=config["ect_k"], b=config["ect_b"], p_mean=config["p_mean"], p_std=config["p_std"],
            huber_c=config["huber_c"], **common,
        )
        return _compiled(trainer, config)
    trainer = ConsistencyTrainer(
        model,
        total_steps=config["total_steps"],
        s0=config["s0"],
        s1=config["s1"],
        p_mean=config["p_mean"],
        p_std=config["p_std"],
        rho=config["rho"],
        huber_c=config["huber_c"],
        ema_decay=config["ema_decay"],
        seed=config["seed"],
        **{switch: config[switch] for switch in paper.TRAINER_SWITCHES},
        teacher_mu0=config["teacher_mu0"],
        curriculum_steps=config["curriculum_steps"],
        ema_warmup=config["ema_warmup"],
    )
    return _compiled(trainer, config)


def _compiled(trainer, config):
    import keras

    from keras_ict.optimizers import LinearWarmup, RAdam

    rate = config["learning_rate"]
    if config["lr_warmup_steps"] or config["lr_decay_ref_steps"]:
        rate = LinearWarmup(rate, max(1, config["lr_warmup_steps"]), config["lr_decay_ref_steps"])
    optimizer = RAdam(rate) if config["optimizer"] == "radam" else keras.optimizers.Adam(rate)
    trainer.compile(optimizer=optimizer)
    return trainer


# Names from before recipes had their own name (keras_ict.presets, PRESETS, PRESET_SOURCES, preset_names).
PRESETS = RECIPES
PRESET_SOURCES = RECIPE_SOURCES
preset_names = recipe_names
