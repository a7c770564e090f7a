"""Where training images come from, without TensorFlow: resolving a source (.npz, image folder, tar archive,
TFDS name), reading and checking .npz arrays and folder listings, the per-epoch order, and `dataset_info`.

Both pipelines (`tf_pipeline.py`, `numpy_pipeline.py`) read through these; image files are read with Pillow
here, only TFDS needs TensorFlow.
"""

import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from keras_ict.data.archives import ARCHIVE_SUFFIXES, extract_archive

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLIT_DIR_NAMES = ("train", "test", "val", "valid", "validation")
KNOWN_TFDS_NAMES = (
    "mnist",
    "fashion_mnist",
    "cifar10",
    "imagenet_resized/32x32",
    "imagenet_resized/64x64",
)


def epoch_order(num_examples, seed, epoch, shuffle=True):
    """The order in which epoch `epoch` visits the examples: an int64 array, a permutation of range(n).

    ``np.random.default_rng([seed, epoch]).permutation(num_examples)`` (arange when ``shuffle=False``), so it
    depends on nothing but its arguments: not on TensorFlow's or Keras' global seed, nor on the process.
    """
    if not shuffle:
        return np.arange(num_examples, dtype=np.int64)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(num_examples).astype(np.int64)


_FLIP_TAG = 0x666C6970  # keeps the flip stream apart from the order stream of the same seed


def flip_mask(seed, batch_number, rows):
    """Which rows of global batch `batch_number` are flipped: a bool array, each True with probability 1/2.

    ``np.random.default_rng([seed, FLIP_TAG, batch_number])``: a function of its arguments only, the same in
    both pipelines and in every process (a sharded process draws the whole batch's mask and keeps its rows).
    """
    return np.random.default_rng([int(seed), _FLIP_TAG, int(batch_number)]).random(int(rows)) < 0.5


def batches_per_epoch(num_examples, batch_size, drop_remainder=True):
    """Batches in one epoch. Batches never straddle epochs: the last partial batch of each epoch is dropped
    (``drop_remainder=True``) or yielded short. Global batch ``k`` is batch ``k % b`` of epoch ``k // b``."""
    if drop_remainder:
        return num_examples // batch_size
    return -(-num_examples // batch_size)


def dataset_info(source, split="train", *, cache_dir=None, tfds_data_dir=None):
    """Cheap facts about a source, without building a pipeline.

    Returns a dict with ``num_examples``, ``image_shape`` (H, W, C) as stored, before any padding or
    resizing (C after dropping an alpha channel for image files; None entries where a TFDS dataset has
    variable sizes), ``num_classes`` (None without labels; for arrays ``max(y) + 1``) and ``class_names``
    (folder names or TFDS label names, else None). Reads array headers (.npz), the file listing and the first
    image (folders and archives, which are extracted once), or the TFDS builder's info (from `tfds_data_dir`,
    default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    """
    kind, where = resolve_source(source, split, cache_dir)
    if kind == "npz":
        shape, y = _npz_header(where, split)
        image_shape = tuple(shape[1:]) + ((1,) if len(shape) == 3 else ())
        num_classes = None if y is None or y.size == 0 else int(y.max()) + 1
        return dict(num_examples=int(shape[0]), image_shape=image_shape, num_classes=num_classes, class_names=None)
    if kind == "folder":
        files, _, class_names = list_images(where)
        return dict(
            num_examples=len(files),
            image_shape=first_image_shape(files[0]),
            num_classes=None if class_names is None else len(class_names),
            class_names=class_names,
        )
    return _tfds_info(where, split, tfds_data_dir)


def resolve_source(source, split, cache_dir):
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


def load_npz(path, split, with_labels):
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


def list_images(folder):
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


def read_image_file(path):
    """uint8 (H, W, C) pixels of an image file, as the tf.data pipeline decodes them (C: 1 grey, 2 grey + alpha,
    3 RGB, 4 RGBA; a GIF's first frame as RGB; palette images expanded to RGB, or RGBA where they have
    transparency; 16-bit images cut to their high byte; JPEG with the accurate IDCT), with Pillow.
    tests/test_numpy_pipeline.py checks it against TensorFlow's decoders, format by format."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.seek(0)
            if image.format == "GIF":
                image = image.convert("RGB")
            elif image.mode in ("I;16", "I;16B", "I;16L", "I"):
                return (np.asarray(image, np.uint32) >> 8).astype(np.uint8)[..., None]
            elif image.mode == "1":
                image = image.convert("L")
            elif image.mode in ("P", "PA"):
                image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
            elif image.mode not in ("L", "LA", "RGB", "RGBA"):
                image = image.convert("RGB")
            pixels = np.asarray(image, np.uint8)
    except Exception as error:  # noqa: BLE001 - report which file, whatever Pillow raises
        raise ValueError(f"cannot read image {str(path)!r}: {error}") from error
    return pixels[..., None] if pixels.ndim == 2 else pixels


def first_image_shape(path):
    """(height, width, channels) of an image file as the pipelines read it (alpha dropped)."""
    height, width, native = read_image_file(path).shape
    return height, width, {2: 1, 4: 3}.get(native, native)


def check_same_size(files):
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


def tfds_module():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "this source needs TensorFlow Datasets, which is not installed: pip install 'keras-ict[tfds]' (or pip "
            "install tensorflow-datasets), or pass an offline source (a .npz file, an image folder or a .tar.gz of one)"
        ) from error
    return tfds


def tfds_builder(name, data_dir=None):
    """TFDS's builder of `name` (registered, or prepared in `data_dir`), or ValueError naming the problem."""
    tfds = tfds_module()
    try:
        return tfds.builder(name, data_dir=None if data_dir is None else str(data_dir))
    except Exception as error:  # noqa: BLE001 - tfds raises several kinds; one line names the source
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"TFDS has no dataset {name!r} (data_dir {data_dir or 'default'}): {first}") from error


def prepare_tfds(name, data_dir=None):
    """Makes sure TFDS dataset `name` is prepared in `data_dir` (downloading it if TFDS knows how), before a
    training run writes anything; ValueError in one line when that is impossible (no network, no local copy)."""
    builder = tfds_builder(name, data_dir)
    if builder.is_prepared():
        return builder
    try:
        builder.download_and_prepare()
    except Exception as error:  # noqa: BLE001 - no network, manual downloads, ...: one line names the way out
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        where = data_dir or "default ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
        raise ValueError(
            f"TFDS dataset {name!r} is not prepared in data_dir {where} "
            f"and could not be downloaded ({type(error).__name__}: {first}); set tfds_data_dir to where it is "
            "prepared, or pass an offline source (a .npz file, an image folder or a .tar.gz of one)"
        ) from error
    return builder


def tfds_supervised_keys(info):
    """(image key, label key) of a TFDS dataset: its supervised keys, else ("image", "label")."""
    keys = getattr(info, "supervised_keys", None)
    return tuple(keys[:2]) if keys and all(isinstance(k, str) for k in keys[:2]) else ("image", "label")


def _tfds_info(name, split, data_dir=None):
    info = tfds_builder(name, data_dir).info
    try:
        num_examples = int(info.splits[split].num_examples)
    except Exception:  # noqa: BLE001 - split strings TFDS cannot size here
        num_examples = None
    features = info.features
    image_key, label_key = tfds_supervised_keys(info)
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


# Checks both pipelines make before reading any image (`s`: the settings of load_dataset).

def target_channels(native, channels, origin):
    if channels is None or channels == native:
        return native
    if (native, channels) in ((1, 3), (3, 1)):
        return channels
    raise ValueError(f"cannot convert {native}-channel images from {str(origin)!r} to channels={channels}")


def check_fits(height, width, s, origin):
    size = s["image_size"]
    if s["resize"] is None and (height > size or width > size):
        raise ValueError(
            f"images from {str(origin)!r} are {height}x{width}, larger than image_size={size}; pass resize='area' "
            "(or 'bilinear' / 'nearest') to downsize them, or a larger image_size"
        )


def check_label_range(y, num_classes, origin):
    bad = np.flatnonzero((y < 0) | ((y >= num_classes) if num_classes is not None else False))
    if bad.size:
        i = int(bad[0])
        limit = f"num_classes={num_classes}" if num_classes is not None else "labels must be >= 0"
        raise ValueError(f"label {int(y[i])} (example {i} of {str(origin)!r}) is out of range for {limit}")


def checked_folder(folder, channels, s):
    """(files, labels or None, height, width, target channels) of an image folder, after every check both
    pipelines make before decoding: labels, channel conversion, and (without resizing) one size that fits."""
    files, file_labels, class_names = list_images(folder)
    check_folder_labels(folder, file_labels, class_names, s)
    height, width, native = first_image_shape(files[0])
    target = target_channels(native, channels, folder)
    if s["resize"] is None:
        check_same_size(files)
        check_fits(height, width, s, folder)
    return files, file_labels, height, width, target


def check_folder_labels(folder, file_labels, class_names, s):
    if not s["labels"]:
        return
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


def positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
