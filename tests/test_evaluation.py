"""The FID protocol around the Inception network: reference images and caching, generated statistics, the
metric's name, the training callback and the `fid` / `fid-ref` commands.

The Inception network itself is tested in test_fid.py; here it is replaced by a cheap deterministic feature map
of dimension 8 (the protocol does not depend on the network), except in the end-to-end test at the bottom.
"""

import csv
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_ict import evaluation, fid
from keras_ict.cli import main
from keras_ict.parameterization import ConsistencyModel
from keras_ict.sampling import generate, to_uint8
from tiny_network import TinyNet

FAKE_DIM = 8
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_inception(monkeypatch, tmp_path):
    """Features = 8 fixed pixel-statistics of each image; counts the images it was given."""
    calls = {"images": 0}

    def features(images, weights=None, batch_size=64):
        images = fid._validate_images(images)
        calls["images"] += len(images)
        x = images.astype(np.float64).reshape(len(images), -1) / 255.0
        blocks = np.array_split(x, FAKE_DIM, axis=1)
        return np.stack([b.mean(axis=1) + 0.1 * (b**2).mean(axis=1) for b in blocks], axis=1).astype(np.float32)

    monkeypatch.setattr(fid, "inception_features", features)
    monkeypatch.setattr(fid, "FEATURE_DIM", FAKE_DIM)
    monkeypatch.setenv("KERAS_ICT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_ICT_FID_WEIGHTS", str(tmp_path / "no-weights-needed.pt"))
    return calls


def tiny_model(label_dim=0, sampling=True):
    model = ConsistencyModel(TinyNet(img_resolution=8, in_channels=1, label_dim=label_dim, seed=3), noise_label_scale=1.0)
    model.build_for_images()
    if sampling:
        model.sampling = {"sigmas_1step": [80.0], "sigmas_2step": [80.0, 0.821]}
    return model


@pytest.mark.backend_independent
def test_metric_name_says_the_sample_count_and_steps():
    assert evaluation.metric_name(10_000, 1) == "fid10k_1step"
    assert evaluation.metric_name(50_000, 2) == "fid50k_2step"
    assert evaluation.metric_name(512, 2) == "fid512_2step"


@pytest.mark.backend_independent
def test_reference_images_are_the_training_pixels(shared_dir):
    path = shared_dir / "datasets" / "mnist_small.npz"
    batches = list(evaluation.reference_images(path, image_size=32, channels=1, num=70, batch_size=32))
    images = np.concatenate(batches)
    with np.load(path) as data:
        expected = np.pad(data["x_train"][:70], ((0, 0), (2, 2), (2, 2)))[..., None]
    assert images.dtype == np.uint8 and images.shape == (70, 32, 32, 1)
    np.testing.assert_array_equal(images, expected)
    native = np.concatenate(list(evaluation.reference_images(path, num=5)))
    assert native.shape == (5, 28, 28, 1)


@pytest.mark.backend_independent
def test_reference_statistics_cached_by_content(fake_inception, shared_dir, tmp_path):
    path = shared_dir / "datasets" / "mnist_small.npz"
    mu, sigma, info = evaluation.reference_statistics(path, num=40, image_size=32, progress=False)
    assert fake_inception["images"] == 40 and not info["cached"]
    assert info["num_images"] == 40 and info["fingerprint"].startswith("sha256:")
    mu2, sigma2, info2 = evaluation.reference_statistics(path, num=40, image_size=32, progress=False)
    assert fake_inception["images"] == 40 and info2["cached"]
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(sigma, sigma2)
    # Another geometry or count is another key; a copy of the same bytes elsewhere is the same key.
    evaluation.reference_statistics(path, num=41, image_size=32, progress=False)
    assert fake_inception["images"] == 81
    copy = tmp_path / "copy.npz"
    copy.write_bytes(path.read_bytes())
    _, _, info3 = evaluation.reference_statistics(copy, num=40, image_size=32, progress=False)
    assert info3["cached"] and fake_inception["images"] == 81
    # The statistics are those of the images' features.
    images = np.concatenate(list(evaluation.reference_images(path, num=40, image_size=32)))
    ref_mu, ref_sigma = fid.statistics(fid.inception_features(images))
    np.testing.assert_allclose(mu, ref_mu, rtol=1e-12)
    np.testing.assert_allclose(sigma, ref_sigma, rtol=1e-12)


@pytest.mark.backend_independent
def test_statistics_file_round_trip_with_metadata(tmp_path):
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=4), np.cov(rng.normal(size=(10, 4)), rowvar=False)
    path = tmp_path / "ref.npz"
    fid.save_statistics(path, mu, sigma, metadata={"num_images": 10, "source": "x"})
    got_mu, got_sigma, info = evaluation.reference_statistics(path)
    np.testing.assert_array_equal(got_mu, mu)
    np.testing.assert_array_equal(got_sigma, sigma)
    assert info["num_images"] == 10 and len(info["ref_sha256"]) == 64
    np.savez(tmp_path / "edm.npz", mu=mu, sigma=sigma)  # EDM's files have no metadata
    assert fid.read_statistics_metadata(tmp_path / "edm.npz") == {}
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="bad.npz"):
        fid.load_statistics(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        fid.load_statistics(tmp_path / "missing.npz")


def test_generated_statistics_depend_only_on_seeds(fake_inception):
    model = tiny_model()
    a = evaluation.generated_statistics(model, num=10, sigmas=[80.0], seed_start=5, batch_size=3, progress=False)
    b = evaluation.generated_statistics(model, num=10, sigmas=[80.0], seed_start=5, batch_size=4, progress=False)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-12)
    direct = fid.statistics(fid.inception_features(to_uint8(generate(model, range(5, 15), sigmas=[80.0]))))
    np.testing.assert_allclose(a[0], direct[0], rtol=1e-6)


def test_generated_labels_cycle_through_classes(fake_inception, monkeypatch):
    import keras_ict.sampling as sampling

    seen = []
    real = sampling.generate

    def spy(model, seeds, sigmas=(80.0,), labels=None, batch_size=64):
        seen.extend(labels)
        return real(model, seeds, sigmas=sigmas, labels=labels, batch_size=batch_size)

    monkeypatch.setattr(sampling, "generate", spy)
    evaluation.generated_statistics(tiny_model(label_dim=3), num=7, sigmas=[80.0], seed_start=2, batch_size=4, progress=False)
    assert seen == [s % 3 for s in range(2, 9)]


def test_fid_of_a_model_against_its_own_statistics_is_zero(fake_inception, tmp_path):
    model = tiny_model()
    mu, sigma = evaluation.generated_statistics(model, num=12, sigmas=[80.0, 0.821], progress=False)
    fid.save_statistics(tmp_path / "own.npz", mu, sigma)
    result = evaluation.compute_fid(model, tmp_path / "own.npz", num=12, steps=2, progress=False)
    assert result["metric"] == "fid12_2step" and abs(result["fid"]) < 1e-6
    assert result["seeds"] == "0-11" and result["sigmas"] == [80.0, 0.821]
    assert result["reference"]["ref_sha256"] == fid._sha256(tmp_path / "own.npz")
    one_step = evaluation.compute_fid(model, tmp_path / "own.npz", num=12, steps=1, progress=False)
    assert one_step["metric"] == "fid12_1step" and one_step["fid"] > 1e-3  # other images, other statistics


def tiny_denoiser():
    from keras_ict.parameterization import EDMDenoiser

    return EDMDenoiser(TinyNet(img_resolution=8, in_channels=1, seed=3), noise_label_scale=1.0).build_for_images()


def test_fid_of_a_diffusion_model_uses_edm_heun_sampler(fake_inception, tmp_path):
    from keras_ict.diffusion import DiffusionTrainer, heun_sample

    denoiser = tiny_denoiser()
    assert evaluation.metric_name(10_000, 18, "heun") == "fid10k_heun18"
    mu, sigma = evaluation.generated_statistics(denoiser, num=6, heun_steps=3, batch_size=4, progress=False)
    direct = fid.statistics(fid.inception_features(to_uint8(heun_sample(denoiser, range(6), num_steps=3))))
    np.testing.assert_allclose(mu, direct[0], rtol=1e-6)
    fid.save_statistics(tmp_path / "own.npz", mu, sigma)
    result = evaluation.compute_fid(denoiser, tmp_path / "own.npz", num=6, heun_steps=3, progress=False)
    assert result["metric"] == "fid6_heun3" and abs(result["fid"]) < 1e-6
    assert result["sampler"] == "heun" and result["network_calls"] == 5 and "sigmas" not in result
    other = evaluation.compute_fid(denoiser, tmp_path / "own.npz", num=6, heun_steps=2, progress=False)
    assert other["metric"] == "fid6_heun2" and other["fid"] > 1e-6  # fewer steps, other images
    trainer = DiffusionTrainer(denoiser, ema_decay=0.5, seed=0)  # a trainer is scored by its EMA model
    assert evaluation.compute_fid(trainer, tmp_path / "own.npz", num=6, progress=False)["metric"] == "fid6_heun18"
    with pytest.raises(ValueError, match="heun_steps, not sigmas"):
        evaluation.compute_fid(denoiser, tmp_path / "own.npz", num=6, sigmas=[80.0], progress=False)
    with pytest.raises(ValueError, match="heun_steps must be an int >= 1"):
        evaluation.compute_fid(denoiser, tmp_path / "own.npz", num=6, heun_steps=0, progress=False)
    with pytest.raises(ValueError, match="heun_steps is for diffusion models"):
        evaluation.compute_fid(tiny_model(), tmp_path / "own.npz", num=6, heun_steps=18, progress=False)
    with pytest.raises(ValueError, match="heun_steps is for diffusion models"):
        evaluation.generated_statistics(tiny_model(), num=6, sigmas=[80.0], heun_steps=18, progress=False)


def test_compute_fid_bad_input(fake_inception, tmp_path):
    model = tiny_model(sampling=False)
    fid.save_statistics(tmp_path / "ref.npz", np.zeros(FAKE_DIM), np.eye(FAKE_DIM))
    fid.save_statistics(tmp_path / "wrong_dim.npz", np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="at least 2|>= 2"):
        evaluation.compute_fid(model, tmp_path / "ref.npz", num=1, progress=False)
    with pytest.raises(ValueError, match="two-step sigmas"):
        evaluation.compute_fid(model, tmp_path / "ref.npz", num=4, steps=2, progress=False)
    with pytest.raises(ValueError, match="steps must be 1 or 2"):
        evaluation.compute_fid(model, tmp_path / "ref.npz", num=4, steps=3, progress=False)
    with pytest.raises(ValueError, match="dimension"):
        evaluation.compute_fid(model, tmp_path / "wrong_dim.npz", num=4, progress=False)
    with pytest.raises(ValueError, match="decreasing"):
        evaluation.compute_fid(model, tmp_path / "ref.npz", num=4, sigmas=[0.5, 80.0], progress=False)


def test_fid_monitor_logs_named_metric(fake_inception, tmp_path):
    from keras_ict.callbacks import FIDMonitor
    from keras_ict.trainer import ConsistencyTrainer

    model = tiny_model()
    trainer = ConsistencyTrainer(model, total_steps=10, ema_decay=0.5, seed=0)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    mu, sigma = evaluation.generated_statistics(model, num=6, sigmas=[80.0], progress=False)
    fid.save_statistics(tmp_path / "ref.npz", mu, sigma)
    monitor = FIDMonitor(tmp_path, tmp_path / "ref.npz", every=2, num=6, sigmas={1: [80.0], 2: [80.0, 0.821]})
    x = np.random.default_rng(0).uniform(-1, 1, (12, 8, 8, 1)).astype("float32")
    trainer.fit(x, batch_size=4, epochs=1, shuffle=False, callbacks=[monitor], verbose=0)
    with open(tmp_path / "fid.csv") as f:
        rows = list(csv.DictReader(f))
    # Steps 2 and 3 (the end of training), both samplers each time.
    assert [(r["step"], r["metric"]) for r in rows] == [
        ("2", "fid6_1step"), ("2", "fid6_2step"), ("3", "fid6_1step"), ("3", "fid6_2step")]
    assert rows[0]["seeds"] == "0-5" and rows[1]["sigmas"] == "80 0.821"
    assert [s for s, _ in monitor.history["fid6_1step"]] == [2, 3]
    assert all(np.isfinite(float(r["fid"])) for r in rows)
    with pytest.raises(ValueError, match="every"):
        FIDMonitor(tmp_path, tmp_path / "ref.npz", every=0)


# ------------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    "args,message",
    [
        (["fid", "--model", "{tmp}/m", "--ref", "{tmp}/r.npz", "--num", "1"], "--num must be >= 2"),
        (["fid", "--model", "{tmp}/m", "--ref", "{tmp}/r.npz", "--steps", "3"], "--steps must be 1, 2 or 1,2"),
        (["fid", "--model", "{tmp}/m", "--ref", "{tmp}/r.npz", "--out", "{tmp}/x.txt"], "--out must end in .json"),
        (["fid", "--model", "{tmp}/m", "--ref", "{tmp}/r.npz", "--heun-steps", "0"], "--heun-steps must be >= 1"),
        (["fid", "--model", "{tmp}/m", "--ref", "{tmp}/r.npz", "--heun-steps", "9", "--steps", "1"],
         "cannot be combined with --steps"),
        (["fid", "--model", "{tmp}/m", "--ref", "{tmp}/missing.npz"], "missing.npz: file not found"),
        (["fid", "--model", "{tmp}/m", "--ref", "nodataset"], "neither a statistics .npz"),
        (["fid", "--model", "{tmp}/m", "--ref", "{mnist}", "--num", "4"], "no model folder or zoo entry"),
        (["fid-ref", "--data", "{mnist}", "--out", "{tmp}/ref.txt"], "--out must end in .npz"),
        (["fid-ref", "--data", "{tmp}/none.npz", "--out", "{tmp}/ref.npz"], "no such file or folder"),
        (["fid-ref", "--data", "{mnist}", "--out", "{tmp}/ref.npz", "--num", "1"], "--num must be >= 2"),
        (["fid-ref", "--data", "{mnist}", "--out", "{tmp}/ref.npz", "--num", "99999"], "num must be in [2, 2048]"),
        (["fid-ref", "--data", "{mnist}", "--out", "{tmp}/ref.npz", "--preset", "nope"], "unknown preset"),
        (["fid-ref", "--data", "{mnist}", "--out", "{tmp}/ref.npz", "--split", "valid"], "valid"),
    ],
)
def test_fid_commands_reject_bad_input(args, message, tmp_path, shared_dir, capsys, fake_inception):
    (tmp_path / "r.npz").write_bytes(b"")
    subs = {"tmp": tmp_path, "mnist": shared_dir / "datasets" / "mnist_small.npz"}
    code = main([a.format(**subs) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("keras-ict: error:") and message in err and "\n" not in err
    assert not (tmp_path / "ref.npz").exists() and not (tmp_path / "x.txt").exists()


def saved_model_folder(folder, model):
    from keras_ict.checkpoint import sha256_file, write_json

    folder.mkdir()
    model.save_weights(folder / "model.weights.h5")
    write_json(folder / "config.json", model_config_for())
    write_json(folder / "metadata.json", {"files": {p.name: sha256_file(p) for p in folder.iterdir()}})
    return folder


def model_config_for():
    from keras_ict.recipes import model_config, resolve_config

    overrides = {"network_overrides": {"model_channels": 8, "channel_mult": [1], "attn_resolutions": [], "num_blocks": 1}}
    return model_config(resolve_config("mnist", overrides))


def test_fid_and_fid_ref_commands(fake_inception, tmp_path, shared_dir, capsys):
    from keras_ict.recipes import build_consistency_model

    model = build_consistency_model(model_config_for()).build_for_images()
    folder = saved_model_folder(tmp_path / "final", model)
    mnist = shared_dir / "datasets" / "mnist_small.npz"
    ref = tmp_path / "refs" / "mnist.npz"
    assert main(["fid-ref", "--data", str(mnist), "--preset", "mnist", "--num", "20", "--out", str(ref)]) == 0
    meta = fid.read_statistics_metadata(ref)
    assert meta["num_images"] == 20 and meta["image_size"] == 32 and meta["channels"] == 1
    assert meta["command"].startswith("keras-ict fid-ref --data") and "--num 20" in meta["command"]
    out = tmp_path / "fid.json"
    code = main(["fid", "--model", str(folder), "--ref", str(ref), "--num", "12", "--steps", "1,2",
                 "--seed-start", "3", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "fid12_1step" in printed and "fid12_2step" in printed
    results = json.loads(out.read_text())["results"]
    assert [r["metric"] for r in results] == ["fid12_1step", "fid12_2step"]
    assert results[0]["seeds"] == "3-14" and results[1]["sigmas"] == [80.0, 0.821]
    assert results[0]["reference"]["ref_sha256"] == fid._sha256(ref)


def test_fid_and_sample_commands_on_a_diffusion_model(fake_inception, tmp_path, capsys):
    from keras_ict.diffusion import heun_sample
    from keras_ict.recipes import build_consistency_model

    config = dict(model_config_for(), kind="edm_denoiser")
    denoiser = build_consistency_model(config).build_for_images()
    folder = tmp_path / "edm_final"
    folder.mkdir()
    denoiser.save_weights(folder / "model.weights.h5")
    from keras_ict.checkpoint import sha256_file, write_json

    write_json(folder / "config.json", config)
    write_json(folder / "metadata.json", {"files": {p.name: sha256_file(p) for p in folder.iterdir()}})
    ref = tmp_path / "ref.npz"
    fid.save_statistics(ref, np.zeros(FAKE_DIM), np.eye(FAKE_DIM))
    out = tmp_path / "fid.json"
    assert main(["fid", "--model", str(folder), "--ref", str(ref), "--num", "4", "--heun-steps", "2",
                 "--out", str(out)]) == 0
    assert "fid4_heun2" in capsys.readouterr().out
    (result,) = json.loads(out.read_text())["results"]
    assert result["metric"] == "fid4_heun2" and result["heun_steps"] == 2 and result["network_calls"] == 3
    assert main(["sample", "--model", str(folder), "--seeds", "0-2", "--heun-steps", "2",
                 "--out", str(tmp_path / "s.npz")]) == 0
    saved = np.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(saved["images"], to_uint8(heun_sample(denoiser, range(3), num_steps=2)))
    assert int(saved["heun_steps"]) == 2 and "sigmas" not in saved.files
    capsys.readouterr()
    for command in (["fid", "--model", str(folder), "--ref", str(ref), "--num", "4", "--steps", "2"],
                    ["sample", "--model", str(folder), "--num", "2", "--sigmas", "80,1", "--out", str(tmp_path / "x.png")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "is a diffusion model (EDMDenoiser)" in err and "--heun-steps" in err
    assert not (tmp_path / "x.png").exists()
    consistency = saved_model_folder(tmp_path / "cm_final", build_consistency_model(model_config_for()).build_for_images())
    assert main(["fid", "--model", str(consistency), "--ref", str(ref), "--num", "4", "--heun-steps", "2"]) == 2
    assert "is a consistency model: --heun-steps is for diffusion models" in capsys.readouterr().err


def test_fid_ref_dataset_equals_statistics_file(fake_inception, tmp_path, shared_dir):
    from keras_ict.recipes import build_consistency_model

    model = build_consistency_model(model_config_for()).build_for_images()
    model.sampling = {"sigmas_1step": [80.0]}
    mnist = shared_dir / "datasets" / "mnist_small.npz"
    ref = tmp_path / "mnist.npz"
    assert main(["fid-ref", "--data", str(mnist), "--preset", "mnist", "--out", str(ref)]) == 0
    from_file = evaluation.compute_fid(model, ref, num=5, progress=False)
    from_data = evaluation.compute_fid(model, mnist, num=5, progress=False)
    assert from_file["fid"] == pytest.approx(from_data["fid"], rel=1e-12)
    assert from_data["reference"]["num_images"] == 2048


def test_training_fid_fields_are_validated_and_do_not_block_resume():
    from keras_ict.recipes import RUN_LENGTH_FIELDS, resolve_config

    config = resolve_config("mnist", {"fid_every": "500", "fid_steps": "2", "fid_ref": "refs/mnist.npz"})
    assert config["fid_every"] == 500 and config["fid_steps"] == [2] and config["fid_ref"] == "refs/mnist.npz"
    assert resolve_config("mnist")["fid_every"] == 0  # off unless asked for: reference statistics cost minutes
    for overrides, message in (({"fid_steps": "3"}, "fid_steps"), ({"fid_num": "1"}, "fid_num"),
                               ({"fid_every": "-1"}, "fid_every"), ({"fid_steps": "a,b"}, "fid_steps")):
        with pytest.raises(ValueError, match=message):
            resolve_config("mnist", overrides)
    assert {"fid_every", "fid_num", "fid_ref", "fid_steps"} <= set(RUN_LENGTH_FIELDS)


@pytest.mark.once("tensorflow")
def test_end_to_end_fid_with_the_real_inception_network(tmp_path, shared_dir):
    """The real Inception network, the committed MNIST reference statistics and the `mnist` zoo entry, 100
    images each: real MNIST digits < the zoo model's samples < uniform noise (small-sample FID is biased
    upwards, so the ordering and the metric's bookkeeping are checked, not values; measured at 100: 38.9 /
    230.9 / 421.7, ratios 0.17 and 0.55 against the bounds 0.5 and 0.8)."""
    num = 100  # Inception at 299x299 on one CPU thread is most of this test's time
    from keras_ict.zoo import from_preset

    ref = REPO / "fid_refs" / "mnist-train-32px.npz"
    result = evaluation.compute_fid(from_preset("mnist"), ref, num=num, steps=1, progress=False)
    assert result["metric"] == f"fid{num}_1step" and np.isfinite(result["fid"]) and result["fid"] > 0
    noise = np.random.default_rng(0).integers(0, 256, (num, 32, 32, 1), dtype=np.uint8)
    mu, sigma = fid.statistics(fid.inception_features(noise))
    noise_fid = fid.frechet_distance(mu, sigma, *fid.load_statistics(ref))
    real = np.concatenate(list(evaluation.reference_images(shared_dir / "datasets" / "mnist.npz", image_size=32, channels=1,
                                                           num=num)))
    mu, sigma = fid.statistics(fid.inception_features(real))
    real_fid = fid.frechet_distance(mu, sigma, *fid.load_statistics(ref))
    assert real_fid < 0.5 * result["fid"] and result["fid"] < 0.8 * noise_fid, (real_fid, result["fid"], noise_fid)
    assert result["reference"]["ref_sha256"] == fid._sha256(ref)
