"""FIR up/down-sampling: the separable forms compute what the depthwise-convolution forms compute.

`fir.fir_down` / `fir_up` (keras_ict/networks/fir.py) use the separable slice-and-add forms where
`backends.kernels.separable_fir_resampling()` says so (JAX) and the depthwise convolutions elsewhere; the
separable forms are tested here on every backend against the depthwise ones (the reference: the forms
checked against EDM by the parity tests), outputs and input gradients.
"""


import keras
import numpy as np
import pytest

from grad_utils import gradients
from keras_ict.backends import kernels
from keras_ict.networks import fir as fir_resampling
from keras_ict.networks.fir import (
    fir_down,
    fir_down_depthwise,
    fir_down_separable,
    fir_filter_2d,
    fir_up,
    fir_up_depthwise,
    fir_up_separable,
    separable_factors,
)
from keras_ict.networks.layers import Conv2d

SHAPES = [(2, 8, 8, 3), (1, 7, 9, 2), (2, 5, 6, 1), (1, 16, 15, 4)]
FILTERS = [[1, 1], [1, 3, 3, 1]]
# Conv2d's call sites: fir_up(x, fir, max(f_pad - w_pad, 0)), fir_down(x, fir, 0), fir_up / fir_down(x, fir, f_pad)
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
    factors = separable_factors(fir)
    if op == "down":
        return fir_down_depthwise, lambda x, f, p: fir_down_separable(x, factors, p)
    return fir_up_depthwise, lambda x, f, p: fir_up_separable(x, factors, p)


@pytest.mark.parametrize("op", ["down", "up"])
@pytest.mark.parametrize("resample_filter", FILTERS + [[1, 2], [1, 4, 6, 4, 1]])
def test_separable_matches_depthwise(op, resample_filter):
    fir = fir_filter_2d(resample_filter)
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
    fir = fir_filter_2d(resample_filter)
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
    k_h, k_w = separable_factors(fir_filter_2d([1, 3, 3, 1]))
    np.testing.assert_allclose(k_h, np.array([1, 3, 3, 1]) / 8, rtol=0, atol=1e-15)
    np.testing.assert_allclose(k_w, np.array([1, 3, 3, 1]) / 8, rtol=0, atol=1e-15)
    rng = np.random.default_rng(2)
    fir = rng.uniform(0.1, 1.0, (4, 4))  # rank 4
    assert separable_factors(fir) is None
    x = rng.standard_normal((1, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(_np(fir_down(x, fir, 1)), _np(fir_down_depthwise(x, fir, 1)), rtol=0, atol=2e-6)
    np.testing.assert_allclose(_np(fir_up(x, fir, 1)), _np(fir_up_depthwise(x, fir, 1)), rtol=0, atol=2e-6)


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
    monkeypatch.setattr(kernels, "separable_fir_resampling", lambda: True)
    rng = np.random.default_rng(3)
    conv = Conv2d(3, seed=0, **kwargs)
    x = rng.standard_normal((2, 8, 8, 3)).astype("float32")
    got = _np(conv(x))
    inputs = keras.Input((None, None, 3))
    dynamic = keras.Model(inputs, conv(inputs))
    got_dynamic = _np(dynamic(x))
    monkeypatch.setattr(fir_resampling, "fir_down", fir_down_depthwise)
    monkeypatch.setattr(fir_resampling, "fir_up", fir_up_depthwise)
    want = _np(conv(x))
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-6)
    np.testing.assert_allclose(got_dynamic, want, rtol=0, atol=5e-6)


def test_separable_form_is_the_jax_default():
    assert kernels.separable_fir_resampling() == (keras.backend.backend() == "jax")


def _edm_conv2d(x, weight, bias, up, down, resample_filter, fused_resample):
    """EDM's `Conv2d.forward` (NVlabs/edm, training/networks.py), transcribed with torch.nn.functional, NCHW."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(x).permute(0, 3, 1, 2).double()
    w = None if weight is None else torch.as_tensor(weight).permute(3, 2, 0, 1).double()
    b = None if bias is None else torch.as_tensor(bias).double()
    f = torch.as_tensor(resample_filter, dtype=torch.float64)
    f = f.ger(f).unsqueeze(0).unsqueeze(1) / f.sum().square()
    c = x.shape[1]
    w_pad = w.shape[-1] // 2 if w is not None else 0
    f_pad = (f.shape[-1] - 1) // 2
    if fused_resample and up and w is not None:
        x = F.conv_transpose2d(x, f.mul(4).tile([c, 1, 1, 1]), groups=c, stride=2, padding=max(f_pad - w_pad, 0))
        x = F.conv2d(x, w, padding=max(w_pad - f_pad, 0))
    elif fused_resample and down and w is not None:
        x = F.conv2d(x, w, padding=w_pad + f_pad)
        x = F.conv2d(x, f.tile([w.shape[0], 1, 1, 1]), groups=w.shape[0], stride=2)
    else:
        if up:
            x = F.conv_transpose2d(x, f.mul(4).tile([c, 1, 1, 1]), groups=c, stride=2, padding=f_pad)
        if down:
            x = F.conv2d(x, f.tile([c, 1, 1, 1]), groups=c, stride=2, padding=f_pad)
        if w is not None:
            x = F.conv2d(x, w, padding=w_pad)
    if b is not None:
        x = x.add_(b.reshape(1, -1, 1, 1))
    return x.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("kernel_size", [0, 1, 3])
@pytest.mark.parametrize("mode", ["up", "down", "up-fused", "down-fused"])
@pytest.mark.parametrize("resample_filter", FILTERS)
def test_conv2d_matches_edm_formula(kernel_size, mode, resample_filter):
    """Every Conv2d resampling mode against EDM's formula, including ones EDM's networks never build (fused
    upsampling with a 3x3 kernel once padded by the wrong amount and passed every parity fixture)."""
    pytest.importorskip("torch")
    up, fused = mode.startswith("up"), mode.endswith("fused")
    conv = Conv2d(3 if kernel_size else 2, kernel_size, up=up, down=not up, resample_filter=resample_filter,
                  fused_resample=fused, seed=0, init={"mode": "kaiming_normal", "weight": 1.0, "bias": 1.0})
    x = np.random.default_rng(5).standard_normal((2, 8, 8, 2)).astype("float32")
    got = _np(conv(x))
    want = _edm_conv2d(x, None if conv.kernel is None else _np(conv.kernel),
                       None if conv.bias is None else _np(conv.bias), up, not up, resample_filter, fused)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
