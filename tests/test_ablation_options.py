"""The original-CT switches of ConsistencyTrainer used by the ablations (benchmarks/ablation.py).

Each switch reverts one iCT change: squared L2 distance, lambda = 1, uniform index sampling, CT's sqrt
curriculum, and a separate EMA teacher with mu(k) = exp(s0 ln mu0 / N(k)) (Song et al. 2023).
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_ict import ConsistencyModel, ConsistencyTrainer, schedules
from tiny_network import TinyNet


def make_trainer(dropout=0.0, **kwargs):
    net = TinyNet(img_resolution=8, in_channels=1, dropout=dropout, seed=7)
    return ConsistencyTrainer(ConsistencyModel(net, noise_label_scale=1.0), total_steps=kwargs.pop("total_steps", 40),
                              ema_decay=0.9, seed=0, **kwargs)


def batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 8, 8, 1)).astype(np.float32)
    return x, rng.standard_normal(x.shape).astype(np.float32)


@pytest.mark.backend_independent
def test_ct_curriculum_matches_the_cm_paper_formula():
    total, s0, s1 = 1000, 2, 150
    values = [schedules.ct_num_discretization_steps(k, total, s0, s1) for k in range(0, 1201, 7)]
    assert values[0] == s0 + 1 and values[-1] == s1 + 1 and values == sorted(values)
    for k in (1, 10, 250, 999):
        want = math.ceil(math.sqrt(k / total * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1
        assert schedules.ct_num_discretization_steps(k, total, s0, s1) == want
        traced = schedules.ct_num_discretization_steps(ops.convert_to_tensor(k, "int32"), total, s0, s1)
        assert int(ops.convert_to_numpy(traced)) == want


@pytest.mark.backend_independent
def test_uniform_index_tables():
    sigmas, logp = schedules.noise_tables([3, 11], 10, index_distribution="uniform")
    np.testing.assert_allclose(np.exp(logp[0][:2]), [0.5, 0.5])
    np.testing.assert_allclose(np.exp(logp[1]), np.full(10, 0.1))
    assert np.all(np.isinf(logp[0][2:])) and sigmas.shape == (2, 11)
    with pytest.raises(ValueError, match="index_distribution"):
        schedules.noise_tables([3], 10, index_distribution="beta")


def test_l2_distance_and_uniform_weighting():
    x, z = batch()
    sigma, sigma_next = np.full(8, 0.5, np.float32), np.full(8, 0.7, np.float32)
    ict = make_trainer()
    ct = make_trainer(distance="l2", weighting="uniform")
    ct.model.set_weights(ict.model.get_weights())
    student = ops.convert_to_numpy(ict.model([x + 0.7 * z, sigma_next]))
    teacher = ops.convert_to_numpy(ict.model([x + 0.5 * z, sigma]))
    sq = np.sum((student.astype(np.float64) - teacher) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(ops.convert_to_numpy(ct.consistency_loss(x, z, sigma, sigma_next)), sq, rtol=1e-5)
    c = ict.huber_c
    want = (np.sqrt(sq + c * c) - c) / 0.2
    np.testing.assert_allclose(ops.convert_to_numpy(ict.consistency_loss(x, z, sigma, sigma_next)), want, rtol=1e-4)


def test_uniform_index_sampling_inside_the_trainer():
    trainer = make_trainer(index_distribution="uniform", s0=4, s1=4)
    sigma, sigma_next, n = trainer.sample_noise_levels(4000)
    grid = schedules.karras_sigmas(5)
    index = np.searchsorted(grid.astype(np.float32), ops.convert_to_numpy(sigma))
    counts = np.bincount(index, minlength=4)[:4] / 4000
    assert int(ops.convert_to_numpy(n)) == 5
    np.testing.assert_allclose(counts, 0.25, atol=0.03)


def test_ct_curriculum_inside_fit():
    trainer = make_trainer(curriculum="ct", s0=2, s1=150, total_steps=4)
    trainer.compile(optimizer="adam")
    history = trainer.fit(batch(16)[0], batch_size=4, epochs=1, verbose=0, shuffle=False)
    assert int(history.history["num_scales"][-1]) == schedules.ct_num_discretization_steps(3, 4, 2, 150)


def test_ema_teacher_update_and_shared_dropout_masks():
    trainer = make_trainer(dropout=0.5, teacher="ema", teacher_mu0=0.9, s0=2, s1=150, curriculum="ct")
    x, z = batch()
    # Same weights in teacher and student and sigma_i = sigma_{i+1}: a shared dropout mask gives distance 0.
    sigma = np.full((8,), 1.3, np.float32)
    d = ops.convert_to_numpy(trainer.consistency_distance(x, z, sigma, sigma, training=True))
    assert np.all(d == 0.0), d

    theta = [ops.convert_to_numpy(w) for w in trainer.model.trainable_weights]
    for target in trainer.teacher_model.trainable_weights:
        target.assign(ops.zeros_like(target))
    trainer.compute_loss(x, training=True)  # step 0: N = s0 + 1 = 3
    mu = math.exp(2 * math.log(0.9) / 3)
    for target, w in zip(trainer.teacher_model.trainable_weights, theta):
        np.testing.assert_allclose(ops.convert_to_numpy(target), (1 - mu) * w, rtol=1e-5, atol=1e-7)
    # The student is untouched by the teacher update.
    for w, before in zip(trainer.model.trainable_weights, theta):
        np.testing.assert_array_equal(ops.convert_to_numpy(w), before)


def test_ema_teacher_gets_no_gradient_and_survives_saving(tmp_path):
    trainer = make_trainer(teacher="ema", distance="l2", weighting="uniform", index_distribution="uniform",
                           curriculum="ct", s0=2, s1=150)
    trainer.compile(optimizer="adam")
    assert not any(v is w for v in trainer.trainable_variables for w in trainer.teacher_model.weights)
    trainer.fit(batch(8)[0], batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "t.keras"
    trainer.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config()["teacher"] == "ema" and loaded.get_config()["curriculum"] == "ct"
    for a, b in zip(trainer.teacher_model.weights, loaded.teacher_model.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_bad_switches():
    for kwargs, message in (({"distance": "l1"}, "distance"), ({"weighting": "snr"}, "weighting"),
                            ({"teacher": "frozen"}, "teacher"), ({"curriculum": "linear"}, "curriculum"),
                            ({"teacher_mu0": 1.0}, "teacher_mu0")):
        with pytest.raises(ValueError, match=message):
            make_trainer(**kwargs)
    from keras_ict.recipes import resolve_config

    with pytest.raises(ValueError, match="teacher must be one of"):
        resolve_config("mnist", {"teacher": "frozen"})


@pytest.mark.backend_independent
def test_ablation_variants_are_the_issue_s_configs():
    """benchmarks/ablation.py's variants resolve, and each reverts exactly the iCT changes it names."""
    from harness import load_script
    from keras_ict.recipes import resolve_config

    ablation = load_script("benchmarks/ablation.py")

    ict = resolve_config("mnist", ablation.ABLATION_RECIPE)
    assert ict["s1"] == 1280  # iCT's own s1, against CT's 150
    changed = {}
    for name, overrides in ablation.VARIANTS.items():
        config = resolve_config("mnist", dict(ablation.ABLATION_RECIPE, **{k: str(v) for k, v in overrides.items()}))
        changed[name] = {k: config[k] for k in config if config[k] != ict[k]}
    assert changed["ict"] == {}
    assert changed["ct"] == {"teacher": "ema", "distance": "l2", "weighting": "uniform", "index_distribution": "uniform",
                             "curriculum": "ct", "s0": 2, "s1": 150}
    assert changed["ict-ema-teacher"] == {"teacher": "ema"}
    assert changed["ict-l2"] == {"distance": "l2"}
    assert changed["ict-uniform-index"] == {"index_distribution": "uniform"}
    assert changed["ict-old-curriculum"] == {"curriculum": "ct", "s0": 2, "s1": 150}


def _fake_finished_run(folder, ref_sha, fid_1, fid_2, **config):
    import json

    (folder / "final").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(dict({"preset": "mnist"}, **config)))
    (folder / "final" / "metadata.json").write_text(json.dumps(
        {"steps": 3000, "images_seen": 96000, "wall_time_s": 1800.0, "backend": "tensorflow"}))
    results = [{"metric": f"fid10k_{steps}step", "fid": fid, "num": 10000, "steps": steps, "wall_s": 500.0,
                "reference": {"ref_sha256": ref_sha}} for steps, fid in ((1, fid_1), (2, fid_2))]
    (folder / "fid10k.json").write_text(json.dumps({"results": results}))


def _collect_command(tmp_path):
    """A stand-in reference file's sha256, the work folder, the JSON path and the `ablation.py --collect` command."""
    import hashlib
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation.py"
    ref = tmp_path / "ref.npz"
    ref.write_bytes(b"stand-in statistics")
    work, out = tmp_path / "runs", tmp_path / "ablation.json"
    command = [sys.executable, str(script), "--collect", "--work", str(work), "--ref", str(ref), "--json", str(out)]
    return hashlib.sha256(ref.read_bytes()).hexdigest(), work, out, command


@pytest.mark.backend_independent
def test_ablation_collect_reports_finished_variants_only(tmp_path):
    """`ablation.py --collect` tabulates the finished runs, lists the others, and refuses a folder of another recipe."""
    import json
    import subprocess

    ref_sha, work, out, command = _collect_command(tmp_path)
    _fake_finished_run(work / "ict", ref_sha, 190.0, 145.0)
    _fake_finished_run(work / "ict-l2", ref_sha, 200.5, 150.25, distance="l2")
    (work / "ct").mkdir()  # started, not finished

    done = subprocess.run(command, capture_output=True, text=True, check=True)
    report = json.loads(out.read_text())
    assert [r["variant"] for r in report["results"]] == ["ict", "ict-l2"]
    assert report["unfinished"] == ["ct", "ict-ema-teacher", "ict-uniform-index", "ict-old-curriculum"]
    assert report["results"][1]["fid10k_1step"] == 200.5 and report["results"][1]["fid_wall_s"] == 1000.0
    assert "| ict-l2 | distance=l2 | 200.50 | +10.50 | 150.25 | +5.25 |" in done.stdout
    assert "not finished yet: ct, ict-ema-teacher" in done.stdout
    assert "compute, the variants above: 93 min wall (train 60, FID 33)" in done.stdout

    config = json.loads((work / "ict-l2" / "config.json").read_text())
    (work / "ict-l2" / "config.json").write_text(json.dumps(dict(config, distance="pseudo_huber")))
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode != 0 and "is not the 'ict-l2' variant" in refused.stderr


@pytest.mark.backend_independent
def test_ablation_preset_selects_its_runs(tmp_path):
    """`--preset` and `--seed` check the runs against that preset and training seed; other runs are refused."""
    import json
    import subprocess

    ref_sha, work, out, command = _collect_command(tmp_path)
    _fake_finished_run(work / "ict", ref_sha, 390.0, 340.0, preset="cifar10-small")

    subprocess.run(command + ["--preset", "cifar10-small"], capture_output=True, text=True, check=True)
    report = json.loads(out.read_text())
    assert report["config"]["preset"] == "cifar10-small"
    assert report["config"]["data"] == "../shared/datasets/cifar10_jpeg.tar.gz"
    assert [r["variant"] for r in report["results"]] == ["ict"] and report["results"][0]["fid10k_2step"] == 340.0

    refused = subprocess.run(command, capture_output=True, text=True)  # default preset: mnist
    assert refused.returncode != 0 and "preset cifar10-small" in refused.stderr
    other_seed = subprocess.run(command + ["--preset", "cifar10-small", "--seed", "1"], capture_output=True, text=True)
    assert other_seed.returncode != 0 and "seed 1 (preset cifar10-small, seed 0" in other_seed.stderr
    bad = subprocess.run(command + ["--preset", "imagenet64"], capture_output=True, text=True)
    assert bad.returncode != 0 and "invalid choice" in bad.stderr
