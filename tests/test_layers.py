"""Every network layer through the shared harness: output shape, config round trip, same weights -> same output,
training mode (numerics are checked against EDM in test_networks.py and against NumPy in test_layer_kernels.py)."""

import numpy as np
import pytest

from harness import run_layer_test
from keras_ict.networks.layers import (
    Conv2d,
    FourierEmbedding,
    GroupNorm,
    LabelDropout,
    Linear,
    PositionalEmbedding,
    ScaledSum,
    UNetBlock,
    make_init,
)

RNG = np.random.default_rng(0)
IMAGES = RNG.standard_normal((2, 8, 8, 8)).astype("float32")
EMB = RNG.standard_normal((2, 16)).astype("float32")
SIGMAS = np.array([0.1, 2.0], "float32")
LABELS = np.eye(3, dtype="float32")[[0, 2]]

CASES = {
    "linear": (Linear, dict(units=5, init=make_init("xavier_uniform"), seed=1), EMB, (2, 5)),
    "conv": (Conv2d, dict(filters=4, kernel_size=3, seed=1), IMAGES, (2, 8, 8, 4)),
    "conv-up-fused": (Conv2d, dict(filters=4, kernel_size=3, up=True, fused_resample=True, resample_filter=[1, 3, 3, 1],
                                   seed=1), IMAGES, (2, 16, 16, 4)),
    "conv-down": (Conv2d, dict(filters=4, kernel_size=1, down=True, seed=1), IMAGES, (2, 4, 4, 4)),
    "resample-only": (Conv2d, dict(filters=8, kernel_size=0, up=True, resample_filter=[1, 1]), IMAGES, (2, 16, 16, 8)),
    "group-norm": (GroupNorm, dict(num_groups=4, min_channels_per_group=2, eps=1e-6), IMAGES, (2, 8, 8, 8)),
    "positional": (PositionalEmbedding, dict(num_channels=16, endpoint=True, sin_first=True), SIGMAS, (2, 16)),
    "fourier": (FourierEmbedding, dict(num_channels=16, scale=0.02, seed=3), SIGMAS, (2, 16)),
    "scaled-sum": (ScaledSum, dict(scale=0.5), [IMAGES, IMAGES], (2, 8, 8, 8)),
    "label-dropout": (LabelDropout, dict(rate=0.5, seed=2), LABELS, (2, 3)),
    "unet-block": (UNetBlock, dict(in_channels=8, out_channels=8, emb_channels=16, dropout=0.1, seed=4),
                   (IMAGES, EMB), (2, 8, 8, 8)),
    "unet-block-down-attention": (UNetBlock, dict(in_channels=8, out_channels=16, emb_channels=16, down=True,
                                                  attention=True, channels_per_head=8, resample_proj=True, seed=4),
                                  (IMAGES, EMB), (2, 4, 4, 16)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer(case):
    layer_cls, kwargs, inputs, shape = CASES[case]
    run_layer_test(layer_cls, kwargs, inputs, expected_output_shape=shape)
