"""`load_dataset`: training batches from any offline source or TFDS, through tf.data or through NumPy.

`load_dataset` reads offline ``.npz`` arrays (keras.datasets layout), folders of images (class
sub-folders, optional ``train/``/``test/`` split folders), tar archives of such folders (extracted once
into a cache) and TensorFlow Datasets, and yields float32 NHWC batches in [-1, 1], or
``(images, int32 labels)``, ready for `ConsistencyTrainer.fit` on TensorFlow, JAX or PyTorch.

Two pipelines give the same batches (tests/test_data.py compares them batch by batch):

* ``"tf"`` (`tf_pipeline`): a ``tf.data.Dataset``, which Keras' ``fit`` accepts on every backend; needs TensorFlow.
* ``"numpy"`` (`numpy_pipeline`): a ``keras.utils.PyDataset`` (NumPy and Pillow), for JAX and PyTorch users
  without TensorFlow. Offline sources only (TFDS needs TensorFlow anyway).

Order and resumption
--------------------
The order of examples is a pure function of ``(seed, epoch)``: epoch ``e`` visits the examples in the order
``epoch_order(num_examples, seed, e)`` (a NumPy permutation, independent of any framework's global seed), cut
into ``batches_per_epoch(...)`` batches; random flips are drawn per batch from ``(seed, global batch index)``
(`flip_mask`). Batch ``k`` of a pipeline is therefore the same in every process and in both pipelines, and
``load_dataset(..., skip_batches=k)`` starts exactly at batch ``k`` (whole epochs are skipped without reading
any data; inside an epoch only indices are skipped, except for streamed TFDS sources, see `tf_pipeline`).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from keras_ict.data.sources import positive_int, resolve_source

RESIZE_METHODS = ("bilinear", "area", "nearest")
PIPELINES = ("tf", "numpy")


def default_pipeline():
    """"tf" where TensorFlow is installed, else "numpy". Either loads batches of the CPU presets hundreds of times
    faster than a CPU train step (benchmarks/data_pipeline.py); tf.data decodes JPEG folders faster."""
    try:
        installed = importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # a module entry without a spec (e.g. set to None to hide it)
        installed = False
    return "tf" if installed else "numpy"


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
    pipeline=None,
    tfds_data_dir=None,
):
    """Float32 NHWC image batches in [-1, 1], or ``(images, int32 labels)``, as a dataset `fit` accepts.

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
              ``tensorflow_datasets.load(NAME, split=split, as_supervised=True)`` (the ``tf`` pipeline only;
              install ``keras-ict[tfds]``).
            An existing path wins over a TFDS name.
        image_size: the network resolution; images come out image_size x image_size.
        channels: 1 or 3 (None keeps the source's): 1 -> 3 repeats the grey channel, 3 -> 1 uses luma
            (as tf.image.rgb_to_grayscale); image files also lose any alpha channel.
        split: ``"train"``, ``"test"``, ... (for TFDS any split string, e.g. ``"train[:90%]"``).
        labels: also yield int32 labels (for a class-conditional model); otherwise labels are dropped.
        num_classes: when given, labels must lie in [0, num_classes) (checked up front, or while reading
            for streamed TFDS sources).
        batch_size: examples per batch.
        shuffle: visit examples in `epoch_order` (a fresh permutation per epoch); False keeps stored order.
        seed: seeds the order and the flips. Same seed, same batches, in any process.
        flip: random horizontal flips (probability 1/2 per image, `flip_mask` of the seed and the batch index).
        resize: None pads smaller images symmetrically with black (uint8 0, i.e. -1.0; MNIST 28 -> 32 gets
            2 pixels per side) and rejects larger ones; ``"bilinear"``, ``"area"`` or ``"nearest"`` resizes
            to image_size x image_size instead (as tf.image.resize with antialias=True: anti-aliased when
            shrinking; the aspect ratio is not kept).
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
        pipeline: ``"tf"``, ``"numpy"`` or None (`default_pipeline()`: tf.data where TensorFlow is installed).
        tfds_data_dir: where TFDS datasets are prepared (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``;
            TFDS downloads and prepares a registered dataset there when it is missing and there is network).

    Returns:
        ``"tf"``: a ``tf.data.Dataset`` with element spec ``float32[B, S, S, C]`` or ``(float32[B, S, S, C],
        int32[B])``, prefetched. ``"numpy"``: a `keras_ict.data.numpy_pipeline.ImageBatches` (a
        ``keras.utils.PyDataset``) of the same NumPy batches, with ``as_numpy_iterator()`` like tf.data's.
        Deterministic given the arguments.
    """
    pipeline = default_pipeline() if pipeline is None else pipeline
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be None or one of {PIPELINES}, got {pipeline!r}")
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
        tfds_data_dir=None if tfds_data_dir is None else str(tfds_data_dir),
    )
    kind, where = resolve_source(source, split, cache_dir)
    if pipeline == "numpy":
        from keras_ict.data import numpy_pipeline

        return numpy_pipeline.build(kind, where, split, channels, settings)
    from keras_ict.data import tf_pipeline

    return tf_pipeline.build(kind, where, split, channels, settings)
