"""A few-thousand-parameter network with the keras-ict calling convention, for fast trainer tests."""

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="keras_ict_tests")
class TinyNet(keras.Model):
    def __init__(self, img_resolution=8, in_channels=1, label_dim=0, width=8, dropout=0.0, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.img_resolution, self.in_channels, self.label_dim = img_resolution, in_channels, label_dim
        self.width, self.dropout_rate, self.seed = width, dropout, seed
        self.conv0 = layers.Conv2D(width, 3, padding="same")
        self.embed = layers.Dense(width)
        self.label_embed = layers.Dense(width, use_bias=False) if label_dim else None
        self.drop = layers.Dropout(dropout, seed=seed) if dropout else None
        self.conv1 = layers.Conv2D(in_channels, 3, padding="same")

    def call(self, inputs, training=False):
        x, noise = inputs[0], inputs[1]
        emb = self.embed(ops.stack([ops.sin(noise), ops.cos(noise)], axis=-1))
        if self.label_embed is not None:
            emb = emb + self.label_embed(inputs[2])
        h = ops.silu(self.conv0(x) + emb[:, None, None, :])
        if self.drop is not None:
            h = self.drop(h, training=training)
        return self.conv1(h)

    def get_config(self):
        return {
            "img_resolution": self.img_resolution,
            "in_channels": self.in_channels,
            "label_dim": self.label_dim,
            "width": self.width,
            "dropout": self.dropout_rate,
            "seed": self.seed,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="keras_ict_tests")
class ProbeNet(keras.Model):
    """F(x_in, c_noise) = x_in + c_noise (+ label index): exposes exactly what the wrapper feeds the network."""

    def __init__(self, img_resolution=4, in_channels=2, label_dim=0, **kwargs):
        super().__init__(**kwargs)
        self.img_resolution, self.in_channels, self.label_dim = img_resolution, in_channels, label_dim

    def call(self, inputs, training=False):
        out = inputs[0] + ops.reshape(inputs[1], (-1, 1, 1, 1))
        if self.label_dim:
            index = ops.cast(ops.argmax(inputs[2], axis=-1), out.dtype)
            out = out + ops.reshape(index, (-1, 1, 1, 1))
        return out

    def get_config(self):
        return {"img_resolution": self.img_resolution, "in_channels": self.in_channels, "label_dim": self.label_dim}
