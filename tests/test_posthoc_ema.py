"""Post-hoc EMA from weight snapshots (keras_ict.posthoc_ema): the coefficients, and the run's own EMA rebuilt
exactly from a snapshot at every step."""

import json

import numpy as np
import pytest

import keras_ict
from harness import load_script
from keras_ict import posthoc_ema
from test_cli import TINY_NET


@pytest.mark.backend_independent
def test_coefficients_sum_to_one_and_weigh_recent_students_most():
    start, students = posthoc_ema.ema_coefficients([100, 150, 200, 250], 0.99)
    assert start == pytest.approx(0.99 ** 150)
    assert start + sum(students) == pytest.approx(1.0, abs=1e-12)
    assert students[0] < students[1] < students[2]
    assert students[2] == pytest.approx(1 - 0.99 ** 50)
    for steps, decay, message in (([100], 0.99, "two or more"), ([100, 100], 0.99, "increasing"),
                                  ([1, 2], 1.0, "decay"), ([1, 2], 0.0, "decay")):
        with pytest.raises(ValueError, match=message):
            posthoc_ema.ema_coefficients(steps, decay)


@pytest.mark.once("tensorflow")
def test_a_snapshot_every_step_rebuilds_the_runs_ema_and_other_decays_load(tmp_path, shared_dir, monkeypatch):
    run = tmp_path / "run"
    result = keras_ict.train("mnist", run, data=str(shared_dir / "datasets" / "mnist_small.npz"), steps=6, batch_size=4,
                             network_overrides=json.loads(TINY_NET), ema_decay=0.6, ema_warmup=False, log_every=2,
                             checkpoint_every=6, sample_count=2, snapshot_every=1, learning_rate=1e-2)
    assert result.status == "finished"
    assert posthoc_ema.snapshot_steps(run) == [1, 2, 3, 4, 5, 6]
    # The run's own decay from its EMA at step 1: the trainer's EMA at step 6, to float32 rounding.
    assert posthoc_ema.reconstruction_error(run, 0.6) < 1e-5
    # The test can fail: another decay is another model.
    assert posthoc_ema.reconstruction_error(run, 0.9) > 1e-3
    model = posthoc_ema.posthoc_model(run, 0.9)
    expected = posthoc_ema.posthoc_ema(run, 0.9)
    for variable, value in zip(model.trainable_weights, expected):
        np.testing.assert_array_equal(np.asarray(variable), value)
    assert model.sampling["sigmas_2step"] == [80.0, 0.821]
    # The run's own decay gives the run's EMA model: the same images (the Fourier frequencies, which are not
    # trained, come with the snapshots).
    own, final = posthoc_ema.posthoc_model(run, 0.6), keras_ict.from_preset(result.final)
    np.testing.assert_allclose(keras_ict.generate(own, seeds=[0, 1], sigmas=(80.0, 0.821)),
                               keras_ict.generate(final, seeds=[0, 1], sigmas=(80.0, 0.821)), atol=1e-4)
    assert keras_ict.generate(model, seeds=[0, 1], sigmas=(80.0,)).shape == (2, 32, 32, 1)

    # benchmarks/posthoc_ema.py over the same run, with a stand-in for FID (its search logic is what is tested).
    from keras_ict import evaluation

    scored = []

    def fake_fid(model, ref, *, num, steps, progress):
        scored.append((round(float(np.asarray(model.trainable_weights[0]).sum()), 6), steps))
        return {"fid": 10.0 * steps}

    monkeypatch.setattr(evaluation, "compute_fid", fake_fid)
    script = load_script("benchmarks/posthoc_ema.py")
    out = tmp_path / "posthoc.json"
    args = ["--run", str(run), "--ref", "fid_refs/mnist-train-32px.npz", "--num", "50", "--json", str(out)]
    script.main(args + ["--decays", "0.6,0.9"])
    script.main(args + ["--decays", "0.9,0.95", "--save-decay", "0.9", "--save-to", str(tmp_path / "ema0.9")])
    assert len(scored) == 6  # three decays, two samplers each, none twice
    report = json.loads(out.read_text())
    assert [r["decay"] for r in report["rows"]] == [0.6, 0.9, 0.95] and report["run_ema_decay"] == 0.6
    assert report["reconstruction_error_run_decay"] < 1e-5 and out.with_suffix(".png").is_file()
    saved = keras_ict.from_preset(tmp_path / "ema0.9")
    for variable, value in zip(saved.trainable_weights, expected):
        np.testing.assert_array_equal(np.asarray(variable), value)
    for bad, message in ((["--decays", "1.0"], "--decays"), (["--decays", "0.9", "--save-decay", "0.9"], "go together"),
                         (["--decays", "0.9", "--upto-step", "1"], "snapshot")):
        with pytest.raises(SystemExit):
            script.main(args + bad)


@pytest.mark.backend_independent
def test_snapshot_every_must_not_be_negative():
    from keras_ict.recipes import resolve_config

    assert resolve_config("mnist")["snapshot_every"] == 0
    with pytest.raises(ValueError, match="snapshot_every"):
        resolve_config("mnist", {"snapshot_every": -1})
