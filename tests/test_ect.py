"""Diffusion pre-training (EDM) and consistency tuning (ECT): formulas against float64 transcriptions of EDM's and
ECT's code, the losses on fixed weights and noise (the cross-backend fixture's weights, so every backend checks
the same numbers), the boundary condition after the EDM -> consistency switch, dropout-mask sharing, resume, init."""

import json
import math
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

import cross_backend_case as case
from harness import REPO, our_stderr_lines
from keras_ict import paper
from keras_ict.diffusion import DiffusionTrainer, edm_loss_weight, heun_sample, karras_sigmas
from keras_ict.ect import ConsistencyTuningTrainer, tuning_r, tuning_weight
from keras_ict.networks import SongUNet
from keras_ict.parameterization import ConsistencyModel, EDMDenoiser, edm_scalings

FIXTURE_WEIGHTS = REPO / "tests" / "data" / "cross_backend" / "tensorflow.weights.h5"
SD = 0.5


# ----- float64 transcriptions of the reference code (locuslab/ect training/loss.py ECMLoss, EDM networks.py) -----

def ect_r_reference(t, stage, q=2.0, k=8.0, b=1.0):
    adj = 1 + k * (1 / (1 + math.exp(b * t)))  # torch.sigmoid(-b t)
    decay = 1 / q ** (stage + 1)
    return max(t * (1 - decay * adj), 0.0)


def edm_precond_reference(sigma):
    c_skip = SD**2 / (sigma**2 + SD**2)
    c_out = sigma * SD / math.sqrt(sigma**2 + SD**2)
    c_in = 1 / math.sqrt(SD**2 + sigma**2)
    return c_skip, c_out, c_in


def consistency_precond_reference(sigma, sigma_min=0.002):
    c_skip = SD**2 / ((sigma - sigma_min) ** 2 + SD**2)
    c_out = (sigma - sigma_min) * SD / math.sqrt(sigma**2 + SD**2)
    c_in = 1 / math.sqrt(SD**2 + sigma**2)
    return c_skip, c_out, c_in


def test_tuning_r_matches_ect_mapping_in_float64_and_on_the_backend():
    ts = np.exp(np.linspace(-7, 4.5, 41))
    for stage in range(6):
        for q in (2.0, 4.0, 256.0):
            expected = np.array([ect_r_reference(t, stage, q=q) for t in ts])
            np.testing.assert_allclose(tuning_r(ts, stage, q=q), expected, rtol=1e-12, atol=0)
            got = ops.convert_to_numpy(tuning_r(ops.convert_to_tensor(ts.astype(np.float32)), stage, q=q))
            np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-7)
    # The mapping's shape: r = 0 at small t in stage 0 (a denoising target), r -> t as the stage grows.
    assert tuning_r(0.01, 0) == 0.0
    ratios = [tuning_r(1.0, s) / 1.0 for s in range(8)]
    assert all(a < b for a, b in zip(ratios, ratios[1:])) and ratios[-1] > 0.98
    np.testing.assert_allclose(tuning_weight(np.array([2.0]), np.array([1.5])), [2.0])


def test_edm_scalings_weight_and_sigmas_match_edm():
    for sigma in (0.002, 0.01, 0.3, 1.0, 7.0, 80.0):
        np.testing.assert_allclose(edm_scalings(sigma), edm_precond_reference(sigma), rtol=1e-12)
        np.testing.assert_allclose(edm_loss_weight(sigma), (sigma**2 + SD**2) / (sigma * SD) ** 2, rtol=1e-12)
    # EDM Eq. 5 with its defaults (18 steps, 0.002..80, rho 7): first, last and the final 0.
    steps = karras_sigmas(18)
    assert steps[0] == pytest.approx(80.0) and steps[17] == pytest.approx(0.002) and steps[18] == 0.0
    assert np.all(np.diff(steps) < 0)
    assert (paper.EDM_P_MEAN, paper.EDM_P_STD, paper.ECT_Q, paper.ECT_K, paper.ECT_B) == (-1.2, 1.2, 2.0, 8.0, 1.0)


def fixture_denoiser():
    denoiser = EDMDenoiser(SongUNet(**case.NETWORK_CONFIG, seed=11)).build_for_images()
    denoiser.load_weights(FIXTURE_WEIGHTS)  # the network's variables: the same file a ConsistencyModel loads
    return denoiser


def raw_network(model, x, sigma):
    """F(c_in x, c_noise) on this backend, to feed the float64 transcriptions."""
    c_in = 1 / np.sqrt(sigma.astype(np.float64) ** 2 + SD**2)
    inputs = [(c_in[:, None, None, None] * x).astype(np.float32), (np.log(sigma) / 4).astype(np.float32)]
    return ops.convert_to_numpy(model.network(inputs, training=False)).astype(np.float64)


def test_switch_from_edm_to_consistency_keeps_the_network_and_gains_the_boundary_condition():
    denoiser = fixture_denoiser()
    model = denoiser.to_consistency_model()
    assert type(model) is ConsistencyModel
    for a, b in zip(denoiser.network.weights, model.network.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    x, sigma, *_ = case.inputs()
    f = raw_network(denoiser, x, sigma)
    for which, reference in ((denoiser, edm_precond_reference), (model, consistency_precond_reference)):
        out = ops.convert_to_numpy(which([x, sigma])).astype(np.float64)
        c = np.array([reference(float(s)) for s in sigma])
        expected = c[:, 0, None, None, None] * x + c[:, 1, None, None, None] * f
        np.testing.assert_allclose(out, expected, atol=2e-5)
    at_min = np.full((4,), 0.002, np.float32)
    np.testing.assert_array_equal(ops.convert_to_numpy(model([x, at_min])), x)  # f(x, sigma_min) = x exactly
    assert np.abs(ops.convert_to_numpy(denoiser([x, at_min])) - x).max() > 1e-6  # EDM's D has no such condition


def test_edm_loss_on_fixed_weights_and_noise_equals_its_float64_transcription():
    denoiser = fixture_denoiser()
    trainer = DiffusionTrainer(denoiser, seed=0)
    x, _, noise, sigma_i, _ = case.inputs()
    loss = ops.convert_to_numpy(trainer.denoising_loss(x, noise, sigma_i, training=False))
    noisy = (x + sigma_i[:, None, None, None] * noise).astype(np.float32)
    f = raw_network(trainer.model, noisy, sigma_i)
    s = sigma_i.astype(np.float64)
    c_skip, c_out, _ = (np.array(v) for v in zip(*[edm_precond_reference(v) for v in s]))
    denoised = c_skip[:, None, None, None] * noisy + c_out[:, None, None, None] * f
    expected = (s**2 + SD**2) / (s * SD) ** 2 * ((denoised - x) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_ect_loss_on_fixed_weights_and_noise_equals_its_float64_transcription():
    model = fixture_denoiser().to_consistency_model()
    trainer = ConsistencyTuningTrainer(model, total_steps=100, stage_steps=10, seed=0)
    x, _, noise, _, t = case.inputs()
    r = tuning_r(t.astype(np.float64), 0).astype(np.float32)  # stage 0: r = 0 for the smallest t
    assert r[0] == 0.0 and r[-1] > 0.002
    loss = ops.convert_to_numpy(trainer.consistency_loss(x, noise, r, t, training=False))
    c = trainer.huber_c

    def f(sigma):
        noisy = (x + sigma[:, None, None, None] * noise).astype(np.float32)
        cs = np.array([consistency_precond_reference(float(v)) for v in sigma])
        return cs[:, 0, None, None, None] * noisy + cs[:, 1, None, None, None] * raw_network(model, noisy, sigma)

    target = np.where((r < 0.002)[:, None, None, None], x, f(np.maximum(r, 0.002)))
    distance = np.sqrt(((f(t) - target) ** 2).sum(axis=(1, 2, 3)) + c**2) - c
    np.testing.assert_allclose(loss, distance / (t.astype(np.float64) - r), rtol=2e-5)


def test_ect_teacher_and_student_share_the_dropout_mask():
    from tiny_network import TinyNet

    model = ConsistencyModel(TinyNet(img_resolution=8, in_channels=1, dropout=0.5, seed=7), noise_label_scale=1.0)
    trainer = ConsistencyTuningTrainer(model, total_steps=10, seed=0)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 1)).astype(np.float32)
    z = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    sigma = np.full((8,), 1.3, np.float32)
    d = ops.convert_to_numpy(trainer.consistency_distance(x, z, sigma, sigma, training=True))
    assert np.all(d == 0.0), d
    a = ops.convert_to_numpy(trainer.model([x + z, sigma], training=True))
    assert not np.allclose(a, ops.convert_to_numpy(trainer.model([x + z, sigma], training=True)))


def test_trainers_fit_save_and_resume_identically(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (16, 8, 8, 1)).astype(np.float32)

    def net():
        return SongUNet(img_resolution=8, in_channels=1, out_channels=1, model_channels=8, channel_mult=[1],
                        num_blocks=1, attn_resolutions=[], dropout=0.2, embedding_type="fourier", channel_mult_noise=2,
                        encoder_type="residual", resample_filter=[1, 3, 3, 1], fourier_scale=0.02, seed=0)

    makers = {
        "edm": lambda: DiffusionTrainer(EDMDenoiser(net()), ema_decay=0.9, seed=1),
        "ect": lambda: ConsistencyTuningTrainer(ConsistencyModel(net()), total_steps=8, stage_steps=2, ema_decay=0.9,
                                                seed=1),
    }
    for name, make in makers.items():
        trainer = make()
        trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
        trainer.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False)
        trainer.save(tmp_path / f"{name}.keras")
        trainer.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False)
        loaded = keras.saving.load_model(tmp_path / f"{name}.keras")
        assert type(loaded) is type(trainer) and int(ops.convert_to_numpy(loaded.step)) == 2
        loaded.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False)
        moved = max(float(np.abs(ops.convert_to_numpy(a) - ops.convert_to_numpy(b)).max())
                    for a, b in zip(make().model.trainable_weights, trainer.model.trainable_weights))
        assert moved > 1e-4, name
        for a, b in zip(trainer.model.weights + trainer.ema_model.weights, loaded.model.weights + loaded.ema_model.weights):
            np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b), atol=1e-6, err_msg=name)
    assert heun_sample(trainer if name == "edm" else makers["edm"](), range(2), num_steps=3).shape == (2, 8, 8, 1)


def test_constructor_errors():
    with pytest.raises(TypeError, match="EDMDenoiser"):
        DiffusionTrainer(ConsistencyModel(SongUNet(**case.NETWORK_CONFIG)))
    model = ConsistencyModel(SongUNet(**case.NETWORK_CONFIG))
    with pytest.raises(ValueError, match="q must be > 1"):
        ConsistencyTuningTrainer(model, total_steps=10, q=1.0)
    with pytest.raises(ValueError, match="stage_steps"):
        ConsistencyTuningTrainer(model, total_steps=10, stage_steps=0)
    with pytest.raises(TypeError, match="EDMDenoiser"):
        heun_sample(model, range(2))
    from keras_ict.sampling import generate

    with pytest.raises(TypeError, match="diffusion model"):
        generate(EDMDenoiser(SongUNet(**case.NETWORK_CONFIG)), range(2))


TINY = ['--set', 'network_overrides={"model_channels":8,"channel_mult":[1],"attn_resolutions":[],"num_blocks":1}',
        "--set", "sample_count=4", "--set", "checkpoint_every=2", "--batch-size", "8"]


def _train(*args):
    data = REPO.parent / "shared" / "datasets" / "mnist_small.npz"
    return subprocess.run([sys.executable, "-m", "keras_ict", "train", "--data", str(data), *TINY, *args],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.mark.once("torch")
def test_cli_diffusion_run_then_tuning_from_it_and_init_errors(tmp_path, shared_dir):
    edm = _train("--preset", "mnist-edm", "--steps", "2", "--out", str(tmp_path / "edm"))
    assert edm.returncode == 0, edm.stderr[-2000:]
    final = json.loads((tmp_path / "edm" / "final" / "config.json").read_text())
    assert final["kind"] == "edm_denoiser" and (tmp_path / "edm" / "final" / "samples_heun.png").is_file()
    tune = ["--preset", "mnist-ect", "--steps", "2", "--init", str(tmp_path / "edm")]
    ect = _train(*tune, "--out", str(tmp_path / "ect"))
    assert ect.returncode == 0, ect.stderr[-2000:]
    assert "initialised from" in ect.stdout
    # Stopped after one step and resumed in a new process: the same model as the uninterrupted run.
    first = _train(*tune, "--out", str(tmp_path / "ect_resumed"), "--stop-at-step", "1")
    second = _train(*tune, "--out", str(tmp_path / "ect_resumed"))
    assert first.returncode == 0 and second.returncode == 0 and "resuming from" in second.stdout, second.stderr[-2000:]
    import keras_ict

    tuned = keras_ict.from_preset(tmp_path / "ect" / "final")
    resumed = keras_ict.from_preset(tmp_path / "ect_resumed" / "final")
    assert type(tuned) is ConsistencyModel
    for a, b in zip(tuned.weights, resumed.weights):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b), atol=1e-6)
    bad = {
        "not a run folder": ["--init", str(tmp_path / "nothing")],
        "pickled torch file": ["--init", str(_touch(tmp_path / "net.pt"))],
        "network is not this run's": ["--init", str(tmp_path / "edm"), "--set", "network_overrides={}"],
    }
    for message, flags in bad.items():
        out = tmp_path / f"bad_{len(message)}"
        proc = _train("--preset", "mnist-ect", "--steps", "2", "--out", str(out), *flags)
        lines = our_stderr_lines(proc.stderr)
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
        assert not out.exists()


def _touch(path):
    path.write_bytes(b"not a state dict")
    return path
