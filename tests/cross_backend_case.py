"""The model and inputs of the cross-backend fixtures (tests/data/cross_backend), shared by writer and test."""

import numpy as np

NETWORK_CONFIG = dict(
    img_resolution=8, in_channels=3, out_channels=3, model_channels=16, channel_mult=[1, 2], num_blocks=1,
    attn_resolutions=[4], dropout=0.0, embedding_type="fourier", channel_mult_noise=2, encoder_type="residual",
    resample_filter=[1, 3, 3, 1], fourier_scale=0.02,
)


def build_model():
    from keras_ict import ConsistencyModel
    from keras_ict.networks import SongUNet

    return ConsistencyModel(SongUNet(**NETWORK_CONFIG, seed=11)).build_for_images()


def build_trainer(model):
    from keras_ict import ConsistencyTrainer

    return ConsistencyTrainer(model, total_steps=100, seed=0)


def inputs():
    rng = np.random.default_rng(2024)
    x = rng.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    sigma = np.array([0.002, 0.5, 5.0, 80.0], np.float32)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    sigma_i = np.array([0.01, 0.3, 1.5, 40.0], np.float32)
    sigma_next = np.array([0.02, 0.35, 2.0, 80.0], np.float32)
    return x, sigma, noise, sigma_i, sigma_next
