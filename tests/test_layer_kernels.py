"""GroupNorm and Conv2d against float64 NumPy references, on every backend.

Their fast paths differ per backend (torch calls its channels-last conv / group-norm kernels directly,
TF/JAX compute group statistics from per-channel reductions, TF adds the conv bias with bias_add), so each
path is checked here directly, not only through the EDM parity fixtures. Inputs include non-contiguous
slices (a torch view's strides are not NHWC-contiguous) and half precision.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_ict.networks.layers import Conv2d, GroupNorm


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def ref_group_norm(x, groups, gamma, beta, eps):
    b, h, w, c = x.shape
    xg = x.reshape(b, h, w, groups, c // groups).astype(np.float64)
    mean = xg.mean(axis=(1, 2, 4), keepdims=True)
    var = ((xg - mean) ** 2).mean(axis=(1, 2, 4), keepdims=True)
    return ((xg - mean) / np.sqrt(var + eps)).reshape(b, h, w, c) * gamma + beta


def ref_conv(x, kernel, bias, pad):
    x = np.pad(x.astype(np.float64), [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    k = kernel.shape[0]
    h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = np.zeros((x.shape[0], h, w, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            out += np.einsum("bhwc,co->bhwo", x[:, i : i + h, j : j + w, :], kernel[i, j])
    return out + bias


def _set_random_weights(layer, rng):
    for v in layer.weights:
        v.assign(rng.standard_normal(v.shape).astype("float32") * 0.5 + (1.0 if "gamma" in v.path else 0.0))


@pytest.mark.parametrize("shape,expected_groups", [((2, 8, 8, 32), 8), ((3, 5, 7, 12), 3), ((1, 4, 4, 256), 32)])
@pytest.mark.parametrize("offset", [0.0, 3.0])
def test_group_norm_matches_reference(shape, expected_groups, offset):
    rng = np.random.default_rng(0)
    layer = GroupNorm()
    wide = (rng.standard_normal(shape[:2] + (shape[2] + 2,) + shape[3:]) * 2.0 + offset).astype("float32")
    x = ops.convert_to_tensor(wide)[:, :, 1:-1, :]  # a non-contiguous slice
    layer.build(x.shape)
    _set_random_weights(layer, rng)
    assert layer.groups == expected_groups
    got = _np(layer(x))
    want = ref_group_norm(wide[:, :, 1:-1, :], layer.groups, _np(layer.gamma), _np(layer.beta), layer.eps)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)


def test_group_norm_half_precision_statistics_in_float32():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 6, 6, 16)) + 20.0).astype("float32")  # large mean: float16 statistics would fail
    layer = GroupNorm(dtype="mixed_float16")
    out = layer(ops.convert_to_tensor(x, dtype="float16"))
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    x16 = _np(ops.convert_to_tensor(x, dtype="float16"))
    want = ref_group_norm(x16, layer.groups, _np(layer.gamma), _np(layer.beta), layer.eps)
    np.testing.assert_allclose(_np(out), want, atol=1e-2)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_conv_with_bias_matches_reference(kernel_size):
    rng = np.random.default_rng(2)
    wide = rng.standard_normal((2, 9, 7, 5)).astype("float32")
    x = ops.convert_to_tensor(wide)[:, 1:, :, :]  # a non-contiguous slice
    layer = Conv2d(4, kernel_size)
    layer.build(x.shape)
    _set_random_weights(layer, rng)
    want = ref_conv(wide[:, 1:], _np(layer.kernel), _np(layer.bias), kernel_size // 2)
    np.testing.assert_allclose(_np(layer(x)), want, atol=1e-4, rtol=1e-5)


def test_conv_gradients_match_reference():
    """d/dx, d/dkernel, d/dbias of sum(conv(x) * cotangent), against the NumPy adjoints."""
    from grad_utils import gradients

    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((2, 6, 5, 3)).astype("float32")
    layer = Conv2d(4, 3)
    layer.build(x0.shape)
    _set_random_weights(layer, rng)
    cot = rng.standard_normal((2, 6, 5, 4)).astype("float32")
    xv = keras.Variable(x0)
    cot_t = ops.convert_to_tensor(cot)
    gx, gk, gb = gradients(lambda: ops.sum(layer(xv.value) * cot_t), [xv, layer.kernel, layer.bias])
    k = _np(layer.kernel)
    # adjoints of the padded correlation
    xp = np.pad(x0.astype(np.float64), [(0, 0), (1, 1), (1, 1), (0, 0)])
    want_k = np.zeros_like(k)
    want_xp = np.zeros_like(xp)
    for i in range(3):
        for j in range(3):
            want_k[i, j] = np.einsum("bhwc,bhwo->co", xp[:, i : i + 6, j : j + 5], cot)
            want_xp[:, i : i + 6, j : j + 5] += np.einsum("bhwo,co->bhwc", cot, k[i, j])
    np.testing.assert_allclose(_np(gk), want_k, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(_np(gx), want_xp[:, 1:-1, 1:-1], atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(_np(gb), cot.sum(axis=(0, 1, 2)), atol=1e-4, rtol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch's CPU kernel choice (oneDNN or slow_conv2d)")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("filters,up", [(1, False), (3, False), (2, True)])
def test_conv_backward_on_torch_fallback_kernels(dtype, filters, up):
    """Forward and backward through torch's non-oneDNN CPU kernels, which CPUs without oneDNN support for a
    dtype use (bfloat16 on AVX2-only CPUs such as AMD EPYC): they need a contiguous weight, and a one-output-
    channel conv on a channels-last input failed with "slow_conv2d: grad_weight must be contiguous".
    Disabling oneDNN selects those kernels on any CPU, so this runs the same path everywhere."""
    import torch

    from grad_utils import gradients

    rng = np.random.default_rng(4)
    x0 = rng.standard_normal((2, 8, 8, 4)).astype("float32")
    layer = Conv2d(filters, 3, up=up, resample_filter=[1, 3, 3, 1], dtype=dtype)
    layer.build(x0.shape)
    _set_random_weights(layer, rng)
    xv = keras.Variable(x0.astype(dtype), dtype=dtype)
    with torch.backends.mkldnn.flags(enabled=False):
        out = layer(xv.value)
        gx, gk = gradients(lambda: ops.sum(ops.cast(layer(xv.value), "float32")), [xv, layer.kernel])
    want = Conv2d(filters, 3, up=up, resample_filter=[1, 3, 3, 1])
    want.build(x0.shape)
    want.set_weights([w.astype("float32") for w in layer.get_weights()])
    tol = 1e-4 if dtype == "float32" else 0.1
    np.testing.assert_allclose(_np(out), _np(want(ops.convert_to_tensor(x0))), atol=tol * 10, rtol=tol)
    assert np.all(np.isfinite(_np(gx))) and np.all(np.isfinite(_np(gk)))
    assert np.abs(_np(gk)).sum() > 0
