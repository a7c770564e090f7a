"""FID of consistency (and diffusion) models against reference statistics of a dataset: the protocol around
`keras_ict.fid`.

Protocol (recorded in every result, so numbers are comparable and reproducible):
  * generated images: seeds `seed_start .. seed_start + num - 1`, one image per seed (per-seed noise, see
    `keras_ict.sampling`), class label `seed % label_dim` for a class-conditional model, converted to uint8
    with `to_uint8` (EDM's rounding);
  * reference images: every image of one split of a dataset, in stored order, at the model's resolution and
    channels (padded or resized exactly as `keras_ict.data.load_dataset` feeds training), or a statistics
    `.npz` file (`mu`, `sigma`: EDM's format);
  * features: the 2015-12-05 Inception-v3 pool_3 (`keras_ict.fid`);
  * the metric is named `fid{num}_{steps}step` with num written as e.g. `10k`, so FID-10k is never mistaken for
    FID-50k (a smaller sample biases FID upwards); a diffusion model (`EDMDenoiser`) is sampled with EDM's Heun
    sampler and its metric is `fid{num}_heun{N}` (N sampling steps, 2N - 1 network calls).

Reference statistics of a dataset are cached by content: the key hashes the source's bytes (file sha256, or
every file of a folder), the split, the image geometry, the number of images and the Inception weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from keras_ict import fid

__all__ = [
    "compute_fid",
    "generated_statistics",
    "metric_name",
    "reference_statistics",
    "source_fingerprint",
]


def metric_name(num, steps, sampler="consistency"):
    """'fid10k_1step' for (10000, 1); 'fid512_2step' for (512, 2); 'fid10k_heun18' for (10000, 18, 'heun')."""
    num, steps = int(num), int(steps)
    count = f"{num // 1000}k" if num % 1000 == 0 else str(num)
    if sampler == "heun":
        return f"fid{count}_heun{steps}"
    if sampler != "consistency":
        raise ValueError(f"sampler must be 'consistency' or 'heun', got {sampler!r}")
    return f"fid{count}_{steps}step"


def _sampled_model(model):
    """(the model to sample, 'consistency' | 'heun'): a trainer gives its EMA model."""
    from keras_ict.parameterization import EDMDenoiser
    from keras_ict.sampling import _as_consistency_model
    from keras_ict.trainer import EMATrainer

    model = model.ema_model if isinstance(model, EMATrainer) else model
    if isinstance(model, EDMDenoiser):
        return model, "heun"
    return _as_consistency_model(model), "consistency"


def _check_sampler_args(sampler, sigmas, heun_steps):
    """The Heun steps for a diffusion model (default 18; no sigmas), None for a consistency model (no heun_steps)."""
    from keras_ict import paper

    if sampler == "consistency":
        if heun_steps is not None:
            raise ValueError("heun_steps is for diffusion models (EDMDenoiser); a consistency model takes steps or "
                             "sigmas")
        return None
    if sigmas is not None:
        raise ValueError("a diffusion model (EDMDenoiser) is sampled with EDM's Heun sampler: pass heun_steps, "
                         "not sigmas")
    heun_steps = paper.EDM_HEUN_STEPS if heun_steps is None else heun_steps
    if isinstance(heun_steps, bool) or not isinstance(heun_steps, (int, np.integer)) or heun_steps < 1:
        raise ValueError(f"heun_steps must be an int >= 1, got {heun_steps!r}")
    return int(heun_steps)


class Progress:
    """A one-line progress bar on a terminal; elsewhere a line about every 10% (logs stay readable)."""

    def __init__(self, total, label, enabled=True, stream=None):
        self.total, self.label, self.enabled = int(total), label, bool(enabled)
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done, self.start, self.next_report = 0, time.monotonic(), max(1, self.total // 10)

    def update(self, count):
        self.done += int(count)
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        text = f"{self.label}: {self.done}/{self.total} images, {rate:.1f} img/s, eta {eta:.0f}s"
        if self.tty:
            width = 24
            filled = int(width * self.done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}")
            if self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif self.done >= self.next_report or self.done >= self.total:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.next_report = self.done + max(1, self.total // 10)


# ---------------------------------------------------------------------------------------------- reference


def _hash_folder(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        h.update(fid._sha256(path).encode())
    return h.hexdigest()


def source_fingerprint(source, tfds_data_dir=None):
    """A content hash of a data source: sha256 of a file, of every file of a folder, or a TFDS name@version (and
    the data_dir it was prepared in, when one is given)."""
    path = Path(os.fspath(source)).expanduser() if isinstance(source, (str, os.PathLike)) else None
    if path is not None and path.is_file():
        return "sha256:" + fid._sha256(path)
    if path is not None and path.is_dir():
        return "folder-sha256:" + _hash_folder(path)
    name = str(source)[5:] if str(source).startswith("tfds:") else str(source)
    try:
        import tensorflow_datasets as tfds

        where = f" in {Path(tfds_data_dir).expanduser().resolve()}" if tfds_data_dir else ""
        return f"tfds:{name}@{tfds.builder(name, data_dir=tfds_data_dir).version}{where}"
    except Exception:  # no tfds, or unknown name: load_dataset raises the clear error later
        return f"tfds:{name}"


def _geometry(source, split, image_size, channels, tfds_data_dir=None):
    from keras_ict.data import dataset_info

    info = dataset_info(source, split, tfds_data_dir=tfds_data_dir)
    height, width, native_channels = info["image_shape"]
    if image_size is None:
        if height is None or width is None:
            raise ValueError(f"{source!r} has images of varying size; give image_size")
        image_size = max(height, width)
    channels = native_channels if channels is None else channels
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    return int(image_size), int(channels), int(info["num_examples"])


def reference_images(source, *, split="train", image_size=None, channels=None, resize=None, num=None, batch_size=250,
                     tfds_data_dir=None):
    """Yields uint8 NHWC batches of the first `num` images (all by default) of a split, in stored order.

    Images come through `keras_ict.data.load_dataset` (no shuffling, no flips), so they are padded or resized
    exactly as they are for training at `image_size` and `channels` (default: the source's own).
    """
    from keras_ict.data import load_dataset
    from keras_ict.sampling import to_uint8

    image_size, channels, available = _geometry(source, split, image_size, channels, tfds_data_dir)
    num = available if num is None else int(num)
    if num < 2 or num > available:
        raise ValueError(f"num must be in [2, {available}] for split {split!r} of {source!r}, got {num}")
    ds = load_dataset(
        source, image_size=image_size, channels=channels, split=split, batch_size=batch_size, shuffle=False,
        flip=False, resize=resize, repeat=False, drop_remainder=False, tfds_data_dir=tfds_data_dir,
    )
    left = num
    for batch in ds.as_numpy_iterator():
        batch = to_uint8(batch[:left])
        left -= len(batch)
        yield batch
        if left <= 0:
            return


def _reference_key(fingerprint, split, image_size, channels, resize, num, weights_id):
    blob = json.dumps(
        dict(source=fingerprint, split=split, image_size=image_size, channels=channels, resize=resize, num=num,
             inception=weights_id, version=2),  # 2: JPEG decoded with the accurate IDCT
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _weights_id(weights):
    path = Path(weights).expanduser() if weights is not None else fid.default_weights_path()
    return fid._sha256(path) if path.is_file() else str(path)


def reference_statistics(source, *, split="train", image_size=None, channels=None, resize=None, num=None,
                         weights=None, batch_size=64, cache=True, progress=True, tfds_data_dir=None):
    """(mu, sigma, info) of a dataset split, or of a statistics `.npz` given as `source`.

    `info` records the protocol: source, its content fingerprint, split, geometry, number of images and, for a
    computed result, the cache file. Computed statistics are cached (see module docstring) unless
    `cache=False`.
    """
    path = Path(os.fspath(source)).expanduser() if isinstance(source, (str, os.PathLike)) else None
    if path is not None and path.is_file() and path.suffix == ".npz" and _is_statistics_file(path):
        mu, sigma = fid.load_statistics(path)
        meta = fid.read_statistics_metadata(path)
        return mu, sigma, dict(meta, ref=str(path), ref_sha256=fid._sha256(path))
    image_size, channels, available = _geometry(source, split, image_size, channels, tfds_data_dir)
    num = available if num is None else int(num)
    if num < 2 or num > available:
        raise ValueError(f"num must be in [2, {available}] for split {split!r} of {source!r}, got {num}")
    fingerprint = source_fingerprint(source, tfds_data_dir)
    info = dict(source=str(source), fingerprint=fingerprint, split=split, image_size=image_size,
                channels=channels, resize=resize, num_images=num, inception_sha256=_weights_id(weights))
    key = _reference_key(fingerprint, split, image_size, channels, resize, num, info["inception_sha256"])
    cached = fid.cache_dir() / "refs" / f"{key[:32]}.npz"
    if cache and cached.is_file():
        mu, sigma = fid.load_statistics(cached)
        return mu, sigma, dict(info, ref=str(cached), ref_sha256=fid._sha256(cached), cached=True)
    bar = Progress(num, f"reference features ({split})", enabled=progress)
    feats = []
    for images in reference_images(source, split=split, image_size=image_size, channels=channels, resize=resize,
                                   num=num, batch_size=batch_size * 4, tfds_data_dir=tfds_data_dir):
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            feats.append(fid.inception_features(chunk, weights=weights, batch_size=batch_size))
            bar.update(len(chunk))
    mu, sigma = fid.statistics(np.concatenate(feats))
    if cache:
        fid.save_statistics(cached, mu, sigma, metadata=info)
        info = dict(info, ref=str(cached), ref_sha256=fid._sha256(cached))
    return mu, sigma, dict(info, cached=False)


def check_reference(ref, what="--ref"):
    """ValueError / FileNotFoundError unless `ref` names statistics, a dataset path or a TFDS name (no work done)."""
    path = Path(ref).expanduser()
    if path.suffix == ".npz" and not path.exists():
        raise FileNotFoundError(f"{what} {ref}: file not found")
    if path.exists() or str(ref).startswith("tfds:"):
        return
    from keras_ict.data import KNOWN_TFDS_NAMES

    if ref not in KNOWN_TFDS_NAMES:
        raise ValueError(f"{what} {ref!r} is neither a statistics .npz, a dataset path nor a TFDS name (tfds:NAME)")


def _is_statistics_file(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            return "mu" in data.files and "sigma" in data.files
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------- generated


def resolve_sigmas(model, steps=1, sigmas=None):
    """The sampling sigmas: explicit ones, else the model's recorded 1- or 2-step sigmas, else defaults."""
    if sigmas is not None:
        return [float(s) for s in sigmas]
    if steps not in (1, 2):
        raise ValueError(f"steps must be 1 or 2 (or pass explicit sigmas), got {steps!r}")
    sampling = getattr(model, "sampling", None) or {}
    if steps == 1:
        return [float(s) for s in sampling.get("sigmas_1step", [model.sigma_max])]
    if "sigmas_2step" not in sampling:
        raise ValueError("this model records no two-step sigmas; pass sigmas=[sigma_max, intermediate]")
    return [float(s) for s in sampling["sigmas_2step"]]


def generated_statistics(model, *, num, sigmas=None, seed_start=0, batch_size=64, weights=None, progress=True,
                         heun_steps=None):
    """(mu, sigma) of the Inception features of `num` images generated from seeds seed_start.. (labels seed % K).

    A consistency model samples at `sigmas`; a diffusion model (`EDMDenoiser`) with EDM's Heun sampler in
    `heun_steps` steps (default 18), and takes no sigmas.
    """
    from keras_ict.sampling import generate, to_uint8

    model, sampler = _sampled_model(model)
    num, seed_start = int(num), int(seed_start)
    if num < 2:
        raise ValueError(f"FID needs at least 2 generated images, got num={num}")
    if seed_start < 0:
        raise ValueError(f"seed_start must be >= 0, got {seed_start}")
    if int(model.image_shape[-1]) not in (1, 3):
        raise ValueError(f"FID needs 1- or 3-channel images, the model makes {model.image_shape}")
    heun_steps = _check_sampler_args(sampler, sigmas, heun_steps)
    if sampler == "heun":
        from keras_ict.diffusion import heun_sample

        label = f"generated features (Heun, {heun_steps} steps)"

        def sample(seeds, labels):
            return heun_sample(model, seeds, num_steps=heun_steps, labels=labels, batch_size=batch_size)
    else:
        if sigmas is None:
            raise ValueError("pass the sampling sigmas of the consistency model (see resolve_sigmas)")
        label = f"generated features ({len(sigmas)}-step)"

        def sample(seeds, labels):
            return generate(model, seeds, sigmas=sigmas, labels=labels, batch_size=batch_size)
    bar = Progress(num, label, enabled=progress)
    feats = []
    for start in range(seed_start, seed_start + num, batch_size):
        seeds = range(start, min(start + batch_size, seed_start + num))
        labels = [s % model.label_dim for s in seeds] if model.conditional else None
        images = to_uint8(sample(seeds, labels))
        feats.append(fid.inception_features(images, weights=weights, batch_size=batch_size))
        bar.update(len(seeds))
    return fid.statistics(np.concatenate(feats))


def compute_fid(model, ref, *, num=10_000, steps=1, sigmas=None, seed_start=0, batch_size=64, weights=None,
                split="train", resize=None, progress=True, heun_steps=None):
    """FID of a consistency model against `ref` (a statistics .npz, or a dataset source and split).

    A diffusion model (`EDMDenoiser`, e.g. an `mnist-edm` run's final/) is sampled with EDM's Heun sampler in
    `heun_steps` steps (default 18; `steps` and `sigmas` are for consistency models).

    Returns a dict: `metric` (e.g. 'fid10k_1step', 'fid10k_heun18'), `fid`, and the protocol (num, seeds, sigmas
    or Heun steps and network calls, labels, the reference and its sha256/fingerprint, Inception weights, backend,
    wall time).
    """
    import keras

    model, sampler = _sampled_model(model)
    num = int(num)
    if num < 2:
        raise ValueError(f"num must be >= 2 (FID needs a covariance), got {num}")
    heun_steps = _check_sampler_args(sampler, sigmas, heun_steps)
    if sampler == "heun":
        protocol = dict(sampler="heun", heun_steps=heun_steps, network_calls=2 * heun_steps - 1)
        metric = metric_name(num, heun_steps, "heun")
    else:
        sigmas = resolve_sigmas(model, steps, sigmas)
        protocol = dict(steps=len(sigmas), sigmas=sigmas)
        metric = metric_name(num, len(sigmas))
    image_size, _, channels = (int(v) for v in model.image_shape)
    start = time.monotonic()
    mu_ref, sigma_ref, ref_info = reference_statistics(
        ref, split=split, image_size=image_size, channels=channels, resize=resize, weights=weights,
        batch_size=batch_size, progress=progress,
    )
    if mu_ref.shape != (fid.FEATURE_DIM,):
        raise ValueError(f"reference statistics have dimension {mu_ref.shape}, expected ({fid.FEATURE_DIM},)")
    mu, sigma = generated_statistics(model, num=num, sigmas=sigmas, seed_start=seed_start, batch_size=batch_size,
                                     weights=weights, progress=progress, heun_steps=heun_steps)
    value = fid.frechet_distance(mu, sigma, mu_ref, sigma_ref)
    return dict(
        metric=metric,
        fid=value,
        num=num,
        **protocol,
        seeds=f"{seed_start}-{seed_start + num - 1}",
        labels="seed % label_dim" if model.conditional else None,
        reference={k: v for k, v in ref_info.items() if k != "cached"},
        backend=keras.backend.backend(),
        wall_s=round(time.monotonic() - start, 1),
    )
