"""Replicas, processes and multi-device training on each backend's own engine.

TensorFlow: tf.distribute strategies (mirrored, multiworker with TF_CONFIG, tpu). JAX: `keras.distribution`
DataParallel over the global device mesh, several processes joined by `jax.distributed.initialize`. PyTorch:
several processes under `torchrun` (`torch.distributed`, gloo on CPU, nccl on GPU) whose gradients are averaged
by an all-reduce hooked onto every trainable variable. Everything backend-specific about several devices or
processes lives here.
"""

import contextlib
import dataclasses
import os
import socket
import time

import keras
import numpy as np


def _torch_processes():
    """(world size, rank) of an initialized torch.distributed process group of several processes, else None."""
    if keras.backend.backend() != "torch":
        return None
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return dist.get_world_size(), dist.get_rank()


def num_replicas():
    """Replicas whose train steps each see one slice of the global batch: the replicas in sync under the current
    tf.distribute strategy, the processes of a torch `ddp` run, else 1 (a JAX program sees the global batch)."""
    backend = keras.backend.backend()
    if backend == "torch":
        return (_torch_processes() or (1, 0))[0]
    if backend != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_id():
    """Index of the current tf.distribute replica or torch process (0 outside a replica context and on JAX).

    Every replica of a MirroredStrategy, and every process of a torch `ddp` run, runs the same step with the
    same seed-generator state, so the trainer draws noise for all replicas and keeps this replica's slice; JAX
    sees the global batch.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        return (_torch_processes() or (1, 0))[1]
    if backend != "tensorflow":
        return 0
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None:
        return 0
    return context.replica_id_in_sync_group


def draw_for_replicas(draw, local_shape):
    """This replica's slice of `draw(global_shape)`, the global batch being `num_replicas()` local batches.

    Every replica (tf.distribute) or torch `ddp` process runs the step with the same generator states, so a draw
    of the global batch's shape gives all of them the same array and each keeps its own rows: replicas get
    different randomness, and the union of their slices is what one process would draw for the global batch.
    With one replica this is `draw(local_shape)`.
    """
    local_shape = tuple(local_shape)
    replicas = num_replicas()
    if replicas == 1:
        return draw(local_shape)
    return replica_rows(draw((replicas * local_shape[0],) + local_shape[1:]))


def replica_rows(values):
    """The current replica's rows of a global-batch array (the whole array with one replica)."""
    replicas = num_replicas()
    if replicas == 1:
        return values
    return keras.ops.take(keras.ops.reshape(values, (replicas, -1) + tuple(values.shape[1:])), replica_id(), axis=0)


STRATEGIES = {"tensorflow": ("mirrored", "multiworker", "tpu"), "jax": ("data-parallel",), "torch": ("ddp",)}


def distribution_scope(name):
    """A context manager under which a trainer is built (and `fit` then runs) on several devices.

    tensorflow: "mirrored" (all local GPUs/CPUs), "multiworker" (TF_CONFIG), "tpu"; jax: "data-parallel"
    (every device of every process: with several processes call `start_processes` first); torch: "ddp" (the
    processes `start_processes` joined; the scope itself does nothing, `prepare_trainer` hooks the all-reduce).
    None gives a no-op context.
    """
    if name is None:
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    check_strategy(name)
    if backend == "torch":
        return contextlib.nullcontext()
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
    import jax

    # Several processes: each reads its own rows of every global batch (`batch_shard`), the same rows Keras'
    # auto-sharding would cut out of a tf.data pipeline, but for the NumPy pipeline (a PyDataset) too.
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=jax.process_count() == 1)
    )
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
    if backend == "torch":
        return num_replicas()
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


def check_strategy(name):
    """ValueError naming the backend's strategies unless `name` is one of them (None is fine)."""
    backend = keras.backend.backend()
    if name is not None and name not in STRATEGIES[backend]:
        raise ValueError(f"--strategy {name} is not available on the {backend} backend; "
                         f"supported there: {', '.join(STRATEGIES[backend])}")


@dataclasses.dataclass(frozen=True)
class Processes:
    """The processes of one training run: how many, this one's index, and whether it writes the run folder
    (TensorFlow's chief, JAX's process 0, torch's rank 0; the others write nothing there)."""

    count: int = 1
    index: int = 0
    writer: bool = True


ONE_PROCESS = Processes()
JAX_PROCESS_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_CONNECT_TIMEOUT_S = 300.0


def _int_setting(value, what):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer, got {value!r}") from None


def _host_port(address, what):
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def jax_process_settings(coordinator=None, num_processes=None, process_id=None):
    """(coordinator "HOST:PORT", process count, this process's id) of a several-process JAX run, or None for one
    process, from the arguments or else JAX's own variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
    JAX_PROCESS_ID. ValueError, naming the setting, when they are incomplete or inconsistent."""
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = num_processes if num_processes is not None else os.environ.get("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else os.environ.get("JAX_PROCESS_ID")
    if coordinator is None and num_processes is None and process_id is None:
        return None
    missing = [flag for flag, value in (("--coordinator (JAX_COORDINATOR_ADDRESS)", coordinator),
                                        ("--num-processes (JAX_NUM_PROCESSES)", num_processes),
                                        ("--process-id (JAX_PROCESS_ID)", process_id)) if value is None]
    if missing:
        raise ValueError(f"a several-process JAX run needs {', '.join(missing)} as well")
    _host_port(coordinator, "--coordinator (JAX_COORDINATOR_ADDRESS)")
    count = _int_setting(num_processes, "--num-processes (JAX_NUM_PROCESSES)")
    index = _int_setting(process_id, "--process-id (JAX_PROCESS_ID)")
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--process-id {index} is not one of the {count} processes (0 .. {count - 1})")
    return str(coordinator), count, index


def torchrun_settings():
    """(world size, rank, "MASTER_ADDR:MASTER_PORT") from the variables `torchrun` sets for each process; ValueError
    naming what is missing (--strategy ddp is started by torchrun, or by a launcher that sets the same)."""
    missing = [name for name in TORCHRUN_VARIABLES if not os.environ.get(name)]
    if missing:
        raise ValueError(f"--strategy ddp runs under torchrun, which sets {', '.join(TORCHRUN_VARIABLES)} ({', '.join(missing)} "
                         "not set): torchrun --nproc-per-node 2 -m keras_ict train --strategy ddp ...")
    world = _int_setting(os.environ["WORLD_SIZE"], "WORLD_SIZE")
    rank = _int_setting(os.environ["RANK"], "RANK")
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK {rank} is not one of the WORLD_SIZE={world} processes")
    address = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    _host_port(address, "MASTER_ADDR:MASTER_PORT")
    return world, rank, address


def planned_processes(strategy, coordinator=None, num_processes=None, process_id=None):
    """The `Processes` a run with `strategy` will have, read from flags and the environment without starting or
    contacting anything (so that bad settings fail before any work). JAX's cluster auto-detection
    (KERAS_ICT_JAX_DISTRIBUTED=1, for TPU pods and Slurm) is only known once started: the count reads 0 here."""
    check_strategy(strategy)
    if strategy == "multiworker":
        count, index, chief = multiworker_cluster()
        return Processes(count, index, chief)
    if strategy == "data-parallel":
        settings = jax_process_settings(coordinator, num_processes, process_id)
        if settings is not None:
            return Processes(settings[1], settings[2], settings[2] == 0)
        if os.environ.get("KERAS_ICT_JAX_DISTRIBUTED") == "1":
            return Processes(0, 0, True)
    elif strategy == "ddp":
        world, rank, _ = torchrun_settings()
        return Processes(world, rank, rank == 0)
    elif any(value is not None for value in (coordinator, num_processes, process_id)):
        raise ValueError("--coordinator, --num-processes and --process-id are for --strategy data-parallel (jax)")
    return ONE_PROCESS


def wait_for_coordinator(address, timeout_s, what):
    """Returns once a TCP connection to `address` ("HOST:PORT") succeeds; after `timeout_s` seconds raises
    ConnectionError naming `what` (the engines themselves wait longer, or abort the process)."""
    host, port = _host_port(address, what)
    deadline = time.monotonic() + float(timeout_s)
    while True:
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise ConnectionError(f"could not reach the {what} at {address} within {timeout_s:g} s ({error}); "
                                      "is process 0 running and the address right?") from None
            time.sleep(0.25)


def start_processes(strategy, coordinator=None, num_processes=None, process_id=None, connect_timeout_s=None):
    """Joins this process to its run's other processes (a no-op for one process) and returns their `Processes`.

    jax: `jax.distributed.initialize` (before any JAX computation); torch: `torch.distributed.init_process_group`
    from torchrun's variables (gloo, or nccl when CUDA is there, one GPU per local rank). Every process but the
    coordinator first waits up to `connect_timeout_s` for the coordinator's port and then raises ConnectionError.
    """
    planned = planned_processes(strategy, coordinator, num_processes, process_id)
    timeout_s = DEFAULT_CONNECT_TIMEOUT_S if connect_timeout_s is None else float(connect_timeout_s)
    if strategy == "data-parallel" and planned.count != 1:
        import jax

        if jax.distributed.is_initialized():
            return Processes(jax.process_count(), jax.process_index(), jax.process_index() == 0)
        settings = jax_process_settings(coordinator, num_processes, process_id)
        if settings is None:
            jax.distributed.initialize()
        else:
            address, count, index = settings
            if index != 0:
                wait_for_coordinator(address, timeout_s, "JAX coordinator")
            jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=index,
                                       initialization_timeout=max(1, int(timeout_s)))
        return Processes(jax.process_count(), jax.process_index(), jax.process_index() == 0)
    if strategy == "ddp":
        import datetime

        import torch
        import torch.distributed as dist

        if dist.is_initialized():
            return planned
        world, rank, address = torchrun_settings()
        if rank != 0:
            wait_for_coordinator(address, timeout_s, "torch.distributed store (MASTER_ADDR:MASTER_PORT)")
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # The timeout also bounds every collective, and rank 0's FID or sampling callbacks run while the others
        # wait in the next step's all-reduce: keep it long.
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=max(1800.0, timeout_s)))
    return planned


def prepare_trainer(trainer):
    """After a trainer is built or loaded: on a torch `ddp` run, every process starts from rank 0's variables and
    each trainable variable's gradient is averaged over the processes as soon as backward accumulates it (what
    DDP does, without its bucketing); elsewhere nothing."""
    processes = _torch_processes()
    if processes is None or getattr(trainer, "_gradients_averaged", False):
        return
    import torch.distributed as dist

    world = processes[0]
    for variable in trainer.variables:
        if variable.value.is_floating_point():
            dist.broadcast(variable.value.data, src=0)

    def average(parameter):
        dist.all_reduce(parameter.grad)
        parameter.grad.div_(world)

    for variable in trainer.trainable_variables:
        variable.value.register_post_accumulate_grad_hook(average)
    trainer._gradients_averaged = True


def mean_over_processes(value):
    """`value` with the value of its mean over the processes of a torch `ddp` run and the gradient of this
    process's own `value` (the gradient hooks of `prepare_trainer` average those); elsewhere `value` itself.
    For logs that read the same on every process: the loss of the global batch."""
    processes = _torch_processes()
    if processes is None:
        return value
    import torch.distributed as dist

    total = value.detach().clone()
    dist.all_reduce(total)
    return value + (total / processes[0] - value.detach())


def any_process(flag):
    """True when `flag` is true on any process of the run (every process must call this at the same point): for
    stop decisions taken from local clocks, so that all processes stop after the same step."""
    backend = keras.backend.backend()
    if backend == "torch" and _torch_processes() is not None:
        import torch
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)
    if backend == "jax":
        import jax

        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return bool(np.any(multihost_utils.process_allgather(np.array([1 if flag else 0], np.int32))))
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.get_strategy()
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            local = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
            return bool(strategy.reduce(tf.distribute.ReduceOp.MAX, local, axis=None).numpy() > 0)
    return bool(flag)


def batch_shard():
    """(this process's index, process count) when each process must cut its own rows out of every global batch
    (a torch `ddp` run, a JAX run of several processes); None where the engine shards the data itself
    (tf.distribute) or there is one process."""
    processes = _torch_processes()
    if processes is not None:
        return processes[1], processes[0]
    if keras.backend.backend() == "jax":
        import jax

        if jax.process_count() > 1:
            return jax.process_index(), jax.process_count()
    return None
