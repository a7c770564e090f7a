"""Frechet Inception Distance (FID) with TensorFlow's 2015-12-05 Inception-v3, ported to Keras 3.

The network is the one FID is defined on (TTUR, EDM's `fid.py`, StyleGAN metrics): input NHWC float
(N, 299, 299, 3) in [-1, 1), output (N, 2048) pool_3 features. It is built from `keras.layers` only, so it runs
on the tensorflow, jax and torch backends.

Weights come from a TorchScript file (`inception-2015-12-05-fid-trunk.pt`, see `shared/fid/README.md`). The
file is read once with `keras_ict.torchscript` (NumPy only, no torch: its unpickler builds module objects,
tensors and lists and refuses anything else, so the file runs no code), converted to Keras layout, and cached as
a Keras `.weights.h5` file in `$KERAS_ICT_CACHE/fid` (default `~/.cache/keras_ict/fid`), keyed by the sha256 of
the `.pt` file. Later runs need only the cache.

Each `conv2d (no bias) -> batch_norm(mean, var, beta; eps=1e-3) -> relu` unit of the original is stored as a
`Conv2D` with bias (the batch norm folded into kernel and bias) followed by a ReLU.

Preprocessing (`preprocess`) matches the usual FID pipeline: uint8 RGB -> float -> bilinear resize to 299x299
(half-pixel centres, no antialias; the same as `torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`) -> `(x - 128) / 128`. Grayscale images are repeated to 3 channels. The TorchScript module
itself does not resize.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np
from keras import layers

from keras_ict.files import cache_root, sha256_file

EXPECTED_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
PT_NAME = "inception-2015-12-05-fid-trunk.pt"
RESOLUTION = 299
FEATURE_DIM = 2048
BN_EPSILON = 1e-3

_MODELS: dict = {}


# --------------------------------------------------------------------------------------------------------------
# Paths and weight conversion
# --------------------------------------------------------------------------------------------------------------


def default_weights_path() -> Path:
    """`$KERAS_ICT_FID_WEIGHTS`, else `<repo>/../shared/fid/inception-2015-12-05-fid-trunk.pt`."""
    env = os.environ.get("KERAS_ICT_FID_WEIGHTS")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "fid" / PT_NAME


def cache_dir() -> Path:
    """Converted Inception weights and reference statistics: ``$KERAS_ICT_CACHE/fid`` or ~/.cache/keras_ict/fid."""
    return cache_root() / "fid"


_sha256 = sha256_file  # the name this module's callers use


def _load_torchscript_state(path: Path) -> dict:
    from keras_ict.torchscript import read_tensors

    return {k: v.astype(np.float64) for k, v in read_tensors(path).items()}


def _convert_state(model: keras.Model, state: dict) -> None:
    """Fold each conv + batch norm of the TorchScript state into the model's Conv2D layers."""
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    used = set()
    for layer in convs:
        prefix = "net.layers." + layer.name.replace("__", ".")
        try:
            w = state[prefix + ".weight"]  # (out, in, kh, kw)
            beta, mean, var = state[prefix + ".beta"], state[prefix + ".mean"], state[prefix + ".var"]
        except KeyError as e:
            raise ValueError(f"TorchScript state has no tensor {e.args[0]!r} needed for layer {layer.name}") from e
        scale = 1.0 / np.sqrt(var + BN_EPSILON)
        kernel = np.transpose(w * scale[:, None, None, None], (2, 3, 1, 0))
        bias = beta - mean * scale
        if kernel.shape != tuple(layer.kernel.shape):
            raise ValueError(f"shape mismatch for {layer.name}: {kernel.shape} vs {tuple(layer.kernel.shape)}")
        layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        used.update(prefix + s for s in (".weight", ".beta", ".mean", ".var"))
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"TorchScript state has tensors the Keras port does not use: {unused[:5]}")


def _atomic_save_weights(model: keras.Model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp.weights.h5")
    os.close(fd)
    try:
        model.save_weights(tmp, overwrite=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _resolve_weights(weights) -> Path:
    """Returns the path of a .weights.h5 file, converting (and caching) a .pt file when needed."""
    path = Path(weights).expanduser() if weights is not None else default_weights_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"FID Inception weights not found at {path}. Set KERAS_ICT_FID_WEIGHTS or pass weights= "
            f"a path to {PT_NAME} (sha256 {EXPECTED_SHA256}) or to a converted .weights.h5 file."
        )
    if path.name.endswith(".weights.h5"):
        return path
    digest = _sha256(path)
    if digest != EXPECTED_SHA256:
        warnings.warn(f"{path} has sha256 {digest}, not the expected {EXPECTED_SHA256}; converting it anyway")
    cached = cache_dir() / f"inception-2015-12-05-{digest}.weights.h5"
    if cached.is_file():
        return cached
    state = _load_torchscript_state(path)
    model = _build_architecture()
    _convert_state(model, state)
    _atomic_save_weights(model, cached)
    return cached


# --------------------------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------------------------


def _conv(x, name, filters, kernel, stride=1, padding="valid"):
    # Layer names encode the TorchScript path ("." -> "__") used by the weight conversion.
    x = layers.Conv2D(
        filters, kernel, strides=stride, padding=padding, use_bias=True, kernel_initializer="zeros", name=name
    )(x)  # zeros: weights are always loaded; avoids slow random init (jax compiles one per shape)
    return layers.ReLU(name=name + "__relu")(x)


def _avg_same(x, name):
    # 3x3 / stride 1 / pad 1 average pool with count_include_pad=False == "same" average pooling.
    return layers.AveragePooling2D(3, strides=1, padding="same", name=name)(x)


def _block_a(x, p, pool_filters):
    b0 = _conv(x, f"{p}__conv", 64, 1)
    b1 = _conv(x, f"{p}__tower__conv", 48, 1)
    b1 = _conv(b1, f"{p}__tower__conv_1", 64, 5, padding="same")
    b2 = _conv(x, f"{p}__tower_1__conv", 64, 1)
    b2 = _conv(b2, f"{p}__tower_1__conv_1", 96, 3, padding="same")
    b2 = _conv(b2, f"{p}__tower_1__conv_2", 96, 3, padding="same")
    b3 = _avg_same(x, f"{p}__tower_2__pool")
    b3 = _conv(b3, f"{p}__tower_2__conv", pool_filters, 1)
    return layers.Concatenate(name=p)([b0, b1, b2, b3])


def _block_b(x, p):
    b0 = _conv(x, f"{p}__conv", 384, 3, stride=2)
    b1 = _conv(x, f"{p}__tower__conv", 64, 1)
    b1 = _conv(b1, f"{p}__tower__conv_1", 96, 3, padding="same")
    b1 = _conv(b1, f"{p}__tower__conv_2", 96, 3, stride=2)
    b2 = layers.MaxPooling2D(3, strides=2, name=f"{p}__pool")(x)
    return layers.Concatenate(name=p)([b0, b1, b2])


def _block_c(x, p, c):
    b0 = _conv(x, f"{p}__conv", 192, 1)
    b1 = _conv(x, f"{p}__tower__conv", c, 1)
    b1 = _conv(b1, f"{p}__tower__conv_1", c, (1, 7), padding="same")
    b1 = _conv(b1, f"{p}__tower__conv_2", 192, (7, 1), padding="same")
    b2 = _conv(x, f"{p}__tower_1__conv", c, 1)
    b2 = _conv(b2, f"{p}__tower_1__conv_1", c, (7, 1), padding="same")
    b2 = _conv(b2, f"{p}__tower_1__conv_2", c, (1, 7), padding="same")
    b2 = _conv(b2, f"{p}__tower_1__conv_3", c, (7, 1), padding="same")
    b2 = _conv(b2, f"{p}__tower_1__conv_4", 192, (1, 7), padding="same")
    b3 = _avg_same(x, f"{p}__tower_2__pool")
    b3 = _conv(b3, f"{p}__tower_2__conv", 192, 1)
    return layers.Concatenate(name=p)([b0, b1, b2, b3])


def _block_d(x, p):
    b0 = _conv(x, f"{p}__tower__conv", 192, 1)
    b0 = _conv(b0, f"{p}__tower__conv_1", 320, 3, stride=2)
    b1 = _conv(x, f"{p}__tower_1__conv", 192, 1)
    b1 = _conv(b1, f"{p}__tower_1__conv_1", 192, (1, 7), padding="same")
    b1 = _conv(b1, f"{p}__tower_1__conv_2", 192, (7, 1), padding="same")
    b1 = _conv(b1, f"{p}__tower_1__conv_3", 192, 3, stride=2)
    b2 = layers.MaxPooling2D(3, strides=2, name=f"{p}__pool")(x)
    return layers.Concatenate(name=p)([b0, b1, b2])


def _block_e(x, p, max_pool):
    a = _conv(x, f"{p}__tower_conv", 384, 1)
    b = _conv(x, f"{p}__tower_1_conv", 448, 1)
    b = _conv(b, f"{p}__tower_1_conv_1", 384, 3, padding="same")
    b0 = _conv(x, f"{p}__conv", 320, 1)
    b1 = _conv(a, f"{p}__tower_mixed_conv", 384, (1, 3), padding="same")
    b2 = _conv(a, f"{p}__tower_mixed_conv_1", 384, (3, 1), padding="same")
    b3 = _conv(b, f"{p}__tower_1_mixed_conv", 384, (1, 3), padding="same")
    b4 = _conv(b, f"{p}__tower_1_mixed_conv_1", 384, (3, 1), padding="same")
    if max_pool:  # mixed_10 (TF's mixed_10/tower_2/pool is a max pool)
        b5 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{p}__tower_2_pool")(x)
    else:
        b5 = _avg_same(x, f"{p}__tower_2_pool")
    b5 = _conv(b5, f"{p}__tower_2_conv", 192, 1)
    return layers.Concatenate(name=p)([b0, b1, b2, b3, b4, b5])


def _build_architecture() -> keras.Model:
    inputs = keras.Input((RESOLUTION, RESOLUTION, 3), name="images")
    x = _conv(inputs, "conv", 32, 3, stride=2)
    x = _conv(x, "conv_1", 32, 3)
    x = _conv(x, "conv_2", 64, 3, padding="same")
    x = layers.MaxPooling2D(3, strides=2, name="pool0")(x)
    x = _conv(x, "conv_3", 80, 1)
    x = _conv(x, "conv_4", 192, 3)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = _block_a(x, "mixed", 32)
    x = _block_a(x, "mixed_1", 64)
    x = _block_a(x, "mixed_2", 64)
    x = _block_b(x, "mixed_3")
    x = _block_c(x, "mixed_4", 128)
    x = _block_c(x, "mixed_5", 160)
    x = _block_c(x, "mixed_6", 160)
    x = _block_c(x, "mixed_7", 192)
    x = _block_d(x, "mixed_8")
    x = _block_e(x, "mixed_9", max_pool=False)
    x = _block_e(x, "mixed_10", max_pool=True)
    x = layers.GlobalAveragePooling2D(name="pool2")(x)  # 8x8 average pool on an 8x8 map
    return keras.Model(inputs, x, name="inception_v3_fid")


def build_inception(weights=None) -> keras.Model:
    """The FID Inception-v3: NHWC float (N, 299, 299, 3) in [-1, 1) -> (N, 2048) pool_3 features.

    `weights`: None (the default `.pt`, see `default_weights_path`), a path to the TorchScript `.pt` file
    (converted once and cached, see the module docstring) or to a converted `.weights.h5` file.
    """
    h5 = _resolve_weights(weights)
    model = _build_architecture()
    model.load_weights(str(h5))
    model.trainable = False
    return model


# --------------------------------------------------------------------------------------------------------------
# Preprocessing and features
# --------------------------------------------------------------------------------------------------------------


def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) matrix of bilinear interpolation, half-pixel centres, no antialias (torch align_corners=False)."""
    scale = in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = src - i0
    m = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(m, (rows, i0), 1.0 - w1)
    np.add.at(m, (rows, i1), w1)
    return m


_MATRICES: dict = {}


def _matrix(in_size: int) -> np.ndarray:
    if in_size not in _MATRICES:
        _MATRICES[in_size] = _bilinear_matrix(in_size, RESOLUTION).astype(np.float32)
    return _MATRICES[in_size]


def _validate_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"FID expects uint8 images in [0, 255], got dtype {images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"FID expects images of shape (N, H, W, C), got shape {images.shape}")
    if images.shape[-1] not in (1, 3):
        raise ValueError(f"FID expects 1 or 3 channels (NHWC), got shape {images.shape}")
    if images.shape[1] < 1 or images.shape[2] < 1:
        raise ValueError(f"FID expects non-empty images, got shape {images.shape}")
    return images


def preprocess(images) -> np.ndarray:
    """uint8 NHWC (N, H, W, 1|3) -> float32 (N, 299, 299, 3) in [-1, 1): bilinear resize, then (x - 128) / 128.

    The resize uses half-pixel centres and no antialias, i.e. it equals
    `torch.nn.functional.interpolate(x, (299, 299), mode="bilinear", align_corners=False)`; it is computed in
    NumPy with two interpolation matrices, so it is the same on every backend.
    """
    images = _validate_images(images)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    x = images.astype(np.float32)
    n, h, w, c = x.shape
    if (h, w) != (RESOLUTION, RESOLUTION):
        mh, mw = _matrix(h), _matrix(w)
        x = np.matmul(mh, x.reshape(n, h, w * c)).reshape(n, RESOLUTION, w, c)  # rows
        x = np.matmul(mw, x)  # (299, w) @ (n, 299, w, c) -> (n, 299, 299, c)
    return ((x - 128.0) / 128.0).astype(np.float32)


def _get_model(weights) -> keras.Model:
    key = str(Path(weights).expanduser().resolve()) if weights is not None else str(default_weights_path())
    if key not in _MODELS:
        _MODELS[key] = build_inception(weights)
    return _MODELS[key]


def inception_features(images, weights=None, batch_size: int = 64) -> np.ndarray:
    """uint8 NHWC images -> float32 (N, 2048) pool_3 features, in batches of `batch_size`.

    The last batch is padded to `batch_size` so that the compiled predict function is not retraced. The model
    is built once per weights path and kept in a module-level cache.
    """
    images = _validate_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = images.shape[0]
    if n == 0:
        return np.zeros((0, FEATURE_DIM), np.float32)
    model = _get_model(weights)
    out = np.empty((n, FEATURE_DIM), np.float32)
    for start in range(0, n, batch_size):
        x = preprocess(images[start : start + batch_size])
        m = x.shape[0]
        if m < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - m,) + x.shape[1:], np.float32)], axis=0)
        y = model.predict_on_batch(x)
        out[start : start + m] = keras.ops.convert_to_numpy(y)[:m]
    return out


# --------------------------------------------------------------------------------------------------------------
# Statistics and distance
# --------------------------------------------------------------------------------------------------------------


def statistics(features):
    """(mu (D,), sigma (D, D)) in float64 of features (N, D), N >= 2; sigma = np.cov(rowvar=False)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {features.shape}")
    if features.shape[0] < 2:
        raise ValueError(f"FID statistics need at least 2 samples, got {features.shape[0]}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _check_stats(mu, sigma, which):
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    if mu.ndim != 1:
        raise ValueError(f"mu{which} must be a vector, got shape {mu.shape}")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"sigma{which} must have shape {(mu.shape[0], mu.shape[0])}, got {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"mu{which}/sigma{which} contain non-finite values")
    return mu, sigma


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(s1) + tr(s2) - 2 tr(sqrtm(s1 s2)), in float64."""
    from scipy import linalg

    mu1, sigma1 = _check_stats(mu1, sigma1, 1)
    mu2, sigma2 = _check_stats(mu2, sigma2, 2)
    if mu1.shape != mu2.shape:
        raise ValueError(f"statistics have different dimensions: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        # Only the trace enters the distance; reject a significant imaginary part on the diagonal (TTUR's check).
        imag = np.max(np.abs(np.diagonal(covmean).imag)) if covmean.size else 0.0
        if imag > 1e-3:
            raise ValueError(f"sqrtm(sigma1 @ sigma2) has a significant imaginary component ({imag:.3g})")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def save_statistics(path, mu, sigma, metadata=None) -> None:
    """Writes `mu`, `sigma` to an .npz file (EDM's reference-statistics format), atomically.

    `metadata` (a JSON-serialisable dict: how the statistics were made) is stored as an extra string entry
    `metadata`; readers of EDM's format ignore it.
    """
    mu, sigma = _check_stats(mu, sigma, "")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {}
    if metadata is not None:
        import json

        extra["metadata"] = np.asarray(json.dumps(metadata, sort_keys=True))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, mu=mu, sigma=sigma, **extra)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_statistics(path):
    """Reads (mu, sigma) float64 from an .npz file with keys `mu` and `sigma` (allow_pickle=False)."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"FID statistics file {path} does not exist") from None
    except Exception as e:
        raise ValueError(f"{path}: not a readable FID statistics .npz file ({e})") from None
    with data:
        missing = [k for k in ("mu", "sigma") if k not in data.files]
        if missing:
            raise ValueError(f"{path}: FID statistics file lacks key(s) {missing} (has {data.files})")
        try:
            mu, sigma = data["mu"], data["sigma"]
        except ValueError as e:
            raise ValueError(f"{path}: cannot read mu/sigma without pickles ({e})") from None
    try:
        return _check_stats(mu, sigma, "")
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def read_statistics_metadata(path) -> dict:
    """The `metadata` dict stored by `save_statistics` ({} for files without one, e.g. EDM's)."""
    import json

    with np.load(path, allow_pickle=False) as data:
        if "metadata" not in data.files:
            return {}
        return json.loads(str(data["metadata"]))
