"""DDPM++ / NCSN++ U-Net (EDM's `SongUNet`), channels-last Keras functional model."""

import math

import keras
from keras import ops

from ._base import SeedStream, UNetBase, _as_int_list, edm_module_name_to_layer, embedding_dtype
from .layers import (
    Conv2d,
    FourierEmbedding,
    GroupNorm,
    LabelDropout,
    Linear,
    PositionalEmbedding,
    ScaledSum,
    UNetBlock,
    make_init,
)

__all__ = ["SongUNet"]


def _check_common(img_resolution, in_channels, out_channels, label_dim, model_channels,
                  channel_mult, channel_mult_emb, num_blocks, dropout, label_dropout):
    for name, value, low in (
        ("img_resolution", img_resolution, 1),
        ("in_channels", in_channels, 1),
        ("out_channels", out_channels, 1),
        ("label_dim", label_dim, 0),
        ("model_channels", model_channels, 1),
        ("channel_mult_emb", channel_mult_emb, 1),
        ("num_blocks", num_blocks, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if not channel_mult:
        raise ValueError("channel_mult must not be empty.")
    if any(m < 1 for m in channel_mult):
        raise ValueError(f"channel_mult entries must be >= 1, got {channel_mult}.")
    factor = 2 ** (len(channel_mult) - 1)
    if img_resolution % factor:
        raise ValueError(
            f"img_resolution {img_resolution} must be divisible by 2^(len(channel_mult)-1) = {factor}."
        )
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    if not 0 <= label_dropout < 1:
        raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}.")


@keras.saving.register_keras_serializable(package="keras_ict")
class SongUNet(UNetBase):
    """EDM's `SongUNet` (DDPM++ with positional embedding, NCSN++ with Fourier embedding).

    Call: `net([x, noise_labels])`, or `net([x, noise_labels, class_labels])` when
    `label_dim > 0`; `x` is (B, H, W, in_channels), `noise_labels` (B,), `class_labels`
    (B, label_dim) one-hot. Returns (B, H, W, out_channels). `training=True` enables dropout
    and label dropout. Arguments follow EDM; `fourier_scale` (std of the random Fourier
    frequencies; EDM: 16, iCT's NCSN++: 0.02) and `seed` (initialisation and dropout seeds)
    are extensions.
    """

    def __init__(
        self,
        img_resolution,
        in_channels,
        out_channels,
        label_dim=0,
        model_channels=128,
        channel_mult=(1, 2, 2, 2),
        channel_mult_emb=4,
        num_blocks=4,
        attn_resolutions=(16,),
        dropout=0.10,
        label_dropout=0,
        embedding_type="positional",
        channel_mult_noise=1,
        encoder_type="standard",
        decoder_type="standard",
        resample_filter=(1, 1),
        fourier_scale=16.0,
        seed=None,
        dtype=None,
        **kwargs,
    ):
        self._check_kwargs(type(self).__name__, kwargs)
        channel_mult = _as_int_list(channel_mult, "channel_mult")
        attn_resolutions = _as_int_list(attn_resolutions, "attn_resolutions")
        resample_filter = [float(v) if not float(v).is_integer() else int(v) for v in resample_filter]
        _check_common(img_resolution, in_channels, out_channels, label_dim, model_channels,
                      channel_mult, channel_mult_emb, num_blocks, dropout, label_dropout)
        if embedding_type not in ("fourier", "positional"):
            raise ValueError(
                f"embedding_type must be 'fourier' or 'positional', got {embedding_type!r}."
            )
        if encoder_type not in ("standard", "skip", "residual"):
            raise ValueError(
                f"encoder_type must be 'standard', 'skip' or 'residual', got {encoder_type!r}."
            )
        if decoder_type not in ("standard", "skip"):
            raise ValueError(f"decoder_type must be 'standard' or 'skip', got {decoder_type!r}.")
        if not isinstance(channel_mult_noise, int) or channel_mult_noise < 1:
            raise ValueError(f"channel_mult_noise must be an integer >= 1, got {channel_mult_noise!r}.")
        if not resample_filter or len(resample_filter) % 2:
            raise ValueError(
                "resample_filter must have an even, non-zero number of taps (e.g. [1, 1] or "
                f"[1, 3, 3, 1]) so that resampling halves/doubles the resolution; got {resample_filter}."
            )

        config = dict(
            img_resolution=img_resolution,
            in_channels=in_channels,
            out_channels=out_channels,
            label_dim=label_dim,
            model_channels=model_channels,
            channel_mult=channel_mult,
            channel_mult_emb=channel_mult_emb,
            num_blocks=num_blocks,
            attn_resolutions=attn_resolutions,
            dropout=float(dropout),
            label_dropout=float(label_dropout),
            embedding_type=embedding_type,
            channel_mult_noise=channel_mult_noise,
            encoder_type=encoder_type,
            decoder_type=decoder_type,
            resample_filter=resample_filter,
            fourier_scale=float(fourier_scale),
            seed=seed,
        )

        seeds = SeedStream(seed)
        layout = []

        def reg(edm_name, layer):
            layout.append((edm_name, layer.name))
            return layer

        def lname(edm_name):
            return edm_module_name_to_layer(edm_name)

        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        init = make_init("xavier_uniform")
        init_zero = make_init("xavier_uniform", weight=1e-5)
        init_attn = make_init("xavier_uniform", weight=math.sqrt(0.2))
        block_kwargs = dict(
            emb_channels=emb_channels, num_heads=1, dropout=dropout, skip_scale=math.sqrt(0.5),
            eps=1e-6, resample_filter=resample_filter, resample_proj=True, adaptive_scale=False,
            init=init, init_zero=init_zero, init_attn=init_attn, dtype=dtype,
        )

        def block(edm_name, cin, cout, **kw):
            return reg(edm_name, UNetBlock(cin, cout, seed=seeds(), name=lname(edm_name),
                                           **block_kwargs, **kw))

        def conv(edm_name, cout, kernel, **kw):
            return reg(edm_name, Conv2d(cout, kernel, seed=seeds(), dtype=dtype,
                                        name=lname(edm_name), **kw))

        # Inputs.
        x_in = keras.Input((img_resolution, img_resolution, in_channels), name="x")
        noise_in = keras.Input((), name="noise_labels")
        inputs = [x_in, noise_in]

        # Mapping (EDM swaps the sin/cos halves of the noise embedding: sin first).
        edt = embedding_dtype(dtype)
        if embedding_type == "positional":
            map_noise = PositionalEmbedding(noise_channels, endpoint=True, sin_first=True,
                                            dtype=edt, name="map_noise")
        else:
            map_noise = FourierEmbedding(noise_channels, scale=fourier_scale, sin_first=True,
                                         seed=seeds(), dtype=edt, name="map_noise")
        emb = reg("map_noise", map_noise)(noise_in)
        if label_dim:
            labels_in = keras.Input((label_dim,), name="class_labels")
            inputs.append(labels_in)
            tmp = labels_in
            if label_dropout:
                tmp = LabelDropout(label_dropout, seed=seeds(), dtype=edt, name="label_dropout")(tmp)
            tmp = ScaledSum(math.sqrt(label_dim), dtype=dtype, name="label_scale")(tmp)
            map_label = reg("map_label", Linear(noise_channels, init=init, seed=seeds(),
                                                dtype=dtype, name="map_label"))
            emb = ops.add(emb, map_label(tmp))
        map_layer0 = reg("map_layer0", Linear(emb_channels, init=init, seed=seeds(), dtype=dtype,
                                              name="map_layer0"))
        map_layer1 = reg("map_layer1", Linear(emb_channels, init=init, seed=seeds(), dtype=dtype,
                                              name="map_layer1"))
        emb = ops.silu(map_layer0(emb))
        emb = ops.silu(map_layer1(emb))

        # Encoder.
        x = x_in
        aux = x_in
        skips = []
        cout = in_channels
        caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            tag = f"enc.{res}x{res}"
            if level == 0:
                cout = model_channels
                x = conv(f"{tag}_conv", cout, 3, init=init)(x)
                skips.append(x)
            else:
                x = block(f"{tag}_down", cout, cout, down=True)(x, emb)
                skips.append(x)
                if encoder_type == "skip":
                    aux = conv(f"{tag}_aux_down", caux, 0, down=True,
                               resample_filter=resample_filter)(aux)
                    x = ops.add(x, conv(f"{tag}_aux_skip", cout, 1, init=init)(aux))
                    skips[-1] = x
                if encoder_type == "residual":
                    r = conv(f"{tag}_aux_residual", cout, 3, down=True,
                             resample_filter=resample_filter, fused_resample=True, init=init)(aux)
                    x = ScaledSum(1.0 / math.sqrt(2.0), dtype=dtype,
                                  name=lname(f"{tag}_aux_residual_sum"))([x, r])
                    skips[-1] = x
                    aux = x
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                x = block(f"{tag}_block{idx}", cin, cout, attention=res in attn_resolutions)(x, emb)
                skips.append(x)

        # Decoder.
        aux = None
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            tag = f"dec.{res}x{res}"
            if level == len(channel_mult) - 1:
                x = block(f"{tag}_in0", cout, cout, attention=True)(x, emb)
                x = block(f"{tag}_in1", cout, cout)(x, emb)
            else:
                x = block(f"{tag}_up", cout, cout, up=True)(x, emb)
            for idx in range(num_blocks + 1):
                skip = skips.pop()
                cin, cout = cout + skip.shape[-1], model_channels * mult
                attn = idx == num_blocks and res in attn_resolutions
                blk = block(f"{tag}_block{idx}", cin, cout, attention=attn)
                if x.shape[-1] != cin:
                    x = ops.concatenate([x, skip], axis=-1)
                x = blk(x, emb)
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    aux = conv(f"{tag}_aux_up", out_channels, 0, up=True,
                               resample_filter=resample_filter)(aux)
                norm = reg(f"{tag}_aux_norm", GroupNorm(eps=1e-6, dtype=dtype,
                                                        name=lname(f"{tag}_aux_norm")))
                tmp = conv(f"{tag}_aux_conv", out_channels, 3, init=init_zero)(ops.silu(norm(x)))
                aux = tmp if aux is None else ops.add(tmp, aux)

        super().__init__(inputs=inputs, outputs=aux, **kwargs)
        self._finish_init(config, layout, dtype)
