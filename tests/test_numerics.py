"""Half-precision numerics at the top of the noise range (sigma up to 80): inputs reach |x| ~ 400 there.

The ConsistencyModel wrapper computes c_in x in float32 before the network sees it, so a float16 or bfloat16
network gets unit-variance inputs at every sigma; the skip path c_skip x stays float32. These tests check that
outputs and the iCT loss stay finite and close to float32 for sigma in [0.002, 80]. (A NaN loss stopping
training with the step named is tested in test_cli.py.)
"""

import keras
import numpy as np
import pytest

from keras_ict.networks import SongUNet
from keras_ict.parameterization import ConsistencyModel
from keras_ict.trainer import ConsistencyTrainer

NET = dict(img_resolution=8, in_channels=3, out_channels=3, model_channels=16, channel_mult=[1, 2], num_blocks=1,
           attn_resolutions=[4], dropout=0.0, embedding_type="fourier", channel_mult_noise=2,
           encoder_type="residual", resample_filter=[1, 3, 3, 1])
SIGMAS = np.array([0.002, 0.01, 0.5, 5.0, 40.0, 80.0], np.float32)
# The loss is a distance between two network outputs, so its relative error is larger than theirs.
LOSS_RTOL = {"mixed_float16": 2e-2, "mixed_bfloat16": 0.1}  # measured: <= 0.0066 and <= 0.022


def perturbed_weights(model, seed=0):
    rng = np.random.default_rng(seed)
    return [w + 0.1 * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_half_precision_network_is_finite_and_close_to_float32_up_to_sigma_80(policy):
    reference = ConsistencyModel(SongUNet(**NET, seed=0)).build_for_images()
    weights = perturbed_weights(reference)  # EDM zero-initialises output layers: make the network matter
    reference.set_weights(weights)
    half = ConsistencyModel(SongUNet(**NET, seed=0, dtype=policy)).build_for_images()
    half.set_weights(weights)

    rng = np.random.default_rng(1)
    data = rng.uniform(-1, 1, (len(SIGMAS), 8, 8, 3)).astype(np.float32)
    x = data + SIGMAS[:, None, None, None] * rng.standard_normal(data.shape).astype(np.float32)
    # predict_on_batch: one compiled call (an eager call on JAX compiles each op, 4x slower)
    want = reference.predict_on_batch([x, SIGMAS])
    got = half.predict_on_batch([x, SIGMAS])
    assert got.dtype == np.float32 and np.all(np.isfinite(got))
    # Relative to the output scale per sample: half precision keeps ~3 (fp16) or ~2 (bf16) digits.
    scale = np.max(np.abs(want), axis=(1, 2, 3)) + 1e-3
    error = np.max(np.abs(got - want), axis=(1, 2, 3)) / scale
    assert np.all(error < (5e-3 if policy == "mixed_float16" else 5e-2)), error
    # The boundary condition is exact in any precision: f(x, sigma_min) = x.
    np.testing.assert_array_equal(got[0], x[0])


def _loss_at_largest_sigmas(policy, weights=None):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = ConsistencyModel(SongUNet(**NET, seed=0)).build_for_images()
        weights = perturbed_weights(model) if weights is None else weights
        model.set_weights(weights)
        trainer = ConsistencyTrainer(model, total_steps=100, seed=0)
        rng = np.random.default_rng(2)
        x = rng.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
        z = rng.standard_normal(x.shape).astype(np.float32)
        sigma = np.array([60.0, 70.0, 75.0, 79.0], np.float32)
        loss = keras.ops.convert_to_numpy(trainer.consistency_loss(x, z, sigma, np.full(4, 80.0, np.float32), training=True))
        return loss, weights
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_half_precision_loss_is_finite_and_close_to_float32_at_the_largest_sigmas(policy):
    want, weights = _loss_at_largest_sigmas("float32")
    got, _ = _loss_at_largest_sigmas(policy, weights)
    assert got.dtype == np.float32 and np.all(np.isfinite(got)) and np.all(got >= 0)
    assert np.all(want > 0)  # the perturbed network makes student and teacher differ
    np.testing.assert_allclose(got, want, rtol=LOSS_RTOL[policy])
