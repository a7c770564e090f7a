"""EMAs of other lengths after training, from snapshots of the student (a simple form of EDM2's post-hoc EMA).

A run with `snapshot_every` > 0 writes the student's and the EMA model's trainable weights every that many steps
to RUN/snapshots/step_XXXXXXXXX.npz (`StudentSnapshots` in keras_ict.callbacks). An EMA with another decay b,
started from the run's own EMA at the first snapshot T_0, is then the exact weighted sum

    EMA_b(T_n) = b^(T_n - T_0) EMA_run(T_0) + sum_{j=1..n} (1 - b^(T_j - T_{j-1})) b^(T_n - T_j) theta(T_{j-1})

with the student's weights theta held at their value at the start of each interval between snapshots. The
trainer's EMA after step k folds in the weights before that step's update (keras_ict.trainer), so with a snapshot
every step the sum is that EMA exactly; with a spacing of M steps it approximates it, the closer the longer the
EMA (1 / (1 - b) steps) is against M. The coefficients sum to one. `reconstruction_error` rebuilds the run's
own EMA this way and compares it with the recorded one: the size of the approximation, measured.

The EMA length of a run matters (EDM2, Karras et al. 2024); one training run with snapshots scores many lengths.
"""

from pathlib import Path

import numpy as np

SNAPSHOT_DIR = "snapshots"


def snapshot_path(run_dir, step):
    return Path(run_dir) / SNAPSHOT_DIR / f"step_{int(step):09d}.npz"


def snapshot_steps(run_dir):
    """Steps of the complete snapshots of a run, ascending."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    if not folder.is_dir():
        return []
    return sorted(int(p.stem.split("_")[1]) for p in folder.glob("step_*.npz"))


def save_snapshot(trainer, run_dir, step):
    """The trainable weights of the student and of the EMA model at `step`, written through a temp name."""
    import keras

    from keras_ict.files import atomic_write_bytes_npz

    # The trainer's (EMA, student) pairs: the student's trainable weights and their EMA, in one order.
    arrays = {}
    for index, (ema, student) in enumerate(trainer._ema_pairs):
        arrays[f"student_{index:05d}"] = keras.ops.convert_to_numpy(student.value).astype(np.float32)
        arrays[f"ema_{index:05d}"] = keras.ops.convert_to_numpy(ema.value).astype(np.float32)
    # Weights that are not trained but define the function (the Fourier embedding's random frequencies).
    for index, variable in enumerate(trainer.student.non_trainable_weights):
        arrays[f"fixed_{index:05d}"] = keras.ops.convert_to_numpy(variable.value)
    path = snapshot_path(run_dir, step)
    atomic_write_bytes_npz(path, **arrays)
    return path


def _load(run_dir, step, prefix):
    with np.load(snapshot_path(run_dir, step)) as data:
        keys = sorted(k for k in data.files if k.startswith(prefix + "_"))
        return [data[k].astype(np.float64) if prefix != "fixed" else data[k] for k in keys]


def ema_coefficients(steps, decay):
    """(coefficient of the run's EMA at steps[0], coefficients of the students at steps[:-1], one per interval);
    they sum to 1."""
    steps = [int(s) for s in steps]
    if len(steps) < 2 or any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"need two or more snapshots at increasing steps, got {steps}")
    if not 0 < decay < 1:
        raise ValueError(f"decay must be in (0, 1), got {decay}")
    last = steps[-1]
    start = decay ** (last - steps[0])
    students = [(1 - decay ** (b - a)) * decay ** (last - b) for a, b in zip(steps, steps[1:])]
    return start, students


def posthoc_ema(run_dir, decay, upto_step=None):
    """Trainable weights (float32 arrays, the student's order) of an EMA with `decay` over the run's snapshots up
    to `upto_step` (default: the last), started from the run's EMA at the first snapshot."""
    steps = snapshot_steps(run_dir)
    if upto_step is not None:
        steps = [s for s in steps if s <= int(upto_step)]
    start, students = ema_coefficients(steps, decay)
    total = [start * w for w in _load(run_dir, steps[0], "ema")]
    for coefficient, step in zip(students, steps[:-1]):  # each interval's student at its start
        for acc, w in zip(total, _load(run_dir, step, "student")):
            acc += coefficient * w
    return [w.astype(np.float32) for w in total]


def reconstruction_error(run_dir, decay, upto_step=None):
    """Max abs difference / max abs value between the run's recorded EMA at the last snapshot and its
    reconstruction from the snapshots with the run's own `decay`."""
    steps = snapshot_steps(run_dir)
    if upto_step is not None:
        steps = [s for s in steps if s <= int(upto_step)]
    rebuilt = posthoc_ema(run_dir, decay, steps[-1])
    recorded = _load(run_dir, steps[-1], "ema")
    scale = max(float(np.max(np.abs(r))) for r in recorded)
    return max(float(np.max(np.abs(a - b))) for a, b in zip(rebuilt, recorded)) / scale


def posthoc_model(run_dir, decay, upto_step=None):
    """The run's sampling model (the network of RUN/config.json) with the post-hoc EMA's weights."""
    from keras_ict.files import read_json
    from keras_ict.recipes import build_consistency_model, model_config

    config = model_config(read_json(Path(run_dir) / "config.json"))
    model = build_consistency_model(config).build_for_images()
    weights = posthoc_ema(run_dir, decay, upto_step)
    if len(weights) != len(model.trainable_weights) or any(
            tuple(w.shape) != tuple(v.shape) for w, v in zip(weights, model.trainable_weights)):
        raise ValueError(f"{run_dir}: the snapshots do not fit the network of its config.json")
    for variable, value in zip(model.trainable_weights, weights):
        variable.assign(value)
    fixed = _load(run_dir, snapshot_steps(run_dir)[0], "fixed")
    if not fixed and model.non_trainable_weights:  # snapshots written before they held these: the run's final/
        from keras_ict.zoo import from_preset

        fixed = [np.asarray(v) for v in from_preset(Path(run_dir) / "final").non_trainable_weights]
    if len(fixed) != len(model.non_trainable_weights):
        raise ValueError(f"{run_dir}: the snapshots' fixed weights do not fit the network of its config.json")
    for variable, value in zip(model.non_trainable_weights, fixed):
        variable.assign(value.astype(variable.dtype))
    model.sampling = config.get("sampling", {})
    return model
