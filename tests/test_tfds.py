"""TensorFlow Datasets for real: a small dataset stored in TFDS format with TFDS's own builder tools (no download,
no mock), then read by name from its data_dir by the pipeline, `keras-ict train`, `sample` and `fid-ref`."""

import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from harness import REPO, our_stderr_lines  # noqa: E402
from keras_ict import data  # noqa: E402

# xdist_group: one worker builds the module's TFDS dataset once
pytestmark = [pytest.mark.backend_independent, pytest.mark.xdist_group("tfds-fixture")]
NAME, TRAIN, TEST = "keras_ict_tiny_digits", 96, 32


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory, shared_dir):
    """A TFDS data_dir holding NAME 1.0.0 (train: 96, test: 32 MNIST digits with labels), and those arrays."""
    path = shared_dir / "datasets" / "mnist_small.npz"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    with np.load(path) as f:
        x, y = f["x_train"][: TRAIN + TEST], f["y_train"][: TRAIN + TEST].astype(np.int64)
    root = tmp_path_factory.mktemp("tfds")
    features = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(28, 28, 1)),
                                           "label": tfds.features.ClassLabel(num_classes=10)})
    splits = {"train": (x[:TRAIN], y[:TRAIN]), "test": (x[TRAIN:], y[TRAIN:])}
    tfds.dataset_builders.store_as_tfds_dataset(
        name=NAME, version="1.0.0", features=features, data_dir=str(root), disable_shuffling=True,
        split_datasets={k: tf.data.Dataset.from_tensor_slices({"image": a[..., None], "label": b})
                        for k, (a, b) in splits.items()},
    )
    np.savez(root / "same.npz", x_train=x[:TRAIN], y_train=y[:TRAIN], x_test=x[TRAIN:], y_test=y[TRAIN:])
    return root


def test_a_local_tfds_dataset_reads_as_its_arrays(tfds_dir):
    info = data.dataset_info(f"tfds:{NAME}", tfds_data_dir=tfds_dir)
    assert info == dict(num_examples=TRAIN, image_shape=(28, 28, 1), num_classes=10,
                        class_names=[str(i) for i in range(10)])
    for split in ("train", "test"):
        settings = dict(split=split, image_size=32, batch_size=16, labels=True, num_classes=10, flip=True, seed=3,
                        skip_batches=2)
        want = data.load_dataset(tfds_dir / "same.npz", **settings).take(5).as_numpy_iterator()
        got = data.load_dataset(f"tfds:{NAME}", tfds_data_dir=tfds_dir, **settings).take(5).as_numpy_iterator()
        for (a, la), (b, lb) in zip(want, got):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(la, lb)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "keras_ict", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=600, env=dict(os.environ, KERAS_BACKEND="torch", TF_CPP_MIN_LOG_LEVEL="2",
                                                          **(env or {})))


def test_train_sample_and_fid_ref_by_name_from_a_data_dir(tfds_dir, tmp_path, shared_dir):
    run = tmp_path / "run"
    net = '{"model_channels": 8, "channel_mult": [1], "attn_resolutions": [], "num_blocks": 1}'
    train = _cli("train", "--preset", "mnist-cond", "--data", f"tfds:{NAME}", "--set", f"tfds_data_dir={tfds_dir}",
                 "--steps", "2", "--batch-size", "8", "--set", f"network_overrides={net}", "--set", "sample_count=4",
                 "--out", run)
    assert train.returncode == 0, train.stderr[-3000:]
    assert (run / "final" / "model.weights.h5").is_file()
    sample = _cli("sample", "--model", run / "final", "--seeds", "0-3", "--labels", "7", "--out", tmp_path / "g.png")
    assert sample.returncode == 0 and (tmp_path / "g.png").is_file(), sample.stderr[-3000:]
    weights = shared_dir / "fid" / "inception-2015-12-05-fid-trunk.pt"
    if not weights.is_file():
        pytest.skip(f"{weights} missing")
    ref = _cli("fid-ref", "--data", f"tfds:{NAME}", "--tfds-data-dir", tfds_dir, "--split", "test", "--preset", "mnist",
               "--out", tmp_path / "ref.npz", env={"KERAS_ICT_CACHE": str(tmp_path / "cache")})
    assert ref.returncode == 0, ref.stderr[-3000:]
    with np.load(tmp_path / "ref.npz") as stats:
        assert stats["mu"].shape == (2048,) and np.all(np.isfinite(stats["sigma"]))


def test_a_tfds_name_that_is_nowhere_is_one_line_before_anything_is_written(tfds_dir, tmp_path):
    run = tmp_path / "run"
    proc = _cli("train", "--preset", "mnist", "--data", "tfds:keras_ict_no_such_set", "--set",
                f"tfds_data_dir={tfds_dir}", "--steps", "2", "--out", run)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = our_stderr_lines(proc.stderr)
    assert len(lines) == 1 and "TFDS has no dataset 'keras_ict_no_such_set'" in lines[0], proc.stderr[-2000:]
    assert not run.exists()
