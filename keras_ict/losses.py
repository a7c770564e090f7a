"""The iCT distance and weighting: pseudo-Huber over the whole sample, lambda = 1 / (sigma_{i+1} - sigma_i)."""

import math

from keras import ops

from keras_ict.paper import HUBER_C_PER_SQRT_DIM


def pseudo_huber_c(image_shape):
    """c = 0.00054 sqrt(d) for d = prod(image_shape) (0.03 for 32x32x3, 0.06 for 64x64x3)."""
    dim = math.prod(int(s) for s in image_shape)
    if dim <= 0:
        raise ValueError(f"image_shape must have positive dimensions, got {tuple(image_shape)}")
    return HUBER_C_PER_SQRT_DIM * math.sqrt(dim)


def pseudo_huber(a, b, c):
    """Per-sample pseudo-Huber distance sqrt(||a - b||^2 + c^2) - c, the norm taken over all non-batch axes.

    Computed in float32 as ||a-b||^2 / (sqrt(||a-b||^2 + c^2) + c), which equals the definition exactly but
    does not cancel catastrophically when ||a - b|| is much smaller than c. Returns shape (batch,).
    """
    if c <= 0:
        raise ValueError(f"pseudo-Huber c must be positive, got {c}")
    diff = ops.cast(a, "float32") - ops.cast(b, "float32")
    if len(diff.shape) < 2:
        raise ValueError(f"pseudo_huber expects batched inputs (rank >= 2), got shape {tuple(diff.shape)}")
    sq = ops.sum(ops.square(diff), axis=tuple(range(1, len(diff.shape))))
    return sq / (ops.sqrt(sq + c * c) + c)


def squared_l2(a, b):
    """Per-sample squared L2 distance ||a - b||^2 (the original CT metric, kept for ablations)."""
    diff = ops.cast(a, "float32") - ops.cast(b, "float32")
    return ops.sum(ops.square(diff), axis=tuple(range(1, len(diff.shape))))


def consistency_weight(sigma, sigma_next):
    """lambda(sigma_i) = 1 / (sigma_{i+1} - sigma_i)."""
    return 1.0 / (sigma_next - sigma)
