"""iCT noise schedules: Karras sigmas, the doubling curriculum N(k), lognormal index sampling.

Song & Dhariwal (2024), "Improved Techniques for Training Consistency Models":

* sigma_i = (sigma_min^(1/rho) + (i-1)/(N-1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho, i = 1..N (Eq. 5).
* N(k) = min(s0 * 2^floor(k/K'), s1) + 1 with K' = floor(K / (log2 floor(s1/s0) + 1)) (Eq. 11).
* p(i) proportional to erf((ln s_{i+1} - P_mean)/(sqrt2 P_std)) - erf((ln s_i - P_mean)/(sqrt2 P_std)) (Eq. 10).

Every function accepts plain Python / NumPy values, returning NumPy float64 (or Python ints), and backend
tensors (including traced ones inside a compiled train step), returning tensors computed with `keras.ops`.
"""

import math

import numpy as np
from keras import ops

from keras_ict.paper import P_MEAN, P_STD, RHO, S0, S1, SIGMA_MAX, SIGMA_MIN  # noqa: F401  (defaults, re-exported)

_erf64 = np.vectorize(math.erf, otypes=[np.float64])


def _is_tensor(*values):
    return any(ops.is_tensor(v) for v in values)


def _check_positive_int(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_sigma_range(sigma_min, sigma_max):
    if not 0 < sigma_min < sigma_max:
        raise ValueError(
            f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}"
        )


def karras_sigma(index, n, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, rho=RHO):
    """The `index`-th (0-based) of `n` increasing Karras noise levels; works elementwise on tensors."""
    _check_sigma_range(sigma_min, sigma_max)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    if _is_tensor(index, n):
        index = ops.cast(index, "float32")
        n = ops.cast(n, "float32")
        return ops.power(lo + index / (n - 1.0) * (hi - lo), rho)
    index = np.asarray(index, dtype=np.float64)
    return (lo + index / (float(n) - 1.0) * (hi - lo)) ** rho


def karras_sigmas(n, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, rho=RHO, size=None):
    """`n` Karras noise levels in increasing order, sigma_min first and sigma_max last.

    With a Python/NumPy `n` this returns a float64 NumPy array of length `n`. `size` pads the result to a
    fixed length by repeating sigma_max, which is how a traced `n` is handled inside a compiled step
    (shapes must be static there): the padding intervals have zero width and therefore zero probability
    under `lognormal_index_probs`.
    """
    _check_sigma_range(sigma_min, sigma_max)
    if _is_tensor(n):
        if size is None:
            raise ValueError("karras_sigmas with a tensor `n` needs a static `size` to pad to")
        index = ops.convert_to_tensor(np.arange(size, dtype=np.float32))
        index = ops.minimum(index, ops.cast(n, "float32") - 1.0)
        return karras_sigma(index, n, sigma_min, sigma_max, rho)
    _check_positive_int("n", n, 2)
    sigmas = karras_sigma(np.arange(int(n)), int(n), sigma_min, sigma_max, rho)
    sigmas[-1] = sigma_max  # exact endpoint, free of rounding in the power
    if size is not None:
        if size < n:
            raise ValueError(f"size={size} is smaller than n={n}")
        sigmas = np.concatenate([sigmas, np.full(size - n, sigma_max)])
    return sigmas


def curriculum_interval(total_steps, s0=S0, s1=S1):
    """K' = floor(K / (log2 floor(s1/s0) + 1)), the number of steps between doublings of N.

    When `total_steps` is so small that the formula gives 0, K' is defined as 1: N doubles every step
    until it reaches s1 + 1 (the limit of the formula as K' shrinks, without a division by zero).
    """
    _check_positive_int("total_steps", total_steps, 1)
    _check_positive_int("s0", s0, 1)
    _check_positive_int("s1", s1, s0)
    return max(1, int(math.floor(total_steps / (math.log2(math.floor(s1 / s0)) + 1))))


def num_curriculum_stages(s0=S0, s1=S1):
    """Number of distinct values N(k) takes: stages 0..(this - 1), the last one being s1 + 1."""
    stage = 0
    while s0 * 2**stage < s1:
        stage += 1
    return stage + 1


def curriculum_stage(step, total_steps, s0=S0, s1=S1):
    """floor(k / K') clipped to the last stage (where N = s1 + 1), for ints or (traced) tensors."""
    interval = curriculum_interval(total_steps, s0, s1)
    last = num_curriculum_stages(s0, s1) - 1
    if _is_tensor(step):
        return ops.minimum(ops.floor_divide(ops.cast(step, "int32"), interval), last)
    return min(int(step) // interval, last)


def stage_num_scales(s0=S0, s1=S1):
    """N of every curriculum stage: [min(s0 2^stage, s1) + 1 for each stage] (the rows of the noise tables)."""
    return [min(s0 * 2**stage, s1) + 1 for stage in range(num_curriculum_stages(s0, s1))]


def num_discretization_steps(step, total_steps, s0=S0, s1=S1):
    """N(k) = min(s0 * 2^floor(k/K'), s1) + 1: the number of noise levels (so N - 1 intervals) at step k."""
    stage = curriculum_stage(step, total_steps, s0, s1)
    if _is_tensor(stage):
        return ops.minimum(s0 * ops.cast(ops.power(2, stage), "int32"), s1) + 1
    return min(s0 * 2**stage, s1) + 1


def lognormal_index_probs(sigmas, p_mean=P_MEAN, p_std=P_STD):
    """Probabilities of the N-1 intervals [sigma_i, sigma_{i+1}] under a lognormal(P_mean, P_std) sigma.

    Returns length len(sigmas) - 1, summing to 1. Tensor input is computed with keras.ops in float32.
    """
    if p_std <= 0:
        raise ValueError(f"p_std must be positive, got {p_std}")
    if _is_tensor(sigmas):
        cdf = ops.erf((ops.log(sigmas) - p_mean) / (math.sqrt(2.0) * p_std))
        mass = cdf[1:] - cdf[:-1]
        return mass / ops.sum(mass)
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if sigmas.ndim != 1 or sigmas.shape[0] < 2:
        raise ValueError(f"sigmas must be a 1-D sequence of at least 2 values, got shape {sigmas.shape}")
    if np.any(sigmas <= 0):
        raise ValueError("sigmas must be positive")
    if np.any(np.diff(sigmas) < 0):
        raise ValueError("sigmas must be non-decreasing")
    cdf = _erf64((np.log(sigmas) - p_mean) / (math.sqrt(2.0) * p_std))
    mass = np.diff(cdf)
    return mass / mass.sum()


def ct_num_discretization_steps(step, total_steps, s0=2, s1=150):
    """The original CT curriculum (Song et al. 2023, Appendix C): N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1.

    Kept for the ablations of iCT's changes; works on ints and (traced) tensors. N grows from s0 + 1 at k = 0
    to s1 + 1 at k = K (and stays there).
    """
    _check_positive_int("total_steps", total_steps, 1)
    _check_positive_int("s0", s0, 1)
    _check_positive_int("s1", s1, s0)
    span = float((s1 + 1) ** 2 - s0**2)
    if _is_tensor(step):
        k = ops.minimum(ops.cast(step, "float32"), float(total_steps))
        n = ops.ceil(ops.sqrt(k / float(total_steps) * span + float(s0**2)) - 1.0) + 1.0
        return ops.cast(ops.clip(n, s0 + 1, s1 + 1), "int32")
    k = min(float(step), float(total_steps))
    return int(min(max(math.ceil(math.sqrt(k / total_steps * span + s0**2) - 1.0) + 1, s0 + 1), s1 + 1))


def noise_tables(num_scales, s1, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, rho=RHO, p_mean=P_MEAN, p_std=P_STD,
                 index_distribution="lognormal"):
    """Sigma grids and interval log-probabilities for each N in `num_scales`, padded to s1 + 1 / s1 columns.

    `index_distribution` is "lognormal" (iCT) or "uniform" (original CT: every interval equally likely).
    """
    if index_distribution not in ("lognormal", "uniform"):
        raise ValueError(f"index_distribution must be 'lognormal' or 'uniform', got {index_distribution!r}")
    sigma_rows, logp_rows = [], []
    for n in num_scales:
        sigmas = karras_sigmas(n, sigma_min, sigma_max, rho)
        probs = np.zeros(s1)
        if index_distribution == "lognormal":
            probs[: n - 1] = lognormal_index_probs(sigmas, p_mean, p_std)
        else:
            probs[: n - 1] = 1.0 / (n - 1)
        sigma_rows.append(np.concatenate([sigmas, np.full(s1 + 1 - n, sigma_max)]))
        with np.errstate(divide="ignore"):
            logp_rows.append(np.log(probs))
    return np.stack(sigma_rows), np.stack(logp_rows)


def curriculum_tables(s0=S0, s1=S1, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, rho=RHO, p_mean=P_MEAN, p_std=P_STD,
                      index_distribution="lognormal"):
    """Per-stage sigma grids and index log-probabilities, computed once in float64.

    Returns (sigmas, log_probs): sigmas has shape (stages, s1 + 1), padded with sigma_max; log_probs has
    shape (stages, s1), with -inf on padding intervals. A compiled train step picks row `stage` and samples
    an index from it, so the float32 step never re-derives erf differences (which lose precision in
    float32 at the tails).
    """
    return noise_tables(stage_num_scales(s0, s1), s1, sigma_min, sigma_max, rho, p_mean, p_std, index_distribution)
