"""Interoperability with the EDM reference networks (NVlabs/edm, `training/networks.py`).

* `from_edm_config(edm_class_name, **edm_kwargs)` builds the Keras network for EDM keyword
  arguments.
* `load_edm_state_dict(network, state_dict)` copies an EDM `state_dict` (mapping, `.npz`,
  `.pt`/`.pth`) into the network, transposing conv weights OIHW -> HWIO and linear weights
  (out, in) -> (in, out), and checking the constant buffers (`resample_filter`).
* `edm_state_dict(network)` is the reverse: a dict of NumPy arrays in EDM names and layout.
"""

import inspect
import os

import keras
import numpy as np

from ._base import UNetBase
from .classes import NETWORK_CLASSES

__all__ = ["EDM_CLASSES", "edm_state_dict", "from_edm_config", "load_edm_state_dict"]

EDM_CLASSES = NETWORK_CLASSES  # EDM's class names are ours

# Constructor arguments that are Keras-side extensions, not EDM keyword arguments.
_EXTENSIONS = ("fourier_scale", "seed", "dtype", "kwargs", "self")


def _edm_arg_names(cls):
    params = inspect.signature(cls.__init__).parameters
    return [n for n in params if n not in _EXTENSIONS]


def from_edm_config(edm_class_name, *, seed=None, dtype=None, name=None, **edm_kwargs):
    """Builds `SongUNet` or `DhariwalUNet` from EDM's class name and keyword arguments.

    Accepts exactly the keyword arguments of EDM's constructor (omitted ones take EDM's
    defaults). `augment_dim` is accepted only as 0 (augmentation labels are not supported).
    Keras-side extras are keyword-only: `seed`, `dtype`, `name`. The Fourier embedding uses
    EDM's scale 16 (its frequencies are normally overwritten by `load_edm_state_dict`).
    """
    if edm_class_name not in EDM_CLASSES:
        raise ValueError(
            f"Unknown EDM network class {edm_class_name!r}; valid: {sorted(EDM_CLASSES)}."
        )
    cls = EDM_CLASSES[edm_class_name]
    kwargs = dict(edm_kwargs)
    augment_dim = kwargs.pop("augment_dim", 0)
    if augment_dim:
        raise ValueError(
            f"augment_dim={augment_dim} is not supported (augmentation labels / map_augment "
            "are not implemented); use augment_dim=0."
        )
    valid = _edm_arg_names(cls)
    unknown = sorted(k for k in kwargs if k not in valid)
    if unknown:
        raise TypeError(
            f"Unknown keyword argument(s) for EDM {edm_class_name}: {unknown}; "
            f"valid: {valid + ['augment_dim']}."
        )
    required = ("img_resolution", "in_channels", "out_channels")
    missing = [k for k in required if k not in kwargs]
    if missing:
        raise TypeError(f"EDM {edm_class_name} requires keyword argument(s) {missing}.")
    extra = {"seed": seed, "dtype": dtype}
    if name is not None:
        extra["name"] = name
    return cls(**kwargs, **extra)


# ---------------------------------------------------------------------------------------
# State dicts.


_TAG = "state_dict/"


def _to_numpy(value):
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _read_state_dict(source, trust_pickle, prefix):
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        lower = path.lower()
        if lower.endswith(".npz"):
            try:
                with np.load(path, allow_pickle=False) as data:
                    items = {k: data[k] for k in data.files}
            except ValueError as e:
                if "allow_pickle" not in str(e):
                    raise
                raise ValueError(
                    f"{path} holds object arrays (pickled Python objects, which can run code when loaded); "
                    "refusing to read it: a state dict .npz holds numeric arrays only"
                ) from None
        elif lower.endswith((".pt", ".pth")):
            try:
                import torch
            except ImportError as e:
                raise ImportError(
                    "Reading a .pt/.pth state dict needs PyTorch (`pip install torch`); "
                    "alternatively export it to .npz."
                ) from e
            try:
                obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
            except Exception as e:
                if trust_pickle or "weights_only" not in str(e):
                    raise
                # torch refused to unpickle something other than tensors and plain containers.
                raise ValueError(
                    f"{path} holds pickled Python objects beyond tensors, which can run code when loaded; "
                    "refusing. Pass trust_pickle=True only for a file you trust."
                ) from None
            if hasattr(obj, "state_dict") and callable(obj.state_dict):
                obj = obj.state_dict()
            if not hasattr(obj, "items"):
                raise ValueError(f"{path} does not contain a state dict (got {type(obj).__name__}).")
            items = dict(obj.items())
        else:
            raise ValueError(f"Unsupported state dict file {path!r}: use .npz, .pt or .pth.")
    elif hasattr(source, "items"):
        items = dict(source.items())
    elif hasattr(source, "state_dict") and callable(source.state_dict):
        items = dict(source.state_dict().items())
    else:
        raise TypeError(
            "state_dict must be a mapping name -> array, a module with .state_dict(), or a "
            f"path to .npz/.pt/.pth; got {type(source).__name__}."
        )
    # Archives like the parity fixtures keep the state dict under "state_dict/<name>" next
    # to other entries (meta, inputs, outputs): then only those entries are the state dict.
    tagged = {str(k): v for k, v in items.items() if str(k).startswith(_TAG)}
    if tagged:
        items = {k[len(_TAG):]: v for k, v in tagged.items()}
    out, unexpected = {}, []
    for key, value in items.items():
        key = str(key)
        if prefix:
            if not key.startswith(prefix):
                unexpected.append(key)
                continue
            key = key[len(prefix):]
        out[key] = value
    return out, unexpected


def _expected_shape(kind, variable):
    shape = tuple(int(d) for d in variable.shape)
    if kind == "conv":
        kh, kw, cin, cout = shape
        return (cout, cin, kh, kw)
    if kind == "linear":
        return (shape[1], shape[0])
    return shape


def _from_edm_layout(kind, array):
    if kind == "conv":
        return np.transpose(array, (2, 3, 1, 0))
    if kind == "linear":
        return np.transpose(array)
    return array


def _to_edm_layout(kind, array):
    if kind == "conv":
        return np.transpose(array, (3, 2, 0, 1))
    if kind == "linear":
        return np.transpose(array)
    return array


def _check_network(network):
    if not isinstance(network, UNetBase):
        raise TypeError(
            f"Expected a SongUNet or DhariwalUNet, got {type(network).__name__}."
        )


def load_edm_state_dict(network, state_dict, trust_pickle=False, prefix=""):
    """Loads an EDM state dict into `network` (a `SongUNet` or `DhariwalUNet`), in place.

    `state_dict`: mapping name -> array (NumPy arrays, torch tensors, anything `np.asarray`
    accepts), a module with `.state_dict()`, or a path to `.npz` or `.pt`/`.pth` (read with
    `torch.load(weights_only=True)` unless `trust_pickle=True`). Keys may be prefixed
    `state_dict/` (as in the parity fixtures): if any key is, only those entries are used.
    `prefix` is then stripped from every key (e.g. "model." for the state dict of an EDM
    preconditioner); keys without it are unexpected. All problems (missing, unexpected,
    mis-shaped tensors, mismatching constant buffers) are collected and reported in one
    ValueError; nothing is assigned unless everything matches. Returns the network.
    """
    _check_network(network)
    given, unexpected = _read_state_dict(state_dict, trust_pickle, prefix)
    table = network.edm_tensor_table()
    missing, misshaped, mismatched = [], [], []
    assignments = []
    for name, (kind, target) in table.items():
        if name not in given:
            missing.append(name)
            continue
        array = _to_numpy(given[name])
        if kind == "buffer":
            if array.shape != target.shape:
                misshaped.append(f"{name}: expected {target.shape}, got {array.shape}")
            elif not np.allclose(array.astype(np.float64), target, rtol=1e-6, atol=1e-7):
                mismatched.append(
                    f"{name}: does not match this network's resample_filter "
                    f"(check the resample_filter argument)"
                )
            continue
        expected = _expected_shape(kind, target)
        if tuple(array.shape) != expected:
            misshaped.append(f"{name}: expected {expected}, got {tuple(array.shape)}")
            continue
        assignments.append((target, _from_edm_layout(kind, array)))
    unexpected += sorted(k for k in given if k not in table)
    if missing or unexpected or misshaped or mismatched:
        lines = [f"Cannot load EDM state dict into {type(network).__name__} '{network.name}':"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): {', '.join(unexpected)}")
        if misshaped:
            lines.append(f"  mis-shaped ({len(misshaped)}): {'; '.join(misshaped)}")
        if mismatched:
            lines.append(f"  mismatching buffers ({len(mismatched)}): {'; '.join(mismatched)}")
        raise ValueError("\n".join(lines))
    for variable, value in assignments:
        variable.assign(np.ascontiguousarray(value).astype(variable.dtype))
    return network


def edm_state_dict(network):
    """Returns the network's weights as an EDM state dict: ordered dict name -> NumPy array
    (conv weights OIHW, linear weights (out, in), buffers included), in EDM's order."""
    _check_network(network)
    out = {}
    for name, (kind, target) in network.edm_tensor_table().items():
        if kind == "buffer":
            out[name] = np.array(target)
        else:
            value = keras.ops.convert_to_numpy(target)
            out[name] = np.ascontiguousarray(_to_edm_layout(kind, value))
    return out
