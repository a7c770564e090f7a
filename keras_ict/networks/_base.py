"""Shared machinery of the U-Net models: input validation, config handling, seeds."""

import keras
import numpy as np

_LOW_PRECISION = ("float16", "bfloat16")


class SeedStream:
    """Hands out per-layer integer seeds derived from one base seed (or None when unseeded)."""

    def __init__(self, seed, stride=16):
        self.seed = None if seed is None else int(seed)
        self.stride = stride
        self.count = 0

    def __call__(self):
        self.count += 1
        if self.seed is None:
            return None
        return (self.seed * 7919 + self.count * self.stride) % (2**31 - 2**16)


def embedding_dtype(dtype):
    """Embeddings (and the label path) run in at least float32, also under mixed precision."""
    policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
    if keras.backend.standardize_dtype(policy.compute_dtype) in _LOW_PRECISION:
        return "float32"
    return policy


def edm_module_name_to_layer(name):
    """Keras layer name for an EDM module name: 'enc.16x16_block0' -> 'enc_16x16_block0'."""
    return name.replace(".", "_")


def _as_int_list(values, what):
    try:
        out = [int(v) for v in values]
    except TypeError:
        raise TypeError(f"{what} must be a sequence of integers, got {values!r}") from None
    return out


class UNetBase(keras.Model):
    """Base of `SongUNet` and `DhariwalUNet` (functional models built in `__init__`)."""

    # Filled by subclasses after building the graph: [(edm_module_prefix, keras_layer_name)].
    _edm_layout = ()

    @staticmethod
    def _check_kwargs(cls_name, kwargs):
        # keras.Model's functional constructor silently drops unknown keyword arguments.
        unknown = sorted(set(kwargs) - {"name", "trainable"})
        if unknown:
            raise TypeError(f"{cls_name} got unexpected keyword argument(s) {unknown}.")

    def _finish_init(self, config, edm_layout, dtype=None):
        if dtype is not None:  # keras.Model's functional constructor ignores `dtype`.
            self.dtype_policy = keras.dtype_policies.get(dtype)
        # Plain attributes (bypassing Keras' attribute tracking, which would wrap them).
        object.__setattr__(self, "_ict_config", dict(config))
        object.__setattr__(self, "_edm_layout", tuple(tuple(e) for e in edm_layout))

    # -- calling -------------------------------------------------------------------------
    def _expected_num_inputs(self):
        return 3 if self._ict_config["label_dim"] else 2

    def _validate_inputs(self, inputs):
        cfg = self._ict_config
        n = self._expected_num_inputs()
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f"{type(self).__name__} expects a list of inputs "
                + ("[x, noise_labels, class_labels]" if n == 3 else "[x, noise_labels]")
                + f", got a single {type(inputs).__name__}."
            )
        if len(inputs) != n:
            if n == 3:
                msg = (
                    f"{type(self).__name__} is class-conditional (label_dim={cfg['label_dim']}): "
                    f"call it with [x, noise_labels, class_labels], got {len(inputs)} inputs."
                )
            else:
                msg = (
                    f"{type(self).__name__} is unconditional (label_dim=0): call it with "
                    f"[x, noise_labels], got {len(inputs)} inputs."
                )
            raise ValueError(msg)
        x, noise = inputs[0], inputs[1]
        shape = getattr(x, "shape", None)
        if shape is None:
            shape = np.shape(x)
        shape = tuple(shape)
        res, cin = cfg["img_resolution"], cfg["in_channels"]
        if len(shape) != 4:
            raise ValueError(
                f"x must have rank 4 (batch, height, width, channels) in channels-last layout, "
                f"got shape {shape}."
            )
        if shape[-1] is not None and int(shape[-1]) != cin:
            hint = (
                " (it looks channels-first: transpose to NHWC)"
                if shape[1] is not None and int(shape[1]) == cin
                else ""
            )
            raise ValueError(
                f"x must have {cin} channels in its last axis (NHWC), got shape {shape}{hint}."
            )
        for axis, label in ((1, "height"), (2, "width")):
            if shape[axis] is not None and int(shape[axis]) != res:
                raise ValueError(
                    f"x must have {label} {res} (img_resolution), got shape {shape}."
                )
        nshape = getattr(noise, "shape", None)
        if nshape is None:
            nshape = np.shape(noise)
        nshape = tuple(nshape)
        if len(nshape) != 1:
            raise ValueError(f"noise_labels must have shape (batch,), got shape {nshape}.")
        if n == 3:
            lshape = getattr(inputs[2], "shape", None)
            if lshape is None:
                lshape = np.shape(inputs[2])
            lshape = tuple(lshape)
            if len(lshape) != 2 or (lshape[-1] is not None and int(lshape[-1]) != cfg["label_dim"]):
                raise ValueError(
                    f"class_labels must have shape (batch, {cfg['label_dim']}) (one-hot), "
                    f"got shape {lshape}."
                )

    def __call__(self, inputs, *args, **kwargs):
        self._validate_inputs(inputs)
        return super().__call__(list(inputs), *args, **kwargs)

    # -- config --------------------------------------------------------------------------
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        config["dtype"] = keras.dtype_policies.serialize(self.dtype_policy)
        config.update(self._ict_config)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)

    # -- EDM correspondence --------------------------------------------------------------
    def edm_tensor_table(self):
        """Ordered dict EDM state-dict name -> (kind, keras variable or constant ndarray).

        kind is one of "conv" (OIHW <-> HWIO), "linear" ((out, in) <-> (in, out)),
        "vector" (same layout) and "buffer" (a constant of this network, checked on import).
        """
        table = {}
        for prefix, layer_name in self._edm_layout:
            layer = self.get_layer(layer_name)
            for suffix, entry in layer.edm_tensors().items():
                table[f"{prefix}.{suffix}"] = entry
        return table
