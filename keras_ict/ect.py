"""Consistency tuning (ECT; Geng et al. 2024, "Consistency Models Made Easy", locuslab/ect `training/loss.py`,
`ECMLoss`, EDM-codebase version): a consistency model tuned from a diffusion model's network.

One step, with the student's own weights as the teacher under stop-gradient (as in iCT):
    t ~ lognormal(P_mean, P_std)                                         (-1.1, 2.0 as iCT)
    r = max(0, t (1 - q^-(stage+1) (1 + k sigmoid(-b t))))              ("sigmoid" mapping; q 2, k 8, b 1)
    loss = 1 / (t - r) * d(f(x + t z, t), stopgrad f(x + r z, r))       same z, same dropout mask
where the target is the clean image x where r = 0 and d is the pseudo-Huber distance sqrt(||.||^2 + c^2) - c.
The stage advances every `stage_steps` steps, so r -> t as training goes on (the consistency condition on
ever finer intervals); at stage 0 and small t, r = 0 and the loss is a denoising loss.

Where keras-ict differs from ECT's code, and why:
- f is the consistency parametrisation with its boundary condition (f(x, sigma_min) = x) in training too; ECT
  trains with EDM's scalings and switches to the boundary ones for evaluation (`ECMPrecond`). Tuning starts from
  the diffusion model's network F (`EDMDenoiser.to_consistency_model`), so the switch happens once, explicitly.
- t is clipped to [sigma_min, sigma_max], the model's domain; a target at r < sigma_min is the clean image
  (ECT: r = 0 exactly), which is what f gives at sigma_min.
- c defaults to iCT's 0.00054 sqrt(d) (ECT's EDM code defaults to c = 0, the plain L2 norm).
"""

import keras
import numpy as np
from keras import ops

from keras_ict import paper
from keras_ict.backends.distribution import draw_for_replicas
from keras_ict.trainer import ConsistencyTrainer


def tuning_r(t, stage, q=paper.ECT_Q, k=paper.ECT_K, b=paper.ECT_B):
    """ECT's sigmoid mapping r = max(0, t (1 - q^-(stage+1) (1 + k sigmoid(-b t)))); NumPy (float64) or tensors."""
    if ops.is_tensor(t):
        sigmoid = ops.sigmoid(-b * t)
        decay = ops.power(ops.cast(q, t.dtype), -(ops.cast(stage, t.dtype) + 1.0))
        return ops.maximum(t * (1.0 - decay * (1.0 + k * sigmoid)), 0.0)
    t = np.asarray(t, dtype=np.float64)
    sigmoid = 1.0 / (1.0 + np.exp(b * t))
    return np.maximum(t * (1.0 - q ** -(float(stage) + 1.0) * (1.0 + k * sigmoid)), 0.0)


def tuning_weight(t, r):
    """ECT's loss weight 1 / (t - r)."""
    return 1.0 / (t - r)


@keras.saving.register_keras_serializable(package="keras_ict")
class ConsistencyTuningTrainer(ConsistencyTrainer):
    """ECT as a `ConsistencyTrainer`: the same student / EMA / exact-resume machinery and the same
    stop-gradient teacher with the student's dropout mask; only the pair of noise levels (t, r) and the weight
    1 / (t - r) differ.

    Args (beyond `ConsistencyTrainer`'s, whose curriculum fields s0 / s1 / rho are not used here):
        stage_steps: the stage advances every this many steps (ECT's `--double`, in steps of the batch).
        q, k, b: the mapping's parameters (ECT: 2, 8, 1; q 256 in its one-hour CIFAR-10 run).
    Initialise the student from a diffusion model's network (`EDMDenoiser.to_consistency_model`, or
    `keras-ict train --init`); from random weights this is a (poor) consistency training from scratch.
    """

    def __init__(self, consistency_model, total_steps, stage_steps=None, q=paper.ECT_Q, k=paper.ECT_K, b=paper.ECT_B,
                 **kwargs):
        stage_steps = max(1, int(total_steps) // 4) if stage_steps is None else int(stage_steps)
        if stage_steps < 1:
            raise ValueError(f"stage_steps must be >= 1, got {stage_steps}")
        if not q > 1:
            raise ValueError(f"q must be > 1 (r approaches t as q^-(stage+1) -> 0), got {q}")
        if not k >= 0 or not b > 0:
            raise ValueError(f"need k >= 0 and b > 0, got k={k}, b={b}")
        super().__init__(consistency_model, total_steps, **kwargs)
        self.stage_steps, self.q, self.k, self.b = stage_steps, float(q), float(k), float(b)

    def stage(self):
        return ops.floor_divide(self.step.value, self.stage_steps)

    def draw_noise(self, images):
        """(r, t, stage, z): t lognormal clipped to the model's sigma range, r = tuning_r(t, stage)."""
        normal = lambda shape: keras.random.normal(shape, seed=self.noise_seed)  # noqa: E731
        t = ops.exp(self.p_mean + self.p_std * draw_for_replicas(normal, (ops.shape(images)[0],)))
        t = ops.clip(t, self.model.sigma_min, self.model.sigma_max)
        stage = self.stage()
        r = tuning_r(t, stage, self.q, self.k, self.b)
        return r, t, stage, draw_for_replicas(normal, ops.shape(images))

    def consistency_loss(self, images, noise, sigma, sigma_next, labels=None, training=True):
        """Per-sample 1 / (t - r) d(f(x + t z, t), stopgrad f(x + r z, r)), with r = `sigma`, t = `sigma_next`
        and the clean image as the target where r < sigma_min."""
        r, t = ops.cast(sigma, "float32"), ops.cast(sigma_next, "float32")
        sigma_min = self.model.sigma_min
        clean = ops.less(r, sigma_min)
        distance = self.consistency_distance(images, noise, ops.maximum(r, sigma_min), t, labels, training,
                                             clean_target=clean)
        return tuning_weight(t, r) * distance

    def get_config(self):
        config = super().get_config()
        config.update({"stage_steps": self.stage_steps, "q": self.q, "k": self.k, "b": self.b})
        return config
