"""EDM diffusion training and EDM's deterministic sampler (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", Table 1 and Algorithm 1): the pre-training stage of consistency tuning.

    loss = E[ lambda(sigma) ||D(x + sigma z, sigma) - x||^2 ],  ln(sigma) ~ N(P_mean, P_std^2),
    lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2,             P_mean -1.2, P_std 1.2, sd 0.5,

with D the `EDMDenoiser` (EDM's preconditioning) around any keras-ict network. As in EDM's training loop the
squared error is summed over the pixels of a sample and averaged over the batch. `DiffusionTrainer` is
`compile` + `fit` on every backend like `ConsistencyTrainer` and shares its EMA, step counter, noise stream and
exact resume (`EMATrainer`). `heun_sample` is EDM's Algorithm 1 (no stochastic churn), so the diffusion model
can be scored on its own.
"""

import keras
import numpy as np
from keras import ops

from keras_ict import paper
from keras_ict.backends import distribution
from keras_ict.backends.distribution import draw_for_replicas, mean_over_processes
from keras_ict.parameterization import EDMDenoiser
from keras_ict.trainer import EMATrainer


def edm_loss_weight(sigma, sigma_data=paper.SIGMA_DATA):
    """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2: the weight that gives EDM's loss unit variance."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def karras_sigmas(num_steps, sigma_min=paper.SIGMA_MIN, sigma_max=paper.SIGMA_MAX, rho=paper.RHO):
    """EDM's sampling steps t_0 > ... > t_{n-1} (Eq. 5) in float64, followed by t_n = 0."""
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    n = int(num_steps)
    i = np.arange(n, dtype=np.float64)
    ramp = i / (n - 1) if n > 1 else np.zeros(1)
    sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return np.append(sigmas, 0.0)


def heun_sample(denoiser, seeds, num_steps=paper.EDM_HEUN_STEPS, labels=None, sigma_min=paper.SIGMA_MIN,
                sigma_max=paper.SIGMA_MAX, rho=paper.RHO, batch_size=64):
    """EDM's deterministic 2nd-order sampler (Algorithm 1, S_churn = 0): 2 num_steps - 1 network calls.

    Args:
        denoiser: an `EDMDenoiser` (or a `DiffusionTrainer`, whose EMA model is used).
        seeds: one image per non-negative int seed; the initial noise is keras-ict's per-seed noise, so a seed
            gives the same image at any batch size.
        num_steps: sampling steps (18 for CIFAR-10 in EDM).
        labels: class ids for a class-conditional denoiser (one per seed or one for all).

    Returns:
        float32 NumPy array (len(seeds), H, W, C) in [-1, 1].
    """
    from keras_ict.sampling import _check_labels, _check_seeds, seed_noise

    if isinstance(denoiser, DiffusionTrainer):
        denoiser = denoiser.ema_model
    if not isinstance(denoiser, EDMDenoiser):
        raise TypeError(f"heun_sample needs an EDMDenoiser (a diffusion model), got {type(denoiser).__name__}")
    steps = karras_sigmas(num_steps, sigma_min, sigma_max, rho)
    seeds = _check_seeds(seeds)
    labels = _check_labels(labels, len(seeds), denoiser)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch_size = min(int(batch_size), len(seeds))

    def denoise(x, sigma, extra):
        sigma_batch = np.full((x.shape[0],), sigma, np.float32)
        out = distribution.predict_batch(denoiser, [x.astype(np.float32), sigma_batch] + extra)
        return np.asarray(out, dtype=np.float64)

    outputs = []
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start : start + batch_size]
        noise = seed_noise(chunk, denoiser.image_shape, 1)[0].astype(np.float64)
        pad = batch_size - len(chunk)  # one batch shape, so compiled predict functions are reused
        if pad:
            noise = np.concatenate([noise, np.zeros((pad,) + noise.shape[1:])])
        extra = [np.pad(labels[start : start + batch_size], (0, pad))] if labels is not None else []
        x = noise * steps[0]
        for t_cur, t_next in zip(steps[:-1], steps[1:]):
            d_cur = (x - denoise(x, t_cur, extra)) / t_cur
            x_next = x + (t_next - t_cur) * d_cur
            if t_next > 0:  # the 2nd-order correction, on every step but the last
                d_next = (x_next - denoise(x_next, t_next, extra)) / t_next
                x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_next)
            x = x_next
        outputs.append(x[: len(chunk)].astype(np.float32))
    return np.clip(np.concatenate(outputs), -1.0, 1.0)


@keras.saving.register_keras_serializable(package="keras_ict")
class DiffusionTrainer(EMATrainer):
    """Trains an `EDMDenoiser` with EDM's loss.

    Args:
        consistency_model: the denoiser being trained (an `EDMDenoiser`; the argument keeps the name the other
            trainers and saved configs use).
        p_mean, p_std: ln(sigma) ~ N(p_mean, p_std^2) (EDM: -1.2, 1.2).
        ema_decay, ema_warmup, seed: as for `ConsistencyTrainer`.

    Data: `fit` on batches of NHWC images in [-1, 1], or (images, integer_labels) for a conditional model.
    """

    def __init__(self, consistency_model, p_mean=paper.EDM_P_MEAN, p_std=paper.EDM_P_STD, ema_decay=paper.EMA_DECAY,
                 ema_warmup=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(consistency_model, EDMDenoiser):
            raise TypeError(
                f"DiffusionTrainer trains an EDMDenoiser, got {type(consistency_model).__name__} "
                "(keras_ict.parameterization.EDMDenoiser(network) wraps a network)"
            )
        if not p_std > 0:
            raise ValueError(f"p_std must be positive, got {p_std}")
        self.p_mean, self.p_std = float(p_mean), float(p_std)
        self._build_models(consistency_model, ema_decay, ema_warmup, seed)
        self.built = True

    def draw_noise(self, images):
        """(sigma, z) for a batch from the trainer's noise stream; several replicas each keep their rows of the
        global batch's draw."""
        normal = lambda shape: keras.random.normal(shape, seed=self.noise_seed)  # noqa: E731
        sigma = ops.exp(self.p_mean + self.p_std * draw_for_replicas(normal, (ops.shape(images)[0],)))
        return sigma, draw_for_replicas(normal, ops.shape(images))

    def denoising_loss(self, images, noise, sigma, labels=None, training=True):
        """Per-sample lambda(sigma) ||D(x + sigma z, sigma) - x||^2 for given noise."""
        images, noise = ops.cast(images, "float32"), ops.cast(noise, "float32")
        sigma = ops.cast(sigma, "float32")
        noisy = images + ops.reshape(sigma, (-1, 1, 1, 1)) * noise
        extra = [labels] if labels is not None else []
        denoised = self.model([noisy, sigma] + extra, training=training)
        squared = ops.sum(ops.square(denoised - images), axis=(1, 2, 3))
        return edm_loss_weight(sigma, self.model.sigma_data) * squared

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        images, labels = self._unpack(x, y)
        sigma, noise = self.draw_noise(images)
        loss = self.batch_loss(self.denoising_loss(images, noise, sigma, labels, training=training))
        self.sigma_tracker.update_state(mean_over_processes(ops.mean(sigma)))
        if training:
            self.finish_step()
        return loss

    def get_config(self):
        config = super().get_config()
        config.update({"p_mean": self.p_mean, "p_std": self.p_std})
        return config
