"""A plain hand-written PyTorch iCT training loop on our SongUNet (NCSN++): the speed baseline for Keras.

    python benchmarks/torch_baseline.py --network ncsnpp_mnist_small --batch-size 32
    python benchmarks/torch_baseline.py --preset cifar10-small --batch-size 32 --compile
    python benchmarks/torch_baseline.py --network ncsnpp_small --batch-size 32 --threads 2 --channels-last

What it measures is the counterpart of `benchmarks/train_throughput.py` (same data, same timing protocol,
same JSON layout): one iCT train step of the same network, written directly in PyTorch, NCHW, `torch.nn`
only, with no Keras anywhere in the step.

The network is a self-contained PyTorch SongUNet (EDM's DDPM++ / NCSN++ U-Net) whose parameters carry EDM's
own names; `check_edm_parity(npz)` loads one of the reference fixtures of `../shared/parity` into it by name
(strict) and compares its float64 output with EDM's. Its constructor arguments come from our own presets
(`keras_ict.recipes` / `keras_ict.networks.ARCHITECTURES`), so it is the network the Keras trainer trains.

One step (the same as `keras_ict.trainer.ConsistencyTrainer`):
  N = N(k) from the exponential curriculum; i ~ lognormal index distribution over the N - 1 intervals of
  the Karras grid; z ~ N(0, I) shared by both points; teacher = f(x + sigma_i z, sigma_i) with the student's
  own weights under torch.no_grad; student = f(x + sigma_{i+1} z, sigma_{i+1}) with the same dropout mask
  (the global RNG state is saved before the teacher pass and restored before the student pass);
  loss = mean_batch[ pseudo_huber(student, teacher) / (sigma_{i+1} - sigma_i) ], c = 0.00054 sqrt(d);
  EMA of the weights the step starts from (as keras_ict: theta_k is folded in before the update);
  RAdam (torch.optim.RAdam) step.
f is EDM-style: c_skip x + c_out F(c_in x, c_noise), c_noise = scale ln(sigma) / 4 (scale 1 for Fourier
features, 1000 for positional ones), sigma_min 0.002, sigma_data 0.5.

Data is synthetic, as in train_throughput.py: uniform [-1, 1] images (NumPy seed 0) and, for conditional
networks, random integer labels (seed 1), sliced into batches in order.
"""

import argparse
import copy
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # also when loaded by file path (tests)
from _common import maxrss_mib, versions, write_json  # noqa: E402

DEFAULT_SHARED = REPO.parent / "shared"


# ---------------------------------------------------------------------------------------------------------
# Network: EDM's SongUNet, written from its description. Parameter and buffer names are EDM's.


def _init_tensor(shape, mode, fan_in, fan_out, scale):
    if scale == 0:
        return torch.zeros(shape)
    if mode == "xavier_uniform":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return (torch.rand(shape) * 2.0 - 1.0) * bound * scale
    if mode == "kaiming_uniform":
        bound = math.sqrt(3.0 / fan_in)
        return (torch.rand(shape) * 2.0 - 1.0) * bound * scale
    if mode == "xavier_normal":
        return torch.randn(shape) * math.sqrt(2.0 / (fan_in + fan_out)) * scale
    if mode == "kaiming_normal":
        return torch.randn(shape) * math.sqrt(1.0 / fan_in) * scale
    raise ValueError(f"unknown init mode {mode!r}")


class Linear(nn.Module):
    """y = x W^T + b with W of shape (out, in)."""

    def __init__(self, in_features, out_features, bias=True, init_mode="xavier_uniform", init_weight=1.0, init_bias=0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        fans = dict(mode=init_mode, fan_in=in_features, fan_out=out_features)
        self.weight = nn.Parameter(_init_tensor((out_features, in_features), scale=init_weight, **fans))
        self.bias = nn.Parameter(_init_tensor((out_features,), scale=init_bias, **fans)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class Conv2d(nn.Module):
    """Same-padded convolution (kernel may be 0: resampling only) with optional FIR up/down-sampling by 2.

    The resampling filter is the outer product of `resample_filter` with itself, normalised to sum 1
    (times 4 when upsampling). `fused_resample` applies the filter after (down) or before (up) the
    convolution in one padded pass, as EDM's NCSN++ residual encoder path does.
    """

    def __init__(self, in_channels, out_channels, kernel, bias=True, up=False, down=False, resample_filter=(1, 1),
                 fused_resample=False, init_mode="xavier_uniform", init_weight=1.0, init_bias=0.0):
        super().__init__()
        if up and down:
            raise ValueError("a Conv2d resamples up or down, not both")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down, self.fused_resample = up, down, fused_resample
        fans = dict(mode=init_mode, fan_in=in_channels * kernel * kernel, fan_out=out_channels * kernel * kernel)
        self.weight = None
        self.bias = None
        if kernel:
            self.weight = nn.Parameter(_init_tensor((out_channels, in_channels, kernel, kernel), scale=init_weight, **fans))
            if bias:
                self.bias = nn.Parameter(_init_tensor((out_channels,), scale=init_bias, **fans))
        if up or down:
            taps = torch.as_tensor([float(v) for v in resample_filter], dtype=torch.float32)
            self.register_buffer("resample_filter", (torch.outer(taps, taps) / taps.sum() ** 2)[None, None])
        else:
            self.resample_filter = None

    def _filter(self, channels, dtype, gain=1.0):
        f = self.resample_filter.to(dtype)
        return (f * gain).expand(channels, 1, -1, -1)

    def forward(self, x):
        w = self.weight
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (self.resample_filter.shape[-1] - 1) // 2 if self.resample_filter is not None else 0
        if self.fused_resample and w is not None and self.up:
            x = F.conv_transpose2d(x, self._filter(self.in_channels, x.dtype, 4.0), stride=2,
                                   padding=w_pad + f_pad, groups=self.in_channels)
            x = F.conv2d(x, w)
        elif self.fused_resample and w is not None and self.down:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, self._filter(self.out_channels, x.dtype), stride=2, groups=self.out_channels)
        else:
            if self.up:
                x = F.conv_transpose2d(x, self._filter(self.in_channels, x.dtype, 4.0), stride=2, padding=f_pad,
                                       groups=self.in_channels)
            elif self.down:
                x = F.conv2d(x, self._filter(self.in_channels, x.dtype), stride=2, padding=f_pad, groups=self.in_channels)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        if self.bias is not None:
            x = x + self.bias.view(1, -1, 1, 1)
        return x


class GroupNorm(nn.Module):
    """Group normalisation with min(32, C // 4) groups."""

    def __init__(self, num_channels, num_groups=32, min_channels_per_group=4, eps=1e-5):
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class UNetBlock(nn.Module):
    """SongUNet's residual block (adaptive_scale off, resample_proj on), optional single-head attention."""

    def __init__(self, in_channels, out_channels, emb_channels, up=False, down=False, attention=False, num_heads=1,
                 dropout=0.0, skip_scale=math.sqrt(0.5), eps=1e-6, resample_filter=(1, 1), init=None, init_zero=None,
                 init_attn=None, attention_impl="sdpa"):
        super().__init__()
        init = init or {}
        init_zero = init_zero or dict(init_weight=0.0)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_heads = num_heads if attention else 0
        self.dropout, self.skip_scale, self.attention_impl = dropout, skip_scale, attention_impl
        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, up=up, down=down, resample_filter=resample_filter, **init)
        self.affine = Linear(emb_channels, out_channels, **init)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, 3, **init_zero)
        self.skip = None
        if out_channels != in_channels or up or down:
            self.skip = Conv2d(in_channels, out_channels, 1, up=up, down=down, resample_filter=resample_filter, **init)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1, **(init_attn if init_attn is not None else init))
            self.proj = Conv2d(out_channels, out_channels, 1, **init_zero)

    def _attend(self, x):
        b, c, h, w = x.shape
        heads = self.num_heads
        # qkv channel index = (head, channel-in-head, {q, k, v}), EDM's layout.
        qkv = self.qkv(self.norm2(x)).reshape(b * heads, c // heads, 3, h * w)
        q, k, v = qkv.unbind(2)  # (B*heads, ch, HW) each
        if self.attention_impl == "sdpa":
            a = F.scaled_dot_product_attention(q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None],
                                               v.transpose(1, 2)[:, None])[:, 0].transpose(1, 2)
        else:
            logits = torch.einsum("ncq,nck->nqk", q, k) / math.sqrt(k.shape[1])
            a = torch.einsum("nqk,nck->ncq", logits.softmax(dim=2), v)
        return self.proj(a.reshape(b, c, h, w))

    def forward(self, x, emb):
        residual = x
        x = self.conv0(F.silu(self.norm0(x)))
        x = F.silu(self.norm1(x + self.affine(emb)[:, :, None, None]))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (self.skip(residual) if self.skip is not None else residual)) * self.skip_scale
        if self.num_heads:
            x = (self._attend(x) + x) * self.skip_scale
        return x


class PositionalEmbedding(nn.Module):
    """DDPM++ noise embedding, returned sin-first (SongUNet's sin/cos swap is folded in)."""

    def __init__(self, num_channels, max_positions=10000, endpoint=True):
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = num_channels, max_positions, endpoint

    def forward(self, x):
        half = self.num_channels // 2
        exponent = torch.arange(half, dtype=torch.float32, device=x.device) / (half - (1 if self.endpoint else 0))
        freqs = (1.0 / self.max_positions) ** exponent
        angles = torch.outer(x, freqs.to(x.dtype))
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class FourierEmbedding(nn.Module):
    """NCSN++ random Fourier features (buffer `freqs`), returned sin-first (SongUNet's swap folded in)."""

    def __init__(self, num_channels, scale=16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x):
        angles = torch.outer(x, (2.0 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class SongUNet(nn.Module):
    """EDM's SongUNet (DDPM++ / NCSN++); `forward(x, noise_labels, class_labels=None)`, NCHW.

    Arguments are EDM's (augment_dim omitted), plus `fourier_scale` (std of the Fourier frequencies; EDM
    16, iCT's NCSN++ 0.02, as in keras_ict) and `attention_impl` ("sdpa" or "einsum", the same math).
    """

    def __init__(self, img_resolution, in_channels, out_channels, label_dim=0, model_channels=128,
                 channel_mult=(1, 2, 2, 2), channel_mult_emb=4, num_blocks=4, attn_resolutions=(16,), dropout=0.10,
                 label_dropout=0.0, embedding_type="positional", channel_mult_noise=1, encoder_type="standard",
                 decoder_type="standard", resample_filter=(1, 1), fourier_scale=16.0, attention_impl="sdpa"):
        super().__init__()
        if embedding_type not in ("fourier", "positional"):
            raise ValueError(f"embedding_type must be 'fourier' or 'positional', got {embedding_type!r}")
        if encoder_type not in ("standard", "skip", "residual"):
            raise ValueError(f"encoder_type must be 'standard', 'skip' or 'residual', got {encoder_type!r}")
        if decoder_type not in ("standard", "skip"):
            raise ValueError(f"decoder_type must be 'standard' or 'skip', got {decoder_type!r}")
        self.img_resolution, self.in_channels, self.out_channels = img_resolution, in_channels, out_channels
        self.label_dim, self.label_dropout = label_dim, label_dropout
        self.embedding_type = embedding_type
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        init = dict(init_mode="xavier_uniform")
        init_zero = dict(init_mode="xavier_uniform", init_weight=1e-5)
        init_attn = dict(init_mode="xavier_uniform", init_weight=math.sqrt(0.2))
        blk = dict(emb_channels=emb_channels, num_heads=1, dropout=dropout, skip_scale=math.sqrt(0.5), eps=1e-6,
                   resample_filter=resample_filter, init=init, init_zero=init_zero, init_attn=init_attn,
                   attention_impl=attention_impl)

        if embedding_type == "fourier":
            self.map_noise = FourierEmbedding(noise_channels, scale=fourier_scale)
        else:
            self.map_noise = PositionalEmbedding(noise_channels, endpoint=True)
        self.map_label = Linear(label_dim, noise_channels, **init) if label_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)

        # Encoder: `self._enc_plan` lists (role, name) in execution order.
        self.enc = nn.ModuleDict()
        self._enc_plan = []
        skip_channels = []
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = Conv2d(cout, model_channels, 3, **init)
                cout = model_channels
                self._enc_plan.append(("conv", f"{res}x{res}_conv"))
                skip_channels.append(cout)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **blk)
                self._enc_plan.append(("block", f"{res}x{res}_down"))
                skip_channels.append(cout)
                if encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(caux, caux, 0, down=True, resample_filter=resample_filter)
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, 1, **init)
                    self._enc_plan += [("aux_down", f"{res}x{res}_aux_down"), ("aux_skip", f"{res}x{res}_aux_skip")]
                if encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(caux, cout, 3, down=True, resample_filter=resample_filter,
                                                                   fused_resample=True, **init)
                    self._enc_plan.append(("aux_residual", f"{res}x{res}_aux_residual"))
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **blk)
                self._enc_plan.append(("block", f"{res}x{res}_block{idx}"))
                skip_channels.append(cout)

        # Decoder.
        self.dec = nn.ModuleDict()
        self._dec_plan = []
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **blk)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **blk)
                self._dec_plan += [("block", f"{res}x{res}_in0"), ("block", f"{res}x{res}_in1")]
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **blk)
                self._dec_plan.append(("block", f"{res}x{res}_up"))
            for idx in range(num_blocks + 1):
                cin, cout = cout + skip_channels.pop(), model_channels * mult
                attn = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, **blk)
                self._dec_plan.append(("block", f"{res}x{res}_block{idx}"))
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self.dec[f"{res}x{res}_aux_up"] = Conv2d(out_channels, out_channels, 0, up=True,
                                                             resample_filter=resample_filter)
                    self._dec_plan.append(("aux_up", f"{res}x{res}_aux_up"))
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, 3, **init_zero)
                self._dec_plan.append(("aux_out", f"{res}x{res}"))

    def forward(self, x, noise_labels, class_labels=None):
        emb = self.map_noise(noise_labels)
        if self.map_label is not None:
            labels = class_labels
            if self.training and self.label_dropout:
                keep = (torch.rand((x.shape[0], 1), device=x.device) >= self.label_dropout).to(labels.dtype)
                labels = labels * keep
            emb = emb + self.map_label(labels * math.sqrt(self.label_dim))
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))

        skips = []
        aux = x
        for role, name in self._enc_plan:
            module = self.enc[name]
            if role == "conv":
                x = module(x)
                skips.append(x)
            elif role == "block":
                x = module(x, emb)
                skips.append(x)
            elif role == "aux_down":
                aux = module(aux)
            elif role == "aux_skip":
                x = skips[-1] = x + module(aux)
            else:  # aux_residual
                x = skips[-1] = aux = (x + module(aux)) * (1.0 / math.sqrt(2.0))

        out = None
        for role, name in self._dec_plan:
            if role == "block":
                module = self.dec[name]
                if x.shape[1] != module.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = module(x, emb)
            elif role == "aux_up":
                out = self.dec[name](out)
            else:
                tmp = self.dec[f"{name}_aux_conv"](F.silu(self.dec[f"{name}_aux_norm"](x)))
                out = tmp if out is None else tmp + out
        return out


def check_edm_parity(npz_path, attention_impl="sdpa"):
    """Load an EDM parity fixture into our SongUNet by name (strict) and return the float64 max abs error.

    The fixture (`../shared/parity/songunet_*.npz`) holds EDM's kwargs (`meta`), inputs, EDM's output and
    EDM's full state dict under its own names; every name must match a parameter or buffer here.
    """
    data = np.load(npz_path)
    meta = json.loads(str(data["meta"]))
    if meta["edm_class"] != "SongUNet":
        raise ValueError(f"{npz_path} holds a {meta['edm_class']}, not a SongUNet")
    kwargs = dict(meta["kwargs"])
    if kwargs.pop("augment_dim", 0):
        raise ValueError("augment_dim is not supported")
    net = SongUNet(**kwargs, attention_impl=attention_impl).double().eval()
    prefix = "state_dict/"
    state = {k[len(prefix):]: torch.from_numpy(np.array(data[k])) for k in data.files if k.startswith(prefix)}
    net.load_state_dict(state, strict=True)
    x = torch.from_numpy(data["input/x_nchw"])
    noise = torch.from_numpy(data["input/noise_labels"])
    labels = torch.from_numpy(data["input/class_labels_onehot"]) if "input/class_labels_onehot" in data.files else None
    with torch.no_grad():
        y = net(x, noise, labels)
    expected = data["output/y_nchw"]
    if tuple(y.shape) != expected.shape:
        raise AssertionError(f"output shape {tuple(y.shape)} != EDM's {expected.shape}")
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    if trainable != meta["trainable_params"]:
        raise AssertionError(f"{trainable} trainable parameters, EDM has {meta['trainable_params']}")
    return float(np.max(np.abs(y.numpy() - expected)))


# ---------------------------------------------------------------------------------------------------------
# Configuration from our presets.

# Fields of a training recipe (keras_ict.recipes) the loop uses; with --network, those train_throughput.py
# uses: ConsistencyTrainer's defaults (EMA 0.99993), RAdam 1e-4, total_steps 10_000, the paper's schedule.
_THROUGHPUT_DEFAULTS = dict(learning_rate=1e-4, total_steps=10_000, ema_decay=0.99993, huber_c=None, s0=10, s1=1280,
                            p_mean=-1.1, p_std=2.0, rho=7.0, sigma_min=0.002, sigma_max=80.0, sigma_data=0.5,
                            optimizer="radam", seed=0)


def resolve(network=None, preset=None, overrides=None):
    """(training settings, SongUNet kwargs) from a network preset name or a training recipe name.

    A recipe (`keras_ict.recipes.resolve_config(preset, overrides)`) gives the network with its dropout /
    label_dim and the recipe's lr, EMA, steps...; a network name (as train_throughput.py's --preset) gives the
    network preset's config unchanged and train_throughput.py's trainer settings.
    """
    os.environ.setdefault("KERAS_BACKEND", "torch")  # keras_ict.networks imports Keras; keep it light
    from keras_ict import recipes
    from keras_ict.networks import ARCHITECTURES

    if preset is not None and network is not None:
        raise ValueError("give --network or --preset, not both")
    if preset is not None and preset not in recipes.RECIPES and preset in ARCHITECTURES:
        network, preset = preset, None  # train_throughput.py's --preset is a network preset name
    if preset is not None:
        config = recipes.resolve_config(preset, overrides)
        model_cfg = recipes.model_config(config)
        cls, kwargs = model_cfg["network"]["class"], dict(model_cfg["network"]["config"])
        training = {k: config[k] for k in _THROUGHPUT_DEFAULTS}
        training.update(preset=preset, network=config["network"])
    else:
        if overrides:
            raise ValueError("overrides apply to a training recipe (--preset), not to a network preset")
        network = network or "ncsnpp_mnist_small"
        if network not in ARCHITECTURES:
            raise ValueError(f"unknown network preset {network!r}; available: {sorted(ARCHITECTURES)}")
        cls, kwargs = ARCHITECTURES[network]["class"], copy.deepcopy(ARCHITECTURES[network]["config"])
        training = dict(_THROUGHPUT_DEFAULTS, preset=None, network=network)
    if cls != "SongUNet":
        raise ValueError(f"{training['network']} is a {cls}; this baseline implements SongUNet only")
    kwargs.pop("seed", None)
    if training["optimizer"] != "radam":
        raise ValueError("the baseline trains with RAdam, as the iCT recipes do")
    return training, kwargs


def resolve_without_keras(network=None, preset=None):
    """`resolve` in a child process, so the measuring process never imports Keras (peak RSS, threads and
    torch settings are then those of the plain PyTorch loop alone)."""
    cmd = [sys.executable, __file__, "--resolve-only"]
    cmd += ["--network", network] if network else []
    cmd += ["--preset", preset] if preset else []
    env = dict(os.environ, KERAS_BACKEND="torch")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "config resolution failed")
    training, kwargs = json.loads(proc.stdout.strip().splitlines()[-1])
    return training, kwargs


# ---------------------------------------------------------------------------------------------------------
# iCT pieces, written out in PyTorch / NumPy (keras_ict.schedules, losses, parameterization, trainer).


def curriculum_rows(s0, s1):
    """N for every stage of N(k) = min(s0 2^floor(k/K'), s1) + 1."""
    rows, stage = [], 0
    while True:
        rows.append(min(s0 * 2**stage, s1) + 1)
        if s0 * 2**stage >= s1:
            return rows
        stage += 1


def noise_tables(s0, s1, sigma_min, sigma_max, rho, p_mean, p_std):
    """Per-stage Karras sigmas (padded with sigma_max to s1 + 1) and lognormal interval probabilities
    (padded with 0 to s1), float64; the float32 step only indexes into them, as keras_ict does."""
    rows = curriculum_rows(s0, s1)
    sigmas = np.full((len(rows), s1 + 1), sigma_max, np.float64)
    probs = np.zeros((len(rows), s1), np.float64)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    erf = np.vectorize(math.erf, otypes=[np.float64])
    for r, n in enumerate(rows):
        grid = (lo + np.arange(n) / (n - 1.0) * (hi - lo)) ** rho
        grid[-1] = sigma_max
        sigmas[r, :n] = grid
        mass = np.diff(erf((np.log(grid) - p_mean) / (math.sqrt(2.0) * p_std)))
        probs[r, : n - 1] = mass / mass.sum()
    return sigmas, probs


def curriculum_interval(total_steps, s0, s1):
    """K' = max(1, floor(K / (log2 floor(s1/s0) + 1)))."""
    return max(1, int(math.floor(total_steps / (math.log2(math.floor(s1 / s0)) + 1))))


class ConsistencyFunction(nn.Module):
    """f(x, sigma) = c_skip x + c_out F(c_in x, c_noise[, one_hot(labels)]), float32, NCHW."""

    def __init__(self, network, sigma_min=0.002, sigma_data=0.5):
        super().__init__()
        self.network = network
        self.sigma_min, self.sigma_data = float(sigma_min), float(sigma_data)
        self.noise_label_scale = 1.0 if network.embedding_type == "fourier" else 1000.0
        self.label_dim = network.label_dim

    def forward(self, x, sigma, labels=None, net=None):
        net = self.network if net is None else net  # `net`: e.g. the torch.compile'd network
        sd, sm = self.sigma_data, self.sigma_min
        s = sigma.view(-1, 1, 1, 1)
        c_skip = sd**2 / ((s - sm) ** 2 + sd**2)
        c_out = sd * (s - sm) / torch.sqrt(s**2 + sd**2)
        c_in = 1.0 / torch.sqrt(s**2 + sd**2)
        c_noise = self.noise_label_scale * torch.log(sigma) / 4.0
        onehot = F.one_hot(labels, self.label_dim).to(x.dtype) if self.label_dim else None
        return c_skip * x + c_out * net(c_in * x, c_noise, onehot).float()  # float32 also under bf16 autocast


def pseudo_huber(a, b, c):
    """Per-sample sqrt(||a - b||^2 + c^2) - c over all non-batch axes, in the cancellation-free form."""
    sq = (a - b).square().flatten(1).sum(dim=1)
    return sq / (torch.sqrt(sq + c * c) + c)


class ICTTrainer:
    """The training loop's state and step; `step(images, labels)` does one full iCT update."""

    def __init__(self, network, training, device="cpu", compile_network=False, channels_last=False, amp_dtype=None):
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype  # e.g. torch.bfloat16: the network runs under autocast, weights stay float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.f = ConsistencyFunction(network, training["sigma_min"], training["sigma_data"])
        self.f.to(self.device, memory_format=self.memory_format)
        self.ema = copy.deepcopy(self.f).requires_grad_(False)
        self.params = [p for p in self.f.parameters() if p.requires_grad]
        self.ema_params = [p for p in self.ema.parameters()]
        self.ema_decay = float(training["ema_decay"])
        self.optimizer = torch.optim.RAdam(self.params, lr=training["learning_rate"])
        self.s0, self.s1 = int(training["s0"]), int(training["s1"])
        self.interval = curriculum_interval(int(training["total_steps"]), self.s0, self.s1)
        sigmas, probs = noise_tables(self.s0, self.s1, training["sigma_min"], training["sigma_max"], training["rho"],
                                     training["p_mean"], training["p_std"])
        self.num_scales = curriculum_rows(self.s0, self.s1)
        self.sigma_table = torch.as_tensor(sigmas, dtype=torch.float32, device=self.device)
        self.prob_table = torch.as_tensor(probs, dtype=torch.float32, device=self.device)
        image_dim = network.in_channels * network.img_resolution**2
        self.huber_c = float(0.00054 * math.sqrt(image_dim) if training["huber_c"] is None else training["huber_c"])
        self.noise_gen = torch.Generator(device=self.device).manual_seed(int(training["seed"]))
        self.step_count = 0
        self.net_call = network
        self.compile_error = None
        if compile_network:
            self.net_call = torch.compile(network)
        self.f.train()

    def uncompile(self, error):
        self.compile_error = f"{type(error).__name__}: {error}"[:2000]
        torch._dynamo.reset()
        self.net_call = self.f.network

    def _rng_state(self):
        state = [torch.get_rng_state()]
        if self.device.type == "cuda":
            state.append(torch.cuda.get_rng_state(self.device))
        return state

    def _set_rng_state(self, state):
        torch.set_rng_state(state[0])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state[1], self.device)

    def draw_noise(self, batch, image_shape):
        """(sigma_i, sigma_{i+1}, z) for this step from the trainer's own noise generator."""
        row = min(self.step_count // self.interval, len(self.num_scales) - 1)
        index = torch.multinomial(self.prob_table[row], batch, replacement=True, generator=self.noise_gen)
        sigmas = self.sigma_table[row]
        z = torch.randn((batch,) + tuple(image_shape), generator=self.noise_gen, device=self.device)
        return sigmas[index], sigmas[index + 1], z.contiguous(memory_format=self.memory_format)

    def paired_forward(self, images, z, sigma, sigma_next, labels=None):
        """(student, teacher): teacher without gradients, both with the same dropout masks."""
        state = self._rng_state()
        with torch.no_grad(), self._autocast():
            teacher = self.f(images + sigma.view(-1, 1, 1, 1) * z, sigma, labels, net=self.net_call)
        self._set_rng_state(state)
        with self._autocast():
            student = self.f(images + sigma_next.view(-1, 1, 1, 1) * z, sigma_next, labels, net=self.net_call)
        return student, teacher

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def per_sample_loss(self, images, z, sigma, sigma_next, labels=None):
        student, teacher = self.paired_forward(images, z, sigma, sigma_next, labels)
        return pseudo_huber(student, teacher, self.huber_c) / (sigma_next - sigma)

    def step(self, images, labels=None):
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        if labels is not None:
            labels = labels.to(self.device, non_blocking=True)
        sigma, sigma_next, z = self.draw_noise(images.shape[0], images.shape[1:])
        loss = self.per_sample_loss(images, z, sigma, sigma_next, labels).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # EMA of theta_k, the weights this step started from (as keras_ict)
            torch._foreach_lerp_(self.ema_params, self.params, 1.0 - self.ema_decay)
        self.optimizer.step()
        self.step_count += 1
        return loss.detach()

    def dropout_mask_shared(self, images, labels=None):
        """True when teacher and student passes on the same input draw the same dropout masks (checks the
        RNG save/restore, including under torch.compile). Uses fixed sigmas; changes no state but the RNG."""
        images = images.to(self.device).contiguous(memory_format=self.memory_format)
        if labels is not None:
            labels = labels.to(self.device)
        sigma = torch.full((images.shape[0],), 1.0, device=self.device)
        with torch.no_grad():
            a, b = self.paired_forward(images, torch.zeros_like(images), sigma, sigma, labels)
            c = self.f(images, sigma, labels, net=self.net_call)  # a third pass: a fresh mask
        same = bool(torch.equal(a, b))
        has_dropout = any(m.dropout > 0 for m in self.f.network.modules() if isinstance(m, UNetBlock))
        return same and (not has_dropout or not torch.equal(a, c))


# ---------------------------------------------------------------------------------------------------------
# Benchmark: the timing protocol of train_throughput.py.




def variant_label(compile_status, channels_last):
    label = {"off": "torch-plain (eager)", "ok": "torch-plain + torch.compile",
             "failed": "torch-plain (compile failed: eager)"}[compile_status]
    return label + (" NHWC" if channels_last else "")


def measure(args):
    """One continuous run of (warmup + repeats) x steps_per_repeat steps, each step timed to its end
    (float(loss) is a host sync); warm-up steps dropped, each repeat's step time = mean over its steps."""
    rss_start = maxrss_mib()
    torch.set_num_threads(args.threads or os.cpu_count())
    training, kwargs = resolve_without_keras(args.network, args.preset)
    torch.manual_seed(0)
    network = SongUNet(**kwargs, attention_impl=args.attention)
    params = sum(p.numel() for p in network.parameters() if p.requires_grad)
    amp_dtype = {"float32": None, "bfloat16": torch.bfloat16}[args.amp]
    trainer = ICTTrainer(network, training, device=args.device, compile_network=args.compile,
                         channels_last=args.channels_last, amp_dtype=amp_dtype)
    rss_built = maxrss_mib()

    warmup_steps = args.warmup * args.steps_per_repeat
    total_steps = warmup_steps + args.repeats * args.steps_per_repeat
    shape = (network.img_resolution, network.img_resolution, network.in_channels)
    # Same synthetic data as train_throughput.py (NHWC there: the same values, transposed to NCHW here).
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch_size * total_steps,) + shape).astype("float32")
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    labels = None
    if network.label_dim:
        labels = np.random.default_rng(1).integers(0, network.label_dim, len(x))

    def batch(i):
        sl = slice(i * args.batch_size, (i + 1) * args.batch_size)
        return torch.from_numpy(x[sl]), None if labels is None else torch.from_numpy(labels[sl])

    def sync():
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)

    compile_status = "pending" if args.compile else "off"
    marks = [time.perf_counter()]
    loss = None
    for i in range(total_steps):
        try:
            loss = trainer.step(*batch(i))
        except Exception as error:  # a failed torch.compile is reported and measured eager, not a crash
            if compile_status != "pending":
                raise
            trainer.uncompile(error)
            compile_status = "failed"
            print(f"torch.compile failed, measuring eager instead: {trainer.compile_error}", file=sys.stderr)
            loss = trainer.step(*batch(i))
        float(loss)  # waits for the step's result
        sync()
        marks.append(time.perf_counter())
        if compile_status == "pending":
            compile_status = "ok"
    steps = np.diff(np.asarray(marks))
    measured = steps[warmup_steps:].reshape(args.repeats, args.steps_per_repeat).mean(axis=1)
    times = sorted(float(t) for t in measured)
    median = float(np.median(times))
    # After timing (it only moves the RNG): teacher and student passes really share their dropout masks.
    mask_ok = trainer.dropout_mask_shared(*batch(0))
    return {
        "backend": "torch-plain",
        "variant": variant_label(compile_status, args.channels_last),
        "dtype_policy": "float32" if amp_dtype is None else "mixed_bfloat16",  # as train_throughput.py's rows
        "compile": compile_status,
        "compile_error": trainer.compile_error,
        "preset": training["network"],  # the network preset, as train_throughput.py's "preset"
        "recipe": training["preset"],
        "params": int(params),
        "batch_size": args.batch_size,
        "step_s_min": times[0],
        "step_s_median": median,
        "img_per_s_median": args.batch_size / median,
        "img_per_s_max": args.batch_size / times[0],
        "repeat_step_s": times,
        "first_step_s": float(steps[0]),
        "peak_rss_mib": maxrss_mib(),  # this process never imports Keras
        "rss_after_import_mib": rss_start,
        "rss_after_build_mib": rss_built,
        "input_data_mib": (x.nbytes + (labels.nbytes if labels is not None else 0)) / 2**20,
        "final_loss": float(loss),
        "dropout_mask_shared": mask_ok,
        "device": str(trainer.device),
        "device_name": torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32 if trainer.device.type == "cuda" else None,
        "peak_device_mib": torch.cuda.max_memory_allocated(trainer.device) / 2**20 if trainer.device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "channels_last": args.channels_last,
        "attention": args.attention,
        "data": "synthetic: uniform [-1, 1] images (numpy seed 0), random labels (seed 1) if conditional",
        "training": training,
        "network_kwargs": kwargs,
        "backend_version": torch.__version__,
    }


def print_table(rows):
    head = (f"{'preset':<20} {'params':>11} {'variant':<30} {'batch':>5} {'thr':>3} {'step s (min)':>12} "
            f"{'step s (med)':>12} {'img/s (med)':>11} {'peak MiB':>9} {'1st step s':>10}")
    print(head)
    for r in rows:
        print(f"{r['preset']:<20} {r['params']:>11,} {r['variant']:<30} {r['batch_size']:>5} {r['threads']:>3} "
              f"{r['step_s_min']:>12.3f} {r['step_s_median']:>12.3f} {r['img_per_s_median']:>11.1f} "
              f"{r['peak_rss_mib']:>9.0f} {r['first_step_s']:>10.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default=None, help="network preset (keras_ict.networks.ARCHITECTURES); "
                        "default ncsnpp_mnist_small")
    parser.add_argument("--preset", default=None, help="training recipe (keras_ict.recipes), or a network preset "
                        "name as in train_throughput.py")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps-per-repeat", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="warm-up repeats (of --steps-per-repeat steps) dropped")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0: all cores (os.cpu_count)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (falls back to eager, "
                        "reported, if compiling fails)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    parser.add_argument("--attention", choices=["sdpa", "einsum"], default="sdpa",
                        help="F.scaled_dot_product_attention or explicit einsum/softmax (same math)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=["float32", "bfloat16"], default="float32",
                        help="bfloat16: forward passes under torch.autocast (weights and optimizer in float32), "
                        "the counterpart of Keras' mixed_bfloat16 policy")
    parser.add_argument("--json", default=None,
                        help="default benchmarks/results/torch_baseline_<network>_b<batch>[_compile].json")
    parser.add_argument("--resolve-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.resolve_only:
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        print(json.dumps(resolve(args.network, args.preset)))
        return
    if args.batch_size < 1 or args.steps_per_repeat < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("need --batch-size >= 1, --steps-per-repeat >= 1, --repeats >= 1, --warmup >= 0")

    row = measure(args)
    print_table([row])
    if not row["dropout_mask_shared"]:
        print("warning: teacher and student did not share dropout masks", file=sys.stderr)
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
                    "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}},
        "python": platform.python_version(),
        "versions": versions(("torch", "numpy", "keras")),
        "config": {k: v for k, v in vars(args).items() if k != "resolve_only"},
        "results": [row],
    }
    path = args.json or (f"benchmarks/results/torch_baseline_{row['preset']}_b{args.batch_size}"
                         f"{'_compile' if args.compile else ''}{'_bf16' if args.amp == 'bfloat16' else ''}"
                         f"{'_' + torch.device(args.device).type if args.device != 'cpu' else ''}.json")
    print(f"wrote {write_json(path if Path(path).is_absolute() else REPO / path, report)}")


if __name__ == "__main__":
    main()
