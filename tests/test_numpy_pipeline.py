"""The NumPy pipeline (keras.utils.PyDataset, no TensorFlow) gives the tf.data pipeline's batches.

Where TensorFlow is installed the two are compared batch by batch: exactly for padding, flips, order, resumption,
shards, labels and channel conversion; up to float rounding (1e-5 in [-1, 1]) where images are resized.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_ict import data
from keras_ict.data import numpy_pipeline
from keras_ict.data.sources import read_image_file

pytestmark = pytest.mark.backend_independent
RESIZE_ATOL = 1e-5  # measured <= 6.7e-6: float32 sums in another order than TensorFlow's kernels


def first_batches(ds, k):
    iterator = ds.as_numpy_iterator()
    return [next(iterator) for _ in range(k)]


def assert_same_batches(source, k=3, atol=0.0, **settings):
    tf_batches = first_batches(data.load_dataset(source, pipeline="tf", **settings), k)
    np_batches = first_batches(data.load_dataset(source, pipeline="numpy", **settings), k)
    assert len(tf_batches) == len(np_batches) == k
    for want, got in zip(tf_batches, np_batches):
        if settings.get("labels"):
            (want, want_labels), (got, got_labels) = want, got
            assert got_labels.dtype == want_labels.dtype == np.int32
            np.testing.assert_array_equal(got_labels, want_labels)
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)


@pytest.fixture
def mnist(shared_dir):
    path = shared_dir / "datasets" / "mnist_small.npz"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


@pytest.mark.parametrize("settings", [
    dict(image_size=32, batch_size=16, labels=True, num_classes=10, flip=True, skip_batches=130),  # epoch 1
    dict(image_size=32, batch_size=16, shuffle=False, seed=5),
    dict(image_size=28, batch_size=7, drop_remainder=False, repeat=False, skip_batches=290, channels=3),  # short last
    dict(image_size=32, batch_size=16, flip=True, shard=(1, 4), seed=3),
], ids=["labels-flip-skip", "stored-order", "last-partial-rgb", "shard"])
def test_npz_batches_equal_the_tf_pipeline(mnist, settings):
    pytest.importorskip("tensorflow")
    k = 2 if settings.get("repeat") is False else 3
    assert_same_batches(mnist, k=k, **settings)


@pytest.mark.parametrize("method", data.RESIZE_METHODS)
@pytest.mark.parametrize("size", [16, 20, 40], ids=["shrink-2x", "shrink-1.4x", "grow"])
def test_resized_batches_equal_the_tf_pipeline(mnist, method, size):
    pytest.importorskip("tensorflow")
    assert_same_batches(mnist, k=2, atol=RESIZE_ATOL, image_size=size, batch_size=8, resize=method, flip=True)


def test_rgb_to_grey_equals_tensorflow(shared_dir):
    tf = pytest.importorskip("tensorflow")
    path = shared_dir / "datasets" / "cifar10_small.npz"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    with np.load(path) as f:
        x = f["x_test"]
    np.testing.assert_array_equal(numpy_pipeline.to_channels(x, 1), tf.image.rgb_to_grayscale(x).numpy())
    assert_same_batches(path, k=2, split="test", image_size=32, batch_size=50, channels=1, labels=True)


def _image_files(folder):
    """One file per format and mode the pipelines read, 5 x 6 pixels each; {name: path}."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rgba = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    grey = rgba[..., 0]
    palette = Image.fromarray(rgba[..., :3], "RGB").quantize(16)
    with_transparency = palette.copy()
    with_transparency.info["transparency"] = 3
    images = {
        "grey.png": Image.fromarray(grey, "L"),
        "grey-alpha.png": Image.fromarray(rgba[..., :2], "LA"),
        "rgb.png": Image.fromarray(rgba[..., :3], "RGB"),
        "rgba.png": Image.fromarray(rgba, "RGBA"),
        "palette.png": palette,
        "palette-transparent.png": with_transparency,
        "bilevel.png": Image.fromarray(grey > 127),
        "grey16.png": Image.fromarray(grey.astype(np.uint16) * 257 + 3),
        "rgb.jpg": Image.fromarray(rgba[..., :3], "RGB"),
        "grey.jpg": Image.fromarray(grey, "L"),
        "rgb.bmp": Image.fromarray(rgba[..., :3], "RGB"),
        "grey.bmp": Image.fromarray(grey, "L"),
        "palette.gif": palette,
        "rgb.gif": Image.fromarray(rgba[..., :3], "RGB"),
    }
    paths = {}
    for name, image in images.items():
        paths[name] = folder / name
        image.save(paths[name], transparency=3) if name == "palette-transparent.png" else image.save(paths[name])
    return paths


def test_image_files_decode_as_tensorflow_decodes_them(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from keras_ict.data import tf_pipeline

    for name, path in _image_files(tmp_path).items():
        want = tf_pipeline._decode(tf.io.read_file(str(path))).numpy()
        got = read_image_file(path)
        assert got.dtype == np.uint8 and got.shape == want.shape, (name, got.shape, want.shape)
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("settings", [
    dict(image_size=8, batch_size=4, labels=True, flip=True, channels=3),
    dict(image_size=8, batch_size=4, channels=1, skip_batches=5),
    dict(image_size=4, batch_size=4, channels=3, resize="area", labels=True),
], ids=["pad-rgb-labels", "pad-grey-skip", "resize"])
def test_folder_batches_equal_the_tf_pipeline(tmp_path, settings):
    pytest.importorskip("tensorflow")
    files = _image_files(tmp_path / "scratch")
    for i, (name, path) in enumerate(sorted(files.items())):  # two classes of mixed formats
        target = tmp_path / "folder" / ("a" if i % 2 else "b")
        target.mkdir(parents=True, exist_ok=True)
        path.rename(target / name)
    atol = RESIZE_ATOL if settings.get("resize") else 0.0
    assert_same_batches(tmp_path / "folder", k=4, atol=atol, **settings)


def test_pipeline_errors_name_the_problem(mnist):
    with pytest.raises(ValueError, match=r"pipeline must be None or one of \('tf', 'numpy'\), got 'torch'"):
        data.load_dataset(mnist, image_size=32, batch_size=8, pipeline="torch")
    with pytest.raises(ValueError, match=r"TFDS source 'mnist' needs the tf.data pipeline.*keras-ict\[tfds\]"):
        data.load_dataset("mnist", image_size=32, batch_size=8, pipeline="numpy")
    finite = data.load_dataset(mnist, image_size=32, batch_size=1000, repeat=False, pipeline="numpy")
    assert finite.num_batches == 2 and len(list(finite.as_numpy_iterator())) == 2
    with pytest.raises(IndexError, match="batch 2 of a dataset of 2 batches"):
        finite[2]


def test_training_without_tensorflow(tmp_path, mnist):
    """With TensorFlow hidden, the default pipeline is NumPy and `keras-ict train` runs and resumes on torch."""
    script = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "from keras_ict import data\n"
        "assert data.default_pipeline() == 'numpy'\n"
        "from keras_ict.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    run = tmp_path / "run"
    net = '{"model_channels": 8, "channel_mult": [1], "attn_resolutions": [], "num_blocks": 1}'
    args = ["train", "--preset", "mnist", "--data", str(mnist), "--steps", "3", "--batch-size", "4", "--out", str(run),
            "--set", f"network_overrides={net}", "--set", "sample_count=4", "--set", "checkpoint_every=2", "--set", "log_every=1"]
    env = dict(os.environ, KERAS_BACKEND="torch")
    for stop in ("2", None):
        extra = ["--stop-at-step", stop] if stop else []
        proc = subprocess.run([sys.executable, "-c", script, *args, *extra], capture_output=True, text=True, env=env,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "final" / "model.weights.h5").is_file()
    assert len((run / "log.csv").read_text().splitlines()) == 4  # header + steps 1, 2, 3


def test_flips_are_the_flip_mask_of_the_global_batch(mnist):
    settings = dict(image_size=28, batch_size=32, shuffle=False, seed=4, skip_batches=3, pipeline="numpy")
    plain = first_batches(data.load_dataset(mnist, **settings), 2)
    flipped = first_batches(data.load_dataset(mnist, flip=True, **settings), 2)
    for number, (x, y) in enumerate(zip(plain, flipped), start=3):
        mask = data.flip_mask(4, number, 32)
        assert 0 < mask.sum() < 32
        np.testing.assert_array_equal(y[mask], x[mask, :, ::-1])
        np.testing.assert_array_equal(y[~mask], x[~mask])
