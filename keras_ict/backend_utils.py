"""The only backend-specific code in keras-ict: telling a concrete tensor from a traced one.

Value checks (sigma > 0, labels in range) can only run on concrete values; inside a compiled function
(tf.function, jax.jit, torch.compile) they are skipped and the caller's eager checks have to do.
Also here: replica helpers and distribution scopes, and the speed paths that differ per backend (measured in
benchmarks/README.md): which form of FIR resampling is fast, torch's channels-last convolution and group-norm
kernels called directly, RAdam's multi-tensor update on torch, the teacher pass under torch.no_grad, and
TensorFlow's fusable bias_add.
"""

import contextlib

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


def separable_fir_resampling():
    """Whether the networks' FIR up/down-sampling should run in separable slice-and-add form.

    True on JAX, where XLA (CPU) runs the backward pass of the depthwise convolutions that the FIR
    resampling otherwise uses as slow generic kernels, so the separable form is much faster there. On
    TensorFlow (oneDNN) and torch the depthwise convolution is the faster of the two (TF's strided-slice and
    slice gradients are slow). Timings: `benchmarks/fir_resample.py` and BUILD_NOTES.md ("Speed"). Both forms
    compute the same function (tests/test_fir.py).
    """
    return keras.backend.backend() == "jax"


def torch_channels_last_kernels():
    """Whether convolutions and group norm call torch's kernels directly on channels-last views.

    Keras' torch backend runs an NHWC convolution by copying the input into a contiguous NCHW tensor
    (and the layers' group norm is a chain of reductions and elementwise ops): on the 2-core CPU that made
    the iCT train step of a small NCSN++ about 2x slower than the same network in plain PyTorch. A
    contiguous NHWC tensor permuted to (N, C, H, W) is a `torch.channels_last` tensor, which torch's
    convolution and group-norm kernels take as it is, and whose output permutes back to NHWC without a copy.
    """
    return keras.backend.backend() == "torch"


def torch_conv2d_nhwc(x, kernel, stride=1, padding=0, depthwise=False, bias=None):
    """NHWC cross-correlation with an (kh, kw, in, out) kernel, or (kh, kw, C, 1) with `depthwise`;
    `padding`: zeros added on every side of H and W (an int >= 0); `bias`: (out,) added, or None."""
    import torch

    x, kernel = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(kernel)
    if depthwise:
        weight, groups = kernel.permute(2, 3, 0, 1), kernel.shape[2]
    else:
        weight, groups = kernel.permute(3, 2, 0, 1), 1
    y = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), _torch_cpu_weight(weight), bias, stride=stride,
                                   padding=padding, groups=groups)
    return y.permute(0, 2, 3, 1)


def _torch_cpu_weight(weight):
    """A convolution weight that every torch CPU kernel accepts.

    On CPUs where oneDNN does not take the dtype (bfloat16 without AVX-512 BF16, e.g. AMD EPYC with AVX2 only)
    torch falls back to `slow_conv2d`, whose backward pass requires a contiguous weight; a permuted view with
    one output channel and a channels-last input fails there ("grad_weight must be contiguous"). Weights are
    small next to activations, so the copy costs little; on GPUs the view is used as it is.
    """
    return weight.contiguous() if weight.device.type == "cpu" else weight


def torch_depthwise_conv_transpose2d_nhwc(x, kernel, stride, padding):
    """NHWC depthwise transposed convolution with a (kh, kw, C, 1) kernel (EDM's FIR upsampling op)."""
    import torch

    x, kernel = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(kernel)
    weight = kernel.permute(2, 3, 0, 1)  # (C, 1, kh, kw): (in, out / groups, kh, kw)
    y = torch.nn.functional.conv_transpose2d(
        x.permute(0, 3, 1, 2), _torch_cpu_weight(weight), stride=stride, padding=padding, groups=kernel.shape[2]
    )
    return y.permute(0, 2, 3, 1)


def torch_group_norm_nhwc(x, groups, gamma, beta, eps):
    import torch

    x = keras.ops.convert_to_tensor(x)
    return torch.nn.functional.group_norm(x.permute(0, 3, 1, 2), groups, gamma, beta, eps).permute(0, 2, 3, 1)


def torch_multi_tensor_optimizer():
    """Whether RAdam updates all variables at once with torch's multi-tensor (`_foreach`) kernels.

    Its per-variable `update_step` costs about 25 small ops per variable, several times the multi-tensor form
    (which is what Keras' own torch Adam/AdamW and `torch.optim.RAdam` do); measured in BUILD_NOTES.md ("Speed").
    """
    return keras.backend.backend() == "torch"


def torch_radam_update(grads, variables, momentums, velocities, iterations, learning_rate, beta_1, beta_2, epsilon):
    """`keras_ict.optimizers.RAdam.update_step` for many same-dtype variables at once (see its docstring)."""
    import math

    import torch

    with torch.no_grad():
        params = [v.value for v in variables]
        dtype = params[0].dtype
        grads = [keras.ops.convert_to_tensor(g).to(dtype) for g in grads]
        m = [v.value for v in momentums]
        v = [v.value for v in velocities]
        t = keras.ops.convert_to_tensor(iterations + 1).to(dtype)
        lr = keras.ops.convert_to_tensor(learning_rate).to(dtype)
        one_minus_b1_power = -torch.expm1(t * math.log(beta_1)) if beta_1 > 0 else torch.ones_like(t)
        one_minus_b2_power = -torch.expm1(t * math.log(beta_2))
        torch._foreach_lerp_(m, grads, 1.0 - beta_1)
        torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), 1.0 - beta_2)
        rho_inf = 2.0 / (1.0 - beta_2) - 1.0
        rho_t = rho_inf - 2.0 * t * torch.exp(t * math.log(beta_2)) / one_minus_b2_power
        safe_rho = torch.clamp(rho_t, min=5.0 + 1e-3)
        rect = torch.sqrt((safe_rho - 4.0) * (safe_rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * safe_rho))
        # rho_t is one number per step: the rectified and the plain momentum branches become two scalar
        # coefficients, one of them zero (no host sync, so torch.compile keeps one graph).
        adaptive = rho_t > 5.0
        zero = torch.zeros_like(t)
        c_adaptive = torch.where(adaptive, lr * rect * torch.sqrt(one_minus_b2_power) / one_minus_b1_power, zero)
        c_plain = torch.where(adaptive, zero, lr / one_minus_b1_power)
        denom = torch._foreach_add(torch._foreach_sqrt(v), epsilon)
        step = torch._foreach_div(m, denom)
        torch._foreach_mul_(step, c_adaptive)
        torch._foreach_add_(step, torch._foreach_mul(m, c_plain))
        torch._foreach_sub_(params, step)


def no_grad():
    """Context in which no gradient is recorded: `torch.no_grad()` on torch, nothing elsewhere.

    For the teacher pass, whose output is under stop_gradient anyway: TensorFlow and JAX prune the
    untaken gradient path, but torch's autograd would keep the pass's activations alive for a backward
    pass that never comes (memory, and allocation time).
    """
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def bias_add(x, bias):
    """x + bias over the last axis; `tf.nn.bias_add` on TensorFlow, whose graph optimiser fuses a
    convolution followed by BiasAdd into one oneDNN kernel (a plain add stays a separate pass)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.nn.bias_add(x, bias)
    return x + bias
