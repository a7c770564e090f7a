"""benchmarks/torch_baseline.py: its PyTorch SongUNet is EDM's network, and its step is the Keras trainer's.

Backend-independent (plain PyTorch), so it runs once per suite: in the KERAS_BACKEND=torch run only (the
Keras-side comparisons below also need that backend, so both sides share tensors' framework).
"""

from pathlib import Path

import keras
import numpy as np
import pytest

from harness import load_script
from keras_ict import recipes

REPO = Path(__file__).resolve().parents[1]

if keras.backend.backend() != "torch":
    pytest.skip("plain-PyTorch baseline: checked once, in the KERAS_BACKEND=torch run", allow_module_level=True)
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tb():
    return load_script("benchmarks/torch_baseline.py")


@pytest.mark.parametrize("name", ["songunet_ncsnpp_small.npz", "songunet_ncsnpp_small_cond10.npz"])
@pytest.mark.parametrize("attention", ["sdpa", "einsum"])
def test_matches_edm_songunet(tb, shared_dir, name, attention):
    path = shared_dir / "parity" / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    # Strict load by EDM's names (every parameter and buffer), trainable count, float64 output.
    assert tb.check_edm_parity(path, attention_impl=attention) < 1e-9


def test_noise_tables_match_keras_ict(tb):
    from keras_ict import schedules

    sigmas, probs = tb.noise_tables(10, 1280, 0.002, 80.0, 7.0, -1.1, 2.0)
    ref_sigmas, ref_logp = schedules.curriculum_tables()
    np.testing.assert_allclose(sigmas, ref_sigmas, rtol=1e-12)
    np.testing.assert_allclose(probs, np.exp(ref_logp), rtol=1e-10, atol=1e-300)
    for total in (1, 100, 400_000):
        assert tb.curriculum_interval(total, 10, 1280) == schedules.curriculum_interval(total, 10, 1280)


def test_network_config_comes_from_presets(tb):
    from keras_ict.networks import ARCHITECTURES

    training, kwargs = tb.resolve(network="ncsnpp_cifar10")
    assert kwargs == ARCHITECTURES["ncsnpp_cifar10"]["config"]
    assert training["ema_decay"] == 0.99993 and training["learning_rate"] == 1e-4
    net = tb.SongUNet(**kwargs)
    assert sum(p.numel() for p in net.parameters()) == 56_395_523  # EDM's NCSN++ CIFAR-10 count
    training, kwargs = tb.resolve(preset="mnist-cond")
    assert kwargs["label_dim"] == 10 and kwargs["in_channels"] == 1 and kwargs["dropout"] == 0.1
    cpu = recipes.RECIPES["mnist-cond"]
    assert training["learning_rate"] == cpu["learning_rate"] and training["ema_decay"] == cpu["ema_decay"]
    assert tb.resolve(preset="ncsnpp_small")[1]["model_channels"] == 32  # a network name, as train_throughput
    with pytest.raises(ValueError, match="SongUNet only"):
        tb.resolve(network="adm_imagenet64")


@pytest.mark.parametrize("preset", ["mnist", "mnist-cond"])
def test_loss_matches_keras_trainer(tb, preset):
    """Same weights, noise and sigmas: the per-sample iCT loss equals ConsistencyTrainer.consistency_loss."""
    from keras_ict import recipes
    from keras_ict.networks import edm_state_dict, load_edm_state_dict
    from keras_ict.trainer import ConsistencyTrainer

    config = recipes.resolve_config(preset, {"dropout": 0.0})
    model = recipes.build_consistency_model(recipes.model_config(config), seed=0)
    state = edm_state_dict(model.network)
    rng = np.random.default_rng(0)
    for key, value in state.items():  # random weights everywhere, so no zero-initialised layer hides anything
        if key.endswith(("resample_filter", "freqs")):
            continue
        if value.ndim > 1:
            state[key] = rng.normal(0, 1 / np.sqrt(np.prod(value.shape[1:])), value.shape).astype("float32")
        else:
            state[key] = (value + rng.normal(0, 0.1, value.shape)).astype("float32")
    load_edm_state_dict(model.network, state)
    trainer = ConsistencyTrainer(model, total_steps=config["total_steps"], s0=config["s0"], s1=config["s1"], seed=0)

    training, kwargs = tb.resolve(preset=preset, overrides={"dropout": 0.0})
    net = tb.SongUNet(**kwargs)
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    baseline = tb.ICTTrainer(net, training)
    np.testing.assert_allclose(baseline.sigma_table.numpy(), trainer._sigma_table)
    assert baseline.huber_c == pytest.approx(trainer.huber_c)
    assert baseline.interval == trainer.curriculum_interval

    batch = 4
    images = rng.uniform(-1, 1, (batch, 32, 32, 1)).astype("float32")
    noise = rng.normal(size=images.shape).astype("float32")
    table = trainer._sigma_table[0]
    index = np.array([0, 3, 6, 9])
    sigma, sigma_next = table[index], table[index + 1]
    labels = rng.integers(0, 10, batch) if model.conditional else None
    expected = keras.ops.convert_to_numpy(trainer.consistency_loss(images, noise, sigma, sigma_next, labels))
    with torch.no_grad():
        got = baseline.per_sample_loss(
            torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), torch.from_numpy(noise.transpose(0, 3, 1, 2).copy()),
            torch.from_numpy(sigma), torch.from_numpy(sigma_next), None if labels is None else torch.from_numpy(labels),
        ).numpy()
    assert np.all(expected > 0)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_step_shares_dropout_masks_and_updates_ema(tb):
    torch.manual_seed(0)
    kwargs = dict(img_resolution=8, in_channels=1, out_channels=1, label_dim=3, model_channels=8, channel_mult=[1, 2],
                  num_blocks=1, attn_resolutions=[4], dropout=0.5, embedding_type="fourier", channel_mult_noise=2,
                  encoder_type="residual", decoder_type="standard", resample_filter=[1, 3, 3, 1], fourier_scale=0.02)
    training = dict(tb._THROUGHPUT_DEFAULTS, ema_decay=0.9)
    baseline = tb.ICTTrainer(tb.SongUNet(**kwargs), training)
    images = torch.rand(2, 1, 8, 8) * 2 - 1
    labels = torch.tensor([0, 2])
    assert baseline.dropout_mask_shared(images, labels)
    with torch.no_grad():
        for ema in baseline.ema_params:
            ema.mul_(0.5)  # EMA != weights, so the update is visible
    before = [p.detach().clone() for p in baseline.params]
    ema_before = [p.detach().clone() for p in baseline.ema_params]
    loss = baseline.step(images, labels)
    assert torch.isfinite(loss) and baseline.step_count == 1
    for ema, ema0, theta0 in zip(baseline.ema_params, ema_before, before):
        torch.testing.assert_close(ema, ema0 + 0.1 * (theta0 - ema0))  # EMA of theta_k, as keras_ict
    assert any(not torch.equal(p, p0) for p, p0 in zip(baseline.params, before))


def test_model_flops_counts_one_ict_step_per_image(tb):
    """benchmarks/model_flops.py: the step is teacher forward + student forward and backward (~4 forwards, a bit
    less: the input needs no gradient), and the figures are per image (independent of the batch counted)."""
    model_flops = load_script("benchmarks/model_flops.py")

    two, four = model_flops.count("ncsnpp_mnist_small", batch=2), model_flops.count("ncsnpp_mnist_small", batch=4)
    assert two["params"] == 1_282_305
    assert two["forward_flops_per_image"] == pytest.approx(four["forward_flops_per_image"], rel=1e-9)
    assert two["train_step_flops_per_image"] == pytest.approx(four["train_step_flops_per_image"], rel=1e-9)
    ratio = two["train_step_flops_per_image"] / two["forward_flops_per_image"]
    assert 3.9 < ratio < 4.0
    # The first convolution alone, counted by hand: 3x3, 1 -> 32 channels at 32x32, 2 FLOPs per multiply-add.
    assert two["forward_flops_per_image"] > 2 * 3 * 3 * 1 * 32 * 32 * 32
