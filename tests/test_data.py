"""keras_ict.data: sources (.npz, folders, tar archives, mocked TFDS), processing, order, resumption, errors."""

import io
import os
import sys
import tarfile
import time
import types
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_ict import data  # noqa: E402
from keras_ict.data import archives, tf_pipeline  # noqa: E402

# tf.data and NumPy only: runs in one backend pass (the last test feeds a trainer and runs on every backend).
pytestmark = pytest.mark.backend_independent


# ----------------------------------------------------------------------------------------------------------
# Helpers


def batches(ds, k=None):
    """The first k elements (all when None) as NumPy."""
    return list((ds if k is None else ds.take(k)).as_numpy_iterator())


def as_uint8(images):
    return np.rint((np.asarray(images) + 1.0) * 127.5).astype(np.int64)


def index_npz(path, n):
    """A 4x4 grey dataset whose image i encodes i in two pixels, with label i % 3."""
    x = np.zeros((n, 4, 4), np.uint8)
    x[:, 0, 0], x[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    np.savez(path, x_train=x, y_train=(np.arange(n) % 3).astype(np.uint8))
    return path


def decode_index(images, size=4):
    """Inverse of index_npz for batches of image_size `size` (no padding) and no flip."""
    u = as_uint8(images)
    return u[:, 0, 0, 0] + 256 * u[:, 0, 1, 0]


def make_folder(root, classes, size=(6, 5), mode="RGB", ext=".png", seed=0):
    """Class sub-folders of random images; returns {class: [uint8 arrays in sorted file order]}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arrays = {}
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        arrays[name] = []
        for i in range(count):
            a = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
            Image.fromarray(a[..., 0] if channels == 1 else a, mode).save(root / name / f"{i:03d}{ext}")
            arrays[name].append(a)
    return arrays


def make_tar(path, folder, arcname):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return path


@pytest.fixture
def mnist(shared_dir):
    path = shared_dir / "datasets" / "mnist_small.npz"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    with np.load(path) as f:
        return path, f["x_train"], f["y_train"]


@pytest.fixture
def cifar_small(shared_dir):
    path = shared_dir / "datasets" / "cifar10_small.npz"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    with np.load(path) as f:
        return path, f["x_test"], f["y_test"]


# ----------------------------------------------------------------------------------------------------------
# .npz sources and processing


def test_mnist_padding_range_shapes_labels(mnist):
    path, x, y = mnist
    ds = data.load_dataset(path, image_size=32, batch_size=64, labels=True, num_classes=10, shuffle=False, repeat=False)
    assert ds.element_spec[0].shape.as_list() == [64, 32, 32, 1] and ds.element_spec[0].dtype == tf.float32
    assert ds.element_spec[1].shape.as_list() == [64] and ds.element_spec[1].dtype == tf.int32
    assert int(ds.cardinality()) == 2048 // 64
    images, labels = batches(ds, 1)[0]
    assert images.min() == -1.0 and images.max() == 1.0
    # 28 -> 32: two black (-1) pixels on each side, padded in uint8 space; the centre is x / 127.5 - 1.
    for border in (images[:, :2], images[:, -2:], images[:, :, :2], images[:, :, -2:]):
        assert np.all(border == -1.0)
    np.testing.assert_allclose(images[:, 2:30, 2:30, 0], x[:64] / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(labels, y[:64])

    unlabelled = data.load_dataset(path, image_size=28, batch_size=8)
    assert unlabelled.element_spec.shape.as_list() == [8, 28, 28, 1]
    assert int(unlabelled.cardinality()) == int(tf.data.INFINITE_CARDINALITY)


def test_cifar_labels_of_shape_n1_and_channel_conversion(cifar_small, mnist):
    path, x, y = cifar_small
    images, labels = batches(data.load_dataset(path, split="test", image_size=32, batch_size=16, labels=True,
                                               shuffle=False), 1)[0]
    assert images.shape == (16, 32, 32, 3) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, y[:16, 0])
    np.testing.assert_array_equal(as_uint8(images), x[:16])
    grey = batches(data.load_dataset(path, split="test", image_size=32, batch_size=16, channels=1, shuffle=False), 1)[0]
    expected = tf.image.rgb_to_grayscale(x[:16]).numpy()
    np.testing.assert_array_equal(as_uint8(grey), expected)

    rgb = batches(data.load_dataset(mnist[0], image_size=28, batch_size=4, channels=3, shuffle=False), 1)[0]
    assert rgb.shape == (4, 28, 28, 3)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    np.testing.assert_array_equal(as_uint8(rgb[..., 1]), mnist[1][:4])


def test_resize_methods_and_too_large_error(mnist):
    path, x, _ = mnist
    with pytest.raises(ValueError, match=r"28x28, larger than image_size=16.*resize="):
        data.load_dataset(path, image_size=16, batch_size=4)
    for method in data.RESIZE_METHODS:
        images = batches(data.load_dataset(path, image_size=16, batch_size=4, resize=method, shuffle=False), 1)[0]
        assert images.shape == (4, 16, 16, 1) and images.min() >= -1.0 and images.max() <= 1.0
    area = batches(data.load_dataset(path, image_size=14, batch_size=4, resize="area", shuffle=False), 1)[0]
    pooled = x[:4].reshape(4, 14, 2, 14, 2).mean(axis=(2, 4)) / 127.5 - 1.0
    np.testing.assert_allclose(area[..., 0], pooled, atol=1e-5)
    up = batches(data.load_dataset(path, image_size=56, batch_size=2, resize="nearest", shuffle=False), 1)[0]
    np.testing.assert_array_equal(as_uint8(up[:, ::2, ::2, 0]), x[:2])


def test_npz_errors(tmp_path, mnist):
    path = mnist[0]
    with pytest.raises(ValueError, match=r"no array 'x_validation'.*\['x_test', 'x_train', 'y_test', 'y_train'\]"):
        data.load_dataset(path, split="validation", image_size=32, batch_size=4)
    with pytest.raises(ValueError, match=r"label 5 \(example 0 .*num_classes=5"):
        data.load_dataset(path, image_size=32, batch_size=4, labels=True, num_classes=5)
    np.savez(tmp_path / "nolabels.npz", x_train=np.zeros((8, 4, 4), np.uint8))
    data.load_dataset(tmp_path / "nolabels.npz", image_size=4, batch_size=4)  # fine without labels
    with pytest.raises(ValueError, match=r"no array 'y_train'.*\['x_train'\]"):
        data.load_dataset(tmp_path / "nolabels.npz", image_size=4, batch_size=4, labels=True)
    np.savez(tmp_path / "float.npz", x_train=np.zeros((8, 4, 4), np.float32))
    with pytest.raises(ValueError, match="must be uint8"):
        data.load_dataset(tmp_path / "float.npz", image_size=4, batch_size=4)
    np.savez(tmp_path / "neg.npz", x_train=np.zeros((8, 4, 4), np.uint8), y_train=np.array([0, 1, -3, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"label -3 \(example 2"):
        data.load_dataset(tmp_path / "neg.npz", image_size=4, batch_size=4, labels=True)
    with pytest.raises(ValueError, match="batch_size=16 is larger than the dataset"):
        data.load_dataset(tmp_path / "nolabels.npz", image_size=4, batch_size=16)
    np.savez(tmp_path / "two.npz", x_train=np.zeros((8, 4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="cannot convert 2-channel images .* to channels=3"):
        data.load_dataset(tmp_path / "two.npz", image_size=4, batch_size=4, channels=3)
    for bad in (dict(channels=2), dict(resize="cubic"), dict(batch_size=0), dict(seed=-1), dict(skip_batches=-1)):
        with pytest.raises(ValueError):
            data.load_dataset(path, **{"image_size": 32, "batch_size": 4, **bad})


def test_flip_is_seeded_and_per_image(mnist):
    path, x, _ = mnist
    kwargs = dict(image_size=28, batch_size=32, shuffle=False, flip=True)
    a = batches(data.load_dataset(path, seed=3, **kwargs), 4)
    b = batches(data.load_dataset(path, seed=3, **kwargs), 4)
    c = batches(data.load_dataset(path, seed=4, **kwargs), 4)
    originals = x[:128].reshape(4, 32, 28, 28)
    flipped = []
    for batch, orig in zip(a, originals):
        u = as_uint8(batch[..., 0])
        same, mirrored = np.all(u == orig, axis=(1, 2)), np.all(u == orig[:, :, ::-1], axis=(1, 2))
        assert np.all(same | mirrored)
        flipped.append(mirrored & ~same)
    flipped = np.concatenate(flipped)
    assert 0.25 < flipped.mean() < 0.75
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


# ----------------------------------------------------------------------------------------------------------
# Order, determinism and resumption


def test_seeded_order_follows_epoch_order(tmp_path):
    path = index_npz(tmp_path / "idx.npz", 50)
    ds = data.load_dataset(path, image_size=4, batch_size=8, seed=7)
    got = [decode_index(b) for b in batches(ds, 18)]  # 6 batches per epoch (48 of 50 examples), three epochs
    for epoch in range(3):
        order = data.epoch_order(50, 7, epoch)
        np.testing.assert_array_equal(np.concatenate(got[6 * epoch: 6 * epoch + 6]), order[:48])
    assert not np.array_equal(data.epoch_order(50, 7, 0), data.epoch_order(50, 7, 1))
    again = [decode_index(b) for b in batches(data.load_dataset(path, image_size=4, batch_size=8, seed=7), 18)]
    assert all(np.array_equal(u, v) for u, v in zip(got, again))
    other = [decode_index(b) for b in batches(data.load_dataset(path, image_size=4, batch_size=8, seed=8), 6)]
    assert not np.array_equal(np.concatenate(other), np.concatenate(got[:6]))
    # One epoch, keeping the remainder: every example exactly once.
    one = batches(data.load_dataset(path, image_size=4, batch_size=8, seed=7, repeat=False, drop_remainder=False))
    assert [len(b) for b in one] == [8] * 6 + [2]
    np.testing.assert_array_equal(np.concatenate([decode_index(b) for b in one]), data.epoch_order(50, 7, 0))
    ordered = batches(data.load_dataset(path, image_size=4, batch_size=8, shuffle=False), 7)
    np.testing.assert_array_equal(decode_index(ordered[6]), np.arange(8))  # epoch 1 restarts at 0
    # Keras' global seed does not change the order.
    tf.random.set_seed(99)
    reseeded = [decode_index(b) for b in batches(data.load_dataset(path, image_size=4, batch_size=8, seed=7), 6)]
    assert all(np.array_equal(u, v) for u, v in zip(got, reseeded))


def assert_same_batches(full, skipped):
    assert len(full) == len(skipped)
    for u, v in zip(full, skipped):
        for a, b in zip(u if isinstance(u, tuple) else (u,), v if isinstance(v, tuple) else (v,)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_skip_batches_npz(tmp_path, drop_remainder):
    path = index_npz(tmp_path / "idx.npz", 50)
    kwargs = dict(image_size=6, batch_size=8, seed=11, flip=True, labels=True, drop_remainder=drop_remainder)
    per_epoch = data.batches_per_epoch(50, 8, drop_remainder)
    full = batches(data.load_dataset(path, **kwargs), 3 * per_epoch)
    for k in (1, per_epoch - 1, per_epoch, per_epoch + 2, 2 * per_epoch + 1):
        assert_same_batches(full[k:], batches(data.load_dataset(path, skip_batches=k, **kwargs), 3 * per_epoch - k))
    # repeat=False: the rest of the single epoch, with a matching cardinality.
    single = data.load_dataset(path, skip_batches=2, repeat=False, **kwargs)
    assert int(single.cardinality()) == per_epoch - 2
    assert_same_batches(full[2:per_epoch], batches(single))


def test_skip_batches_folder(tmp_path):
    make_folder(tmp_path / "imgs", {"a": 7, "b": 6}, size=(5, 5))
    kwargs = dict(image_size=6, batch_size=4, seed=2, flip=True, labels=True)
    full = batches(data.load_dataset(tmp_path / "imgs", **kwargs), 9)  # 3 batches per epoch
    assert len({b[1].tobytes() + b[0].tobytes() for b in full}) == 9
    for k in (2, 3, 4, 7):
        assert_same_batches(full[k:], batches(data.load_dataset(tmp_path / "imgs", skip_batches=k, **kwargs), 9 - k))


# ----------------------------------------------------------------------------------------------------------
# Image folders


def test_folder_labels_values_and_info(tmp_path):
    arrays = make_folder(tmp_path / "imgs", {"zebra": 3, "ant": 2, "mole": 4}, size=(6, 5))
    (tmp_path / "imgs" / "notes.txt").write_text("ignored")
    ds = data.load_dataset(tmp_path / "imgs", image_size=8, batch_size=9, labels=True, shuffle=False, repeat=False)
    assert ds.element_spec[0].shape.as_list() == [9, 8, 8, 3]
    images, labels = batches(ds)[0]
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 1, 1, 2, 2, 2])  # ant, mole, zebra
    expected = np.stack(arrays["ant"] + arrays["mole"] + arrays["zebra"])
    np.testing.assert_array_equal(as_uint8(images[:, 1:7, 1:6]), expected)  # 6x5 padded to 8x8: (1, 1) + (1, 2)
    assert np.all(images[:, 0] == -1) and np.all(images[:, :, 6:] == -1)
    info = data.dataset_info(tmp_path / "imgs")
    assert info == dict(num_examples=9, image_shape=(6, 5, 3), num_classes=3, class_names=["ant", "mole", "zebra"])
    with pytest.raises(ValueError, match=r"label 2 \(class folder 'zebra'\) is out of range for num_classes=2"):
        data.load_dataset(tmp_path / "imgs", image_size=8, batch_size=2, labels=True, num_classes=2)
    grey = batches(data.load_dataset(tmp_path / "imgs", image_size=8, batch_size=9, channels=1, shuffle=False), 1)[0]
    np.testing.assert_array_equal(as_uint8(grey[:, 1:7, 1:6]), tf.image.rgb_to_grayscale(expected).numpy())


def test_folder_formats_channels_and_flat_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "mix" / "x").mkdir(parents=True)
    grey = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    rgba = rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "mix" / "x" / "a.png")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "mix" / "x" / "b.png")
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "mix" / "x" / "c.bmp")
    flat_colour = np.empty((4, 4, 3), np.uint8)
    flat_colour[:] = (200, 100, 50)
    Image.fromarray(flat_colour, "RGB").save(tmp_path / "mix" / "x" / "d.jpg")
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "mix" / "x" / "e.gif")
    images = batches(data.load_dataset(tmp_path / "mix", image_size=4, batch_size=5, channels=3, shuffle=False), 1)[0]
    u = as_uint8(images)
    np.testing.assert_array_equal(u[0], np.repeat(grey[..., None], 3, -1))  # grey repeated
    np.testing.assert_array_equal(u[1], rgba[..., :3])  # alpha dropped
    np.testing.assert_array_equal(u[2], rgba[..., :3])
    assert np.abs(u[3] - flat_colour).max() <= 8  # lossy JPEG
    assert u.shape == (5, 4, 4, 3)
    assert data.dataset_info(tmp_path / "mix")["image_shape"] == (4, 4, 1)  # from the first file
    one = batches(data.load_dataset(tmp_path / "mix", image_size=4, batch_size=5, shuffle=False), 1)[0]
    assert one.shape == (5, 4, 4, 1)
    np.testing.assert_array_equal(as_uint8(one[0, ..., 0]), grey)

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.fromarray(grey, "L").save(flat / f"{i}.png")
    assert batches(data.load_dataset(flat, image_size=4, batch_size=3), 1)[0].shape == (3, 4, 4, 1)
    assert data.dataset_info(flat)["class_names"] is None
    with pytest.raises(ValueError, match="no class sub-folders"):
        data.load_dataset(flat, image_size=4, batch_size=3, labels=True)


def test_folder_splits_and_errors(tmp_path):
    make_folder(tmp_path / "ds" / "train", {"a": 2, "b": 2}, size=(4, 4))
    make_folder(tmp_path / "ds" / "test", {"a": 1, "b": 1}, size=(4, 4), seed=1)
    assert data.dataset_info(tmp_path / "ds")["num_examples"] == 4
    assert data.dataset_info(tmp_path / "ds", split="test")["num_examples"] == 2
    test = batches(data.load_dataset(tmp_path / "ds", split="test", image_size=4, batch_size=2, labels=True), 1)[0]
    assert sorted(test[1]) == [0, 1]
    with pytest.raises(ValueError, match=r"split sub-folders \['test', 'train'\] but none named 'val'"):
        data.load_dataset(tmp_path / "ds", split="val", image_size=4, batch_size=2)
    with pytest.raises(ValueError, match="has no split sub-folders"):
        data.load_dataset(tmp_path / "ds" / "train", split="test", image_size=4, batch_size=2)

    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match="no images found in .*empty"):
        data.load_dataset(tmp_path / "empty", image_size=4, batch_size=1)
    (tmp_path / "void").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        data.dataset_info(tmp_path / "void")

    make_folder(tmp_path / "mixed", {"a": 2}, size=(4, 4))
    make_folder(tmp_path / "mixed", {"b": 1}, size=(6, 3), seed=2)
    with pytest.raises(ValueError, match=r"different sizes: '.*a.000\.png' is 4x4 but '.*b.000\.png' is 6x3.*resize="):
        data.load_dataset(tmp_path / "mixed", image_size=8, batch_size=3)
    resized = batches(data.load_dataset(tmp_path / "mixed", image_size=5, batch_size=3, resize="bilinear"), 1)[0]
    assert resized.shape == (3, 5, 5, 3) and resized.min() >= -1 and resized.max() <= 1
    with pytest.raises(ValueError, match=r"4x4, larger than image_size=3"):
        data.load_dataset(tmp_path / "ds", image_size=3, batch_size=2)


def test_missing_and_unsupported_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'no/such/dir' not found.*tfds:NAME"):
        data.load_dataset("no/such/dir", image_size=8, batch_size=2)
    with pytest.raises(FileNotFoundError, match="'cifar100' not found"):
        data.dataset_info("cifar100")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported dataset file"):
        data.load_dataset(tmp_path / "notes.txt", image_size=8, batch_size=2)


# ----------------------------------------------------------------------------------------------------------
# Archives


def test_tar_extracted_once_and_reused(tmp_path, monkeypatch):
    arrays = make_folder(tmp_path / "src" / "train", {"a": 2, "b": 3}, size=(4, 4))
    make_folder(tmp_path / "src" / "test", {"a": 1, "b": 1}, size=(4, 4), seed=5)
    archive = make_tar(tmp_path / "tiny.tar.gz", tmp_path / "src", "tiny")
    calls = []
    real = archives._extract_into
    monkeypatch.setattr(archives, "_extract_into", lambda *a: (calls.append(a), real(*a))[1])
    cache = tmp_path / "cache"
    ds = data.load_dataset(archive, image_size=4, batch_size=5, labels=True, shuffle=False, cache_dir=cache)
    images, labels = batches(ds, 1)[0]
    np.testing.assert_array_equal(as_uint8(images), np.stack(arrays["a"] + arrays["b"]))
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 1])
    assert data.dataset_info(archive, split="test", cache_dir=cache)["num_examples"] == 2
    data.load_dataset(str(archive), image_size=4, batch_size=1, split="test", cache_dir=cache)
    assert len(calls) == 1
    import hashlib

    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert [p.name for p in cache.iterdir()] == [f"tiny-{digest}"]
    # The cache root also comes from $KERAS_ICT_CACHE.
    monkeypatch.setenv("KERAS_ICT_CACHE", str(tmp_path / "envcache"))
    assert data.extract_archive(archive) == tmp_path / "envcache" / "datasets" / f"tiny-{digest}"
    assert len(calls) == 2


def test_interrupted_extraction_leaves_no_cache(tmp_path, monkeypatch):
    make_folder(tmp_path / "src", {"a": 2}, size=(4, 4))
    archive = make_tar(tmp_path / "t.tgz", tmp_path / "src", "t")
    real = archives._extract_into

    def crash(archive, destination):
        (destination / "half.png").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(archives, "_extract_into", crash)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        data.extract_archive(archive, cache)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(archives, "_extract_into", real)
    root = data.extract_archive(archive, cache)
    assert sorted(p.name for p in (root / "t" / "a").iterdir()) == ["000.png", "001.png"]


@pytest.mark.parametrize("member", ["../evil.png", "/tmp/keras_ict_evil.png", "ok/../../evil.png", "link"])
def test_tar_path_traversal_rejected(tmp_path, member):
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        good = tarfile.TarInfo("ds/a/0.png")
        good.size = 3
        tar.addfile(good, io.BytesIO(b"png"))
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(ValueError, match="refusing to extract"):
        data.load_dataset(archive, image_size=4, batch_size=1, cache_dir=cache)
    assert list(cache.iterdir()) == []
    assert not (tmp_path / "deep" / "evil.png").exists() and not (tmp_path / "evil.png").exists()
    assert not os.path.exists("/tmp/keras_ict_evil.png")


@pytest.mark.slow
def test_real_cifar10_tarball(shared_dir, request):
    archive = shared_dir / "datasets" / "cifar10_jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} missing")
    # The extraction (60,000 JPEGs, 5-15 s on two busy cores) is cached in the git-ignored .cache/ folder, so
    # of the three backend runs only the first pays for it and the others reuse a cache made by another process.
    cache = Path(__file__).resolve().parents[1] / ".cache" / "test-datasets"
    info = data.dataset_info(archive, cache_dir=cache)
    assert info["num_examples"] == 50000 and info["image_shape"] == (32, 32, 3)
    assert info["class_names"][:3] == ["airplane", "automobile", "bird"] and info["num_classes"] == 10
    start = time.perf_counter()
    ds = data.load_dataset(archive, split="test", image_size=32, batch_size=256, labels=True, num_classes=10,
                           cache_dir=cache, flip=True)
    images, labels = batches(ds, 1)[0]
    assert images.shape == (256, 32, 32, 3) and -1 <= images.min() < images.max() <= 1
    assert set(labels.tolist()) == set(range(10))
    assert time.perf_counter() - start < 30, "a cached archive should load without extracting again"


# ----------------------------------------------------------------------------------------------------------
# TensorFlow Datasets (mocked: there is no network here)


def fake_tfds(x, y, calls):
    def load(name, split, data_dir, as_supervised):
        calls.append((name, split, data_dir, as_supervised))
        return tf.data.Dataset.from_tensor_slices({"image": x[..., None], "label": y.astype(np.int64)})

    def builder(name, data_dir=None):
        label = types.SimpleNamespace(num_classes=10, names=[str(i) for i in range(10)])
        features = {"image": types.SimpleNamespace(shape=(28, 28, 1)), "label": label}
        splits = {"train": types.SimpleNamespace(num_examples=len(x))}
        return types.SimpleNamespace(info=types.SimpleNamespace(splits=splits, features=features,
                                                                supervised_keys=("image", "label")))

    return types.SimpleNamespace(load=load, builder=builder)


def test_tfds_missing_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    for source in ("tfds:mnist", "mnist", "imagenet_resized/64x64"):
        with pytest.raises(ImportError, match=r"pip install 'keras-ict\[tfds\]'.*offline"):
            data.load_dataset(source, image_size=32, batch_size=8)
    with pytest.raises(ImportError, match="pip install tensorflow-datasets"):
        data.dataset_info("tfds:cifar10")


def test_tfds_in_memory_matches_npz(monkeypatch, tmp_path, mnist):
    path, x, y = mnist
    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(x[:256], y[:256], calls))
    np.savez(tmp_path / "m.npz", x_train=x[:256], y_train=y[:256])
    kwargs = dict(image_size=32, batch_size=32, labels=True, num_classes=10, seed=5, flip=True, skip_batches=6)
    monkeypatch.chdir(tmp_path)
    assert_same_batches(batches(data.load_dataset(tmp_path / "m.npz", **kwargs), 4),
                        batches(data.load_dataset("mnist", **kwargs), 4))
    assert calls == [("mnist", "train", None, False)]
    info = data.dataset_info("tfds:mnist")
    assert info == dict(num_examples=256, image_shape=(28, 28, 1), num_classes=10, class_names=[str(i) for i in range(10)])


def test_tfds_streaming(monkeypatch, mnist):
    path, x, y = mnist
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(x[:100], y[:100], []))
    monkeypatch.setattr(tf_pipeline, "TFDS_IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(tf_pipeline, "TFDS_SHUFFLE_WINDOW", 32)
    kwargs = dict(image_size=32, batch_size=16, labels=True, seed=1, flip=True)
    full = batches(data.load_dataset("tfds:mnist", **kwargs), 14)  # 6 batches per epoch
    images, labels = full[0]
    assert images.shape == (16, 32, 32, 1) and labels.dtype == np.int32 and np.all(images[:, :2] == -1)
    for k in (3, 6, 8):
        assert_same_batches(full[k:], batches(data.load_dataset("tfds:mnist", skip_batches=k, **kwargs), 14 - k))
    epoch0 = np.concatenate([b[1] for b in full[:6]])
    epoch1 = np.concatenate([b[1] for b in full[6:12]])
    assert not np.array_equal(epoch0, y[:96]) and not np.array_equal(epoch0, epoch1)
    ordered = batches(data.load_dataset("tfds:mnist", image_size=28, batch_size=16, labels=True, shuffle=False), 1)[0]
    np.testing.assert_array_equal(as_uint8(ordered[0][..., 0]), x[:16])
    resized = batches(data.load_dataset("tfds:mnist", image_size=8, batch_size=4, resize="area", channels=3), 1)[0]
    assert resized.shape == (4, 8, 8, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="out of range for num_classes=3"):
        batches(data.load_dataset("tfds:mnist", image_size=28, batch_size=16, labels=True, num_classes=3), 7)


# ----------------------------------------------------------------------------------------------------------
# The pipeline feeds ConsistencyTrainer.fit on the current backend


@pytest.mark.per_backend
@pytest.mark.parametrize("pipeline", ["tf", "numpy"])
def test_pipeline_feeds_conditional_trainer(mnist, pipeline):
    import keras

    from keras_ict import ConsistencyModel, ConsistencyTrainer
    from tiny_network import TinyNet

    net = TinyNet(img_resolution=8, in_channels=1, label_dim=10, seed=0)
    trainer = ConsistencyTrainer(ConsistencyModel(net, noise_label_scale=1.0), total_steps=4, ema_decay=0.9, seed=0)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = data.load_dataset(mnist[0], image_size=8, resize="area", batch_size=8, labels=True, num_classes=10, flip=True,
                           pipeline=pipeline)
    history = trainer.fit(ds, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


def test_sources_work_without_tensorflow(tmp_path):
    """keras_ict.data imports, resolves, sizes and loads offline sources with TensorFlow absent (the NumPy
    pipeline: tests/test_numpy_pipeline.py); a TFDS name says what to install."""
    import subprocess

    np.savez(tmp_path / "d.npz", x_train=np.zeros((5, 8, 8), np.uint8), y_train=np.arange(5))
    script = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "import keras_ict.data as data\n"
        f"info = data.dataset_info({str(tmp_path / 'd.npz')!r})\n"
        "assert info['num_examples'] == 5 and info['num_classes'] == 5, info\n"
        "assert sorted(data.epoch_order(5, 0, 1)) == list(range(5))\n"
        f"ds = data.load_dataset({str(tmp_path / 'd.npz')!r}, image_size=8, batch_size=2, labels=True)\n"
        "images, labels = next(ds.as_numpy_iterator())\n"
        "print(type(ds).__name__, images.shape, labels.tolist())\n"
        "try:\n    data.load_dataset('mnist', image_size=32, batch_size=2)\nexcept ValueError as e:\n    print('refused:', e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KERAS_BACKEND="torch"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ImageBatches (2, 8, 8, 1)" in proc.stdout, proc.stdout
    assert "refused: TFDS source 'mnist' needs the tf.data pipeline" in proc.stdout, proc.stdout
