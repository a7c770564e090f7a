"""Old name of `keras_ict.recipes` (training recipes), kept as an alias module."""

from keras_ict.recipes import *  # noqa: F401,F403
from keras_ict.recipes import (  # noqa: F401
    FIELD_DEFAULTS,
    MODEL_FORMAT,
    PRESET_SOURCES,
    PRESETS,
    RECIPE_SOURCES,
    RECIPES,
    RUN_LENGTH_FIELDS,
    _validate,
    build_consistency_model,
    build_trainer,
    model_config,
    network_config,
    preset_names,
    recipe_names,
    resolve_config,
)
