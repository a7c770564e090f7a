"""Schedules against float64 NumPy references written from the paper's equations."""

import math

import numpy as np
import pytest
from keras import ops
from scipy.special import erf

from keras_ict import schedules


def ref_karras(n, smin=0.002, smax=80.0, rho=7.0):
    i = np.arange(1, n + 1, dtype=np.float64)
    return (smin ** (1 / rho) + (i - 1) / (n - 1) * (smax ** (1 / rho) - smin ** (1 / rho))) ** rho


def ref_num_steps(k, K, s0=10, s1=1280):
    k_prime = math.floor(K / (math.log2(math.floor(s1 / s0)) + 1))
    return min(s0 * 2 ** math.floor(k / k_prime), s1) + 1


def ref_probs(sigmas, p_mean=-1.1, p_std=2.0):
    s = np.asarray(sigmas, np.float64)
    mass = erf((np.log(s[1:]) - p_mean) / (math.sqrt(2) * p_std)) - erf((np.log(s[:-1]) - p_mean) / (math.sqrt(2) * p_std))
    return mass / mass.sum()


@pytest.mark.backend_independent
@pytest.mark.parametrize("n", [2, 3, 11, 21, 641, 1281])
def test_karras_sigmas_match_reference(n):
    got = schedules.karras_sigmas(n)
    np.testing.assert_allclose(got, ref_karras(n), rtol=1e-12)
    assert got[0] == pytest.approx(0.002, rel=1e-12) and got[-1] == 80.0
    assert np.all(np.diff(got) > 0)


def test_karras_sigmas_tensor_with_padding():
    n = ops.convert_to_tensor(11)
    got = ops.convert_to_numpy(schedules.karras_sigmas(n, size=16))
    np.testing.assert_allclose(got[:11], ref_karras(11), rtol=2e-6)
    np.testing.assert_allclose(got[11:], 80.0, rtol=2e-6)


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "k,K",
    [(0, 400_000), (49_999, 400_000), (50_000, 400_000), (100_000, 400_000), (349_999, 400_000),
     (350_000, 400_000), (399_999, 400_000), (10**7, 400_000), (0, 8), (7, 8), (3, 100), (99, 100), (1234, 5000)],
)
def test_num_discretization_steps_match_reference(k, K):
    assert schedules.num_discretization_steps(k, K) == ref_num_steps(k, K)
    traced = schedules.num_discretization_steps(ops.convert_to_tensor(k, "int32"), K)
    assert int(ops.convert_to_numpy(traced)) == ref_num_steps(k, K)


@pytest.mark.backend_independent
def test_curriculum_first_and_last_stage_values():
    assert schedules.num_discretization_steps(0, 400_000) == 11
    assert schedules.num_discretization_steps(399_999, 400_000) == 1281
    assert schedules.curriculum_interval(400_000) == 50_000
    assert schedules.num_curriculum_stages() == 8


@pytest.mark.backend_independent
def test_curriculum_with_other_s0_s1():
    # s1/s0 not a power of two: log2 floor(s1/s0) is not an integer in K'.
    for k in [0, 10, 500, 999, 5000]:
        assert schedules.num_discretization_steps(k, 1000, s0=2, s1=150) == ref_num_steps(k, 1000, 2, 150)
    assert schedules.num_discretization_steps(0, 10, s0=1, s1=1) == 2  # N = 2: a single interval


@pytest.mark.backend_independent
def test_tiny_total_steps_define_interval_as_one():
    # floor(5 / 8) = 0 would divide by zero; K' is defined as 1 (double every step until s1).
    assert schedules.curriculum_interval(5) == 1
    assert [schedules.num_discretization_steps(k, 5) for k in range(9)] == [11, 21, 41, 81, 161, 321, 641, 1281, 1281]


@pytest.mark.backend_independent
@pytest.mark.parametrize("n", [2, 11, 81, 1281])
def test_lognormal_index_probs_match_reference(n):
    sigmas = schedules.karras_sigmas(n)
    got = schedules.lognormal_index_probs(sigmas)
    want = ref_probs(ref_karras(n))
    assert got.shape == (n - 1,)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.sum() == pytest.approx(1.0, abs=1e-12)


def test_lognormal_index_probs_tensor_path():
    sigmas = schedules.karras_sigmas(41)
    got = ops.convert_to_numpy(schedules.lognormal_index_probs(ops.convert_to_tensor(sigmas, "float32")))
    np.testing.assert_allclose(got, ref_probs(sigmas), rtol=2e-3, atol=1e-7)


@pytest.mark.backend_independent
def test_curriculum_tables_rows_match_each_stage():
    sigma_table, logp_table = schedules.curriculum_tables()
    assert sigma_table.shape == (8, 1281) and logp_table.shape == (8, 1280)
    for stage in range(8):
        n = min(10 * 2**stage, 1280) + 1
        np.testing.assert_allclose(sigma_table[stage, :n], ref_karras(n), rtol=1e-12)
        assert np.all(sigma_table[stage, n:] == 80.0)
        probs = np.exp(logp_table[stage])
        np.testing.assert_allclose(probs[: n - 1], ref_probs(ref_karras(n)), rtol=1e-9)
        assert np.all(probs[n - 1 :] == 0)


@pytest.mark.backend_independent
def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="n must be >= 2"):
        schedules.karras_sigmas(1)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        schedules.karras_sigmas(10, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        schedules.karras_sigmas(10, sigma_min=0.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        schedules.lognormal_index_probs([0.1, 0.05, 1.0])
    with pytest.raises(ValueError, match="positive"):
        schedules.lognormal_index_probs([-0.1, 0.05, 1.0])
    with pytest.raises(ValueError, match="total_steps"):
        schedules.num_discretization_steps(0, 0)
    with pytest.raises(TypeError, match="n must be an integer"):
        schedules.karras_sigmas(10.5)
