"""Gradients of a zero-argument loss function with respect to Keras variables, on each backend (tests only)."""

import keras
import numpy as np


def gradients(loss_fn, variables):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, variables)
    elif backend == "torch":
        import torch

        grads = torch.autograd.grad(loss_fn(), [v.value for v in variables])
    else:
        import jax

        def stateless(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn()

        grads = jax.grad(stateless)([v.value for v in variables])
    return [np.asarray(keras.ops.convert_to_numpy(g)) for g in grads]
