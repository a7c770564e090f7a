"""The test harness every test file shares (after keras-hub's `TestCase`): serialisation round trips, `.keras`
save/load, layer checks, and importing repo scripts by path.

pytest puts this folder on `sys.path` itself (rootdir-relative test modules without `__init__.py`), so tests
import it as `from harness import ...`; nothing here edits `sys.path` for good.
"""

import contextlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import keras
import numpy as np
from keras import ops

# The two-level mnist network cut to a few thousand parameters: trainer and checkpoint tests need its layers, not
# its quality.
TINY_NETWORK = {"model_channels": 8, "channel_mult": [1, 1], "attn_resolutions": [], "num_blocks": 1}

REPO = Path(__file__).resolve().parents[1]

# TensorFlow's C++ start-up logging, which TF_CPP_MIN_LOG_LEVEL does not silence on every CPU (2.21 on an AVX-512
# Xeon still prints its oneDNN notice): absl's preamble, glog-format lines such as "I0000 00:00:17.9 12 port.cc:153] " and
# the continuation of the CPU-feature notice.
_FRAMEWORK_LOG_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: "
    r"|[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] )"
)


def our_stderr_lines(stderr):
    """The lines of a subprocess's stderr that keras-ict wrote, without the frameworks' own start-up logging."""
    return [line for line in stderr.strip().splitlines() if not _FRAMEWORK_LOG_LINE.match(line)]


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def as_json(config):
    """A config as JSON reads it back (tuples become lists, as after a `.keras` round trip)."""
    return json.loads(json.dumps(config))


def assert_config_round_trip(obj, expected=None):
    """`type(obj).from_config(obj.get_config())` has the same config, the config is JSON, and Keras'
    registered-object serialisation rebuilds the same class. `expected`: entries the config must hold.
    Returns the clone."""
    config = obj.get_config()
    as_json(config)
    for key, value in (expected or {}).items():
        assert config[key] == value, f"get_config()[{key!r}] is {config[key]!r}, expected {value!r}"
    clone = type(obj).from_config(config)
    assert clone.get_config() == config
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(rebuilt) is type(obj) and rebuilt.get_config() == config
    return clone


def assert_keras_file_round_trip(model, inputs, directory, atol=1e-6):
    """Saves `model` as `.keras`, loads it, and checks class, config and outputs on `inputs`. Returns the loaded
    model."""
    expected = to_numpy(model(inputs))
    path = Path(directory) / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert as_json(loaded.get_config()) == as_json(model.get_config())
    np.testing.assert_allclose(to_numpy(loaded(inputs)), expected, rtol=0, atol=atol)
    return loaded


def run_layer_test(layer_cls, init_kwargs, input_data, expected_output_shape=None, call_kwargs=None, atol=1e-6):
    """Builds `layer_cls(**init_kwargs)` on `input_data` (a tuple: positional call arguments), checks the output
    shape, the config round trip (the constructor's scalar arguments come back as given), that a clone given the
    same weights computes the same output, and that `training=True` runs where the layer takes it. Returns the
    layer."""
    args = input_data if isinstance(input_data, tuple) else (input_data,)
    call_kwargs = dict(call_kwargs or {})
    layer = layer_cls(**init_kwargs)
    output = layer(*args, **call_kwargs)
    if expected_output_shape is not None:
        assert tuple(output.shape) == tuple(expected_output_shape), f"output shape {tuple(output.shape)}"
    scalars = {k: v for k, v in init_kwargs.items() if isinstance(v, (bool, int, float, str)) or v is None}
    clone = assert_config_round_trip(layer, scalars)
    clone(*args, **call_kwargs)
    assert [w.path for w in clone.weights] == [w.path for w in layer.weights]
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(clone(*args, **call_kwargs)), to_numpy(output), rtol=0, atol=atol)
    if "training" in layer.call.__code__.co_varnames:
        trained = layer(*args, **dict(call_kwargs, training=True))
        assert tuple(trained.shape) == tuple(output.shape)
    return layer


@contextlib.contextmanager
def _module_folder_importable(folder):
    # Scripts import their siblings (`from _common import ...`) as when run from their folder.
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def load_script(relative_path, name=None):
    """Imports a repo script (benchmarks/, tools/, scripts/) by path, its sibling imports resolved from its own
    folder; the module stays in `sys.modules` under `name` (default: the file's stem)."""
    path = REPO / relative_path
    name = name or path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    with _module_folder_importable(path.parent):
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module
