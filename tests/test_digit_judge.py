"""The digit judge: the committed classifier tells digits from noise and names them; scoring models and runs."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_ict import ConsistencyModel, ConsistencyTrainer
from keras_ict.checkpoint import save_checkpoint
from keras_ict.digit_judge import DigitJudge, _mnist_arrays, judge_model
from tiny_network import TinyNet

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def judge():
    return DigitJudge()


@pytest.fixture(scope="module")
def real_test_digits(shared_dir):
    return _mnist_arrays(shared_dir / "datasets" / "mnist_small.npz", "test")


@pytest.mark.xdist_group("judge-fixture")  # one worker builds the module fixture once
def test_committed_judge_names_real_digits_and_refuses_noise(judge, real_test_digits):
    images, labels = real_test_digits
    assert judge.test_accuracy >= 0.985  # stored when it was trained, on the 10,000 MNIST test images
    real = judge.score(images, labels)
    assert real["judge_label_accuracy"] >= 0.97
    assert real["judge_recognisable"] >= 0.9 and real["judge_class_entropy"] >= 0.95
    noise = judge.score(np.random.default_rng(0).integers(0, 256, images.shape).astype(np.uint8))
    assert noise["judge_recognisable"] < 0.05
    assert noise["judge_fd"] > 20 * real["judge_fd"]
    # A model that draws only ones: recognisable, but no variety.
    ones = images[labels == 1]
    only_ones = judge.score(ones[np.arange(len(images)) % len(ones)])
    assert only_ones["judge_class_entropy"] < 0.2 and only_ones["judge_fd"] > 5 * real["judge_fd"]


@pytest.mark.xdist_group("judge-fixture")  # one worker builds the module fixture once
def test_judge_rejects_bad_images_and_labels(judge, real_test_digits):
    images, labels = real_test_digits
    with pytest.raises(ValueError, match="uint8 images of shape"):
        judge.score(images.astype(np.float32))
    with pytest.raises(ValueError, match="uint8 images of shape"):
        judge.score(images[:, :28, :28])
    with pytest.raises(ValueError, match="one entry per image"):
        judge.score(images[:10], labels[:9])
    with pytest.raises(FileNotFoundError, match="digit judge file not found"):
        DigitJudge(REPO / "no-such-judge.npz")


def _tiny_trainer(resolution=32, label_dim=0):
    net = TinyNet(img_resolution=resolution, in_channels=1, label_dim=label_dim, width=4, seed=1)
    return ConsistencyTrainer(ConsistencyModel(net, noise_label_scale=1.0), total_steps=10,
                              ema_decay=0.9, seed=0)


@pytest.mark.xdist_group("judge-fixture")  # one worker builds the module fixture once
def test_judge_model_scores_samples_and_checks_the_shape(judge):
    scores = judge_model(_tiny_trainer(label_dim=10).ema_model, judge, num=20, sigmas=[80.0])
    assert set(scores) == {"judge_fd", "judge_confidence", "judge_recognisable", "judge_class_entropy",
                           "judge_label_accuracy"}
    with pytest.raises(ValueError, match="32x32x1"):
        judge_model(_tiny_trainer(resolution=8).ema_model, judge, num=4)


def _run_with_checkpoints(run, steps, config):
    """A run folder with a tiny trainer's checkpoints at `steps` and `config` as its config.json."""
    trainer = _tiny_trainer()
    trainer(np.zeros((2, 32, 32, 1), np.float32))
    for step in steps:
        trainer.step.assign(step)
        save_checkpoint(trainer, run, keep=10)
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.mark.backend_independent
def test_recipe_study_scores_each_checkpoint_once(tmp_path):
    from test_benchmark_scripts import _load_recipe_study

    study = _load_recipe_study()
    run = _run_with_checkpoints(tmp_path / "run", (0, 3), {"sigma_max": 80.0, "two_step_sigma": 0.821})
    study.score_run(run, 8)
    study.score_run(run, 8)  # a second call finds nothing new
    with open(run / "judge.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({int(r["step"]) for r in rows}) == [0, 3]
    assert {r["metric"] for r in rows} == {"judge8_fd_1step", "judge8_recognisable_1step", "judge8_fd_2step",
                                          "judge8_recognisable_2step", "judge8_student_fd_1step",
                                          "judge8_student_recognisable_1step"}
    assert len(rows) == 12


@pytest.mark.backend_independent
def test_recipe_study_judge_every_scores_multiples_and_the_last_checkpoint(tmp_path):
    from test_benchmark_scripts import _load_recipe_study

    study = _load_recipe_study()
    run = _run_with_checkpoints(tmp_path / "run", (1, 2, 3, 4, 5), {"sigma_max": 80.0, "two_step_sigma": 0.821, "batch_size": 8})
    study.score_run(run, 4, every_images=16)  # steps 2 and 4 are at 16 and 32 images; 5 is the last
    with open(run / "judge.csv") as f:
        assert sorted({int(r["step"]) for r in csv.DictReader(f)}) == [2, 4, 5]


@pytest.mark.backend_independent
def test_training_the_judge_writes_a_loadable_file_and_checks_arguments(tmp_path, shared_dir):
    out, mnist_small = tmp_path / "judge.npz", shared_dir / "datasets" / "mnist_small.npz"
    proc = subprocess.run([sys.executable, "-m", "keras_ict.digit_judge", "--data", str(mnist_small), "--out", str(out),
                           "--epochs", "0"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "--epochs must be >= 1" in proc.stderr and not out.exists()
    proc = subprocess.run([sys.executable, "-m", "keras_ict.digit_judge", "--data", str(mnist_small), "--out", str(out),
                           "--epochs", "1"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trained = DigitJudge(out)
    assert 0.5 < trained.test_accuracy <= 1.0 and trained.mu.shape == (128,)
    assert [p.name for p in tmp_path.iterdir()] == ["judge.npz"]  # no temporaries left


@pytest.mark.backend_independent
def test_keras_ict_digit_judge_variable_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_ICT_DIGIT_JUDGE", str(tmp_path / "judge.npz"))
    with pytest.raises(FileNotFoundError, match="judge.npz.*set KERAS_ICT_DIGIT_JUDGE"):
        DigitJudge()
