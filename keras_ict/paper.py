"""The iCT paper's values (Song & Dhariwal, ICLR 2024, arXiv:2310.14189): the one home of every default.

Modules that implement a formula take these as defaults (schedules, parameterization, losses, trainer); the
training recipes (`keras_ict.recipes`) start from them. Importing this module imports nothing else.
"""

# Karras et al. noise levels (Sec. 3) and the data scale of the parametrisation.
SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
SIGMA_DATA = 0.5
RHO = 7.0

# Curriculum N(k) = min(s0 2^floor(k/K'), s1) + 1 (Eq. 11).
S0 = 10
S1 = 1280

# Lognormal index distribution over the grid (Eq. 10).
P_MEAN = -1.1
P_STD = 2.0

# Pseudo-Huber c = 0.00054 sqrt(d), d = H W C (0.03 for CIFAR-10, 0.06 for ImageNet 64).
HUBER_C_PER_SQRT_DIM = 0.00054

# EMA of the student that is evaluated (CIFAR-10), and the two-step samplers' intermediate sigma.
EMA_DECAY = 0.99993
TWO_STEP_SIGMA_CIFAR10 = 0.821
TWO_STEP_SIGMA_IMAGENET64 = 1.526

# Switches that turn single iCT changes back into original CT (Song et al. 2023) for ablations: field ->
# allowed values, iCT's first. The trainer, the recipes' validation and `build_trainer` read this table.
TRAINER_SWITCHES = {
    "distance": ("pseudo_huber", "l2"),
    "weighting": ("reciprocal", "uniform"),
    "index_distribution": ("lognormal", "uniform"),
    "curriculum": ("exponential", "ct"),
    "teacher": ("student", "ema"),
}
TEACHER_MU0 = 0.9  # CT's EMA-teacher rate mu0 (used only with teacher="ema")

# EDM diffusion training (Karras et al. 2022, Table 1), the pre-training stage of consistency tuning: sigma is
# lognormal with these parameters, the loss weight is (sigma^2 + sd^2) / (sigma sd)^2.
EDM_P_MEAN = -1.2
EDM_P_STD = 1.2
# EDM's deterministic sampler (Algorithm 1): 18 steps (35 network calls) for CIFAR-10.
EDM_HEUN_STEPS = 18

# Consistency tuning, ECT (Geng et al. 2024, "Consistency Models Made Easy"; locuslab/ect, training/loss.py,
# ECMLoss, EDM-codebase version): t lognormal(P_MEAN, P_STD) as iCT, r = max(0, t (1 - q^-(stage+1)
# (1 + k sigmoid(-b t)))) with q 2, k 8, b 1 (their defaults), loss weight 1 / (t - r).
ECT_Q = 2.0
ECT_K = 8.0
ECT_B = 1.0
