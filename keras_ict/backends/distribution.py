"""Replicas and multi-device training scopes: tf.distribute strategies on TensorFlow, `keras.distribution` on JAX."""

import contextlib

import keras
import numpy as np


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


def training_replicas(model):
    """How many devices `model.fit` splits each global batch over (1 without a distribution)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        strategy = getattr(model, "distribute_strategy", None)
        return int(strategy.num_replicas_in_sync) if strategy is not None else 1
    if backend == "jax":
        distribution = keras.distribution.distribution()
        if distribution is not None:
            return int(np.asarray(distribution.device_mesh.devices).size)
    return 1


def predict_batch(model, inputs):
    """`model.predict_on_batch(inputs)`, correct also for a model built under a multi-replica tf.distribute
    strategy, where Keras' predict_on_batch returns every replica's output for the whole batch (twice the
    rows on 2 replicas); `predict` splits the batch over the replicas as it should."""
    if training_replicas(model) > 1 and keras.backend.backend() == "tensorflow":
        first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return model.predict(inputs, batch_size=len(first), verbose=0)
    return model.predict_on_batch(inputs)


def _multi_worker_replica_context():
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and tf.distribute.in_cross_replica_context() is False


def step_logs(logs):
    """The logs a train step returns, in a form Keras can reduce across replicas.

    Under MultiWorkerMirroredStrategy Keras 3 reduces every step output with `strategy.reduce("MEAN", v, axis=0)`,
    which fails on scalars ("Invalid reduction dimension 0 for input with 0 dimensions", tensorflow#72388): there
    each scalar becomes a vector of one, whose reduction over axis 0 is the scalar mean over the replicas.
    Elsewhere the logs are returned as they are.
    """
    if not _multi_worker_replica_context():
        return logs
    return {k: keras.ops.reshape(v, (1,)) if len(getattr(v, "shape", ())) == 0 else v for k, v in logs.items()}


def multiworker_cluster():
    """(number of workers, this worker's index, is chief) from TF_CONFIG, for `--strategy multiworker`.

    The chief is the task of type "chief" if the cluster has one, else worker 0 (TensorFlow's convention). Raises
    ValueError, naming the problem, when TF_CONFIG is missing or malformed.
    """
    import json
    import os

    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError("--strategy multiworker needs TF_CONFIG (the cluster's worker addresses and this worker's task), "
                         'e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}')
    try:
        tf_config = json.loads(raw)
        cluster, task = tf_config["cluster"], tf_config["task"]
        kind, index = task["type"], int(task["index"])
        tasks = {name: list(addresses) for name, addresses in cluster.items() if name in ("chief", "worker")}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"TF_CONFIG is malformed ({type(error).__name__}: {error}); expected "
                         '{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": N}}') from None
    if kind not in tasks or not 0 <= index < len(tasks[kind]):
        raise ValueError(f"TF_CONFIG task {kind!r} {index} is not in its cluster {tasks}")
    workers = sum(len(addresses) for addresses in tasks.values())
    chief = kind == "chief" or ("chief" not in tasks and index == 0)
    return workers, index, chief
