"""ConsistencyModel: scalings, c_noise, boundary condition, label handling, errors, serialization."""

import numpy as np
import pytest
from keras import ops

from harness import assert_config_round_trip, assert_keras_file_round_trip
from keras_ict import ConsistencyModel
from keras_ict.parameterization import scalings
from tiny_network import ProbeNet, TinyNet

SD, SMIN = 0.5, 0.002


def ref_scalings(s):
    s = np.asarray(s, np.float64)
    return (SD**2 / ((s - SMIN) ** 2 + SD**2), SD * (s - SMIN) / np.sqrt(s**2 + SD**2), 1 / np.sqrt(s**2 + SD**2))


SIGMAS = np.array([0.002, 0.01, 0.5, 0.821, 1.526, 5.0, 80.0])


def test_scalings_numpy_and_tensor_match_reference():
    for got, want in zip(scalings(SIGMAS), ref_scalings(SIGMAS)):
        np.testing.assert_allclose(got, want, rtol=1e-14)
    for got, want in zip(scalings(ops.convert_to_tensor(SIGMAS, "float32")), ref_scalings(SIGMAS)):
        np.testing.assert_allclose(ops.convert_to_numpy(got), want, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_wrapper_feeds_c_in_x_and_c_noise(scale):
    model = ConsistencyModel(ProbeNet(), noise_label_scale=scale)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((len(SIGMAS), 4, 4, 2)).astype(np.float32)
    got = ops.convert_to_numpy(model([x, SIGMAS.astype(np.float32)]))
    c_skip, c_out, c_in = (c[:, None, None, None] for c in ref_scalings(SIGMAS))
    c_noise = (scale * np.log(SIGMAS) / 4)[:, None, None, None]
    want = c_skip * x + c_out * (c_in * x + c_noise)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * scale)


def test_boundary_condition_is_exact():
    model = ConsistencyModel(TinyNet(img_resolution=8, in_channels=3, dropout=0.2), noise_label_scale=1.0)
    x = np.random.default_rng(0).standard_normal((3, 8, 8, 3)).astype(np.float32)
    for training in (False, True):
        out = ops.convert_to_numpy(model([x, np.full((3,), SMIN, np.float32)], training=training))
        np.testing.assert_array_equal(out, x)
    out = ops.convert_to_numpy(model([x, np.full((3,), 1.0, np.float32)]))
    assert not np.allclose(out, x)


def test_default_noise_label_scale_from_network_embedding():
    from keras_ict.networks import DhariwalUNet, SongUNet

    small = dict(img_resolution=8, in_channels=1, out_channels=1, model_channels=16, channel_mult=[1], num_blocks=1,
                 attn_resolutions=[])
    assert ConsistencyModel(SongUNet(embedding_type="fourier", channel_mult_noise=2, **small)).noise_label_scale == 1.0
    assert ConsistencyModel(SongUNet(embedding_type="positional", **small)).noise_label_scale == 1000.0
    assert ConsistencyModel(DhariwalUNet(**small)).noise_label_scale == 1000.0
    with pytest.raises(ValueError, match="noise_label_scale"):
        ConsistencyModel(TinyNet())


def test_class_labels_are_one_hot_encoded():
    model = ConsistencyModel(ProbeNet(label_dim=5), noise_label_scale=1.0)
    x = np.zeros((3, 4, 4, 2), np.float32)
    sigma = np.full((3,), 1.0, np.float32)
    out = ops.convert_to_numpy(model([x, sigma, np.array([0, 2, 4])]))
    c_out = ref_scalings(1.0)[1]
    np.testing.assert_allclose(out[:, 0, 0, 0], c_out * np.array([0, 2, 4]), rtol=1e-5, atol=1e-6)


def test_scalar_sigma_is_broadcast():
    model = ConsistencyModel(ProbeNet(), noise_label_scale=1.0)
    x = np.ones((2, 4, 4, 2), np.float32)
    a = ops.convert_to_numpy(model([x, np.array([0.7], np.float32)]))
    b = ops.convert_to_numpy(model([x, np.full((2,), 0.7, np.float32)]))
    np.testing.assert_allclose(a, b)


@pytest.mark.parametrize(
    "make_inputs,message",
    [
        (lambda: [np.zeros((4, 4, 2), np.float32), np.ones((4,), np.float32)], "rank 4"),
        (lambda: [np.zeros((1, 4, 4, 3), np.float32), np.ones((1,), np.float32)], "image shape"),
        (lambda: [np.zeros((1, 8, 8, 2), np.float32), np.ones((1,), np.float32)], "image shape"),
        (lambda: [np.zeros((2, 4, 4, 2), np.float32), np.array([1.0, 0.0], np.float32)], "sigma must be positive"),
        (lambda: [np.zeros((2, 4, 4, 2), np.float32), np.array([1.0, -1.0], np.float32)], "sigma must be positive"),
        (lambda: [np.zeros((2, 4, 4, 2), np.float32), np.ones((2,), np.float32), np.zeros((2,), np.int32)], "unconditional"),
        (lambda: np.zeros((2, 4, 4, 2), np.float32), "model\\(\\[x, sigma\\]\\)"),
    ],
)
def test_bad_inputs_unconditional(make_inputs, message):
    model = ConsistencyModel(ProbeNet(), noise_label_scale=1.0)
    with pytest.raises(ValueError, match=message):
        model(make_inputs())


def test_bad_labels_conditional():
    model = ConsistencyModel(ProbeNet(label_dim=3), noise_label_scale=1.0)
    x, s = np.zeros((2, 4, 4, 2), np.float32), np.ones((2,), np.float32)
    with pytest.raises(ValueError, match="class-conditional"):
        model([x, s])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        model([x, s, np.array([0, 3])])
    with pytest.raises(ValueError, match="shape \\(batch,\\)"):
        model([x, s, np.eye(3)[:2]])


def test_get_config_round_trip_and_keras_file(tmp_path):
    model = ConsistencyModel(TinyNet(img_resolution=8, in_channels=3), noise_label_scale=1.0, sigma_data=0.6)
    model.build_for_images()
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    s = np.array([0.5, 3.0], np.float32)
    clone = assert_config_round_trip(model, {"sigma_data": 0.6})
    assert clone.noise_label_scale == 1.0
    assert_keras_file_round_trip(model, [x, s], tmp_path)
