"""Weights written under each backend load under this one and give the same outputs and the same loss."""

from pathlib import Path

import numpy as np
import pytest
from keras import ops

import cross_backend_case as case

FIXTURES = Path(__file__).resolve().parent / "data" / "cross_backend"


@pytest.mark.parametrize("source", ["tensorflow", "jax", "torch"])
def test_weights_from_each_backend_reproduce_outputs_and_loss(source):
    expected = np.load(FIXTURES / f"{source}.npz")
    model = case.build_model()
    model.load_weights(FIXTURES / f"{source}.weights.h5")
    x, sigma, noise, sigma_i, sigma_next = case.inputs()
    np.testing.assert_allclose(ops.convert_to_numpy(model([x, sigma])), expected["output"], atol=1e-5)
    np.testing.assert_array_equal(ops.convert_to_numpy(model([x, np.full((4,), 0.002, np.float32)])), x)
    loss = ops.convert_to_numpy(case.build_trainer(model).consistency_loss(x, noise, sigma_i, sigma_next, training=False))
    np.testing.assert_allclose(loss, expected["loss"], rtol=1e-5)
