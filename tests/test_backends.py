"""keras_ict.backends: the backend-specific helpers, on every backend (their speed paths are checked against the
generic forms in test_fir.py, test_layer_kernels.py and test_optimizers.py)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_ict import backend_utils
from keras_ict.backends import distribution, kernels, torch_optimizer, values

BACKEND = keras.backend.backend()


def _traced(fn, x):
    """fn(x) where x is traced by this backend's compiler."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)(x)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)(x)
    import torch

    return torch.compile(fn, backend="eager")(x)


def test_concrete_value_is_the_value_eagerly_and_none_when_traced():
    x = ops.convert_to_tensor(np.array([1.0, 2.0], np.float32))
    np.testing.assert_array_equal(values.concrete_value(x), [1.0, 2.0])
    np.testing.assert_array_equal(values.concrete_value([3, 4]), [3, 4])
    assert values.concrete_value(None) is None
    assert values.concrete_value(keras.KerasTensor((2,))) is None
    seen = []

    def probe(t):
        seen.append(values.concrete_value(t))
        return t * 2

    _traced(probe, x)
    assert seen and all(v is None for v in seen)


def test_strategy_names_are_checked_per_backend():
    assert distribution.distribution_scope(None).__enter__() is None
    with pytest.raises(ValueError, match=f"not available on the {BACKEND} backend"):
        distribution.distribution_scope("no-such-strategy")
    for backend, names in distribution.STRATEGIES.items():
        for name in names if backend != BACKEND else ():
            with pytest.raises(ValueError, match=f"--strategy {name} is not available on the {BACKEND} backend; "
                                                 f"supported there: {', '.join(distribution.STRATEGIES[BACKEND])}"):
                distribution.planned_processes(name)
    assert distribution.planned_processes(None) == distribution.ONE_PROCESS
    # The CLI lists every backend's names before a backend is chosen: the same names.
    from keras_ict.cli import STRATEGY_NAMES

    assert sorted(STRATEGY_NAMES) == sorted(n for names in distribution.STRATEGIES.values() for n in names)
    assert distribution.num_replicas() == 1 and distribution.replica_id() == 0
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert distribution.training_replicas(model) == 1
    np.testing.assert_allclose(distribution.predict_batch(model, np.ones((3, 2), np.float32)),
                               ops.convert_to_numpy(model(np.ones((3, 2), np.float32))), rtol=1e-6)


def test_fast_paths_are_chosen_per_backend():
    assert kernels.separable_fir_resampling() == (BACKEND == "jax")
    assert kernels.torch_channels_last_kernels() == (BACKEND == "torch")
    assert torch_optimizer.torch_multi_tensor_optimizer() == (BACKEND == "torch")
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    np.testing.assert_array_equal(ops.convert_to_numpy(kernels.bias_add(x, np.ones(3, np.float32))), x + 1)
    with kernels.no_grad():
        pass


def test_the_old_module_name_is_an_alias():
    assert backend_utils.concrete_value is values.concrete_value
    assert backend_utils.STRATEGIES is distribution.STRATEGIES
    assert backend_utils.separable_fir_resampling is kernels.separable_fir_resampling
    assert backend_utils.torch_radam_update is torch_optimizer.torch_radam_update
