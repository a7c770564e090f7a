"""FID: Keras port of the 2015-12-05 Inception-v3 against the TorchScript original, preprocessing, statistics."""

import sys
import warnings

import numpy as np
import pytest

from keras_ict import fid


@pytest.fixture(scope="module")
def torch_mod():
    return pytest.importorskip("torch", reason="torch runs the TorchScript reference")


@pytest.fixture(scope="module")
def pt_path():
    path = fid.default_weights_path()
    if not path.is_file():
        pytest.skip(f"FID Inception weights not found at {path} (set KERAS_ICT_FID_WEIGHTS)")
    return path


@pytest.fixture(scope="module")
def fid_env(tmp_path_factory, pt_path):
    """Converts the weights into a temporary cache once per module and builds the Keras model once."""
    mp = pytest.MonkeyPatch()
    mp.setenv("KERAS_ICT_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.setattr(fid, "_MODELS", {})
    model = fid._get_model(pt_path)
    yield model
    mp.undo()


@pytest.fixture(scope="module")
def torch_reference(torch_mod, pt_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is deprecated in torch >= 2.10
        module = torch_mod.jit.load(str(pt_path), map_location="cpu").eval()

    def run(x_nhwc):
        with torch_mod.no_grad():
            return module(torch_mod.from_numpy(x_nhwc).permute(0, 3, 1, 2).contiguous()).numpy()

    return run


def _images(n, h, w, c=3, seed=0):
    rng = np.random.default_rng(seed)
    # smooth-ish content plus noise so that the features are not degenerate
    base = rng.integers(0, 256, (n, -(-h // 8), -(-w // 8), c)).repeat(8, 1).repeat(8, 2)[:, :h, :w]
    noise = rng.integers(-40, 41, (n, h, w, c))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.mark.xdist_group("fid-fixture")  # one worker builds the module fixture once
def test_features_match_torchscript(fid_env, torch_reference, pt_path):
    images = _images(4, 40, 56)
    # batch_size 3: two batches, the second padded
    feats = fid.inception_features(images, weights=pt_path, batch_size=3)
    assert feats.shape == (4, 2048) and feats.dtype == np.float32
    ref = torch_reference(fid.preprocess(images))
    rel = np.abs(feats - ref).max() / np.abs(ref).max()
    assert rel <= 1e-4, rel
    assert fid._get_model(pt_path) is fid_env  # built once per weights path


@pytest.mark.xdist_group("fid-fixture")  # one worker builds the module fixture once
def test_weights_cache(fid_env, pt_path):
    cached = fid._resolve_weights(pt_path)
    assert cached.name == f"inception-2015-12-05-{fid.EXPECTED_SHA256}.weights.h5"
    assert cached.parent == fid.cache_dir() and cached.is_file()
    assert fid._resolve_weights(cached) == cached
    assert not [p for p in cached.parent.iterdir() if ".tmp" in p.name]


@pytest.mark.backend_independent
@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (1, 320, 410, 3), (1, 299, 299, 3), (2, 17, 300, 3)])
def test_preprocess_matches_torch_bilinear(torch_mod, shape):
    images = _images(*shape, seed=1)
    x = fid.preprocess(images)
    assert x.shape == (shape[0], 299, 299, 3) and x.dtype == np.float32
    t = torch_mod.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2)
    t = torch_mod.nn.functional.interpolate(t, size=(299, 299), mode="bilinear", align_corners=False, antialias=False)
    ref = ((t - 128.0) / 128.0).permute(0, 2, 3, 1).numpy()
    assert np.abs(x - ref).max() <= 1e-4
    assert x.min() >= -1.0 and x.max() < 1.0


@pytest.mark.backend_independent
def test_preprocess_grayscale():
    gray = _images(2, 20, 30, c=1)
    np.testing.assert_array_equal(fid.preprocess(gray), fid.preprocess(np.repeat(gray, 3, axis=-1)))


@pytest.mark.backend_independent
def test_bad_inputs():
    good = _images(2, 16, 16)
    with pytest.raises(ValueError, match="float32"):
        fid.preprocess(good.astype(np.float32) / 255.0)
    with pytest.raises(ValueError, match="int64"):
        fid.inception_features(good.astype(np.int64))
    with pytest.raises(ValueError, match="shape"):
        fid.preprocess(good[0])
    with pytest.raises(ValueError, match="channels"):
        fid.preprocess(good[..., :2])
    with pytest.raises(ValueError, match="channels"):
        fid.preprocess(np.zeros((1, 3, 16, 16), np.uint8))  # NCHW
    with pytest.raises(ValueError, match="at least 2"):
        fid.statistics(np.zeros((1, 2048), np.float32))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        fid.statistics(np.zeros(5))
    mu, sigma = np.zeros(4), np.eye(4)
    with pytest.raises(ValueError, match="dimensions"):
        fid.frechet_distance(mu, sigma, np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="sigma1"):
        fid.frechet_distance(mu, np.eye(3), mu, sigma)
    with pytest.raises(ValueError, match="non-finite"):
        fid.frechet_distance(mu, sigma, mu + np.nan, sigma)


def _random_cov(d, rng):
    a = rng.normal(size=(d, 2 * d))
    return a @ a.T / (2 * d)


@pytest.mark.backend_independent
def test_fid_identical_is_zero_and_symmetric():
    rng = np.random.default_rng(0)
    feats_a = rng.normal(size=(300, 32))
    feats_b = rng.normal(1.0, 2.0, size=(200, 32))
    mu_a, s_a = fid.statistics(feats_a)
    mu_b, s_b = fid.statistics(feats_b)
    assert mu_a.dtype == np.float64 and s_a.shape == (32, 32)
    np.testing.assert_allclose(s_a, np.cov(feats_a, rowvar=False))
    assert abs(fid.frechet_distance(mu_a, s_a, mu_a, s_a)) < 1e-6
    d_ab = fid.frechet_distance(mu_a, s_a, mu_b, s_b)
    d_ba = fid.frechet_distance(mu_b, s_b, mu_a, s_a)
    assert d_ab > 1.0
    assert abs(d_ab - d_ba) <= 1e-9 * d_ab


@pytest.mark.backend_independent
def test_fid_gaussian_closed_form():
    rng = np.random.default_rng(1)
    d = 64
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    # diagonal covariances: sqrtm is the elementwise square root
    got = fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # same eigenbasis, rotated: the distance is unchanged
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    got_rot = fid.frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    np.testing.assert_allclose(got_rot, expected, rtol=1e-8)


@pytest.mark.backend_independent
def test_fid_singular_covariance():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(5, 16))  # rank-deficient covariance, as with few samples
    mu, sigma = fid.statistics(feats)
    mu2, sigma2 = fid.statistics(feats + 0.5)
    value = fid.frechet_distance(mu, sigma, mu2, sigma2)
    assert np.isfinite(value)
    np.testing.assert_allclose(value, 16 * 0.25, atol=1e-3)


@pytest.mark.backend_independent
def test_statistics_file_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    mu, sigma = rng.normal(size=8), _random_cov(8, rng)
    path = tmp_path / "sub" / "ref.npz"
    fid.save_statistics(path, mu, sigma)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ref.npz"]
    with np.load(path) as data:
        assert sorted(data.files) == ["mu", "sigma"]
    mu2, sigma2 = fid.load_statistics(path)
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(sigma2, sigma)
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu=mu)
    with pytest.raises(ValueError, match="sigma"):
        fid.load_statistics(bad)
    np.savez(bad, mu=mu, sigma=sigma[:4])
    with pytest.raises(ValueError, match="shape"):
        fid.load_statistics(bad)
    np.savez(bad, mu=np.array([object()], dtype=object), sigma=sigma)
    with pytest.raises(ValueError):
        fid.load_statistics(bad)


@pytest.mark.backend_independent
def test_torchscript_tensors_read_without_torch_equal_torch_jit_load(torch_mod, pt_path, tmp_path, monkeypatch):
    import io
    import pickle
    import zipfile

    from keras_ict.torchscript import read_tensors

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        want = {k: v.numpy() for k, v in torch_mod.jit.load(str(pt_path), map_location="cpu").state_dict().items()}
    monkeypatch.setitem(sys.modules, "torch", None)  # the reader must not need it
    got = read_tensors(pt_path)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)

    class Evil:  # a pickle that would run os.system on load
        def __reduce__(self):
            import os

            return os.system, ("echo pwned",)

    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(evil, "w") as archive:
        buffer = io.BytesIO()
        pickle.dump(Evil(), buffer)
        archive.writestr("archive/data.pkl", buffer.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="should not need .*system; refusing"):
        read_tensors(evil)


@pytest.mark.backend_independent
def test_missing_weights_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="KERAS_ICT_FID_WEIGHTS"):
        fid.build_inception(tmp_path / "missing.pt")
