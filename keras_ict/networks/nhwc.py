"""Shape helpers for channels-last (NHWC) tensors whose H and W may be unknown when traced."""

from keras import ops


def pad_or_crop_hw(x, before, after):
    """Pads (positive) or crops (negative) the two spatial axes of an NHWC tensor."""
    if before < 0 or after < 0:
        cb, ca = max(-before, 0), max(-after, 0)
        x = x[:, cb : (-ca or None), cb : (-ca or None), :]  # end-relative: H and W may be unknown
        before, after = max(before, 0), max(after, 0)
    if before or after:
        x = ops.pad(x, [[0, 0], [before, after], [before, after], [0, 0]])
    return x


def spatial_dims(x):
    """(H, W) of an NHWC tensor: Python ints where static, tensors where not."""
    h, w = x.shape[1], x.shape[2]
    if h is None or w is None:
        shape = ops.shape(x)
        h = shape[1] if h is None else h
        w = shape[2] if w is None else w
    return h, w
