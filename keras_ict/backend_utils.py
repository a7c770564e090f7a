"""The only backend-specific code in keras-ict: telling a concrete tensor from a traced one.

Value checks (sigma > 0, labels in range) can only run on concrete values; inside a compiled function
(tf.function, jax.jit, torch.compile) they are skipped and the caller's eager checks have to do.
Also here: replica helpers and distribution scopes, and which form of FIR resampling is fast on the backend.
"""

import keras
import numpy as np


def concrete_value(x):
    """`x` as a NumPy array when its value is known now, else None (symbolic or traced)."""
    if x is None:
        return None
    if isinstance(x, (np.ndarray, np.generic, int, float, list, tuple)):
        return np.asarray(x)
    if isinstance(x, keras.KerasTensor):
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly() or not hasattr(x, "numpy"):
            return None
    elif backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
    elif backend == "torch":
        import torch

        if torch.compiler.is_compiling() or getattr(x, "is_meta", False) or x.device.type == "meta":
            return None
    try:
        return keras.ops.convert_to_numpy(x)
    except Exception:  # any tracer we did not recognise
        return None


def num_replicas():
    """Replicas in sync under the current tf.distribute strategy (1 elsewhere and on other backends)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_id():
    """Index of the current tf.distribute replica (0 outside a replica context and on other backends).

    Every replica of a MirroredStrategy runs the same step with the same seed-generator state, so the
    trainer draws noise for all replicas and keeps this replica's slice; JAX and torch see the global batch.
    """
    if keras.backend.backend() != "tensorflow":
        return 0
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None:
        return 0
    return context.replica_id_in_sync_group


STRATEGIES = {"tensorflow": ("mirrored", "multiworker", "tpu"), "jax": ("data-parallel",), "torch": ()}


def distribution_scope(name):
    """A context manager under which a trainer is built (and `fit` then runs) on several devices.

    tensorflow: "mirrored" (all local GPUs/CPUs), "multiworker" (TF_CONFIG), "tpu"; jax: "data-parallel"
    (all devices; on several hosts call jax.distributed.initialize first, which setting
    KERAS_ICT_JAX_DISTRIBUTED=1 does here). None gives a no-op context.
    """
    import contextlib

    if name is None:
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if name not in STRATEGIES[backend]:
        supported = ", ".join(STRATEGIES[backend]) or "none (Keras' torch trainer has no multi-device fit)"
        raise ValueError(f"strategy {name!r} is not available on the {backend} backend; supported: {supported}")
    if backend == "tensorflow":
        import tensorflow as tf

        if name == "mirrored":
            strategy = tf.distribute.MirroredStrategy()
        elif name == "multiworker":
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            strategy = tf.distribute.TPUStrategy(resolver)
        return strategy.scope()
    import os

    import jax

    if os.environ.get("KERAS_ICT_JAX_DISTRIBUTED") == "1":
        jax.distributed.initialize()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    return contextlib.nullcontext()


def separable_fir_resampling():
    """Whether the networks' FIR up/down-sampling should run in separable slice-and-add form.

    True on JAX, where XLA (CPU) runs the backward pass of the depthwise convolutions that the FIR
    resampling otherwise uses as slow generic kernels: for one (16, 32, 32, 32) [1, 3, 3, 1] FIR downsample,
    forward + backward, about 1-2 ms in separable form vs 60-90 ms as a depthwise convolution. On TensorFlow
    (oneDNN) and torch the depthwise convolution is the faster of the two (TF's strided-slice and slice
    gradients are slow). Both forms compute the same function (tests/test_fir.py).
    """
    return keras.backend.backend() == "jax"
