"""One-step and multistep consistency sampling with per-seed NumPy noise, and image helpers.

Multistep sampling (Song et al. 2023, Algorithm 1): x = sigma_1 z_1, x0 = f(x, sigma_1); for each further
sigma: x = x0 + sqrt(sigma^2 - sigma_min^2) z, x0 = f(x, sigma). All noise for image i comes from
`numpy.random.default_rng(seeds[i])`, so image i depends only on seed i: the same whatever the batch size,
and the same on every backend for the same weights (EDM's StackedRandomGenerator idea).
"""

import numpy as np

from keras_ict.backends import distribution


def _as_consistency_model(model):
    from keras_ict.parameterization import ConsistencyModel, EDMDenoiser
    from keras_ict.trainer import EMATrainer

    if isinstance(model, EMATrainer):
        model = model.ema_model
    if isinstance(model, EDMDenoiser):
        raise TypeError("this is a diffusion model (EDMDenoiser), not a consistency model: sample it with "
                        "keras_ict.diffusion.heun_sample, or tune it into one (recipe mnist-ect, --init)")
    if not isinstance(model, ConsistencyModel):
        raise TypeError(f"generate needs a ConsistencyModel or ConsistencyTrainer, got {type(model).__name__}")
    return model


def _check_sigmas(sigmas, sigma_min):
    sigmas = np.atleast_1d(np.asarray(sigmas, dtype=np.float64))
    if sigmas.ndim != 1 or sigmas.size == 0:
        raise ValueError(f"sigmas must be a non-empty 1-D sequence, got shape {sigmas.shape}")
    if not np.all(np.isfinite(sigmas)) or np.any(sigmas <= sigma_min):
        raise ValueError(f"every sigma must be finite and > sigma_min={sigma_min}, got {sigmas.tolist()}")
    if np.any(np.diff(sigmas) >= 0):
        raise ValueError(f"sigmas must be strictly decreasing, got {sigmas.tolist()}")
    return sigmas


def _check_seeds(seeds):
    if isinstance(seeds, (int, np.integer)):
        raise TypeError("seeds must be a sequence of ints (e.g. range(16)), not a single int")
    seeds = np.asarray(list(seeds))
    if seeds.ndim != 1 or seeds.size == 0:
        raise ValueError("seeds must be a non-empty 1-D sequence of ints")
    if not np.issubdtype(seeds.dtype, np.integer) or np.any(seeds < 0):
        raise ValueError("seeds must be non-negative integers")
    return seeds.astype(np.int64)


def _check_labels(labels, num, model):
    if not model.conditional:
        if labels is not None:
            raise ValueError("labels were given to an unconditional model")
        return None
    if labels is None:
        raise ValueError(f"this model is class-conditional (label_dim={model.label_dim}); pass labels")
    labels = np.asarray(labels)
    if labels.ndim == 0:
        labels = np.full((num,), int(labels))
    if labels.shape != (num,):
        raise ValueError(f"labels must be one int or one per seed ({num}), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if np.any(labels < 0) or np.any(labels >= model.label_dim):
        raise ValueError(f"labels must be in [0, {model.label_dim}), got [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int32)


def seed_noise(seeds, shape, num_draws):
    """Array (num_draws, len(seeds)) + shape of float32 standard normals; row block i from seed i only."""
    out = np.empty((num_draws, len(seeds)) + tuple(shape), dtype=np.float32)
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed))
        for draw in range(num_draws):
            out[draw, i] = rng.standard_normal(shape)
    return out


def generate(model, seeds, sigmas=(80.0,), labels=None, batch_size=64):
    """Sample images with a consistency model: one step for one sigma, multistep for a decreasing list.

    Args:
        model: a `ConsistencyModel` (or a `ConsistencyTrainer`, whose EMA model is used).
        seeds: sequence of non-negative ints, one image per seed.
        sigmas: strictly decreasing noise levels, e.g. (80.0,) or (80.0, 0.821) for the paper's two-step.
        labels: integer class ids (one per seed, or one for all) for a class-conditional model.
        batch_size: images per network call; the result does not depend on it.

    Returns:
        float32 NumPy array (len(seeds), H, W, C) in [-1, 1].
    """
    model = _as_consistency_model(model)
    sigmas = _check_sigmas(sigmas, model.sigma_min)
    seeds = _check_seeds(seeds)
    labels = _check_labels(labels, len(seeds), model)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch_size = min(int(batch_size), len(seeds))

    outputs = []
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start : start + batch_size]
        noise = seed_noise(chunk, model.image_shape, len(sigmas))
        pad = batch_size - len(chunk)  # keep one batch shape so compiled predict functions are reused
        if pad:
            noise = np.concatenate([noise, np.zeros((len(sigmas), pad) + noise.shape[2:], np.float32)], axis=1)
        extra = []
        if labels is not None:
            extra = [np.pad(labels[start : start + batch_size], (0, pad))]
        x0 = None
        for step, sigma in enumerate(sigmas):
            if step == 0:
                x = sigma * noise[0]
            else:
                x = x0 + np.sqrt(sigma**2 - model.sigma_min**2) * noise[step]
            sigma_batch = np.full((batch_size,), sigma, np.float32)
            x0 = np.asarray(distribution.predict_batch(model, [x.astype(np.float32), sigma_batch] + extra), dtype=np.float32)
        outputs.append(x0[: len(chunk)])
    return np.clip(np.concatenate(outputs), -1.0, 1.0)


def to_uint8(images):
    """[-1, 1] float images to uint8 as EDM does: floor(x * 127.5 + 128), clipped to [0, 255]."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip(np.floor(images * 127.5 + 128.0), 0, 255).astype(np.uint8)


def image_grid(images, ncols=None):
    """Tile a batch (N, H, W, C) into one (rows*H, cols*W, C) uint8 image."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C), got {images.shape}")
    if images.dtype != np.uint8:
        images = to_uint8(images)
    n, h, w, c = images.shape
    ncols = int(ncols or int(np.ceil(np.sqrt(n))))
    nrows = int(np.ceil(n / ncols))
    grid = np.zeros((nrows * h, ncols * w, c), np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = images[i]
    return grid


def save_image_grid(images, path, ncols=None):
    """Write a PNG grid of images ([-1, 1] floats or uint8); written to a temp name and renamed."""
    from PIL import Image

    from keras_ict.files import atomic_output

    grid = image_grid(images, ncols)
    mode_image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    with atomic_output(path, suffix=".png") as tmp:
        mode_image.save(tmp, format="PNG")
    return path


def preview_samples(model, seeds, labels=None):
    """The images a run shows of its model: one step from sigma_max for a consistency model, EDM's Heun sampler
    (`keras_ict.diffusion.heun_sample`, 18 steps) for a diffusion model (`EDMDenoiser`)."""
    from keras_ict.parameterization import EDMDenoiser
    from keras_ict.trainer import EMATrainer

    model = model.ema_model if isinstance(model, EMATrainer) else model
    if isinstance(model, EDMDenoiser):
        from keras_ict.diffusion import heun_sample

        return heun_sample(model, seeds, labels=labels)
    return generate(model, seeds, sigmas=(model.sigma_max,), labels=labels)
