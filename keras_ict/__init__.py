"""keras-ict: improved consistency training (Song & Dhariwal, ICLR 2024) in Keras 3, on any backend.

Attributes load on first use, so `import keras_ict` does not import Keras: the command line can still pick
the backend (KERAS_BACKEND must be set before Keras is imported). When Keras is already imported, everything
loads at once, which also registers the serializable classes for `keras.saving.load_model`.
"""

import importlib
import sys

__version__ = "0.1.0"

_ATTRIBUTES = {
    "ConsistencyModel": "keras_ict.parameterization",
    "ConsistencyTrainer": "keras_ict.trainer",
    "EDMDenoiser": "keras_ict.parameterization",
    "DiffusionTrainer": "keras_ict.diffusion",
    "ConsistencyTuningTrainer": "keras_ict.ect",
    "heun_sample": "keras_ict.diffusion",
    "generate": "keras_ict.sampling",
    "image_grid": "keras_ict.sampling",
    "save_image_grid": "keras_ict.sampling",
    "to_uint8": "keras_ict.sampling",
    "from_preset": "keras_ict.zoo",
    "compute_fid": "keras_ict.evaluation",
    "train": "keras_ict.training",
    "TrainResult": "keras_ict.training",
    "pack_run": "keras_ict.run_archive",
    "unpack_run": "keras_ict.run_archive",
}
_SUBMODULES = ("callbacks", "checkpoint", "cli", "data", "diffusion", "digit_judge", "ect", "evaluation", "export", "fid",
               "initialization", "losses", "networks", "optimizers", "paper", "presets", "recipes", "run_archive", "schedules",
               "training", "zoo")

__all__ = sorted(list(_ATTRIBUTES) + list(_SUBMODULES))


def _load_all():
    for module in ("keras_ict.networks", "keras_ict.parameterization", "keras_ict.trainer", "keras_ict.diffusion",
                   "keras_ict.ect", "keras_ict.optimizers"):
        importlib.import_module(module)


def __getattr__(name):
    if name in _ATTRIBUTES:
        _load_all()
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    if name in _SUBMODULES:
        # No _load_all here: package modules import their siblings this way (`from keras_ict import losses`), and
        # loading every trainer from inside a half-imported one would be circular.
        return importlib.import_module(f"keras_ict.{name}")
    raise AttributeError(f"module 'keras_ict' has no attribute {name!r}")


def __dir__():
    return __all__ + ["__version__"]


if "keras" in sys.modules:
    _load_all()
