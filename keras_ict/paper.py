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
