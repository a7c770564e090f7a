"""Training data: sources (.npz arrays, image folders, tar archives, TensorFlow Datasets) and two pipelines.

* `sources`         resolving and checking a source, reading image files, the per-epoch order and flips,
                    `dataset_info` (no TensorFlow)
* `archives`        safe, cached extraction of tar archives (no TensorFlow)
* `pipeline`        `load_dataset`: the settings, the source, then one of the two pipelines (no TensorFlow)
* `tf_pipeline`     the tf.data pipeline (offline sources and TFDS; needs TensorFlow)
* `numpy_pipeline`  the same batches as a keras.utils.PyDataset (offline sources; NumPy and Pillow)

`fit` takes either on every backend. Only the tf.data pipeline imports TensorFlow, when it is first used.
"""

from keras_ict.data.archives import ARCHIVE_SUFFIXES, default_cache_dir, extract_archive
from keras_ict.data.pipeline import PIPELINES, RESIZE_METHODS, default_pipeline, load_dataset
from keras_ict.data.sources import (
    IMAGE_EXTENSIONS,
    KNOWN_TFDS_NAMES,
    SPLIT_DIR_NAMES,
    batches_per_epoch,
    dataset_info,
    epoch_order,
    flip_mask,
)

__all__ = [
    "ARCHIVE_SUFFIXES",
    "IMAGE_EXTENSIONS",
    "KNOWN_TFDS_NAMES",
    "PIPELINES",
    "RESIZE_METHODS",
    "SPLIT_DIR_NAMES",
    "batches_per_epoch",
    "dataset_info",
    "default_cache_dir",
    "default_pipeline",
    "epoch_order",
    "extract_archive",
    "flip_mask",
    "load_dataset",
]

_PIPELINE_NAMES = ("TFDS_IN_MEMORY_BYTES", "TFDS_SHUFFLE_WINDOW")


def __getattr__(name):
    if name in _PIPELINE_NAMES:
        from keras_ict.data import tf_pipeline

        return getattr(tf_pipeline, name)
    raise AttributeError(f"module 'keras_ict.data' has no attribute {name!r}")
