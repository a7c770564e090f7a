"""Telling a concrete tensor from a traced one, per backend.

Value checks (sigma > 0, labels in range) can only run on concrete values; inside a compiled function
(tf.function, jax.jit, torch.compile) they are skipped and the caller's eager checks have to do.
"""

import keras
import numpy as np


def concrete_value(x):
    """`x` as a NumPy array when its value is known now, else None (symbolic or traced)."""
    if x is None:
        return None
    if isinstance(x, (np.ndarray, np.generic, int, float, list, tuple)):
        return np.asarray(x)
    if isinstance(x, keras.KerasTensor):
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly() or not hasattr(x, "numpy"):
            return None
    elif backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
    elif backend == "torch":
        import torch

        if torch.compiler.is_compiling() or getattr(x, "is_meta", False) or x.device.type == "meta":
            return None
    try:
        return keras.ops.convert_to_numpy(x)
    except Exception:  # any tracer we did not recognise
        return None
