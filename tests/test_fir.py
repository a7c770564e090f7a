"""FIR up/down-sampling: the separable forms compute what the depthwise-convolution forms compute.

`layers._fir_down` / `_fir_up` use the separable slice-and-add forms where
`backend_utils.separable_fir_resampling()` says so (JAX) and the depthwise convolutions elsewhere; the
separable forms are tested here on every backend against the depthwise ones (the reference: the forms
checked against EDM by the parity tests), outputs and input gradients.
"""

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_ict import backend_utils
from keras_ict.networks import layers
from keras_ict.networks.layers import (
    Conv2d,
    _fir_2d,
    _fir_down,
    _fir_down_depthwise,
    _fir_down_separable,
    _fir_up,
    _fir_up_depthwise,
    _fir_up_separable,
    _separable_factors,
)

sys.path.insert(0, str(Path(__file__).parent))
from grad_utils import gradients  # noqa: E402

SHAPES = [(2, 8, 8, 3), (1, 7, 9, 2), (2, 5, 6, 1), (1, 16, 15, 4)]
FILTERS = [[1, 1], [1, 3, 3, 1]]
# Conv2d's call sites: _fir_up(x, fir, w_pad + f_pad), _fir_down(x, fir, 0), _fir_up / _fir_down(x, fir, f_pad)
# with w_pad = kernel_size // 2 (kernel 0, 1 or 3) and f_pad = (len(filter) - 1) // 2 (0 or 1).
PADS = [0, 1, 2]


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _run(f, *args):
    """f(*args), compiled on JAX (whose op-by-op eager mode compiles every op for every shape: slow)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(f)(*args)
    return f(*args)


def _input_gradient(f, x, cotangent):
    """d sum(f(x) * cotangent) / dx."""
    if keras.backend.backend() == "jax":
        import jax

        return np.asarray(jax.jit(jax.grad(lambda x: keras.ops.sum(f(x) * cotangent)))(x))
    v = keras.Variable(x)
    return gradients(lambda: keras.ops.sum(f(v.value) * cotangent), [v])[0]


def _forms(op, fir):
    factors = _separable_factors(fir)
    if op == "down":
        return _fir_down_depthwise, lambda x, f, p: _fir_down_separable(x, factors, p)
    return _fir_up_depthwise, lambda x, f, p: _fir_up_separable(x, factors, p)


@pytest.mark.parametrize("op", ["down", "up"])
@pytest.mark.parametrize("resample_filter", FILTERS + [[1, 2], [1, 4, 6, 4, 1]])
def test_separable_matches_depthwise(op, resample_filter):
    fir = _fir_2d(resample_filter)
    reference, separable = _forms(op, fir)
    rng = np.random.default_rng(0)
    worst = 0.0
    for shape in SHAPES:
        x = rng.standard_normal(shape).astype("float32")
        for pad in PADS:
            want = _np(_run(lambda x: reference(x, fir, pad), x))
            got = _np(_run(lambda x: separable(x, fir, pad), x))
            assert got.shape == want.shape, (shape, pad)
            worst = max(worst, float(np.abs(got - want).max()))
    print(f"{keras.backend.backend()} {op} {resample_filter}: max abs diff {worst:.3g}")
    assert worst <= 2e-6


@pytest.mark.parametrize("op", ["down", "up"])
@pytest.mark.parametrize("resample_filter", FILTERS)
def test_separable_gradients_match_depthwise(op, resample_filter):
    fir = _fir_2d(resample_filter)
    reference, separable = _forms(op, fir)
    rng = np.random.default_rng(1)
    worst = 0.0
    for shape in SHAPES[:3]:
        x = rng.standard_normal(shape).astype("float32")
        for pad in PADS:
            n_out = _np(_run(lambda x: reference(x, fir, pad), x)).shape
            cotangent = keras.ops.convert_to_tensor(rng.standard_normal(n_out).astype("float32"))
            grads = [_input_gradient(lambda x, f=f: f(x, fir, pad), x, cotangent) for f in (reference, separable)]
            worst = max(worst, float(np.abs(grads[0] - grads[1]).max()))
    print(f"{keras.backend.backend()} {op} {resample_filter}: max abs gradient diff {worst:.3g}")
    assert worst <= 2e-6


def test_factors_and_fallback_for_non_separable_filters():
    k_h, k_w = _separable_factors(_fir_2d([1, 3, 3, 1]))
    np.testing.assert_allclose(k_h, np.array([1, 3, 3, 1]) / 8, rtol=0, atol=1e-15)
    np.testing.assert_allclose(k_w, np.array([1, 3, 3, 1]) / 8, rtol=0, atol=1e-15)
    rng = np.random.default_rng(2)
    fir = rng.uniform(0.1, 1.0, (4, 4))  # rank 4
    assert _separable_factors(fir) is None
    x = rng.standard_normal((1, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(_np(_fir_down(x, fir, 1)), _np(_fir_down_depthwise(x, fir, 1)), rtol=0, atol=2e-6)
    np.testing.assert_allclose(_np(_fir_up(x, fir, 1)), _np(_fir_up_depthwise(x, fir, 1)), rtol=0, atol=2e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, down=True, resample_filter=[1, 3, 3, 1]),
        dict(kernel_size=3, up=True, resample_filter=[1, 3, 3, 1]),
        dict(kernel_size=0, down=True, resample_filter=[1, 1]),
        dict(kernel_size=1, down=True, fused_resample=True, resample_filter=[1, 3, 3, 1]),
        dict(kernel_size=1, up=True, fused_resample=True, resample_filter=[1, 3, 3, 1]),
        dict(kernel_size=3, down=True, fused_resample=True, resample_filter=[1, 3, 3, 1]),
        dict(kernel_size=3, up=True, fused_resample=True, resample_filter=[1, 1]),
    ],
)
def test_conv2d_matches_the_depthwise_forms(kwargs, monkeypatch):
    """Conv2d with the separable forms (forced on every backend, not only JAX's default) == Conv2d with the
    depthwise forms; with dynamic H, W Conv2d falls back to the depthwise forms, which must agree too."""
    monkeypatch.setattr(backend_utils, "separable_fir_resampling", lambda: True)
    rng = np.random.default_rng(3)
    conv = Conv2d(3, seed=0, **kwargs)
    x = rng.standard_normal((2, 8, 8, 3)).astype("float32")
    got = _np(conv(x))
    inputs = keras.Input((None, None, 3))
    dynamic = keras.Model(inputs, conv(inputs))
    got_dynamic = _np(dynamic(x))
    monkeypatch.setattr(layers, "_fir_down", _fir_down_depthwise)
    monkeypatch.setattr(layers, "_fir_up", _fir_up_depthwise)
    want = _np(conv(x))
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-6)
    np.testing.assert_allclose(got_dynamic, want, rtol=0, atol=5e-6)


def test_separable_form_is_the_jax_default():
    assert backend_utils.separable_fir_resampling() == (keras.backend.backend() == "jax")
