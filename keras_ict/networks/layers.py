"""Building blocks of the EDM-style U-Nets, channels-last, written with `keras.ops` only.

Every layer here computes the same function as the corresponding module of the public
EDM reference networks (NVlabs/edm, `training/networks.py`), but in NHWC layout:

* `Linear`              fully connected layer, kernel `(in, out)`
* `Conv2d`              convolution with optional FIR up/down-sampling (incl. "fused" mode; the
                        resampling itself is in `fir.py`)
* `GroupNorm`           group normalisation with `min(32, C // 4)` groups
* `PositionalEmbedding` / `FourierEmbedding`  noise-level embeddings
* `LabelDropout`        seeded per-example dropout of class-label vectors
* `GlobalBatchDropout`  `keras.layers.Dropout` whose mask is drawn for the global batch and sliced per replica
* `UNetBlock`           residual block with optional resampling and self-attention

Every layer that owns EDM tensors implements `edm_tensors()`, which describes how its Keras
variables and constant buffers correspond to EDM state-dict entries (see `edm_import.py`).

All call-time randomness comes from layers that own a `keras.random.SeedGenerator`
(`keras.layers.Dropout` and `LabelDropout`), so the random state of a network is exactly the
set of its `seed_generator_state` variables. Constant tables (embedding frequencies, FIR
filters) are precomputed in NumPy at construction time.
"""

import math
import random

import keras
import numpy as np
from keras import ops

from ..backends import kernels
from ..backends.distribution import draw_for_replicas, num_replicas
from . import fir as fir_resampling
from . import nhwc

__all__ = [
    "Conv2d",
    "FourierEmbedding",
    "GroupNorm",
    "GlobalBatchDropout",
    "LabelDropout",
    "Linear",
    "PositionalEmbedding",
    "ScaledSum",
    "UNetBlock",
    "make_init",
    "multihead_attention",
]

_PACKAGE = "keras_ict"

_LOW_PRECISION = ("float16", "bfloat16")


# ---------------------------------------------------------------------------------------
# Initialisation specs.
#
# An init spec is a small JSON-able dict `{"mode", "weight", "bias"}` with the same meaning
# as EDM's `init_mode`, `init_weight` and `init_bias`: the weight (and the bias) are drawn
# from the named distribution, parameterised by the fan-in / fan-out of the layer, and then
# multiplied by `weight` (resp. `bias`). It is resolved into Keras initializers when the
# layer is built and the fans are known.


def make_init(mode="kaiming_normal", weight=1.0, bias=0.0):
    """Returns an initialisation spec (see the module docstring of `layers.py`)."""
    if mode not in ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"):
        raise ValueError(f"Invalid init mode {mode!r}")
    return {"mode": mode, "weight": float(weight), "bias": float(bias)}


def _initializer(spec, fan_in, fan_out, which, seed):
    scale = spec["weight"] if which == "weight" else spec["bias"]
    if scale == 0:
        return keras.initializers.Zeros()
    mode = spec["mode"]
    if mode == "xavier_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out)) * scale
    elif mode == "kaiming_uniform":
        limit = math.sqrt(3.0 / fan_in) * scale
    elif mode == "xavier_normal":
        return keras.initializers.RandomNormal(
            stddev=math.sqrt(2.0 / (fan_in + fan_out)) * abs(scale), seed=seed
        )
    else:  # kaiming_normal
        return keras.initializers.RandomNormal(
            stddev=math.sqrt(1.0 / fan_in) * abs(scale), seed=seed
        )
    limit = abs(limit)
    return keras.initializers.RandomUniform(minval=-limit, maxval=limit, seed=seed)


def _sub_seed(seed, offset):
    return None if seed is None else int(seed) + int(offset)


def _dropout_seed(seed, offset):
    # Always an integer: Keras' torch backend ignores an unseeded Dropout's SeedGenerator and draws from
    # torch's global RNG, so replaying the seed state would not replay the mask (the teacher and the
    # student would see different masks). Python's `random` follows keras.utils.set_random_seed.
    return random.randrange(2**31 - 2**16) if seed is None else int(seed) + int(offset)


def _const(array, dtype):
    return ops.convert_to_tensor(np.asarray(array), dtype=dtype)


def _is_low_precision(dtype):
    return keras.backend.standardize_dtype(dtype) in _LOW_PRECISION


# ---------------------------------------------------------------------------------------
# Fully-connected layer.


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Linear(keras.layers.Layer):
    """Dense layer `y = x @ kernel + bias` with EDM-style initialisation.

    EDM name mapping: `weight` (out, in) <-> `kernel` (in, out), `bias` <-> `bias`.
    """

    def __init__(self, units, use_bias=True, init=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.init = dict(init) if init is not None else make_init()
        self.seed = seed
        self.kernel = None
        self.bias = None

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel",
            shape=(fan_in, self.units),
            initializer=_initializer(self.init, fan_in, self.units, "weight", self.seed),
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=_initializer(
                    self.init, fan_in, self.units, "bias", _sub_seed(self.seed, 1)
                ),
            )

    def call(self, x):
        y = ops.matmul(x, ops.cast(self.kernel, x.dtype))
        if self.bias is not None:
            y = y + ops.cast(self.bias, x.dtype)
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def edm_tensors(self):
        out = {"weight": ("linear", self.kernel)}
        if self.bias is not None:
            out["bias"] = ("vector", self.bias)
        return out

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, use_bias=self.use_bias, init=self.init, seed=self.seed)
        return config


# ---------------------------------------------------------------------------------------
# Convolution with optional up/down-sampling.


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Conv2d(keras.layers.Layer):
    """Square convolution (`kernel_size` may be 0: resampling only) with FIR resampling.

    Matches EDM's `Conv2d`: `up` applies a stride-2 transposed FIR filter before the
    convolution, `down` a stride-2 FIR filter before it; with `fused_resample`, upsampling is
    merged into the padding of the convolution and downsampling happens after it.

    EDM name mapping: `weight` (O, I, kh, kw) <-> `kernel` (kh, kw, I, O), `bias` <-> `bias`,
    buffer `resample_filter` (1, 1, K, K) is a constant here (checked on import).
    """

    def __init__(
        self,
        filters,
        kernel_size,
        use_bias=True,
        up=False,
        down=False,
        resample_filter=(1, 1),
        fused_resample=False,
        init=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if up and down:
            raise ValueError("Conv2d: `up` and `down` are mutually exclusive.")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.use_bias = bool(use_bias)
        self.up = bool(up)
        self.down = bool(down)
        self.resample_filter = [float(v) for v in np.asarray(resample_filter).reshape(-1)]
        self.fused_resample = bool(fused_resample)
        self.init = dict(init) if init is not None else make_init()
        self.seed = seed
        self._fir = fir_resampling.fir_filter_2d(self.resample_filter) if (self.up or self.down) else None
        self.kernel = None
        self.bias = None

    def build(self, input_shape):
        cin = int(input_shape[-1])
        self.in_channels = cin
        if self.kernel_size == 0 and cin != self.filters:
            raise ValueError(
                f"Conv2d without kernel keeps the channel count, got in={cin}, out={self.filters}."
            )
        if self.kernel_size:
            k = self.kernel_size
            fan_in, fan_out = cin * k * k, self.filters * k * k
            self.kernel = self.add_weight(
                name="kernel",
                shape=(k, k, cin, self.filters),
                initializer=_initializer(self.init, fan_in, fan_out, "weight", self.seed),
            )
            if self.use_bias:
                self.bias = self.add_weight(
                    name="bias",
                    shape=(self.filters,),
                    initializer=_initializer(
                        self.init, fan_in, fan_out, "bias", _sub_seed(self.seed, 1)
                    ),
                )

    def _conv(self, x, pad, bias=None):
        """Convolution after padding by `pad`, then `+ bias` (fused into the kernel on torch)."""
        w = ops.cast(self.kernel, x.dtype)
        b = None if bias is None else ops.cast(bias, x.dtype)
        if kernels.torch_channels_last_kernels() and pad >= 0:
            return kernels.torch_conv2d_nhwc(x, w, padding=pad, bias=b)
        if pad == self.kernel_size // 2 and self.kernel_size % 2 == 1:
            y = ops.conv(x, w, strides=1, padding="same")
        else:
            y = ops.conv(nhwc.pad_or_crop_hw(x, pad, pad), w, strides=1, padding="valid")
        return y if b is None else kernels.bias_add(y, b)

    def call(self, x):
        has_w = self.kernel is not None
        w_pad = self.kernel_size // 2 if has_w else 0
        f_pad = (self._fir.shape[0] - 1) // 2 if self._fir is not None else 0
        fir = self._fir
        if self.fused_resample and self.up and has_w:
            # EDM's split of the padding between the two ops (which pads less when w_pad > f_pad).
            x = fir_resampling.fir_up(x, fir, max(f_pad - w_pad, 0))
            return self._conv(x, max(w_pad - f_pad, 0), self.bias)
        if self.fused_resample and self.down and has_w:
            x = self._conv(x, w_pad + f_pad)
            x = fir_resampling.fir_down(x, fir, 0)
        else:
            if self.up:
                x = fir_resampling.fir_up(x, fir, f_pad)
            if self.down:
                x = fir_resampling.fir_down(x, fir, f_pad)
            if has_w:
                return self._conv(x, w_pad, self.bias)
        if self.bias is not None:
            x = x + ops.cast(self.bias, x.dtype)
        return x

    def edm_buffer(self):
        """EDM's `resample_filter` buffer, shape (1, 1, K, K), or None."""
        if self._fir is None:
            return None
        return self._fir.astype(np.float32)[None, None]

    def edm_tensors(self):
        out = {}
        if self.kernel is not None:
            out["weight"] = ("conv", self.kernel)
        if self.bias is not None:
            out["bias"] = ("vector", self.bias)
        if self._fir is not None:
            out["resample_filter"] = ("buffer", self.edm_buffer())
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            use_bias=self.use_bias,
            up=self.up,
            down=self.down,
            resample_filter=self.resample_filter,
            fused_resample=self.fused_resample,
            init=self.init,
            seed=self.seed,
        )
        return config


# ---------------------------------------------------------------------------------------
# Group normalisation.


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupNorm(keras.layers.Layer):
    """Group normalisation over NHWC inputs with `min(num_groups, C // min_channels_per_group)`
    groups, statistics computed in float32.

    EDM name mapping: `weight` <-> `gamma`, `bias` <-> `beta`.
    """

    def __init__(self, num_groups=32, min_channels_per_group=4, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.num_groups = int(num_groups)
        self.min_channels_per_group = int(min_channels_per_group)
        self.eps = float(eps)
        self.gamma = None
        self.beta = None

    def build(self, input_shape):
        c = int(input_shape[-1])
        groups = min(self.num_groups, c // self.min_channels_per_group)
        if groups < 1 or c % groups:
            raise ValueError(f"GroupNorm: cannot split {c} channels into {groups} groups.")
        self.groups = groups
        self.gamma = self.add_weight(name="gamma", shape=(c,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(c,), initializer="zeros")

    def call(self, x):
        dtype = x.dtype
        xf = ops.cast(x, "float32") if _is_low_precision(dtype) else x
        gamma, beta = ops.cast(self.gamma, xf.dtype), ops.cast(self.beta, xf.dtype)
        if kernels.torch_channels_last_kernels():
            return ops.cast(kernels.torch_group_norm_nhwc(xf, self.groups, gamma, beta, self.eps), dtype)
        # Statistics as per-channel means over H and W, then averaged over each group's channels (every
        # channel has H * W values, so this is the group mean): reductions that keep the channel axis
        # innermost, which TensorFlow runs faster (forward + backward) than one reduction over (H, W, C / G)
        # (measured in BUILD_NOTES.md, "Speed"). gamma is folded into the scale: one pass fewer over the activations.
        mean = self._group_mean(ops.mean(xf, axis=(1, 2), keepdims=True))
        centred = xf - mean
        var = self._group_mean(ops.mean(ops.square(centred), axis=(1, 2), keepdims=True))
        y = centred * (ops.rsqrt(var + self.eps) * gamma) + beta
        return ops.cast(y, dtype)

    def _group_mean(self, per_channel):
        """(B, 1, 1, C) -> (B, 1, 1, C): each channel's value replaced by the mean over its group."""
        c, g = per_channel.shape[-1], self.groups
        grouped = ops.mean(ops.reshape(per_channel, (-1, g, c // g)), axis=2, keepdims=True)
        return ops.reshape(ops.repeat(grouped, c // g, axis=2), (-1, 1, 1, c))

    def edm_tensors(self):
        return {"weight": ("vector", self.gamma), "bias": ("vector", self.beta)}

    def get_config(self):
        config = super().get_config()
        config.update(
            num_groups=self.num_groups,
            min_channels_per_group=self.min_channels_per_group,
            eps=self.eps,
        )
        return config


# ---------------------------------------------------------------------------------------
# Noise-level embeddings: (B,) -> (B, num_channels).


def _embedding_output(angles, sin_first):
    c, s = ops.cos(angles), ops.sin(angles)
    return ops.concatenate([s, c] if sin_first else [c, s], axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PositionalEmbedding(keras.layers.Layer):
    """Sinusoidal embedding `[cos(x f), sin(x f)]`, `f_i = max_positions^(-i / (n/2 - endpoint))`.

    `sin_first=True` returns `[sin, cos]` (SongUNet swaps the two halves). No weights.
    """

    def __init__(self, num_channels, max_positions=10000, endpoint=False, sin_first=False, **kwargs):
        super().__init__(**kwargs)
        if num_channels % 2 or num_channels < 2:
            raise ValueError(f"num_channels must be even and positive, got {num_channels}.")
        self.num_channels = int(num_channels)
        self.max_positions = max_positions
        self.endpoint = bool(endpoint)
        self.sin_first = bool(sin_first)
        half = self.num_channels // 2
        denom = half - (1 if self.endpoint else 0)
        exponents = np.arange(half, dtype=np.float64) / max(denom, 1)
        self._freqs = np.power(1.0 / max_positions, exponents).astype(np.float32)

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        angles = ops.expand_dims(x, -1) * _const(self._freqs, x.dtype)
        return _embedding_output(angles, self.sin_first)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.num_channels,)

    def edm_tensors(self):
        return {}

    def get_config(self):
        config = super().get_config()
        config.update(
            num_channels=self.num_channels,
            max_positions=self.max_positions,
            endpoint=self.endpoint,
            sin_first=self.sin_first,
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FourierEmbedding(keras.layers.Layer):
    """Random Fourier features `[cos(2 pi x f), sin(2 pi x f)]`, `f ~ N(0, scale^2)`.

    `freqs` is a non-trainable weight (saved with the model; EDM buffer `freqs`).
    `sin_first=True` returns `[sin, cos]`.
    """

    def __init__(self, num_channels, scale=16.0, sin_first=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        if num_channels % 2 or num_channels < 2:
            raise ValueError(f"num_channels must be even and positive, got {num_channels}.")
        self.num_channels = int(num_channels)
        self.scale = float(scale)
        self.sin_first = bool(sin_first)
        self.seed = seed
        self.freqs = self.add_weight(
            name="freqs",
            shape=(self.num_channels // 2,),
            initializer=keras.initializers.RandomNormal(stddev=self.scale, seed=seed),
            trainable=False,
        )

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        freqs = ops.cast(self.freqs, x.dtype) * (2.0 * np.pi)
        angles = ops.expand_dims(x, -1) * freqs
        return _embedding_output(angles, self.sin_first)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.num_channels,)

    def edm_tensors(self):
        return {"freqs": ("vector", self.freqs)}

    def get_config(self):
        config = super().get_config()
        config.update(
            num_channels=self.num_channels,
            scale=self.scale,
            sin_first=self.sin_first,
            seed=self.seed,
        )
        return config


# ---------------------------------------------------------------------------------------
# Elementwise helper.


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ScaledSum(keras.layers.Layer):
    """`scale * sum(inputs)` for one tensor or a list of same-shaped tensors. No weights."""

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            total = inputs[0]
            for t in inputs[1:]:
                total = total + ops.cast(t, total.dtype)
        else:
            total = inputs
        return total * ops.cast(self.scale, total.dtype)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, list) and input_shape and isinstance(input_shape[0], (list, tuple)):
            return tuple(input_shape[0])
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale)
        return config


# ---------------------------------------------------------------------------------------
# Dropout that is the same function of the global batch on one process or several replicas.


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GlobalBatchDropout(keras.layers.Dropout):
    """`keras.layers.Dropout` whose mask under several replicas is this replica's rows of the global batch's mask.

    Replicas (tf.distribute) and torch `ddp` processes hold the same seed-generator state; a plain Dropout would
    give every replica the same mask at the same row, so a run on R replicas would not be the one-process run
    of the global batch. With one replica this is `keras.layers.Dropout` unchanged (same masks, same variables).
    """

    def call(self, inputs, training=False):
        if not training or self.rate == 0 or self.noise_shape is not None or num_replicas() == 1:
            return super().call(inputs, training=training)
        # Masks depend on the shape and the seed only, so a draw over ones is the global batch's mask.
        scaled_mask = draw_for_replicas(
            lambda shape: keras.random.dropout(ops.ones(shape, dtype=inputs.dtype), self.rate, seed=self.seed_generator),
            ops.shape(inputs),
        )
        return ops.where(ops.greater(scaled_mask, 0), inputs / (1.0 - self.rate), ops.zeros_like(inputs))


# ---------------------------------------------------------------------------------------
# Class-label dropout (classifier-free guidance).


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LabelDropout(keras.layers.Layer):
    """In training, zeroes each example's label vector with probability `rate` (no rescaling).

    Randomness comes from the layer's own `SeedGenerator` (variable `seed_generator_state`).
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"label dropout rate must be in [0, 1), got {rate}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, labels, training=None):
        if training and self.rate > 0:
            u = draw_for_replicas(
                lambda shape: keras.random.uniform(shape, seed=self.seed_generator, dtype="float32"),
                (ops.shape(labels)[0], 1),
            )
            keep = ops.cast(ops.greater_equal(u, self.rate), labels.dtype)
            return labels * keep
        return labels

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config


# ---------------------------------------------------------------------------------------
# Self-attention.


def multihead_attention(qkv, num_heads):
    """Spatial self-attention on a fused `qkv` tensor (B, H, W, 3C) -> (B, H, W, C).

    The channel layout of `qkv` is EDM's: channel index = (head, channel-in-head, {q,k,v}),
    i.e. `reshape(num_heads, C // num_heads, 3)`. The attention weights
    `softmax(q . k / sqrt(C // num_heads))` are computed in float32 and cast back to the
    dtype of `v`; the output channel index is (head, channel-in-head).
    """
    h, w = nhwc.spatial_dims(qkv)
    c = qkv.shape[-1] // 3
    ch = c // num_heads
    qkv = ops.reshape(qkv, (-1, h * w, num_heads, ch, 3))
    q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]  # (B, HW, heads, ch)
    q32 = ops.cast(q, "float32")
    k32 = ops.cast(k, "float32") * (1.0 / math.sqrt(ch))
    logits = ops.einsum("bqhc,bkhc->bhqk", q32, k32)
    weights = ops.cast(ops.softmax(logits, axis=-1), v.dtype)
    a = ops.einsum("bhqk,bkhc->bqhc", weights, v)
    return ops.reshape(a, (-1, h, w, c))


# ---------------------------------------------------------------------------------------
# U-Net block.


@keras.saving.register_keras_serializable(package=_PACKAGE)
class UNetBlock(keras.layers.Layer):
    """Residual block with optional up/down-sampling and multi-head self-attention.

    Call: `block(x, emb, training=None)` with x (B, H, W, in_channels), emb (B, emb_channels).
    Sub-layers carry EDM's sub-module names: norm0, conv0, affine, norm1, conv1, skip, norm2,
    qkv, proj. Dropout before `conv1` is a `keras.layers.Dropout` (own SeedGenerator).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        emb_channels,
        up=False,
        down=False,
        attention=False,
        num_heads=None,
        channels_per_head=64,
        dropout=0.0,
        skip_scale=1.0,
        eps=1e-5,
        resample_filter=(1, 1),
        resample_proj=False,
        adaptive_scale=True,
        init=None,
        init_zero=None,
        init_attn=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.emb_channels = int(emb_channels)
        self.up = bool(up)
        self.down = bool(down)
        self.attention = bool(attention)
        self.num_heads_arg = num_heads
        self.channels_per_head = int(channels_per_head)
        self.num_heads = (
            0
            if not attention
            else int(num_heads) if num_heads is not None else self.out_channels // self.channels_per_head
        )
        self.dropout_rate = float(dropout)
        self.skip_scale = float(skip_scale)
        self.eps = float(eps)
        self.resample_filter = [float(v) for v in np.asarray(resample_filter).reshape(-1)]
        self.resample_proj = bool(resample_proj)
        self.adaptive_scale = bool(adaptive_scale)
        self.init = dict(init) if init is not None else make_init()
        self.init_zero = dict(init_zero) if init_zero is not None else make_init(weight=0.0)
        self.init_attn = dict(init_attn) if init_attn is not None else None
        self.seed = seed
        if self.num_heads and self.out_channels % self.num_heads:
            raise ValueError(
                f"UNetBlock: {self.out_channels} channels not divisible by {self.num_heads} heads."
            )

        dt = self.dtype_policy
        cout = self.out_channels
        self.norm0 = GroupNorm(eps=eps, dtype=dt, name="norm0")
        self.conv0 = Conv2d(
            cout, 3, up=up, down=down, resample_filter=self.resample_filter,
            init=self.init, seed=_sub_seed(seed, 0), dtype=dt, name="conv0",
        )
        self.affine = Linear(
            cout * (2 if adaptive_scale else 1), init=self.init, seed=_sub_seed(seed, 2),
            dtype=dt, name="affine",
        )
        self.norm1 = GroupNorm(eps=eps, dtype=dt, name="norm1")
        self.drop = (
            GlobalBatchDropout(self.dropout_rate, seed=_dropout_seed(seed, 4), dtype=dt, name="dropout")
            if self.dropout_rate > 0
            else None
        )
        self.conv1 = Conv2d(
            cout, 3, init=self.init_zero, seed=_sub_seed(seed, 6), dtype=dt, name="conv1"
        )
        self.skip = None
        if cout != self.in_channels or up or down:
            kernel = 1 if resample_proj or cout != self.in_channels else 0
            self.skip = Conv2d(
                cout, kernel, up=up, down=down, resample_filter=self.resample_filter,
                init=self.init, seed=_sub_seed(seed, 8), dtype=dt, name="skip",
            )
        self.norm2 = self.qkv = self.proj = None
        if self.num_heads:
            self.norm2 = GroupNorm(eps=eps, dtype=dt, name="norm2")
            self.qkv = Conv2d(
                cout * 3, 1, init=self.init_attn if self.init_attn is not None else self.init,
                seed=_sub_seed(seed, 10), dtype=dt, name="qkv",
            )
            self.proj = Conv2d(
                cout, 1, init=self.init_zero, seed=_sub_seed(seed, 12), dtype=dt, name="proj"
            )

    def build(self, x_shape, emb_shape):
        if x_shape[-1] is not None and int(x_shape[-1]) != self.in_channels:
            raise ValueError(
                f"UNetBlock {self.name}: expected {self.in_channels} input channels, got {x_shape[-1]}."
            )
        cin, cout = (None, None, None, self.in_channels), (None, None, None, self.out_channels)
        self.norm0.build(cin)
        self.conv0.build(cin)
        self.affine.build((None, int(emb_shape[-1])))
        self.norm1.build(cout)
        self.conv1.build(cout)
        if self.skip is not None:
            self.skip.build(cin)
        if self.num_heads:
            self.norm2.build(cout)
            self.qkv.build(cout)
            self.proj.build(cout)
        self.built = True

    def _attention(self, x):
        a = multihead_attention(self.qkv(self.norm2(x)), self.num_heads)
        return (self.proj(a) + x) * ops.cast(self.skip_scale, x.dtype)

    def call(self, x, emb, training=None):
        orig = x
        x = self.conv0(ops.silu(self.norm0(x)))
        params = self.affine(emb)
        params = ops.cast(params[:, None, None, :], x.dtype)
        if self.adaptive_scale:
            scale, shift = ops.split(params, 2, axis=-1)
            x = ops.silu(shift + self.norm1(x) * (scale + 1.0))
        else:
            x = ops.silu(self.norm1(x + params))
        if self.drop is not None:
            x = self.drop(x, training=training)
        x = self.conv1(x)
        x = x + (self.skip(orig) if self.skip is not None else orig)
        x = x * ops.cast(self.skip_scale, x.dtype)
        if self.num_heads:
            x = self._attention(x)
        return x

    def edm_tensors(self):
        out = {}
        for name in ("norm0", "conv0", "affine", "norm1", "conv1", "skip", "norm2", "qkv", "proj"):
            layer = getattr(self, name)
            if layer is None:
                continue
            for suffix, entry in layer.edm_tensors().items():
                out[f"{name}.{suffix}"] = entry
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            emb_channels=self.emb_channels,
            up=self.up,
            down=self.down,
            attention=self.attention,
            num_heads=self.num_heads_arg,
            channels_per_head=self.channels_per_head,
            dropout=self.dropout_rate,
            skip_scale=self.skip_scale,
            eps=self.eps,
            resample_filter=self.resample_filter,
            resample_proj=self.resample_proj,
            adaptive_scale=self.adaptive_scale,
            init=self.init,
            init_zero=self.init_zero,
            init_attn=self.init_attn,
            seed=self.seed,
        )
        return config
