"""Training data: sources (.npz arrays, image folders, tar archives, TensorFlow Datasets) and the pipeline.

* `sources`      resolving and checking a source, the per-epoch order, `dataset_info` (no TensorFlow)
* `archives`     safe, cached extraction of tar archives (no TensorFlow)
* `tf_pipeline`  `load_dataset`, the tf.data pipeline that feeds `fit` on every backend

`load_dataset` imports TensorFlow when first used, so `import keras_ict.data` works without it.
"""

from keras_ict.data.archives import ARCHIVE_SUFFIXES, default_cache_dir, extract_archive
from keras_ict.data.sources import (
    IMAGE_EXTENSIONS,
    KNOWN_TFDS_NAMES,
    SPLIT_DIR_NAMES,
    batches_per_epoch,
    dataset_info,
    epoch_order,
)

__all__ = [
    "ARCHIVE_SUFFIXES",
    "IMAGE_EXTENSIONS",
    "KNOWN_TFDS_NAMES",
    "RESIZE_METHODS",
    "SPLIT_DIR_NAMES",
    "batches_per_epoch",
    "dataset_info",
    "default_cache_dir",
    "epoch_order",
    "extract_archive",
    "load_dataset",
]

_PIPELINE_NAMES = ("load_dataset", "RESIZE_METHODS", "TFDS_IN_MEMORY_BYTES", "TFDS_SHUFFLE_WINDOW")


def __getattr__(name):
    if name in _PIPELINE_NAMES:
        from keras_ict.data import tf_pipeline

        return getattr(tf_pipeline, name)
    raise AttributeError(f"module 'keras_ict.data' has no attribute {name!r}")
