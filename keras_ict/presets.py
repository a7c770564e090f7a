"""Old name of `keras_ict.recipes` (training recipes), kept as an alias module: every public name of recipes,
the old ones (PRESETS, PRESET_SOURCES, preset_names) included."""

from keras_ict.recipes import *  # noqa: F401,F403
