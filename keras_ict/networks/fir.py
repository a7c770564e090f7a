"""FIR up/down-sampling of NHWC tensors, as EDM's `Conv2d` applies it (NVlabs/edm, `training/networks.py`).

Two forms of the same function, chosen per backend (`backends.kernels.separable_fir_resampling()`):

* depthwise: one depthwise (or, for upsampling, zero insertion + depthwise) convolution per resampling;
* separable: a rank-1 filter applied one spatial axis at a time as sums of weighted slices, whose backward
  pass is cheap where depthwise convolutions' is slow (XLA CPU).

`fir_down` / `fir_up` are the entry points `layers.Conv2d` calls (through this module, so tests and
`benchmarks/fir_resample.py` can swap the form); `tests/test_fir.py` checks both forms against each other.
"""

import keras
import numpy as np
from keras import ops

from ..backends import kernels
from . import nhwc


def _const(array, dtype):
    return ops.convert_to_tensor(np.asarray(array), dtype=dtype)


def fir_filter_2d(resample_filter):
    f = np.asarray(resample_filter, dtype=np.float64).reshape(-1)
    if f.size < 1 or f.sum() == 0:
        raise ValueError(f"Invalid resample_filter {list(resample_filter)!r}")
    return np.outer(f, f) / np.square(f.sum())


def _zero_upsample(x):
    """(B, H, W, C) -> (B, 2H, 2W, C) with the input at even positions, zeros elsewhere."""
    h, w = nhwc.spatial_dims(x)
    c = x.shape[-1]
    z = ops.stack([x, ops.zeros_like(x)], axis=3)  # (B, H, W, 2, C)
    z = ops.reshape(z, (-1, h, w * 2, c))
    z = ops.stack([z, ops.zeros_like(z)], axis=2)  # (B, H, 2, 2W, C)
    return ops.reshape(z, (-1, h * 2, w * 2, c))


def fir_down(x, fir, pad):
    """Depthwise FIR filtering with stride 2 after padding by `pad` (cross-correlation).

    One depthwise convolution, or (`backends.kernels.separable_fir_resampling()`, static H and W, rank-1
    filter) the same function in separable form, `fir_down_separable`.
    """
    factors = separable_factors(fir) if _use_separable(x) else None
    if factors is None:
        return fir_down_depthwise(x, fir, pad)
    return _in_float32(fir_down_separable, x, factors, pad)


def fir_up(x, fir, pad):
    """Grouped transposed convolution with `4 * fir`, stride 2 and padding `pad`.

    Zero insertion and one depthwise convolution, or (as for `fir_down`) `fir_up_separable`.
    """
    factors = separable_factors(fir) if _use_separable(x) else None
    if factors is None or min(fir.shape) < 2:
        return fir_up_depthwise(x, fir, pad)
    return _in_float32(fir_up_separable, x, factors, pad)


def _in_float32(fn, x, *args):
    """The separable form rounds between its two passes; in float16/bfloat16 that costs a digit, so half
    precision inputs are filtered in float32 (a convolution accumulates in float32 anyway)."""
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype in ("float16", "bfloat16"):
        return ops.cast(fn(ops.cast(x, "float32"), *args), dtype)
    return fn(x, *args)


def fir_down_depthwise(x, fir, pad):
    c = x.shape[-1]
    k = np.tile(fir[:, :, None, None], (1, 1, c, 1))
    if kernels.torch_channels_last_kernels() and pad >= 0:
        return kernels.torch_conv2d_nhwc(x, _const(k, x.dtype), stride=2, padding=pad, depthwise=True)
    x = nhwc.pad_or_crop_hw(x, pad, pad)
    return ops.depthwise_conv(x, _const(k, x.dtype), strides=2, padding="valid")


def fir_up_depthwise(x, fir, pad):
    c = x.shape[-1]
    size = fir.shape[0]
    if kernels.torch_channels_last_kernels() and 0 <= pad <= size - 2:
        # torch's transposed convolution takes the unflipped filter (EDM's own form of this op).
        k = np.tile((4.0 * fir)[:, :, None, None], (1, 1, c, 1))
        return kernels.torch_depthwise_conv_transpose2d_nhwc(x, _const(k, x.dtype), stride=2, padding=pad)
    k = np.tile((4.0 * fir[::-1, ::-1])[:, :, None, None], (1, 1, c, 1))
    x = _zero_upsample(x)
    # Transposed conv == dilate by 2, pad by (size - 1 - pad), correlate with flipped kernel.
    # The dilated input already ends with one zero row/column.
    x = nhwc.pad_or_crop_hw(x, size - 1 - pad, size - 2 - pad)
    return ops.depthwise_conv(x, _const(k, x.dtype), strides=1, padding="valid")


# Separable forms. A rank-1 filter fir = outer(k_h, k_w) (every filter `fir_filter_2d` builds) can be applied one
# spatial axis at a time, as sums of weighted slices of the input: only pads, reshapes, unit-stride slices,
# multiplies, adds and (upsampling) one stack per axis, whose gradients are cheap. Used where the backend's
# depthwise convolutions have a slow backward pass (XLA CPU: about 50x slower than the separable form for
# a (16, 32, 32, 32) input); on TensorFlow and torch the depthwise convolution is the faster of the two.
# `tests/test_fir.py` checks these against the depthwise forms on every backend.


def _use_separable(x):
    # Static H and W only (not None, nor JAX's symbolic dimensions of a symbolic build).
    static = all(isinstance(d, int) for d in tuple(x.shape)[1:])
    return static and kernels.separable_fir_resampling()


def separable_factors(fir):
    """(k_h, k_w) with outer(k_h, k_w) == fir (float64), or None when `fir` is not rank 1."""
    fir = np.asarray(fir, dtype=np.float64)
    total = fir.sum() if fir.ndim == 2 else 0.0
    if total == 0:
        return None
    k_h, k_w = fir.sum(axis=1), fir.sum(axis=0) / total
    if not np.allclose(np.outer(k_h, k_w), fir, rtol=0, atol=1e-12 * np.abs(fir).max()):
        return None
    return k_h, k_w


def _weighted_sum(terms):
    """sum(w * t for w, t in terms), adding the terms that share a weight before multiplying."""
    groups = {}
    for w, t in terms:
        if w != 0:
            groups.setdefault(float(w), []).append(t)
    out = None
    for w, ts in groups.items():
        s = ts[0]
        for t in ts[1:]:
            s = s + t
        if w != 1:
            s = s * w
        out = s if out is None else out + s
    return out


def _pad_or_crop_axis(x, axis, before, after):
    """Pads (positive) or crops (negative) one axis of `x`, whose length is static."""
    if before < 0 or after < 0:
        index = [slice(None)] * len(x.shape)
        index[axis] = slice(max(-before, 0), x.shape[axis] - max(-after, 0))
        x = x[tuple(index)]
        before, after = max(before, 0), max(after, 0)
    if before or after:
        widths = [[0, 0]] * len(x.shape)
        widths[axis] = [before, after]
        x = ops.pad(x, widths)
    return x


def _split_phases(x, axis):
    """x (even length 2m along `axis`) -> (x[..., 0::2, ...], x[..., 1::2, ...]), each of length m."""
    shape = [-1] + list(x.shape[1:])
    z = ops.reshape(x, shape[:axis] + [shape[axis] // 2, 2] + shape[axis + 1 :])
    lead = (slice(None),) * (axis + 1)
    return z[lead + (0,)], z[lead + (1,)]


def fir_down_separable(x, factors, pad):
    """`fir_down_depthwise(x, outer(*factors), pad)`, one axis at a time (static H and W)."""
    for axis, k in ((1, factors[0]), (2, factors[1])):
        x = _fir_down_axis(x, k, pad, axis)
    return x


def _fir_down_axis(x, k, pad, axis):
    """y[i] = sum_a k[a] u[2i + a] along `axis`, u = x padded by `pad` (negative: cropped) on both sides,
    for i < n_out = (n + 2 pad - len(k)) // 2 + 1 (a stride-2 valid correlation).

    Tap a = 2m + p reads phase p of u (u[p::2]) from m on, so u is padded / cropped at the end to the even
    length 2 (n_out - 1) + len(k) (rounded up) that the taps read, split into its two phases by a reshape,
    and each tap is a unit-stride slice of one phase.
    """
    size, n = len(k), x.shape[axis]
    n_out = (n + 2 * pad - size) // 2 + 1
    length = 2 * (n_out - 1) + size
    length += length % 2
    phases = _split_phases(_pad_or_crop_axis(x, axis, pad, length - n - pad), axis)

    def tap(a):
        m, p = divmod(a, 2)
        index = [slice(None)] * len(x.shape)
        index[axis] = slice(m, m + n_out)
        return phases[p][tuple(index)]

    return _weighted_sum((k[a], tap(a)) for a in range(size))


def fir_up_separable(x, factors, pad):
    """`fir_up_depthwise(x, outer(*factors), pad)`, one axis at a time (static H and W, len(k) >= 2)."""
    for axis, k in ((1, factors[0]), (2, factors[1])):
        x = _fir_up_axis(x, k, pad, axis)
    return x


def _fir_up_axis(x, k, pad, axis):
    """`fir_up` along one axis, in polyphase form: upsample by 2 with zeros (u[2j] = x[j], u[2j + 1] = 0),
    pad by (b, len(k) - 2 - pad) with b = len(k) - 1 - pad (negative: crop) and correlate with
    g = 2 k[::-1] (4 fir = outer(2 k_h, 2 k_w)).

    Output i reads u[i + t - b] for taps t: x[(i + t - b) / 2] when i + t - b is even, else 0. So output
    2q + r (phase r) is sum g[t] x[q + d] over the taps t of the parity of b - r, d = (r + t - b) / 2, with
    x zero outside [0, n). The output has 2n + e elements (e = len(k) - 2 - 2 pad), n + c_r of phase r
    (c_0 = ceil(e / 2), c_1 = floor(e / 2)); the two phases are interleaved by a stack and a reshape.
    """
    size, n = len(k), x.shape[axis]
    g = 2.0 * np.asarray(k, dtype=np.float64)[::-1]
    b = size - 1 - pad
    extra = size - 2 - 2 * pad
    counts = [(extra + 1) // 2, extra // 2]
    taps = [[(g[t], (r + t - b) // 2) for t in range(size) if (r + t - b) % 2 == 0] for r in (0, 1)]
    # Phase r reads x[q + d] for 0 <= q < n + c_r: pad x by lo before and hi after so all are in range.
    lo = max(0, -min(d for phase in taps for _, d in phase))
    hi = max(0, max(d + counts[r] for r in (0, 1) for _, d in taps[r]))
    x = _pad_or_crop_axis(x, axis, lo, hi)

    def tap(r, d):
        index = [slice(None)] * len(x.shape)
        index[axis] = slice(d + lo, d + lo + n + counts[r])
        return x[tuple(index)]

    phases = [_weighted_sum((w, tap(r, d)) for w, d in taps[r]) for r in (0, 1)]
    odd = counts[0] != counts[1]  # then phase 1 is one shorter: pad it, interleave, drop the last
    if odd:
        phases[1] = _pad_or_crop_axis(phases[1], axis, 0, 1)
    y = ops.stack(phases, axis=axis + 1)
    shape = [-1] + list(y.shape[1:])
    y = ops.reshape(y, shape[:axis] + [shape[axis] * 2] + shape[axis + 2 :])
    return _pad_or_crop_axis(y, axis, 0, -1) if odd else y
