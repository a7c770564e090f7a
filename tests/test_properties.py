"""Property-based tests (hypothesis) of the schedules, scalings and loss over their whole parameter ranges."""

import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis (pip install hypothesis)")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from keras_ict import schedules  # noqa: E402
from keras_ict.parameterization import scalings  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)

sigma_ranges = st.tuples(
    st.floats(1e-4, 1.0, allow_nan=False), st.floats(1.5, 500.0, allow_nan=False), st.floats(1.0, 12.0)
)


@pytest.mark.backend_independent
@SETTINGS
@given(n=st.integers(2, 2000), ranges=sigma_ranges)
def test_karras_sigmas_are_increasing_and_hit_both_ends(n, ranges):
    sigma_min, sigma_max, rho = ranges
    sigmas = schedules.karras_sigmas(n, sigma_min, sigma_max, rho)
    assert sigmas.shape == (n,)
    assert np.all(np.diff(sigmas) > 0)
    assert sigmas[0] == pytest.approx(sigma_min, rel=1e-12) and sigmas[-1] == sigma_max


@pytest.mark.backend_independent
@SETTINGS
@given(n=st.integers(2, 1281), p_mean=st.floats(-3.0, 2.0), p_std=st.floats(0.2, 4.0))
def test_lognormal_probabilities_form_a_distribution(n, p_mean, p_std):
    probs = schedules.lognormal_index_probs(schedules.karras_sigmas(n), p_mean, p_std)
    assert probs.shape == (n - 1,)
    assert np.all(probs >= 0) and math.isclose(probs.sum(), 1.0, rel_tol=1e-9)


@pytest.mark.backend_independent
@SETTINGS
@given(total=st.integers(1, 2_000_000), s0=st.integers(1, 64), factor=st.integers(1, 256), a=st.integers(0, 10**7),
       b=st.integers(0, 10**7))
def test_curriculum_is_monotone_and_bounded(total, s0, factor, a, b):
    s1 = s0 * factor
    lo, hi = sorted((a, b))
    n_lo = schedules.num_discretization_steps(lo, total, s0, s1)
    n_hi = schedules.num_discretization_steps(hi, total, s0, s1)
    assert s0 + 1 <= n_lo <= n_hi <= s1 + 1
    assert schedules.num_discretization_steps(0, total, s0, s1) == s0 + 1
    # The paper's closed form.
    k_prime = max(1, math.floor(total / (math.log2(math.floor(s1 / s0)) + 1)))
    assert n_hi == min(s0 * 2 ** (hi // k_prime), s1) + 1


@pytest.mark.backend_independent
@SETTINGS
@given(sigma=st.floats(0.002, 1000.0), sigma_min=st.floats(1e-4, 0.002), sigma_data=st.floats(0.1, 2.0))
def test_scalings_are_bounded_and_satisfy_the_boundary(sigma, sigma_min, sigma_data):
    c_skip, c_out, c_in = scalings(sigma, sigma_min, sigma_data)
    assert 0 < c_skip <= 1 and 0 <= c_out < sigma_data * (1 + 1e-12) and 0 < c_in <= 1 / sigma_data
    skip_min, out_min, _ = scalings(sigma_min, sigma_min, sigma_data)
    assert skip_min == 1.0 and out_min == 0.0


@settings(max_examples=15, deadline=None, derandomize=True)
@given(n=st.integers(2, 1281))
def test_traced_sigma_grid_matches_numpy_and_pads_with_sigma_max(n):
    from keras import ops

    padded = ops.convert_to_numpy(schedules.karras_sigmas(ops.convert_to_tensor(n, "int32"), size=1281))
    np.testing.assert_allclose(padded[:n], schedules.karras_sigmas(n), rtol=2e-5)
    np.testing.assert_allclose(padded[n:], 80.0, rtol=1e-6)
