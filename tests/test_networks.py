"""Tests of keras_ict.networks: EDM parity, parameter counts, serialisation, errors, dropout.

The backend is chosen per process through KERAS_BACKEND (see conftest.py).
"""

import json

import keras
import numpy as np
import pytest

from harness import assert_config_round_trip, assert_keras_file_round_trip
from keras_ict.networks import (
    ARCHITECTURES,
    DhariwalUNet,
    LabelDropout,
    SongUNet,
    UNetBlock,
    build_architecture,
    edm_state_dict,
    from_edm_config,
    load_edm_state_dict,
)

FIXTURES = [
    "songunet_ncsnpp_small.npz",
    "songunet_ncsnpp_small_cond10.npz",
    "songunet_ddpmpp_small.npz",
    "dhariwalunet_adm_small_cond10.npz",
]

# A tiny conditional NCSN++-style network: fast on every backend, exercises every layer kind.
TINY = dict(
    img_resolution=8,
    in_channels=3,
    out_channels=3,
    label_dim=3,
    model_channels=16,
    channel_mult=[1, 2],
    num_blocks=1,
    attn_resolutions=[4],
    dropout=0.2,
    label_dropout=0.0,
    embedding_type="fourier",
    channel_mult_noise=2,
    encoder_type="residual",
    decoder_type="standard",
    resample_filter=[1, 3, 3, 1],
    fourier_scale=0.02,
)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def infer(net, inputs):
    """Eval-mode forward pass; compiled on JAX, whose op-by-op eager mode compiles slowly."""
    if keras.backend.backend() == "jax":
        return to_numpy(net.predict_on_batch(inputs))
    return to_numpy(net(inputs))


def tiny_inputs(batch=2, res=8, channels=3, label_dim=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, res, res, channels)).astype("float32")
    noise = rng.uniform(-1.5, 1.0, size=(batch,)).astype("float32")
    inputs = [x, noise]
    if label_dim:
        inputs.append(np.eye(label_dim, dtype="float32")[rng.integers(0, label_dim, size=batch)])
    return inputs


def randomize(net, seed=0, std=0.2):
    """Random trainable weights, so that no output is ~0 because of zero-ish initialisation."""
    rng = np.random.default_rng(seed)
    for v in net.trainable_weights:
        v.assign((rng.standard_normal(tuple(v.shape)) * std).astype("float32"))
    return net


def seed_states(net):
    return [v for v in net.non_trainable_variables if v.name == "seed_generator_state"]


def load_fixture(shared_dir, name):
    path = shared_dir / "parity" / name
    if not path.is_file():
        pytest.skip(f"fixture {path} not found")
    return path, np.load(path)


# ---------------------------------------------------------------------------------------
# Parity with the EDM reference networks.


@pytest.mark.parametrize("fixture", FIXTURES)
def test_edm_parity(shared_dir, fixture):
    path, data = load_fixture(shared_dir, fixture)
    meta = json.loads(str(data["meta"]))
    net = from_edm_config(meta["edm_class"], **meta["kwargs"])
    trainable = sum(int(np.prod(v.shape)) for v in net.trainable_weights)
    assert trainable == meta["trainable_params"]
    load_edm_state_dict(net, path)

    inputs = [
        data["input/x_nchw"].transpose(0, 2, 3, 1).astype("float32"),
        data["input/noise_labels"].astype("float32"),
    ]
    if "input/class_labels_onehot" in data.files:
        inputs.append(data["input/class_labels_onehot"].astype("float32"))
    y = to_numpy(net(inputs))
    ref = data["output/y_nchw"].transpose(0, 2, 3, 1)
    err = float(np.abs(y - ref).max())
    print(f"{keras.backend.backend()} {fixture}: max abs err {err:.3g}")
    assert y.shape == ref.shape
    assert err <= 1e-4

    # The exported state dict has EDM's names, order, layouts and values.
    sd = edm_state_dict(net)
    names = [k[len("state_dict/"):] for k in data.files if k.startswith("state_dict/")]
    assert list(sd) == names
    for name in names:
        np.testing.assert_allclose(sd[name], data["state_dict/" + name], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Parameter counts of the full-size configurations (built lazily: no weights allocated).


def _lazy_trainable_count(name, **overrides):
    with keras.StatelessScope(initialize_variables=False):
        net = build_architecture(name, **overrides)
    count = sum(int(np.prod(v.shape)) for v in net.trainable_weights)
    try:  # Forget the uninitialised variables, so no later scope allocates them.
        from keras.src.backend.common import global_state

        pending = global_state.get_global_attribute("uninitialized_variables")
        if pending:
            ids = {id(v) for v in net.variables}
            pending[:] = [v for v in pending if id(v) not in ids]
    except ImportError:  # pragma: no cover
        pass
    return count


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "name, overrides, expected",
    [
        ("ncsnpp_cifar10", {}, 56_395_523),
        ("ncsnpp_cifar10", {"label_dim": 10}, 56_398_339),
        ("ddpmpp_cifar10", {}, 55_732_739),
        ("adm_imagenet64", {}, 295_899_267),
    ],
)
def test_full_size_parameter_counts(name, overrides, expected):
    assert _lazy_trainable_count(name, **overrides) == expected


def test_small_presets_are_small_and_run():
    for name in ("ncsnpp_small", "ncsnpp_mnist_small"):
        net = build_architecture(name, seed=0)
        assert sum(int(np.prod(v.shape)) for v in net.trainable_weights) < 1_500_000
        cfg = ARCHITECTURES[name]["config"]
        inputs = tiny_inputs(2, cfg["img_resolution"], cfg["in_channels"], label_dim=0)
        y = infer(net, inputs)
        assert y.shape == (2, 32, 32, cfg["out_channels"])
        assert np.isfinite(y).all()


@pytest.mark.backend_independent
def test_preset_table_structure():
    for name, preset in ARCHITECTURES.items():
        assert preset["class"] in ("SongUNet", "DhariwalUNet"), name
        assert isinstance(preset["config"], dict) and preset["description"]
    cfg = ARCHITECTURES["ncsnpp_cifar10_deep"]["config"]
    assert cfg["num_blocks"] == 8 and cfg["fourier_scale"] == 0.02
    assert ARCHITECTURES["adm_imagenet64_deep"]["config"]["num_blocks"] == 6


# ---------------------------------------------------------------------------------------
# Other architecture options (checked against EDM during development; here: they build,
# run, expose EDM's module names, and survive a state-dict round trip).


@pytest.mark.parametrize(
    "encoder_type, decoder_type, embedding_type, resample_filter",
    [
        ("skip", "skip", "fourier", [1, 3, 3, 1]),
        ("standard", "skip", "positional", [1, 1]),
    ],
)
def test_song_unet_variants(encoder_type, decoder_type, embedding_type, resample_filter):
    cfg = dict(TINY, encoder_type=encoder_type, decoder_type=decoder_type,
               embedding_type=embedding_type, resample_filter=resample_filter, label_dim=0)
    net = randomize(SongUNet(**cfg, seed=1))
    sd = edm_state_dict(net)
    if encoder_type == "skip":
        assert "enc.4x4_aux_down.resample_filter" in sd and "enc.4x4_aux_skip.weight" in sd
    if decoder_type == "skip":
        assert "dec.8x8_aux_up.resample_filter" in sd and "dec.4x4_aux_conv.weight" in sd
    inputs = tiny_inputs(label_dim=0)
    y = infer(net, inputs)
    assert y.shape == (2, 8, 8, 3)
    other = SongUNet(**cfg, seed=2)
    load_edm_state_dict(other, sd)
    np.testing.assert_allclose(infer(other, inputs), y, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Serialisation.


def test_get_config_round_trip():
    net = SongUNet(**TINY, seed=5, name="tiny")
    clone = assert_config_round_trip(net, dict(TINY, seed=5, name="tiny"))
    clone.set_weights(net.get_weights())
    inputs = tiny_inputs()
    np.testing.assert_allclose(to_numpy(clone(inputs)), to_numpy(net(inputs)), atol=1e-6)

    adm = DhariwalUNet(img_resolution=8, in_channels=3, out_channels=6, model_channels=32,
                       channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], dropout=0.0)
    assert_config_round_trip(adm)

    mixed = SongUNet(**TINY, dtype="mixed_bfloat16")
    assert assert_config_round_trip(mixed).dtype_policy.name == "mixed_bfloat16"


def test_keras_save_load_round_trip(tmp_path):
    net = randomize(SongUNet(**dict(TINY, label_dropout=0.1), seed=7))
    loaded = assert_keras_file_round_trip(net, tiny_inputs(), tmp_path)
    np.testing.assert_array_equal(
        to_numpy(loaded.get_layer("map_noise").freqs), to_numpy(net.get_layer("map_noise").freqs)
    )
    assert len(seed_states(loaded)) == len(seed_states(net)) > 0


def test_state_dict_round_trip(tmp_path):
    net = randomize(SongUNet(**TINY, seed=1))
    inputs = tiny_inputs()
    expected = to_numpy(net(inputs))
    sd = edm_state_dict(net)
    assert sd["enc.8x8_conv.weight"].shape == (16, 3, 3, 3)  # OIHW
    assert sd["map_layer0.weight"].shape == (64, 32)  # (out, in)
    assert sd["enc.4x4_down.conv0.resample_filter"].shape == (1, 1, 4, 4)

    def check(source, **kwargs):
        other = SongUNet(**TINY, seed=2)
        assert load_edm_state_dict(other, source, **kwargs) is other
        np.testing.assert_allclose(to_numpy(other(inputs)), expected, atol=1e-6)

    check(sd)
    np.savez(tmp_path / "plain.npz", **sd)
    check(tmp_path / "plain.npz")
    np.savez(tmp_path / "prefixed.npz", meta="x", **{"state_dict/" + k: v for k, v in sd.items()})
    check(str(tmp_path / "prefixed.npz"))
    check({"model." + k: v for k, v in sd.items()}, prefix="model.")
    torch = pytest.importorskip("torch")
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, tmp_path / "sd.pt")
    check(tmp_path / "sd.pt")
    check({k: torch.from_numpy(v).requires_grad_(v.dtype == np.float32) for k, v in sd.items()})


# ---------------------------------------------------------------------------------------
# Errors.


def test_state_dict_errors_are_collected():
    net = SongUNet(**TINY, seed=1)
    sd = edm_state_dict(net)
    before = [to_numpy(w).copy() for w in net.trainable_weights]
    bad = dict(sd)
    del bad["map_layer1.bias"]
    bad["enc.8x8_block0.bogus.weight"] = np.zeros(3)
    bad["dec.8x8_aux_conv.weight"] = np.zeros((3, 16, 1, 1), np.float32)
    bad["enc.4x4_down.skip.resample_filter"] = np.ones((1, 1, 4, 4), np.float32)
    bad["map_layer0.weight"] = sd["map_layer0.weight"] + 1.0  # valid: must NOT be applied
    with pytest.raises(ValueError) as info:
        load_edm_state_dict(net, bad)
    msg = str(info.value)
    for needle in ("missing", "map_layer1.bias", "unexpected", "enc.8x8_block0.bogus.weight",
                   "mis-shaped", "dec.8x8_aux_conv.weight", "enc.4x4_down.skip.resample_filter"):
        assert needle in msg, needle
    for w, b in zip(net.trainable_weights, before):
        np.testing.assert_array_equal(to_numpy(w), b)

    with pytest.raises(ValueError, match="unexpected"):
        load_edm_state_dict(net, {"model." + k: v for k, v in sd.items()})
    with pytest.raises(TypeError):
        load_edm_state_dict(net, 42)
    with pytest.raises(ValueError, match="Unsupported"):
        load_edm_state_dict(net, "weights.h5")


def test_input_validation_errors():
    net = SongUNet(**TINY)
    x, noise, labels = tiny_inputs()
    with pytest.raises(ValueError, match="rank 4"):
        net([x[0], noise, labels])
    with pytest.raises(ValueError, match="channels-first"):
        net([np.transpose(x, (0, 3, 1, 2)), noise, labels])
    with pytest.raises(ValueError, match="3 channels"):
        net([x[..., :2], noise, labels])
    with pytest.raises(ValueError, match="height 8"):
        net([np.zeros((2, 16, 8, 3), "float32"), noise, labels])
    with pytest.raises(ValueError, match="class-conditional"):
        net([x, noise])
    with pytest.raises(ValueError, match="noise_labels"):
        net([x, noise[:, None], labels])
    with pytest.raises(ValueError, match="class_labels"):
        net([x, noise, labels[:, :2]])
    uncond = SongUNet(**dict(TINY, label_dim=0))
    with pytest.raises(ValueError, match="unconditional"):
        uncond([x, noise, labels])


def test_config_errors():
    with pytest.raises(ValueError, match="Unknown network architecture.*ncsnpp_cifar10"):
        build_architecture("nope")
    with pytest.raises(ValueError, match="DhariwalUNet.*SongUNet"):
        from_edm_config("EDMPrecond", img_resolution=8, in_channels=3, out_channels=3)
    with pytest.raises(TypeError, match="bogus"):
        from_edm_config("SongUNet", img_resolution=8, in_channels=3, out_channels=3, bogus=1)
    with pytest.raises(TypeError, match="fourier_scale"):  # a Keras extension, not EDM's
        from_edm_config("SongUNet", img_resolution=8, in_channels=3, out_channels=3,
                        fourier_scale=1.0)
    with pytest.raises(TypeError, match="out_channels"):
        from_edm_config("DhariwalUNet", img_resolution=8, in_channels=3)
    with pytest.raises(ValueError, match="augment_dim"):
        from_edm_config("SongUNet", img_resolution=8, in_channels=3, out_channels=3,
                        augment_dim=9)
    with pytest.raises(TypeError, match="bogus"):
        build_architecture("ncsnpp_small", bogus=1)
    with pytest.raises(ValueError, match="encoder_type"):
        SongUNet(**dict(TINY, encoder_type="fancy"))
    with pytest.raises(ValueError, match="divisible"):
        SongUNet(**dict(TINY, img_resolution=6, channel_mult=[1, 2, 2]))
    with pytest.raises(ValueError, match="resample_filter"):
        SongUNet(**dict(TINY, resample_filter=[1, 2, 1]))


# ---------------------------------------------------------------------------------------
# Dropout and label dropout.


def test_dropout_only_in_training_and_reproducible_from_seed_state():
    net = randomize(SongUNet(**TINY, seed=3))
    inputs = tiny_inputs()
    eval_a, eval_b = to_numpy(net(inputs)), to_numpy(net(inputs, training=False))
    np.testing.assert_array_equal(eval_a, eval_b)

    states = seed_states(net)
    num_blocks = sum(isinstance(layer, UNetBlock) for layer in net.layers)
    assert len(states) == num_blocks == 10  # one Dropout per UNetBlock
    saved = [to_numpy(v).copy() for v in states]
    train_a = to_numpy(net(inputs, training=True))
    train_b = to_numpy(net(inputs, training=True))
    assert np.abs(train_a - eval_a).max() > 1e-3
    assert np.abs(train_a - train_b).max() > 1e-3
    for v, s in zip(states, saved):  # restoring the seed state replays the same masks
        v.assign(s)
    np.testing.assert_array_equal(to_numpy(net(inputs, training=True)), train_a)

    no_drop = randomize(SongUNet(**dict(TINY, dropout=0.0), seed=3))
    assert seed_states(no_drop) == []
    np.testing.assert_array_equal(
        to_numpy(no_drop(inputs, training=True)), to_numpy(no_drop(inputs))
    )


@pytest.mark.parametrize("cls", ["SongUNet", "DhariwalUNet"])
def test_label_dropout(cls):
    if cls == "SongUNet":
        net = SongUNet(**dict(TINY, dropout=0.0, label_dropout=0.999999), seed=4)
    else:
        net = DhariwalUNet(img_resolution=8, in_channels=3, out_channels=3, label_dim=3,
                           model_channels=32, channel_mult=[1, 2], num_blocks=1,
                           attn_resolutions=[4], dropout=0.0, label_dropout=0.999999, seed=4)
    randomize(net)
    x, noise, labels = tiny_inputs()
    assert len(seed_states(net)) == 1
    dropped = to_numpy(net([x, noise, labels], training=True))
    np.testing.assert_allclose(dropped, to_numpy(net([x, noise, np.zeros_like(labels)])), atol=1e-6)
    assert np.abs(dropped - to_numpy(net([x, noise, labels]))).max() > 1e-3

    layer = LabelDropout(0.5, seed=0)
    onehot = np.eye(4, dtype="float32")[np.arange(4000) % 4]
    out = to_numpy(layer(onehot, training=True))
    kept = out.sum(axis=1)
    assert set(np.unique(kept)) <= {0.0, 1.0}  # whole rows, no rescaling
    assert 0.45 < kept.mean() < 0.55
    np.testing.assert_array_equal(to_numpy(layer(onehot)), onehot)


# ---------------------------------------------------------------------------------------
# Mixed precision.


def test_mixed_bfloat16_runs():
    x, noise, labels = tiny_inputs()
    song = SongUNet(**dict(TINY, label_dropout=0.1), dtype="mixed_bfloat16")
    y = song([x, noise, labels], training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert np.isfinite(to_numpy(keras.ops.cast(y, "float32"))).all()
    adm = DhariwalUNet(img_resolution=8, in_channels=3, out_channels=3, label_dim=3,
                       model_channels=64, channel_mult=[1, 2], num_blocks=1,
                       attn_resolutions=[4], dropout=0.1, dtype="mixed_bfloat16")
    y = infer(adm, [x, noise, labels])
    assert y.shape == (2, 8, 8, 3)
    assert np.isfinite(y.astype("float32")).all()
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in adm.weights)
