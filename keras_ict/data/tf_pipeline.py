"""The tf.data pipeline of training images, for every Keras backend.

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

import numpy as np

from keras_ict.data.sources import (
    batches_per_epoch,
    check_same_size,
    epoch_order,
    first_image_shape,
    list_images,
    load_npz,
    positive_int,
    resolve_source,
    tfds_module,
)

try:
    import tensorflow as tf
except ImportError as error:  # pragma: no cover - tensorflow is a test dependency
    raise ImportError(
        "keras_ict.data.load_dataset builds tf.data pipelines and needs TensorFlow (pip install tensorflow-cpu, or "
        "keras-ict[tensorflow]); the pipeline then feeds any Keras backend"
    ) from error

RESIZE_METHODS = ("bilinear", "area", "nearest")
# TFDS datasets up to this size (decoded uint8) are read into memory once and shuffled exactly like .npz
# arrays; larger ones are streamed with a windowed shuffle of this many examples.
TFDS_IN_MEMORY_BYTES = 2 * 1024**3
TFDS_SHUFFLE_WINDOW = 16384

_FLIP_TAG = 0x666C6970  # decorrelates the flip stream from the windowed-shuffle stream
_WINDOW_TAG = 0x77696E64
_AUTOTUNE = tf.data.AUTOTUNE


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
    shard=None,
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
        shard: ``(index, count)``: yield only rows ``index * b : (index + 1) * b`` of every batch, ``b =
            batch_size / count``, so that ``count`` processes reading with indices 0 .. count - 1 read together
            exactly the batches of one unsharded pipeline (for trainers that do not shard data themselves).

    Returns:
        A ``tf.data.Dataset`` with element spec ``float32[B, S, S, C]`` or ``(float32[B, S, S, C],
        int32[B])``, prefetched, deterministic given the arguments.
    """
    image_size = positive_int(image_size, "image_size")
    batch_size = positive_int(batch_size, "batch_size")
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
        num_classes = positive_int(num_classes, "num_classes")
    if shard is not None:
        index, count = shard
        count = positive_int(count, "shard count")
        if not drop_remainder:
            raise ValueError("shard needs drop_remainder=True (every batch cut into equal parts)")
        if not 0 <= int(index) < count or batch_size % count:
            raise ValueError(f"shard {tuple(shard)} needs 0 <= index < count and batch_size ({batch_size}) divisible by count")
        shard = (int(index), count)

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
        shard=shard,
    )
    kind, where = resolve_source(source, split, cache_dir)
    if kind == "npz":
        x, y = load_npz(where, split, labels)
        return _array_pipeline(x, y, channels, settings, origin=str(where))
    if kind == "folder":
        return _folder_pipeline(where, channels, settings)
    return _tfds_pipeline(where, split, channels, settings)


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
    files, file_labels, class_names = list_images(folder)
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
    height, width, native = first_image_shape(files[0])
    target = _target_channels(native, channels, folder)
    if s["resize"] is None:
        check_same_size(files)
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
    tfds = tfds_module()
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
        if s["shard"] is not None:
            index, count = s["shard"]
            rows = s["batch_size"] // count
            images, labels = images[index * rows:(index + 1) * rows], labels[index * rows:(index + 1) * rows]
        return (images, labels) if with_labels else images

    ds = ds.map(finish, num_parallel_calls=_AUTOTUNE, deterministic=True)
    if remaining is not None:
        ds = ds.apply(tf.data.experimental.assert_cardinality(remaining))
    elif s["repeat"]:
        ds = ds.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(_AUTOTUNE)


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
