"""Training data: one tf.data pipeline for every Keras backend.

`load_dataset` reads offline ``.npz`` arrays (keras.datasets layout), folders of images (class
sub-folders, optional ``train/``/``test/`` split folders), tar archives of such folders (extracted once
into a cache) and TensorFlow Datasets, and yields float32 NHWC batches in [-1, 1], or
``(images, int32 labels)``, ready for `ConsistencyTrainer.fit` on TensorFlow, JAX or PyTorch (Keras' ``fit``
accepts a ``tf.data.Dataset`` on every backend).

Order and resumption
--------------------
The order of examples is a pure function of ``(seed, epoch)``: epoch ``e`` visits the examples in the order
``epoch_order(num_examples, seed, e)`` (a NumPy permutation, independent of TensorFlow's global seed), cut
into ``batches_per_epoch(...)`` batches; random flips are drawn per batch from ``(seed, global batch index)``
with stateless TensorFlow ops. Batch ``k`` of a pipeline is therefore the same in every process, and
``load_dataset(..., skip_batches=k)`` starts exactly at batch ``k`` (whole epochs are skipped without reading
any data; inside an epoch only indices are skipped, except for streamed TFDS sources, see below).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from keras_ict.files import cache_root, sha256_file

try:
    import tensorflow as tf
except ImportError as error:  # pragma: no cover - tensorflow is a test dependency
    raise ImportError(
        "keras_ict.data builds tf.data pipelines and needs TensorFlow (pip install tensorflow-cpu, or "
        "keras-ict[tensorflow]); the pipeline then feeds any Keras backend"
    ) from error

__all__ = [
    "KNOWN_TFDS_NAMES",
    "batches_per_epoch",
    "dataset_info",
    "default_cache_dir",
    "epoch_order",
    "extract_archive",
    "load_dataset",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
SPLIT_DIR_NAMES = ("train", "test", "val", "valid", "validation")
RESIZE_METHODS = ("bilinear", "area", "nearest")
KNOWN_TFDS_NAMES = (
    "mnist",
    "fashion_mnist",
    "cifar10",
    "imagenet_resized/32x32",
    "imagenet_resized/64x64",
)
# TFDS datasets up to this size (decoded uint8) are read into memory once and shuffled exactly like .npz
# arrays; larger ones are streamed with a windowed shuffle of this many examples.
TFDS_IN_MEMORY_BYTES = 2 * 1024**3
TFDS_SHUFFLE_WINDOW = 16384

_FLIP_TAG = 0x666C6970  # decorrelates the flip stream from the windowed-shuffle stream
_WINDOW_TAG = 0x77696E64
_AUTOTUNE = tf.data.AUTOTUNE


# --------------------------------------------------------------------------------------------------------
# Public helpers


def epoch_order(num_examples, seed, epoch, shuffle=True):
    """The order in which epoch `epoch` visits the examples: an int64 array, a permutation of range(n).

    ``np.random.default_rng([seed, epoch]).permutation(num_examples)`` (arange when ``shuffle=False``), so it
    depends on nothing but its arguments: not on TensorFlow's or Keras' global seed, nor on the process.
    """
    if not shuffle:
        return np.arange(num_examples, dtype=np.int64)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(num_examples).astype(np.int64)


def batches_per_epoch(num_examples, batch_size, drop_remainder=True):
    """Batches in one epoch. Batches never straddle epochs: the last partial batch of each epoch is dropped
    (``drop_remainder=True``) or yielded short. Global batch ``k`` is batch ``k % b`` of epoch ``k // b``."""
    if drop_remainder:
        return num_examples // batch_size
    return -(-num_examples // batch_size)


def default_cache_dir():
    """Where archives are extracted: ``$KERAS_ICT_CACHE/datasets``, else ``~/.cache/keras_ict/datasets``."""
    return cache_root() / "datasets"


def extract_archive(archive, cache_dir=None):
    """Extract a tar archive (``.tar.gz``, ``.tgz``, ...) once and return the extracted folder.

    The folder is ``<cache>/<archive stem>-<sha256 of the archive>``, so a changed archive gets a new folder
    and an unchanged one is reused without reading it again past the hash. Extraction goes to a temporary
    folder in the same cache that is renamed into place only when complete, so an interrupted extraction
    never leaves a half-filled cache entry (a stale ``.*.partial`` folder may remain; it is never read).
    Members with absolute paths or ``..`` components, links leaving the archive and device files are
    rejected with a ValueError before anything is cached.
    """
    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {str(archive)!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    digest = _sha256(archive)
    final = cache / f"{_archive_stem(archive.name)}-{digest}"
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=cache))
    try:
        _extract_into(archive, partial)
        os.chmod(partial, 0o755)  # mkdtemp makes it private
        try:
            os.rename(partial, final)
        except OSError:
            if not final.is_dir():  # not a lost race with another process extracting the same archive
                raise
            shutil.rmtree(partial, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def dataset_info(source, split="train", *, cache_dir=None):
    """Cheap facts about a source, without building a pipeline.

    Returns a dict with ``num_examples``, ``image_shape`` (H, W, C) as stored, before any padding or
    resizing (C after dropping an alpha channel for image files; None entries where a TFDS dataset has
    variable sizes), ``num_classes`` (None without labels; for arrays ``max(y) + 1``) and ``class_names``
    (folder names or TFDS label names, else None). Reads array headers (.npz), the file listing and the first
    image (folders and archives, which are extracted once), or the TFDS builder's info.
    """
    kind, where = _resolve(source, split, cache_dir)
    if kind == "npz":
        shape, y = _npz_header(where, split)
        image_shape = tuple(shape[1:]) + ((1,) if len(shape) == 3 else ())
        num_classes = None if y is None or y.size == 0 else int(y.max()) + 1
        return dict(num_examples=int(shape[0]), image_shape=image_shape, num_classes=num_classes, class_names=None)
    if kind == "folder":
        files, _, class_names = _list_images(where)
        return dict(
            num_examples=len(files),
            image_shape=_first_image_shape(files[0]),
            num_classes=None if class_names is None else len(class_names),
            class_names=class_names,
        )
    return _tfds_info(where, split)


# --------------------------------------------------------------------------------------------------------
# load_dataset


def load_dataset(
    source,
    *,
    image_size,
    channels=None,
    split="train",
    labels=False,
    num_classes=None,
    batch_size,
    shuffle=True,
    seed=0,
    flip=False,
    resize=None,
    repeat=True,
    cache_dir=None,
    drop_remainder=True,
    skip_batches=0,
):
    """A tf.data.Dataset of float32 NHWC image batches in [-1, 1], or ``(images, int32 labels)``.

    Args:
        source: where the images are:
            * a ``.npz`` file with ``x_{split}`` (N, H, W) or (N, H, W, C) uint8 and, for labels,
              ``y_{split}`` (N,) or (N, 1), as keras.datasets stores them;
            * a folder of images (PNG, JPEG, BMP, GIF) in class sub-folders, labelled by the sorted folder
              names like ``keras.utils.image_dataset_from_directory``, or images directly in the folder (no
              labels); a folder holding ``train/``, ``test/``, ... sub-folders is a split folder and
              ``split`` picks one;
            * a tar archive (``.tar.gz``, ``.tgz``, ...) of such a folder, extracted once into the cache (see
              `extract_archive`); a single top-level folder in the archive is entered;
            * ``"tfds:NAME"``, or a bare name from `KNOWN_TFDS_NAMES`, read with
              ``tensorflow_datasets.load(NAME, split=split, as_supervised=True)``.
            An existing path wins over a TFDS name.
        image_size: the network resolution; images come out image_size x image_size.
        channels: 1 or 3 (None keeps the source's): 1 -> 3 repeats the grey channel, 3 -> 1 uses luma
            (tf.image.rgb_to_grayscale); image files also lose any alpha channel.
        split: ``"train"``, ``"test"``, ... (for TFDS any split string, e.g. ``"train[:90%]"``).
        labels: also yield int32 labels (for a class-conditional model); otherwise labels are dropped.
        num_classes: when given, labels must lie in [0, num_classes) (checked up front, or while reading
            for streamed TFDS sources).
        batch_size: examples per batch.
        shuffle: visit examples in `epoch_order` (a fresh permutation per epoch); False keeps stored order.
        seed: seeds the order and the flips. Same seed, same batches, in any process.
        flip: random horizontal flips (probability 1/2 per image, from the seed and the batch index).
        resize: None pads smaller images symmetrically with black (uint8 0, i.e. -1.0; MNIST 28 -> 32 gets
            2 pixels per side) and rejects larger ones; ``"bilinear"``, ``"area"`` or ``"nearest"`` resizes
            to image_size x image_size instead (anti-aliased when shrinking; the aspect ratio is not kept).
        repeat: True repeats epochs forever (for training: pass ``steps_per_epoch`` to fit); False yields one
            epoch.
        cache_dir: where archives are extracted (default `default_cache_dir()`).
        drop_remainder: drop the last partial batch of every epoch (static batch shape for jit).
        skip_batches: start at global batch ``skip_batches`` of this pipeline, e.g. the number of training
            steps already taken when resuming. Whole epochs are skipped without reading data; within an
            epoch only indices are skipped, except for streamed (large) TFDS sources, which read the skipped
            examples of the current epoch.

    Returns:
        A ``tf.data.Dataset`` with element spec ``float32[B, S, S, C]`` or ``(float32[B, S, S, C],
        int32[B])``, prefetched, deterministic given the arguments.
    """
    image_size = _positive_int(image_size, "image_size")
    batch_size = _positive_int(batch_size, "batch_size")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    if isinstance(skip_batches, bool) or not isinstance(skip_batches, (int, np.integer)) or skip_batches < 0:
        raise ValueError(f"skip_batches must be a non-negative int, got {skip_batches!r}")
    skip_batches = int(skip_batches)
    if resize is not None and resize not in RESIZE_METHODS:
        raise ValueError(f"resize must be None or one of {RESIZE_METHODS}, got {resize!r}")
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    if num_classes is not None:
        num_classes = _positive_int(num_classes, "num_classes")

    settings = dict(
        image_size=image_size,
        labels=bool(labels),
        num_classes=num_classes,
        batch_size=batch_size,
        shuffle=bool(shuffle),
        seed=seed,
        flip=bool(flip),
        resize=resize,
        repeat=bool(repeat),
        drop_remainder=bool(drop_remainder),
        skip_batches=skip_batches,
    )
    kind, where = _resolve(source, split, cache_dir)
    if kind == "npz":
        x, y = _load_npz(where, split, labels)
        return _array_pipeline(x, y, channels, settings, origin=str(where))
    if kind == "folder":
        return _folder_pipeline(where, channels, settings)
    return _tfds_pipeline(where, split, channels, settings)


# --------------------------------------------------------------------------------------------------------
# Sources


def _resolve(source, split, cache_dir):
    """(kind, location): ("npz", Path), ("folder", Path of the split folder) or ("tfds", name)."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise TypeError(f"source must be a path or a dataset name (str), got {type(source).__name__}")
    if source.startswith("tfds:"):
        name = source[len("tfds:"):]
        if not name:
            raise ValueError("empty TFDS name in source 'tfds:'")
        return "tfds", name
    path = Path(source).expanduser()
    if path.is_dir():
        return "folder", _split_folder(path, split)
    if path.is_file():
        lower = path.name.lower()
        if lower.endswith(".npz"):
            return "npz", path
        if lower.endswith(ARCHIVE_SUFFIXES) or tarfile.is_tarfile(path):
            root = extract_archive(path, cache_dir)
            entries = [p for p in root.iterdir() if not p.name.startswith(".")]
            if len(entries) == 1 and entries[0].is_dir():
                root = entries[0]
            return "folder", _split_folder(root, split)
        raise ValueError(
            f"unsupported dataset file {source!r}: expected a .npz file, a tar archive ({', '.join(ARCHIVE_SUFFIXES)}) "
            "or a folder of images"
        )
    if source in KNOWN_TFDS_NAMES:
        return "tfds", source
    raise FileNotFoundError(
        f"dataset source {source!r} not found: no such file or folder (for a TensorFlow Datasets dataset write "
        f"'tfds:NAME'; bare names accepted: {', '.join(KNOWN_TFDS_NAMES)})"
    )


def _split_folder(folder, split):
    subdirs = {p.name for p in folder.iterdir() if p.is_dir()}
    splits = sorted(subdirs & set(SPLIT_DIR_NAMES))
    if not splits:
        if split != "train":
            raise ValueError(
                f"folder {str(folder)!r} has no split sub-folders ({', '.join(SPLIT_DIR_NAMES)}), so split={split!r} "
                "cannot be picked; pass the folder of that split itself (split='train' takes the whole folder)"
            )
        return folder
    if split not in subdirs:
        raise ValueError(f"folder {str(folder)!r} has split sub-folders {splits} but none named {split!r}")
    return folder / split


def _npz_key(npz, key, path):
    if key not in npz.files:
        raise ValueError(f"{str(path)!r} has no array {key!r}; available keys: {sorted(npz.files)}")


def _npz_array(npz, key, path):
    """npz[key], with NumPy's refusal of pickled object arrays turned into a message naming the file."""
    try:
        return npz[key]
    except ValueError as e:
        if "allow_pickle" not in str(e):
            raise
        raise ValueError(
            f"{key} in {str(path)!r} is an object array (pickled Python objects, which can run code when loaded); "
            "refusing to read it: store numeric arrays (uint8 images, integer labels)"
        ) from None


def _open_npz(path):
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{str(path)!r} is not a readable .npz file (truncated or corrupt?): {e}") from None


def _check_images_array(shape, dtype, path, split):
    if dtype != np.uint8:
        raise ValueError(f"x_{split} in {str(path)!r} must be uint8 images (0..255), got dtype {dtype}")
    if len(shape) not in (3, 4):
        raise ValueError(f"x_{split} in {str(path)!r} must have shape (N, H, W) or (N, H, W, C), got {tuple(shape)}")
    if shape[0] == 0:
        raise ValueError(f"x_{split} in {str(path)!r} holds no images (shape {tuple(shape)})")


def _npz_header(path, split):
    """(shape of x_{split}, y_{split} or None), reading only the .npy header of x; checks dtype, rank, size."""
    with _open_npz(path) as npz:
        _npz_key(npz, f"x_{split}", path)
        try:
            y = _labels_vector(_npz_array(npz, f"y_{split}", path), path, split) if f"y_{split}" in npz.files else None
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise ValueError(f"{str(path)!r}: cannot read y_{split} (truncated or corrupt?): {e}") from None
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"x_{split}.npy") as stream:
            version = np.lib.format.read_magic(stream)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(stream)
    except Exception:  # noqa: BLE001 - unusual header: load the array instead
        try:
            with _open_npz(path) as npz:
                array = _npz_array(npz, f"x_{split}", path)
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise ValueError(f"{str(path)!r}: cannot read x_{split} (truncated or corrupt?): {e}") from None
        shape, dtype = array.shape, array.dtype
    _check_images_array(shape, np.dtype(dtype), path, split)
    return tuple(int(d) for d in shape), y


def _labels_vector(y, path, split):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y_{split} in {str(path)!r} must have shape (N,) or (N, 1), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y_{split} in {str(path)!r} must hold integer labels, got dtype {y.dtype}")
    return y.astype(np.int64)


def _load_npz(path, split, with_labels):
    with _open_npz(path) as npz:
        _npz_key(npz, f"x_{split}", path)
        try:
            x = _npz_array(npz, f"x_{split}", path)
            y = None
            if with_labels:
                _npz_key(npz, f"y_{split}", path)
                y = _labels_vector(_npz_array(npz, f"y_{split}", path), path, split)
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise ValueError(f"{str(path)!r} cannot be read (truncated or corrupt?): {e}") from None
    _check_images_array(x.shape, x.dtype, path, split)
    if x.ndim == 3:
        x = x[..., None]
    if y is not None and len(y) != len(x):
        raise ValueError(f"x_{split} has {len(x)} images but y_{split} has {len(y)} labels in {str(path)!r}")
    return x, y


def _list_images(folder):
    """(files, labels or None, class_names or None) from class sub-folders, else from the folder itself."""
    folder = Path(folder)
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    if class_dirs:
        for label, class_dir in enumerate(class_dirs):
            for root, dirs, names in os.walk(class_dir, followlinks=True):
                dirs.sort()
                for name in sorted(names):
                    if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                        files.append(os.path.join(root, name))
                        labels.append(label)
        class_names = [p.name for p in class_dirs]
        where = f"its class sub-folders ({', '.join(class_names[:5])}{', ...' if len(class_names) > 5 else ''})"
    else:
        files = sorted(
            str(p) for p in folder.iterdir()
            if p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS) and not p.name.startswith(".")
        )
        labels, class_names, where = None, None, "it"
    if not files:
        kinds = ", ".join(IMAGE_EXTENSIONS)
        raise ValueError(f"no images found in {str(folder)!r}: looked in {where} for {kinds} files")
    return files, (None if labels is None else np.asarray(labels, np.int64)), class_names


def _first_image_shape(path):
    image = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
    height, width, native = (int(d) for d in image.shape)
    return height, width, {2: 1, 4: 3}.get(native, native)


def _check_same_size(files):
    """Reads every header with Pillow (about 20 us per file) and names two files that differ in size."""
    from PIL import Image

    first = None
    for path in files:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Exception as error:  # noqa: BLE001 - report which file, whatever Pillow raises
            raise ValueError(f"cannot read image {path!r}: {error}") from error
        if first is None:
            first = (path, height, width)
        elif (height, width) != first[1:]:
            raise ValueError(
                f"images have different sizes: {first[0]!r} is {first[1]}x{first[2]} but {path!r} is "
                f"{height}x{width} (HxW); pass resize='bilinear', 'area' or 'nearest' to bring them all to "
                "image_size"
            )


def _tfds_module():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "this source needs TensorFlow Datasets, which is not installed: pip install tensorflow-datasets, "
            "or pass an offline source (a .npz file, an image folder or a .tar.gz of one)"
        ) from error
    return tfds


def _tfds_info(name, split):
    tfds = _tfds_module()
    info = tfds.builder(name).info
    try:
        num_examples = int(info.splits[split].num_examples)
    except Exception:  # noqa: BLE001 - split strings TFDS cannot size here
        num_examples = None
    features = info.features
    image_key, label_key = (getattr(info, "supervised_keys", None) or ("image", "label"))[:2]
    try:
        image_shape = tuple(features[image_key].shape)
    except Exception:  # noqa: BLE001 - no such feature
        image_shape = None
    try:
        label = features[label_key]
        num_classes = getattr(label, "num_classes", None)
        class_names = list(getattr(label, "names", None) or []) or None
    except Exception:  # noqa: BLE001 - no label feature
        num_classes, class_names = None, None
    return dict(num_examples=num_examples, image_shape=image_shape, num_classes=num_classes, class_names=class_names)


# --------------------------------------------------------------------------------------------------------
# Pipelines


def _array_pipeline(x, y, channels, s, origin):
    n, height, width, native = x.shape
    target = _target_channels(native, channels, origin)
    _check_fits(height, width, s, origin)
    if s["labels"]:
        _check_label_range(y, s["num_classes"], origin)
    x_t = tf.constant(x)
    y_t = tf.constant(y.astype(np.int32)) if s["labels"] else tf.zeros([n], tf.int32)

    def load(number, idx):
        images = _fit_size(_to_channels_static(tf.gather(x_t, idx), native, target), height, width, s)
        return number, images, tf.gather(y_t, idx)

    return _indexed_pipeline(n, load, s)


def _folder_pipeline(folder, channels, s):
    files, file_labels, class_names = _list_images(folder)
    if s["labels"]:
        if file_labels is None:
            raise ValueError(
                f"labels=True but {str(folder)!r} has no class sub-folders (its images sit directly in it), so there "
                "are no labels"
            )
        bad = int(file_labels.max())
        if s["num_classes"] is not None and bad >= s["num_classes"]:
            raise ValueError(
                f"label {bad} (class folder {class_names[bad]!r}) is out of range for num_classes={s['num_classes']}: "
                f"{str(folder)!r} has {len(class_names)} class folders"
            )
    height, width, native = _first_image_shape(files[0])
    target = _target_channels(native, channels, folder)
    if s["resize"] is None:
        _check_same_size(files)
        _check_fits(height, width, s, folder)
    paths_t = tf.constant(files)
    labels_t = tf.constant(file_labels.astype(np.int32)) if s["labels"] else tf.zeros([len(files)], tf.int32)
    size = s["image_size"]

    def decode(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
        image = _to_channels_dynamic(image, target)
        if s["resize"] is not None:  # sizes may differ: always resize
            return _fit_size(image, None, None, s)
        shape = tf.shape(image)[:2]
        check = tf.debugging.Assert(
            tf.reduce_all(tf.equal(shape, [height, width])),
            ["image", path, "has size", shape, f"unlike {files[0]!r} ({height}x{width}); pass resize=..."],
        )
        with tf.control_dependencies([check]):
            image = tf.ensure_shape(tf.identity(image), [height, width, target])
        return _fit_size(image, height, width, s)

    def load(number, idx):
        spec = tf.TensorSpec([size, size, target], tf.float32)
        images = tf.map_fn(decode, tf.gather(paths_t, idx), fn_output_signature=spec)
        return number, images, tf.gather(labels_t, idx)

    return _indexed_pipeline(len(files), load, s)


def _indexed_pipeline(n, load, s):
    """Random-access sources: per-epoch index permutations, cut into batches, skipped, then loaded."""
    bs = s["batch_size"]
    per_epoch = batches_per_epoch(n, bs, s["drop_remainder"])
    if per_epoch == 0:
        raise ValueError(f"batch_size={bs} is larger than the dataset ({n} examples) and drop_remainder=True")
    first_epoch, offset = divmod(s["skip_batches"], per_epoch) if s["repeat"] else (0, min(s["skip_batches"], per_epoch))
    seed, shuffle = s["seed"], s["shuffle"]

    def order(epoch):
        return epoch_order(n, seed, int(epoch), shuffle)

    def index_batches(epoch):
        idx = tf.numpy_function(order, [epoch], tf.int64, stateful=False)
        idx = tf.ensure_shape(idx, [n])
        return tf.data.Dataset.from_tensor_slices(idx).batch(bs, drop_remainder=s["drop_remainder"])

    epochs = tf.data.Dataset.counter(first_epoch) if s["repeat"] else tf.data.Dataset.range(1)
    ds = epochs.flat_map(index_batches).enumerate(start=first_epoch * per_epoch).skip(offset)
    ds = ds.map(load, num_parallel_calls=_AUTOTUNE, deterministic=True)
    remaining = None if s["repeat"] else per_epoch - offset
    return _finish(ds, s, remaining)


def _tfds_pipeline(name, split, channels, s):
    tfds = _tfds_module()
    ds = tfds.load(name, split=split, as_supervised=True)
    image_spec = ds.element_spec[0]
    origin = f"tfds:{name} ({split})"
    if image_spec.dtype != tf.uint8:
        raise ValueError(f"{origin} images must be uint8, got {image_spec.dtype.name}")
    shape = image_spec.shape
    n = int(ds.cardinality())
    known = shape.rank == 3 and shape.is_fully_defined() and n >= 0
    if known and n * int(np.prod(shape)) <= TFDS_IN_MEMORY_BYTES:
        xs, ys = [], []
        for images, labels in ds.batch(4096).as_numpy_iterator():
            xs.append(images)
            ys.append(labels)
        x = np.concatenate(xs) if xs else np.zeros((0, *shape), np.uint8)
        y = np.concatenate(ys).astype(np.int64) if ys else np.zeros((0,), np.int64)
        return _array_pipeline(x, y if s["labels"] else None, channels, s, origin)
    return _stream_pipeline(ds, n if n >= 0 else None, channels, s, origin)


def _stream_pipeline(ds, n, channels, s, origin):
    """Large TFDS datasets: stored order, windowed shuffle from (seed, epoch, window), per-epoch batches."""
    shape = ds.element_spec[0].shape
    native = shape[-1]
    if native is None:
        raise ValueError(f"{origin} images have an unknown number of channels")
    target = _target_channels(native, channels, origin)
    height, width = shape[0], shape[1]
    if s["resize"] is None:
        if height is None or width is None:
            raise ValueError(f"{origin} images vary in size; pass resize='area', 'bilinear' or 'nearest'")
        _check_fits(height, width, s, origin)
    bs, seed = s["batch_size"], s["seed"]
    num_classes = s["num_classes"]

    def fit(image, label):
        image = _to_channels_static(image, native, target)
        label = tf.cast(label, tf.int32)
        if s["labels"]:
            upper = num_classes if num_classes is not None else tf.int32.max
            check = tf.debugging.Assert(
                tf.logical_and(label >= 0, label < upper), [origin, "label", label, f"out of range for num_classes={num_classes}"]
            )
            with tf.control_dependencies([check]):
                label = tf.identity(label)
        return _fit_size(image, height, width, s), label

    def one_epoch(epoch):
        examples = ds.map(fit, num_parallel_calls=_AUTOTUNE, deterministic=True)
        if s["shuffle"]:
            base = tf.random.experimental.stateless_fold_in(tf.constant([seed, _WINDOW_TAG], tf.int64), epoch)

            def permute(window, batch):
                images, labels = batch
                key = tf.random.experimental.stateless_fold_in(base, window)
                perm = tf.argsort(tf.random.stateless_uniform(tf.shape(labels), key, alg="philox"), stable=True)
                return tf.gather(images, perm), tf.gather(labels, perm)

            examples = examples.batch(TFDS_SHUFFLE_WINDOW).enumerate().map(permute).unbatch()
        return examples.batch(bs, drop_remainder=s["drop_remainder"])

    per_epoch = batches_per_epoch(n, bs, s["drop_remainder"]) if n is not None else None
    if per_epoch == 0:
        raise ValueError(f"batch_size={bs} is larger than the dataset ({n} examples) and drop_remainder=True")
    if per_epoch is not None and s["repeat"]:
        first_epoch, offset = divmod(s["skip_batches"], per_epoch)
    else:
        first_epoch, offset = 0, s["skip_batches"]
    epochs = tf.data.Dataset.counter(first_epoch) if s["repeat"] else tf.data.Dataset.range(1)
    start = first_epoch * (per_epoch or 0)
    ds = epochs.flat_map(one_epoch).enumerate(start=start).skip(offset)
    ds = ds.map(lambda number, batch: (number, batch[0], batch[1]))
    remaining = None if s["repeat"] or per_epoch is None else max(per_epoch - offset, 0)
    return _finish(ds, s, remaining)


def _finish(ds, s, remaining):
    """Scale to [-1, 1], flip from (seed, batch number), drop or keep labels, set cardinality, prefetch."""
    key = tf.constant([s["seed"], _FLIP_TAG], tf.int64)
    flip, with_labels = s["flip"], s["labels"]

    def finish(number, images, labels):
        images = tf.clip_by_value(images / 127.5 - 1.0, -1.0, 1.0)
        if flip:
            batch_key = tf.random.experimental.stateless_fold_in(key, number)
            mask = tf.random.stateless_uniform(tf.shape(images)[:1], batch_key, alg="philox") < 0.5
            images = tf.where(mask[:, None, None, None], tf.reverse(images, axis=[2]), images)
        return (images, labels) if with_labels else images

    ds = ds.map(finish, num_parallel_calls=_AUTOTUNE, deterministic=True)
    if remaining is not None:
        ds = ds.apply(tf.data.experimental.assert_cardinality(remaining))
    elif s["repeat"]:
        ds = ds.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(_AUTOTUNE)


# --------------------------------------------------------------------------------------------------------
# Image processing (uint8 in, float32 0..255 out; scaling to [-1, 1] happens in _finish)


def _target_channels(native, channels, origin):
    if channels is None or channels == native:
        return native
    if (native, channels) in ((1, 3), (3, 1)):
        return channels
    raise ValueError(f"cannot convert {native}-channel images from {str(origin)!r} to channels={channels}")


def _to_channels_static(images, native, target):
    if native == target:
        return images
    if (native, target) == (1, 3):
        return tf.repeat(images, 3, axis=-1)
    return tf.image.rgb_to_grayscale(images)  # (3, 1), the only other pair _target_channels allows


def _to_channels_dynamic(image, target):
    """Decoded file (1-4 channels) -> `target` (1 or 3): alpha dropped, grey repeated or RGB to luma."""
    native = tf.shape(image)[-1]
    image = tf.cond(tf.equal(native % 2, 0), lambda: image[..., : native - 1], lambda: image)  # LA, RGBA
    grey = tf.equal(tf.shape(image)[-1], 1)
    if target == 3:
        image = tf.cond(grey, lambda: tf.repeat(image[..., :1], 3, axis=-1), lambda: image[..., :3])
    else:
        image = tf.cond(grey, lambda: image[..., :1], lambda: tf.image.rgb_to_grayscale(image[..., :3]))
    return tf.ensure_shape(image, [None, None, target])


def _check_fits(height, width, s, origin):
    size = s["image_size"]
    if s["resize"] is None and (height > size or width > size):
        raise ValueError(
            f"images from {str(origin)!r} are {height}x{width}, larger than image_size={size}; pass resize='area' "
            "(or 'bilinear' / 'nearest') to downsize them, or a larger image_size"
        )


def _fit_size(images, height, width, s):
    """Zero-pad (uint8 0, black) symmetrically, or resize, to image_size; float32 in [0, 255]."""
    size = s["image_size"]
    if s["resize"] is None:
        if (height, width) != (size, size):
            top, left = (size - height) // 2, (size - width) // 2
            pads = [[top, size - height - top], [left, size - width - left], [0, 0]]
            images = tf.pad(images, [[0, 0]] * (images.shape.rank - 3) + pads)
        return tf.cast(images, tf.float32)
    if (height, width) == (size, size):  # None, None (sizes vary) always resizes
        return tf.cast(images, tf.float32)
    resized = tf.image.resize(images, [size, size], method=s["resize"], antialias=True)
    return tf.clip_by_value(tf.cast(resized, tf.float32), 0.0, 255.0)


def _check_label_range(y, num_classes, origin):
    bad = np.flatnonzero((y < 0) | ((y >= num_classes) if num_classes is not None else False))
    if bad.size:
        i = int(bad[0])
        limit = f"num_classes={num_classes}" if num_classes is not None else "labels must be >= 0"
        raise ValueError(f"label {int(y[i])} (example {i} of {str(origin)!r}) is out of range for {limit}")


# --------------------------------------------------------------------------------------------------------
# Archives


_sha256 = sha256_file  # the name this module's callers use


def _archive_stem(name):
    lower = name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)] or "archive"
    return name


def _extract_into(archive, destination):
    """Stream the archive member by member into `destination`, refusing unsafe members."""
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            name = member.name
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or os.path.isabs(name) or (parts and parts[0].endswith(":")):
                raise ValueError(f"refusing to extract {str(archive)!r}: member {name!r} has an absolute path")
            if ".." in parts:
                raise ValueError(f"refusing to extract {str(archive)!r}: member {name!r} contains '..'")
            if hasattr(tarfile, "data_filter"):
                try:
                    tar.extract(member, destination, set_attrs=False, filter="data")
                except tarfile.FilterError as error:
                    raise ValueError(f"refusing to extract {str(archive)!r}: {error}") from error
            elif member.isfile() or member.isdir():  # pragma: no cover - Pythons without extraction filters
                tar.extract(member, destination, set_attrs=False)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
