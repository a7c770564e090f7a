"""The tensors of a TorchScript archive (`torch.jit.save`'s .pt zip), read with NumPy alone: no torch needed.

A TorchScript archive holds the module tree as a pickle (`<archive>/data.pkl`) whose tensors point to raw
storages (`<archive>/data/<key>`). The pickle is read with an unpickler that only builds what such a tree is made
of (TorchScript module objects, ordered dicts, tensors over storages, int lists) and refuses every other global,
so reading runs no code from the file. The result has the names of the module's ``state_dict()`` (tests check it
against torch.jit.load where torch is installed).
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "LongStorage": np.int64,
    "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Module:
    """A TorchScript module object: its pickled attributes, kept as they are."""

    def __init__(self, *args):
        self.attributes = {}

    def __setstate__(self, state):
        self.attributes = state if isinstance(state, dict) else {}


class _Storage:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, *unused):
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride))
    return np.ascontiguousarray(view)


class _Unpickler(pickle.Unpickler):
    def __init__(self, raw, archive, prefix):
        super().__init__(io.BytesIO(raw))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(_STORAGE_DTYPES[name])
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist"):
            return list
        if module.startswith("__torch__."):
            return type(name, (_Module,), {})
        raise pickle.UnpicklingError(f"a TorchScript archive should not need {module}.{name}; refusing to load it")

    def persistent_load(self, pid):
        kind, storage, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage, _Storage):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a TorchScript archive")
        raw = self.archive.read(f"{self.prefix}/data/{key}")
        return np.frombuffer(raw, storage.dtype, count=int(numel))


def read_tensors(path):
    """{state_dict name: NumPy array} of every tensor attribute in the TorchScript archive at `path`."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path} is not a TorchScript archive (no single <archive>/data.pkl)")
        prefix = pickles[0].split("/")[0]
        root = _Unpickler(archive.read(pickles[0]), archive, prefix).load()
    tensors = {}

    def walk(node, name):
        if isinstance(node, np.ndarray):
            tensors[name] = node
        elif isinstance(node, _Module):
            for key, value in node.attributes.items():
                walk(value, f"{name}.{key}" if name else key)

    walk(root, "")
    return tensors
