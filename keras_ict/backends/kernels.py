"""Per-backend fast paths of the network layers, each computing what the generic `keras.ops` form computes.

Which form of FIR resampling is fast, torch's channels-last convolution and group-norm kernels called
directly, TensorFlow's fusable bias_add, and the teacher pass under torch.no_grad (timings in
benchmarks/README.md; equality in tests/test_fir.py and tests/test_layer_kernels.py).
"""

import contextlib

import keras


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
