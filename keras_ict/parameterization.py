"""The consistency-model parametrisation f(x, sigma) = c_skip x + c_out F(c_in x, c_noise) around any network.

Song & Dhariwal (2024), Sec. 3 / Appendix: sigma_data = 0.5, sigma_min = 0.002,
    c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2)
    c_out  = sigma_data (sigma - sigma_min) / sqrt(sigma^2 + sigma_data^2)
    c_in   = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = ln(sigma) / 4 for Fourier embeddings, 1000 ln(sigma) / 4 for positional ones (ADM).
At sigma = sigma_min, c_skip = 1 and c_out = 0 exactly, so f(x, sigma_min) = x (the boundary condition).
The wrapper runs in float32 whatever the network's dtype policy, like EDM's preconditioning wrappers.
"""

import keras
import numpy as np
from keras import ops

from keras_ict.backends.values import build_inputs, concrete_value
from keras_ict.paper import SIGMA_DATA, SIGMA_MAX, SIGMA_MIN


def scalings(sigma, sigma_min=SIGMA_MIN, sigma_data=SIGMA_DATA):
    """(c_skip, c_out, c_in) for sigma; works on NumPy (float64) and tensors."""
    if ops.is_tensor(sigma):
        sq = ops.sqrt
    else:
        sigma = np.asarray(sigma, dtype=np.float64)
        sq = np.sqrt
    c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
    c_out = sigma_data * (sigma - sigma_min) / sq(sigma**2 + sigma_data**2)
    c_in = 1.0 / sq(sigma**2 + sigma_data**2)
    return c_skip, c_out, c_in


def edm_scalings(sigma, sigma_data=SIGMA_DATA):
    """EDM's denoiser preconditioning (Karras et al. 2022, Table 1): (c_skip, c_out, c_in) with
    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2).
    It has no boundary condition: D(x, sigma) -> x only as sigma -> 0."""
    if ops.is_tensor(sigma):
        sq = ops.sqrt
    else:
        sigma = np.asarray(sigma, dtype=np.float64)
        sq = np.sqrt
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / sq(sigma**2 + sigma_data**2)
    c_in = 1.0 / sq(sigma**2 + sigma_data**2)
    return c_skip, c_out, c_in


def default_noise_label_scale(network):
    """1 for Fourier-embedding networks (NCSN++), 1000 for positional ones (DDPM++, ADM)."""
    config = network.get_config() if hasattr(network, "get_config") else {}
    if type(network).__name__ == "DhariwalUNet":
        return 1000.0
    embedding = config.get("embedding_type")
    if embedding == "fourier":
        return 1.0
    if embedding == "positional":
        return 1000.0
    raise ValueError(
        f"cannot tell the noise embedding of {type(network).__name__}; pass noise_label_scale "
        "(1.0 for Fourier features, 1000.0 for positional embeddings)"
    )


@keras.saving.register_keras_serializable(package="keras_ict")
class ConsistencyModel(keras.Model):
    """f(x, sigma) around a network F called as `F([x, noise_labels])` or `F([x, noise_labels, onehot])`.

    Call as `model([x, sigma])` or, for a class-conditional network, `model([x, sigma, labels])` with
    integer labels of shape (batch,). `x` is NHWC, `sigma` has shape (batch,) (a scalar is broadcast).

    Args:
        network: the Keras network F (e.g. from `keras_ict.networks`). Must expose `img_resolution`,
            `in_channels` and `label_dim` attributes or config entries.
        sigma_min, sigma_max, sigma_data: noise range and data standard deviation.
        noise_label_scale: c_noise = noise_label_scale * ln(sigma) / 4; None picks it from the network's
            embedding (1 for Fourier, 1000 for positional).
    """

    def __init__(self, network, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, sigma_data=SIGMA_DATA, noise_label_scale=None,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.network = network
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.sigma_data = float(sigma_data)
        self.noise_label_scale = float(
            default_noise_label_scale(network) if noise_label_scale is None else noise_label_scale
        )
        config = network.get_config()
        self.label_dim = int(getattr(network, "label_dim", config.get("label_dim", 0)) or 0)
        self.img_resolution = int(getattr(network, "img_resolution", config.get("img_resolution")))
        self.img_channels = int(getattr(network, "in_channels", config.get("in_channels")))

    @property
    def image_shape(self):
        return (self.img_resolution, self.img_resolution, self.img_channels)

    @property
    def conditional(self):
        return self.label_dim > 0

    def _split_inputs(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
            raise ValueError(
                "ConsistencyModel is called as model([x, sigma]) or model([x, sigma, labels]); "
                f"got {type(inputs).__name__}"
            )
        x, sigma = inputs[0], inputs[1]
        labels = inputs[2] if len(inputs) == 3 else None
        self.check_inputs(x, sigma, labels)
        return x, sigma, labels

    def check_inputs(self, x, sigma, labels=None):
        """Raise ValueError naming the problem with x, sigma or labels (values checked when concrete)."""
        shape = tuple(x.shape)
        if len(shape) != 4:
            raise ValueError(f"x must be a batch of NHWC images (rank 4), got shape {shape}")
        expected = self.image_shape
        if shape[1:] != expected and None not in shape[1:]:
            raise ValueError(f"x must have image shape {expected} (H, W, C), got {shape[1:]}")
        if labels is not None and not self.conditional:
            raise ValueError("labels were given to an unconditional model (its network has label_dim=0)")
        if labels is None and self.conditional:
            raise ValueError(f"this model is class-conditional (label_dim={self.label_dim}); pass labels")
        sigma_value = concrete_value(sigma)
        if sigma_value is not None and sigma_value.size and not np.all(sigma_value > 0):
            raise ValueError(f"sigma must be positive, got min {np.min(sigma_value)}")
        if labels is not None:
            label_value = concrete_value(labels)
            if label_value is not None and label_value.size:
                if label_value.ndim != 1:
                    raise ValueError(f"labels must be integer class ids of shape (batch,), got {label_value.shape}")
                if not np.all((label_value >= 0) & (label_value < self.label_dim)):
                    raise ValueError(
                        f"labels must be in [0, {self.label_dim}), got range "
                        f"[{np.min(label_value)}, {np.max(label_value)}]"
                    )

    def build(self, input_shape=None):
        if not self.network.built:
            specs = [((1,) + self.image_shape, "float32", 0), ((1,), "float32", 0)]
            if self.conditional:
                specs.append(((1, self.label_dim), "float32", 0))
            self.network(build_inputs(specs))
        self.built = True

    def scalings(self, sigma):
        """(c_skip, c_out, c_in): the consistency boundary condition's, so f(x, sigma_min) = x."""
        return scalings(sigma, self.sigma_min, self.sigma_data)

    def noise_labels(self, sigma):
        return self.noise_label_scale * ops.log(sigma) / 4.0

    def call(self, inputs, training=False):
        x, sigma, labels = self._split_inputs(inputs)
        x = ops.cast(x, "float32")
        sigma = ops.cast(sigma, "float32")
        batch = ops.shape(x)[0]
        sigma = ops.reshape(sigma, (-1,))
        sigma = ops.broadcast_to(sigma, (batch,)) if sigma.shape[0] == 1 else sigma
        c_skip, c_out, c_in = self.scalings(sigma)
        expand = lambda c: ops.reshape(c, (-1, 1, 1, 1))  # noqa: E731
        net_inputs = [expand(c_in) * x, self.noise_labels(sigma)]
        if self.conditional:
            net_inputs.append(ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), self.label_dim))
        f_x = ops.cast(self.network(net_inputs, training=training), "float32")
        return expand(c_skip) * x + expand(c_out) * f_x

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "network": keras.saving.serialize_keras_object(self.network),
                "sigma_min": self.sigma_min,
                "sigma_max": self.sigma_max,
                "sigma_data": self.sigma_data,
                "noise_label_scale": self.noise_label_scale,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)

    def build_for_images(self):
        """Build all weights by one call on a batch of one (cheap; needed before copying weights around)."""
        specs = [((1,) + self.image_shape, "float32", 0), ((1,), "float32", self.sigma_max)]
        if self.conditional:
            specs.append(((1,), "int32", 0))
        self(build_inputs(specs), training=False)
        return self


@keras.saving.register_keras_serializable(package="keras_ict")
class EDMDenoiser(ConsistencyModel):
    """EDM's denoiser D(x, sigma) = c_skip x + c_out F(c_in x, c_noise) with EDM's scalings (`edm_scalings`):
    the diffusion model that `keras_ict.diffusion` pre-trains, on the same networks and calling convention as
    `ConsistencyModel` (c_noise = noise_label_scale ln(sigma) / 4 in both).

    Consistency tuning starts from its network F: `to_consistency_model()` keeps F's weights and switches the
    scalings to the boundary-condition ones, so the result satisfies f(x, sigma_min) = x exactly; the two agree
    to O(sigma_min / sigma_data) away from sigma_min (`c_skip` differs by 2 sigma sigma_min sd^2 / (sigma^2 + sd^2)^2
    to first order).
    """

    def scalings(self, sigma):
        return edm_scalings(sigma, self.sigma_data)

    def to_consistency_model(self):
        """A `ConsistencyModel` with a copy of this network (same weights), sigma range and noise labels."""
        config = self.get_config()
        for key in ("name", "trainable", "dtype"):
            config.pop(key, None)
        model = ConsistencyModel.from_config(config).build_for_images()
        model.network.set_weights(self.build_for_images().network.get_weights())
        return model
