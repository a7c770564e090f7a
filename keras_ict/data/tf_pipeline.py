"""The tf.data pipeline of `keras_ict.data.load_dataset` (``pipeline="tf"``), for every Keras backend.

Keras' ``fit`` accepts a ``tf.data.Dataset`` on TensorFlow, JAX and PyTorch. The order, the flips and the
resumption are those of `keras_ict.data.pipeline` (shared with the NumPy pipeline); large TFDS datasets are
streamed in stored order with a windowed shuffle from ``(seed, epoch, window)``.
"""

from __future__ import annotations

import numpy as np

from keras_ict.data.pipeline import RESIZE_METHODS  # noqa: F401 - its old home
from keras_ict.data.sources import (
    batches_per_epoch,
    check_fits,
    check_label_range,
    checked_folder,
    epoch_order,
    flip_mask,
    load_npz,
    target_channels,
    tfds_builder,
    tfds_module,
    tfds_supervised_keys,
)

try:
    import tensorflow as tf
except ImportError as error:  # pragma: no cover - tensorflow is a test dependency
    raise ImportError(
        "keras_ict.data.load_dataset builds tf.data pipelines and needs TensorFlow (pip install tensorflow-cpu, or "
        "keras-ict[tensorflow]); the pipeline then feeds any Keras backend"
    ) from error

# TFDS datasets up to this size (decoded uint8) are read into memory once and shuffled exactly like .npz
# arrays; larger ones are streamed with a windowed shuffle of this many examples.
TFDS_IN_MEMORY_BYTES = 2 * 1024**3
TFDS_SHUFFLE_WINDOW = 16384

_WINDOW_TAG = 0x77696E64
_AUTOTUNE = tf.data.AUTOTUNE


def load_dataset(source, **kwargs):
    """`keras_ict.data.load_dataset` with ``pipeline="tf"`` (the name this module had before the NumPy pipeline)."""
    from keras_ict.data.pipeline import load_dataset as load

    return load(source, pipeline="tf", **kwargs)


def build(kind, where, split, channels, settings):
    """The tf.data.Dataset for a resolved source (`load_dataset` has checked the settings)."""
    if kind == "npz":
        x, y = load_npz(where, split, settings["labels"])
        return _array_pipeline(x, y, channels, settings, origin=str(where))
    if kind == "folder":
        return _folder_pipeline(where, channels, settings)
    return _tfds_pipeline(where, split, channels, settings)


def _array_pipeline(x, y, channels, s, origin):
    n, height, width, native = x.shape
    target = target_channels(native, channels, origin)
    check_fits(height, width, s, origin)
    if s["labels"]:
        check_label_range(y, s["num_classes"], origin)
    x_t = tf.constant(x)
    y_t = tf.constant(y.astype(np.int32)) if s["labels"] else tf.zeros([n], tf.int32)

    def load(number, idx):
        images = _fit_size(_to_channels_static(tf.gather(x_t, idx), native, target), height, width, s)
        return number, images, tf.gather(y_t, idx)

    return _indexed_pipeline(n, load, s)


def _folder_pipeline(folder, channels, s):
    files, file_labels, height, width, target = checked_folder(folder, channels, s)
    paths_t = tf.constant(files)
    labels_t = tf.constant(file_labels.astype(np.int32)) if s["labels"] else tf.zeros([len(files)], tf.int32)
    size = s["image_size"]

    def decode(path):
        image = _decode(tf.io.read_file(path))
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


def _decode(raw):
    """Image file bytes -> uint8 (H, W, C). JPEG with the accurate integer IDCT (libjpeg's JDCT_ISLOW, as Pillow
    decodes, so the NumPy pipeline reads the same pixels; decode_image's default fast IDCT differs by up to 4 levels)."""
    return tf.cond(
        tf.io.is_jpeg(raw),
        lambda: tf.io.decode_jpeg(raw, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(raw, channels=0, expand_animations=False),
    )


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
    builder = tfds_builder(name, s["tfds_data_dir"])
    image_key, label_key = tfds_supervised_keys(builder.info)
    examples = tfds.load(name, split=split, data_dir=s["tfds_data_dir"], as_supervised=False)
    if image_key not in examples.element_spec:
        raise ValueError(f"tfds:{name} has no {image_key!r} feature (features: {', '.join(examples.element_spec)})")
    has_labels = label_key in examples.element_spec
    if s["labels"] and not has_labels:
        raise ValueError(f"labels=True but tfds:{name} has no {label_key!r} feature")
    ds = examples.map(lambda e: (e[image_key], e[label_key] if has_labels else tf.zeros([], tf.int64)))
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
    target = target_channels(native, channels, origin)
    height, width = shape[0], shape[1]
    if s["resize"] is None:
        if height is None or width is None:
            raise ValueError(f"{origin} images vary in size; pass resize='area', 'bilinear' or 'nearest'")
        check_fits(height, width, s, origin)
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
    seed, flip, with_labels = s["seed"], s["flip"], s["labels"]

    def mask_of(number, rows):
        return flip_mask(seed, int(number), int(rows))

    def finish(number, images, labels):
        images = tf.clip_by_value(images / 127.5 - 1.0, -1.0, 1.0)
        if flip:
            mask = tf.numpy_function(mask_of, [number, tf.shape(images)[0]], tf.bool, stateful=False)
            mask = tf.ensure_shape(mask, images.shape[:1])
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
