"""generate(): per-seed noise, multistep formula, batch-size invariance, errors; uint8 and PNG grids."""

import numpy as np
import pytest
from PIL import Image

from keras_ict import ConsistencyModel, generate, image_grid, save_image_grid, to_uint8
from keras_ict.sampling import seed_noise
from tiny_network import ProbeNet, TinyNet


def probe_model(label_dim=0):
    return ConsistencyModel(ProbeNet(img_resolution=4, in_channels=2, label_dim=label_dim), noise_label_scale=1.0)


def ref_f(x, s):
    sd, smin = 0.5, 0.002
    c_skip = sd**2 / ((s - smin) ** 2 + sd**2)
    c_out = sd * (s - smin) / np.sqrt(s**2 + sd**2)
    c_in = 1 / np.sqrt(s**2 + sd**2)
    return c_skip * x + c_out * (c_in * x + np.log(s) / 4)


def test_one_and_two_step_follow_the_algorithm():
    model = probe_model()
    seeds = [3, 9, 27]
    noise = seed_noise(seeds, (4, 4, 2), 2).astype(np.float64)
    one = generate(model, seeds, sigmas=(80.0,))
    np.testing.assert_allclose(one, np.clip(ref_f(80.0 * noise[0], 80.0), -1, 1), atol=1e-4)
    two = generate(model, seeds, sigmas=(80.0, 0.821))
    x0 = ref_f(80.0 * noise[0], 80.0)
    x1 = x0 + np.sqrt(0.821**2 - 0.002**2) * noise[1]
    np.testing.assert_allclose(two, np.clip(ref_f(x1, 0.821), -1, 1), atol=1e-4)


def test_image_depends_only_on_its_seed_and_not_on_batch_size():
    model = ConsistencyModel(TinyNet(img_resolution=8, in_channels=3), noise_label_scale=1.0)
    a = generate(model, [5, 6, 7, 8, 9], sigmas=(80.0, 0.8), batch_size=2)
    b = generate(model, [5, 6, 7, 8, 9], sigmas=(80.0, 0.8), batch_size=5)
    c = generate(model, [100, 7], sigmas=(80.0, 0.8))
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a[2], c[1], atol=1e-5)
    assert a.shape == (5, 8, 8, 3) and a.dtype == np.float32
    assert a.min() >= -1 and a.max() <= 1


def test_conditional_labels():
    model = probe_model(label_dim=4)
    out = generate(model, [1, 2], sigmas=(5.0,), labels=[0, 3])
    ref = generate(model, [1, 2], sigmas=(5.0,), labels=0)
    assert not np.allclose(out[1], ref[1])
    np.testing.assert_allclose(out[0], ref[0])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(sigmas=(0.8, 80.0)), "strictly decreasing"),
        (dict(sigmas=(80.0, 80.0)), "strictly decreasing"),
        (dict(sigmas=(80.0, 0.001)), "> sigma_min"),
        (dict(sigmas=(-1.0,)), "> sigma_min"),
        (dict(sigmas=()), "non-empty"),
        (dict(labels=[1, 2]), "unconditional"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_sampling_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(probe_model(), [0, 1], **kwargs)


def test_bad_seeds_and_labels():
    with pytest.raises(TypeError, match="sequence"):
        generate(probe_model(), 4)
    with pytest.raises(ValueError, match="non-negative"):
        generate(probe_model(), [-1])
    with pytest.raises(ValueError, match="class-conditional"):
        generate(probe_model(label_dim=3), [0])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        generate(probe_model(label_dim=3), [0], labels=[3])
    with pytest.raises(TypeError, match="ConsistencyModel"):
        generate(ProbeNet(), [0])


def test_uint8_and_png_grid(tmp_path):
    assert to_uint8(np.array([-1.0, 0.0, 1.0, 2.0])).tolist() == [0, 128, 255, 255]
    images = np.linspace(-1, 1, 5 * 4 * 4 * 3).reshape(5, 4, 4, 3)
    grid = image_grid(images, ncols=3)
    assert grid.shape == (8, 12, 3) and grid.dtype == np.uint8
    path = save_image_grid(images, tmp_path / "sub" / "grid.png")
    assert Image.open(path).size == (12, 8)  # 5 images -> 3 columns x 2 rows of 4x4 (PIL: width, height)
    gray = save_image_grid(np.zeros((4, 4, 4, 1)), tmp_path / "gray.png")
    assert Image.open(gray).mode == "L"
    assert not [p for p in tmp_path.rglob(".tmp-*")]
