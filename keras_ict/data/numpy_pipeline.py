"""The NumPy pipeline of `keras_ict.data.load_dataset` (``pipeline="numpy"``): the tf.data pipeline's batches
without TensorFlow, as a ``keras.utils.PyDataset`` that ``fit`` accepts on every backend.

Each batch is computed from its global index alone (the order of `epoch_order`, the flips of `flip_mask`), so
`ImageBatches` is random-access: Keras may fetch batches on worker threads, and a resumed run starts at any batch
without reading the ones before it. Padding is exact; resizing and RGB -> grey follow TensorFlow's kernels
(`tf.image.resize(..., antialias=True)`, `tf.image.rgb_to_grayscale`) in float32, equal to them up to float
rounding (tests/test_data.py compares the two pipelines).
"""

from __future__ import annotations

import itertools

import keras
import numpy as np

from keras_ict.data.sources import (
    batches_per_epoch,
    check_fits,
    check_label_range,
    checked_folder,
    epoch_order,
    flip_mask,
    load_npz,
    read_image_file,
    target_channels,
)

# tf.image.rgb_to_grayscale's luma weights (ITU-R 601)
_LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)


def build(kind, where, split, channels, settings):
    """The `ImageBatches` of a resolved source (`load_dataset` has checked the settings)."""
    if kind == "tfds":
        raise ValueError(
            f"TFDS source {where!r} needs the tf.data pipeline: install TensorFlow and TensorFlow Datasets "
            "(pip install 'keras-ict[tfds]'), or pass an offline source (a .npz file, an image folder or a .tar.gz of one)"
        )
    if kind == "npz":
        x, y = load_npz(where, split, settings["labels"])
        return _array_batches(x, y, channels, settings, origin=str(where))
    return _folder_batches(where, channels, settings)


class ImageBatches(keras.utils.PyDataset):
    """Global batches ``skip_batches, skip_batches + 1, ...`` of a random-access source; batch ``i`` of this
    dataset is global batch ``skip_batches + i``. Infinite (``num_batches`` None) when repeating."""

    def __init__(self, num_examples, load, settings, workers=1):
        super().__init__(workers=workers)
        self._n, self._load, self._s = num_examples, load, settings
        bs = settings["batch_size"]
        self._per_epoch = batches_per_epoch(num_examples, bs, settings["drop_remainder"])
        if self._per_epoch == 0:
            raise ValueError(f"batch_size={bs} is larger than the dataset ({num_examples} examples) and drop_remainder=True")
        skip = settings["skip_batches"]
        self._first = skip if settings["repeat"] else min(skip, self._per_epoch)
        self._remaining = None if settings["repeat"] else self._per_epoch - self._first
        self._orders = {}

    @property
    def num_batches(self):
        return self._remaining

    def _order(self, epoch):
        if epoch not in self._orders:
            if len(self._orders) > 2:  # batches are fetched near each other: keep the last epochs only
                self._orders.pop(min(self._orders))
            self._orders[epoch] = epoch_order(self._n, self._s["seed"], epoch, self._s["shuffle"])
        return self._orders[epoch]

    def __getitem__(self, index):
        if self._remaining is not None and not 0 <= index < self._remaining:
            raise IndexError(f"batch {index} of a dataset of {self._remaining} batches")
        s = self._s
        number = self._first + int(index)
        epoch, position = divmod(number, self._per_epoch)
        bs = s["batch_size"]
        idx = self._order(epoch)[position * bs:(position + 1) * bs]
        images, labels = self._load(idx)
        images = np.clip(images / np.float32(127.5) - np.float32(1.0), -1.0, 1.0).astype(np.float32)
        if s["flip"]:
            mask = flip_mask(s["seed"], number, len(images))
            images[mask] = images[mask, :, ::-1]
        if s["shard"] is not None:
            shard, count = s["shard"]
            rows = bs // count
            images, labels = images[shard * rows:(shard + 1) * rows], labels[shard * rows:(shard + 1) * rows]
        return (images, labels) if s["labels"] else images

    def as_numpy_iterator(self):
        """The batches in order, like ``tf.data.Dataset.as_numpy_iterator`` (forever when repeating)."""
        indices = itertools.count() if self._remaining is None else range(self._remaining)
        for index in indices:
            yield self[index]


def _array_batches(x, y, channels, s, origin):
    n, height, width, native = x.shape
    target = target_channels(native, channels, origin)
    check_fits(height, width, s, origin)
    if s["labels"]:
        check_label_range(y, s["num_classes"], origin)
    y = y.astype(np.int32) if s["labels"] else np.zeros([n], np.int32)

    def load(idx):
        return fit_size(to_channels(x[idx], target), s), y[idx]

    return ImageBatches(n, load, s)


def _folder_batches(folder, channels, s):
    files, file_labels, _, _, target = checked_folder(folder, channels, s)
    labels = file_labels.astype(np.int32) if s["labels"] else np.zeros([len(files)], np.int32)

    def load(idx):
        images = np.stack([fit_size(to_channels(_without_alpha(read_image_file(files[i])), target), s) for i in idx])
        return images, labels[idx]

    # Decoding files is Python work that releases the GIL in Pillow: two threads keep a training step fed.
    return ImageBatches(len(files), load, s, workers=2)


def _without_alpha(image):
    return image[..., : image.shape[-1] - 1] if image.shape[-1] in (2, 4) else image


def to_channels(images, target):
    """uint8 images (..., H, W, C) with C 1 or 3 -> `target` channels: grey repeated, or RGB to luma exactly as
    tf.image.rgb_to_grayscale (float32 in [0, 1], weighted sum, back to uint8 by x * 255.5 truncated)."""
    native = images.shape[-1]
    if native == target:
        return images
    if target == 3:
        return np.repeat(images, 3, axis=-1)
    unit = images.astype(np.float32) * np.float32(1.0 / 255.0)
    # summed left to right in float32, as TensorFlow's kernel does (a BLAS dot product rounds 2 pixels in 500k
    # of CIFAR-10 the other way)
    grey = (unit[..., 0] * _LUMA[0] + unit[..., 1] * _LUMA[1]) + unit[..., 2] * _LUMA[2]
    return np.clip(grey * np.float32(255.5), 0, 255).astype(np.uint8)[..., None]


def fit_size(images, s):
    """uint8 (..., H, W, C) -> float32 in [0, 255] at image_size: zero-padded symmetrically, or resized."""
    size = s["image_size"]
    height, width = images.shape[-3], images.shape[-2]
    if s["resize"] is None:
        top, left = (size - height) // 2, (size - width) // 2
        pads = [(0, 0)] * (images.ndim - 3) + [(top, size - height - top), (left, size - width - left), (0, 0)]
        return np.pad(images, pads).astype(np.float32)
    if (height, width) == (size, size):
        return images.astype(np.float32)
    rows, cols = resize_weights(height, size, s["resize"]), resize_weights(width, size, s["resize"])
    resized = np.einsum("oh,...hwc->...owc", rows, images.astype(np.float32))
    resized = np.einsum("pw,...owc->...opc", cols, resized)
    return np.clip(resized, 0.0, 255.0).astype(np.float32)


def resize_weights(in_size, out_size, method):
    """(out_size, in_size) float32 matrix of one axis of tf.image.resize(antialias=True): "bilinear" is
    ScaleAndTranslate's triangle kernel (widened by the shrink factor, normalised per output pixel), "area"
    ResizeArea's overlap of output and input pixels, "nearest" ResizeNearestNeighbor with half-pixel centres."""
    weights = np.zeros((out_size, in_size), np.float32)
    inv_scale = np.float32(in_size) / np.float32(out_size)
    if method == "nearest":
        for i in range(out_size):
            weights[i, min(int(np.floor((np.float32(i) + np.float32(0.5)) * inv_scale)), in_size - 1)] = 1.0
        return weights
    if method == "area":
        for i in range(out_size):
            start, end = i * float(inv_scale), (i + 1) * float(inv_scale)
            for j in range(int(np.floor(start)), int(np.ceil(end))):
                overlap = min(end, j + 1.0) - max(start, float(j))
                weights[i, min(j, in_size - 1)] += overlap / float(inv_scale)
        return weights
    kernel_scale = max(inv_scale, np.float32(1.0))
    for i in range(out_size):
        sample = (np.float32(i) + np.float32(0.5)) * inv_scale
        start = max(int(np.ceil(sample - kernel_scale - np.float32(0.5))), 0)
        end = min(int(np.floor(sample + kernel_scale - np.float32(0.5))), in_size - 1) + 1
        source = np.arange(start, end, dtype=np.float32)
        row = np.maximum(np.float32(0.0), np.float32(1.0) - np.abs((source + np.float32(0.5) - sample) / kernel_scale))
        total = row.sum(dtype=np.float32)
        weights[i, start:end] = row / total if total > 0 else row
    return weights
