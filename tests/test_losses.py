import math

import numpy as np
import pytest
from keras import ops

from keras_ict import losses


def ref_pseudo_huber(a, b, c):
    d = (a.astype(np.float64) - b.astype(np.float64)).reshape(a.shape[0], -1)
    return np.sqrt((d**2).sum(axis=1) + c * c) - c


@pytest.mark.parametrize("shape", [(4, 32, 32, 3), (3, 28, 28, 1), (2, 5)])
@pytest.mark.parametrize("scale", [1e-4, 1e-2, 1.0])
def test_pseudo_huber_is_per_sample_and_matches_reference(shape, scale):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape).astype(np.float32)
    b = (a + scale * rng.standard_normal(shape)).astype(np.float32)
    c = losses.pseudo_huber_c(shape[1:])
    got = ops.convert_to_numpy(losses.pseudo_huber(a, b, c))
    assert got.shape == (shape[0],)
    np.testing.assert_allclose(got, ref_pseudo_huber(a, b, c), rtol=1e-6)


def test_pseudo_huber_is_not_the_per_pixel_version():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    b = np.zeros_like(a)
    c = 0.03
    per_pixel = (np.sqrt((a - b) ** 2 + c * c) - c).reshape(2, -1).mean(axis=1)
    got = ops.convert_to_numpy(losses.pseudo_huber(a, b, c))
    assert not np.allclose(got, per_pixel, rtol=1e-2)


def test_pseudo_huber_zero_and_c_values():
    x = np.ones((2, 4, 4, 1), np.float32)
    assert np.all(ops.convert_to_numpy(losses.pseudo_huber(x, x, 0.1)) == 0)
    assert losses.pseudo_huber_c((32, 32, 3)) == pytest.approx(0.00054 * math.sqrt(3072), rel=1e-12)
    assert losses.pseudo_huber_c((32, 32, 3)) == pytest.approx(0.03, abs=2e-4)
    assert losses.pseudo_huber_c((64, 64, 3)) == pytest.approx(0.06, abs=2e-4)
    with pytest.raises(ValueError, match="positive"):
        losses.pseudo_huber(x, x, 0.0)


def test_consistency_weight():
    assert losses.consistency_weight(0.5, 0.75) == pytest.approx(4.0)
