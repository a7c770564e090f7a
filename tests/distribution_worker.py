"""Runs one iCT step on 2 simulated CPU devices and on one device with the same batch and noise.

    python tests/distribution_worker.py tensorflow|jax   -> prints a JSON line

Run in its own process: the devices must be configured before TensorFlow / JAX initialise.
"""

import json
import os
import sys

MODE = sys.argv[1]
os.environ["KERAS_BACKEND"] = MODE
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if MODE == "jax":
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
else:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_ict import ConsistencyModel, ConsistencyTrainer  # noqa: E402
from keras_ict.backends.distribution import num_replicas, replica_id  # noqa: E402
from keras_ict.networks import SongUNet  # noqa: E402
from keras_ict.networks.layers import GlobalBatchDropout  # noqa: E402

BATCH = 8
rng = np.random.default_rng(0)
X = rng.uniform(-1, 1, (BATCH, 8, 8, 1)).astype("float32")
SIGMA = np.array([0.01, 0.1, 0.3, 0.8, 1.5, 3.0, 10.0, 40.0], "float32")
SIGMA_NEXT = SIGMA * 1.3
Z = rng.standard_normal(X.shape).astype("float32")


def build():
    keras.utils.set_random_seed(0)
    # One resolution level (with attention): the engines trace or compile a third of the two-level network's layers;
    # resampling layers hold nothing a strategy treats differently from the convolutions kept here.
    net = SongUNet(img_resolution=8, in_channels=1, out_channels=1, model_channels=16, channel_mult=[1], num_blocks=1,
                   attn_resolutions=[8], dropout=0.3, embedding_type="fourier", channel_mult_noise=2, encoder_type="residual",
                   resample_filter=[1, 3, 3, 1], fourier_scale=0.02, seed=0)
    trainer = ConsistencyTrainer(ConsistencyModel(net), total_steps=100, ema_decay=0.5, seed=0)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05))
    # EDM zero-initialises the convolution after each dropout, which would hide the masks from the first step:
    # non-zero values there make the step depend on which rows each replica drops.
    init = np.random.default_rng(1)
    for weight in trainer.model.trainable_weights:
        value = ops.convert_to_numpy(weight)
        if not value.any():
            weight.assign((0.1 * init.standard_normal(value.shape)).astype(value.dtype))
    return trainer


def fixed_noise(trainer):
    """Replace the random draw by the fixed global noise, each replica taking its slice (as draw_noise does)."""

    def draw(images):
        r, n = num_replicas(), ops.shape(images)[0]
        pick = lambda v: ops.take(ops.reshape(ops.convert_to_tensor(v), (r, n) + v.shape[1:]), replica_id(), axis=0)  # noqa: E731
        return pick(SIGMA), pick(SIGMA_NEXT), ops.convert_to_tensor(11), pick(Z)

    trainer.draw_noise = draw


def step(trainer, fixed=True):
    if fixed:
        fixed_noise(trainer)
    history = trainer.fit(X, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    weights = [ops.convert_to_numpy(w) for w in trainer.model.trainable_weights]
    ema = [ops.convert_to_numpy(w) for w in trainer.ema_model.weights]
    return history.history, weights, ema


single_trainer = build()
single_hist, single_w, single_ema = step(single_trainer)

if MODE == "tensorflow":
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        dist_trainer = build()
    devices = strategy.num_replicas_in_sync
    dist_hist, dist_w, dist_ema = step(dist_trainer)
    # Without the fixed noise: the two replicas must draw different noise.
    with strategy.scope():
        noise_trainer = build()
    values = strategy.run(lambda: noise_trainer.draw_noise(ops.zeros((4, 8, 8, 1)))[3])
    parts = [ops.convert_to_numpy(v) for v in strategy.experimental_local_results(values)]
    replicas_differ = bool(not np.allclose(parts[0], parts[1]))
    # Dropout under the strategy: the replicas' outputs, stacked, are the one-device output of the global batch.
    ones = np.ones((8, 4, 4, 2), "float32")
    single_dropped = ops.convert_to_numpy(GlobalBatchDropout(0.5, seed=3)(ones, training=True))
    with strategy.scope():
        replica_layer = GlobalBatchDropout(0.5, seed=3)
    halves = strategy.experimental_distribute_values_from_function(lambda ctx: ones[4 * ctx.replica_id_in_sync_group:][:4])
    dropped = strategy.run(lambda x: replica_layer(x, training=True), args=(halves,))
    dist_dropped = np.concatenate([ops.convert_to_numpy(v) for v in strategy.experimental_local_results(dropped)])
    dropout_equal = bool(np.array_equal(single_dropped, dist_dropped) and 0 < (single_dropped == 0).mean() < 1)
    num_scales = dist_hist["num_scales"][0]
else:
    import jax

    devices = len(jax.devices())
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    dist_trainer = build()
    dist_hist, dist_w, dist_ema = step(dist_trainer)
    replicas_differ = None  # JAX draws the noise of the global batch in one program
    dropout_equal = None  # and the dropout masks of the global batch
    num_scales = dist_hist["num_scales"][0]

# Sampling a model built under the distribution (what the CLI does for its sample grids) gives the same images.
from keras_ict.sampling import generate  # noqa: E402

single_samples = generate(single_trainer.ema_model, range(3), sigmas=(80.0, 0.821))
dist_samples = generate(dist_trainer.ema_model, range(3), sigmas=(80.0, 0.821))

print(json.dumps({
    "devices": devices,
    "sample_shapes": [list(single_samples.shape), list(dist_samples.shape)],
    "max_sample_diff": float(np.abs(single_samples - dist_samples).max()) if single_samples.shape == dist_samples.shape else None,
    "loss_single": single_hist["loss"][0],
    "loss_distributed": dist_hist["loss"][0],
    "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(single_w, dist_w)),
    "max_ema_diff": max(float(np.abs(a - b).max()) for a, b in zip(single_ema, dist_ema)),
    "weights_changed": max(
        float(np.abs(a - b).max()) for a, b in zip(single_w, [ops.convert_to_numpy(w) for w in build().model.trainable_weights])
    ),
    "replicas_draw_different_noise": replicas_differ,
    "dropout_masks_of_global_batch": dropout_equal,
    "num_scales_distributed": num_scales,
}))
