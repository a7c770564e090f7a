"""ADM U-Net (EDM's `DhariwalUNet`), channels-last Keras functional model."""

import math

import keras
from keras import ops

from ._base import SeedStream, UNetBase, _as_int_list, edm_module_name_to_layer, embedding_dtype
from .layers import Conv2d, GroupNorm, LabelDropout, Linear, PositionalEmbedding, UNetBlock, make_init
from .song_unet import _check_common

__all__ = ["DhariwalUNet"]


@keras.saving.register_keras_serializable(package="keras_ict")
class DhariwalUNet(UNetBase):
    """EDM's `DhariwalUNet` (the ADM architecture of Dhariwal & Nichol).

    Call: `net([x, noise_labels])`, or `net([x, noise_labels, class_labels])` when
    `label_dim > 0`; `x` is (B, H, W, in_channels), `noise_labels` (B,), `class_labels`
    (B, label_dim) one-hot. Returns (B, H, W, out_channels). `training=True` enables dropout
    and label dropout. Arguments follow EDM; `seed` (initialisation and dropout seeds) is an
    extension.
    """

    def __init__(
        self,
        img_resolution,
        in_channels,
        out_channels,
        label_dim=0,
        model_channels=192,
        channel_mult=(1, 2, 3, 4),
        channel_mult_emb=4,
        num_blocks=3,
        attn_resolutions=(32, 16, 8),
        dropout=0.10,
        label_dropout=0,
        seed=None,
        dtype=None,
        **kwargs,
    ):
        self._check_kwargs(type(self).__name__, kwargs)
        channel_mult = _as_int_list(channel_mult, "channel_mult")
        attn_resolutions = _as_int_list(attn_resolutions, "attn_resolutions")
        _check_common(img_resolution, in_channels, out_channels, label_dim, model_channels,
                      channel_mult, channel_mult_emb, num_blocks, dropout, label_dropout)
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
        init = make_init("kaiming_uniform", weight=math.sqrt(1 / 3), bias=math.sqrt(1 / 3))
        init_zero = make_init("kaiming_uniform", weight=0.0, bias=0.0)
        block_kwargs = dict(emb_channels=emb_channels, channels_per_head=64, dropout=dropout,
                            init=init, init_zero=init_zero, dtype=dtype)

        def block(edm_name, cin, cout, **kw):
            return reg(edm_name, UNetBlock(cin, cout, seed=seeds(), name=lname(edm_name),
                                           **block_kwargs, **kw))

        x_in = keras.Input((img_resolution, img_resolution, in_channels), name="x")
        noise_in = keras.Input((), name="noise_labels")
        inputs = [x_in, noise_in]

        # Mapping.
        edt = embedding_dtype(dtype)
        emb = reg("map_noise", PositionalEmbedding(model_channels, dtype=edt, name="map_noise"))(noise_in)
        map_layer0 = reg("map_layer0", Linear(emb_channels, init=init, seed=seeds(), dtype=dtype,
                                              name="map_layer0"))
        map_layer1 = reg("map_layer1", Linear(emb_channels, init=init, seed=seeds(), dtype=dtype,
                                              name="map_layer1"))
        emb = map_layer1(ops.silu(map_layer0(emb)))
        if label_dim:
            labels_in = keras.Input((label_dim,), name="class_labels")
            inputs.append(labels_in)
            tmp = labels_in
            if label_dropout:
                tmp = LabelDropout(label_dropout, seed=seeds(), dtype=edt, name="label_dropout")(tmp)
            map_label = reg("map_label", Linear(
                emb_channels, use_bias=False,
                init=make_init("kaiming_normal", weight=math.sqrt(label_dim)),
                seed=seeds(), dtype=dtype, name="map_label"))
            emb = ops.add(emb, map_label(tmp))
        emb = ops.silu(emb)

        # Encoder.
        x = x_in
        skips = []
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            tag = f"enc.{res}x{res}"
            if level == 0:
                cout = model_channels * mult
                conv = reg(f"{tag}_conv", Conv2d(cout, 3, init=init, seed=seeds(), dtype=dtype,
                                                 name=lname(f"{tag}_conv")))
                x = conv(x)
            else:
                x = block(f"{tag}_down", cout, cout, down=True)(x, emb)
            skips.append(x)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                x = block(f"{tag}_block{idx}", cin, cout, attention=res in attn_resolutions)(x, emb)
                skips.append(x)

        # Decoder.
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
                blk = block(f"{tag}_block{idx}", cin, cout, attention=res in attn_resolutions)
                if x.shape[-1] != cin:
                    x = ops.concatenate([x, skip], axis=-1)
                x = blk(x, emb)
        out_norm = reg("out_norm", GroupNorm(eps=1e-5, dtype=dtype, name="out_norm"))
        out_conv = reg("out_conv", Conv2d(out_channels, 3, init=init_zero, seed=seeds(),
                                          dtype=dtype, name="out_conv"))
        out = out_conv(ops.silu(out_norm(x)))

        super().__init__(inputs=inputs, outputs=out, **kwargs)
        self._finish_init(config, layout, dtype)
