"""keras_ict.train, the library entry point behind `keras-ict train`: same files and weights, resume, errors."""

import json

import numpy as np
import pytest

import keras_ict
from harness import our_stderr_lines
from keras_ict.checkpoint import load_checkpoint
from test_cli import TINY_NET, run_cli, tiny_args


def _tiny(data, steps, **fields):
    return dict(data=str(data), steps=steps, batch_size=8, network_overrides=json.loads(TINY_NET), log_every=2,
                checkpoint_every=2, sample_count=4, **fields)


def _weights(run_dir):
    trainer, state = load_checkpoint(run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip())
    return [np.asarray(w) for w in trainer.get_weights()], state


@pytest.mark.once("torch")
def test_train_in_python_equals_the_cli_and_resumes(tmp_path, shared_dir):
    data = shared_dir / "datasets" / "mnist_small.npz"
    cli = run_cli(tiny_args(data, tmp_path / "cli", "--steps", "4"))
    assert cli.returncode == 0, cli.stderr[-3000:]

    run = tmp_path / "lib"
    stopped = keras_ict.train("mnist", run, stop_at_step=2, **_tiny(data, 4))
    assert (stopped.status, stopped.step, stopped.total_steps, stopped.final) == ("stopped", 2, 4, None) and stopped.ok
    done = keras_ict.train("mnist", run, **_tiny(data, 4))
    assert done.status == "finished" and done.step == 4 and done.final == run / "final"
    again = keras_ict.train("mnist", run, **_tiny(data, 4))
    assert again.status == "already finished"
    assert keras_ict.from_preset(done.final).image_shape == (32, 32, 1)

    (lib_weights, lib_state), (cli_weights, cli_state) = _weights(run), _weights(tmp_path / "cli")
    assert lib_state["step"] == cli_state["step"] == 4
    for a, b in zip(lib_weights, cli_weights):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    assert json.loads((run / "config.json").read_text()) == json.loads((tmp_path / "cli" / "config.json").read_text())
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in (tmp_path / "cli").iterdir())

    # A run's config.json is itself a recipe: the same run, resumed from its own record.
    record = json.loads((run / "config.json").read_text())
    assert keras_ict.train(record, run).status == "already finished"


@pytest.mark.backend_independent
def test_train_rejects_bad_input_before_writing(tmp_path, shared_dir):
    data = shared_dir / "datasets" / "mnist_small.npz"
    run = tmp_path / "run"
    cases = [
        (dict(recipe={"s1": 150}), "needs a 'preset' entry"),
        (dict(recipe="no-such-recipe"), "unknown preset"),
        (dict(recipe="mnist", s2=3), "unknown config field 's2'"),
        (dict(recipe="mnist", stop_at_step=0), "stop-at-step must be >= 1"),
        (dict(recipe="mnist", time_budget_s=-1), "time budget must be positive"),
        (dict(recipe="mnist", strategy="no-such-strategy"), "not available"),
        (dict(recipe="mnist", fid_every=10, fid_ref=str(tmp_path / "missing.npz")), "file not found"),
    ]
    for kwargs, message in cases:
        kwargs = dict(kwargs)
        recipe = kwargs.pop("recipe")
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            keras_ict.train(recipe, run, data=str(data), **kwargs)
        assert not run.exists(), kwargs


@pytest.mark.backend_independent
def test_a_second_live_training_on_the_same_folder_refuses(tmp_path, shared_dir):
    """The folder lock: while one process trains in a run folder, another `train` on it stops before writing."""
    from keras_ict.files import LOCK_NAME, FolderBusyError, folder_lock

    data = shared_dir / "datasets" / "mnist_small.npz"
    run = tmp_path / "run"
    with folder_lock(run):  # stands for a live training (flock conflicts between open files, even in one process)
        with pytest.raises(FolderBusyError, match=r"in use by another live process \(pid \d+\)"):
            keras_ict.train("mnist", run, **_tiny(data, 2))
        cli = run_cli(tiny_args(data, run, "--steps", "2"))
        assert cli.returncode == 2 and "in use by another live process" in cli.stderr
        assert len(our_stderr_lines(cli.stderr)) == 1, cli.stderr
        assert [p.name for p in run.iterdir()] == [LOCK_NAME]
    # Once the holder is gone (a killed process releases its lock too) the folder trains normally.
    assert keras_ict.train("mnist", run, stop_at_step=1, **_tiny(data, 2)).status == "stopped"
