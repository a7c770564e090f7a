"""Training callbacks: step logging (CSV, TensorBoard), checkpoints with sample grids, FID, NaN stop, time budget,
weight snapshots."""

import csv
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from keras_ict.backends.distribution import any_process
from keras_ict.checkpoint import save_checkpoint
from keras_ict.sampling import preview_samples, save_image_grid


def _step(trainer):
    return int(keras.ops.convert_to_numpy(trainer.step))


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training when the loss becomes NaN or Inf, naming the step; no checkpoint is written after it."""

    def __init__(self):
        super().__init__()
        self.bad_step = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_step = _step(self.model)
            self.model.stop_training = True


class TimeBudget(keras.callbacks.Callback):
    """Stops training (cleanly, after the current step) once `seconds` of wall time have passed."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.start, self.expired = float(seconds), None, False

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        # Clocks differ between the processes of a run: all stop after the step at which any one ran out.
        if any_process(time.monotonic() - self.start >= self.seconds):
            self.expired = True
            self.model.stop_training = True


class StopAtStep(keras.callbacks.Callback):
    """Stops training once the trainer's step counter reaches `step`."""

    def __init__(self, step):
        super().__init__()
        self.stop_step = int(step)

    def on_train_batch_end(self, batch, logs=None):
        if _step(self.model) >= self.stop_step:
            self.model.stop_training = True


class StepLogger(keras.callbacks.Callback):
    """Every `every` steps: a CSV row (and TensorBoard scalars when TensorFlow is installed).

    Columns: step, images_seen, wall_s, loss and mean_sigma (means over the steps since the previous row),
    num_scales (at the row's step).

    Keras hands callbacks running means since the start of the epoch; a resumed run's epoch starts at the resume
    step, so those means would mix intervals. The interval mean is recovered from the running sums
    (batch + 1) * mean at this row and at the previous one.
    """

    AVERAGED = ("loss", "mean_sigma")

    def __init__(self, run_dir, batch_size, every, wall_offset=0.0, print_rows=False):
        super().__init__()
        self.run_dir, self.batch_size, self.every = Path(run_dir), int(batch_size), int(every)
        self.wall_offset, self.start = float(wall_offset), None
        self.writer, self.print_rows = None, print_rows
        self._row_start = (0, {key: 0.0 for key in self.AVERAGED})

    def wall_time(self):
        return self.wall_offset + (time.monotonic() - self.start if self.start else 0.0)

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()
        self.writer = None
        try:
            import tensorboard  # noqa: F401  (tf.summary needs it for its ops)
            import tensorflow as tf
        except ImportError:
            return  # TensorBoard logging needs tensorflow + tensorboard; log.csv is always written
        self.writer = tf.summary.create_file_writer(str(self.run_dir / "tensorboard"))

    def on_epoch_begin(self, epoch, logs=None):
        self._row_start = (0, {key: 0.0 for key in self.AVERAGED})  # Keras resets its metrics here

    def _interval_means(self, batch, logs):
        """Means of the averaged logs over the batches since the previous row, from Keras' running means."""
        seen = batch + 1
        sums = {key: seen * float(logs.get(key, np.nan)) for key in self.AVERAGED}
        start, start_sums = self._row_start
        self._row_start = (seen, sums)
        if seen <= start:
            return {key: float("nan") for key in self.AVERAGED}
        return {key: (sums[key] - start_sums[key]) / (seen - start) for key in self.AVERAGED}

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        step = _step(self.model)
        if step % self.every == 0:
            self._write(step, dict(logs, **self._interval_means(batch, logs)))

    def _write(self, step, logs):
        row = {
            "step": step,
            "images_seen": step * self.batch_size,
            "wall_s": round(self.wall_time(), 3),
            "loss": float(logs.get("loss", np.nan)),
            "num_scales": int(logs.get("num_scales", 0)),
            "mean_sigma": float(logs.get("mean_sigma", np.nan)),
        }
        if self.print_rows:  # no progress bar when stdout is not a terminal: one line per logged interval
            print(f"step {step:8d}  loss {row['loss']:.4f}  N {row['num_scales']:5d}  mean sigma {row['mean_sigma']:.3f}  "
                  f"{row['wall_s']:8.1f}s", flush=True)
        path = self.run_dir / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.writer is not None:
            import tensorflow as tf

            with self.writer.as_default(step=step):
                for key in ("loss", "num_scales", "mean_sigma"):
                    tf.summary.scalar(key, row[key])
            self.writer.flush()

    def write_image(self, tag, grid_uint8, step):
        if self.writer is not None:
            import tensorflow as tf

            with self.writer.as_default(step=step):
                tf.summary.image(tag, grid_uint8[None])
            self.writer.flush()


class CheckpointAndSample(keras.callbacks.Callback):
    """Every `every` steps and at the end: a checkpoint, and a 1-step sample grid of the EMA model."""

    def __init__(self, run_dir, every, keep, sample_seeds, labels=None, logger=None, nan_guard=None, state_fn=None):
        super().__init__()
        self.run_dir, self.every, self.keep = Path(run_dir), int(every), int(keep)
        self.sample_seeds, self.labels, self.logger = list(sample_seeds), labels, logger
        self.nan_guard, self.state_fn = nan_guard, state_fn
        self.last_saved = None

    def save(self):
        if self.nan_guard is not None and self.nan_guard.bad_step is not None:
            return None
        step = _step(self.model)
        if step == self.last_saved:
            return None
        path = save_checkpoint(self.model, self.run_dir, self.state_fn() if self.state_fn else None, keep=self.keep)
        images = preview_samples(self.model.ema_model, self.sample_seeds, labels=self.labels)
        grid_path = save_image_grid(images, self.run_dir / "samples" / f"step_{step:09d}.png", ncols=8)
        if self.logger is not None:
            from keras_ict.sampling import image_grid

            self.logger.write_image("samples_1step", image_grid(images, ncols=8), step)
        self.last_saved = step
        return path, grid_path

    def on_train_batch_end(self, batch, logs=None):
        if _step(self.model) % self.every == 0:
            self.save()

    def on_train_end(self, logs=None):
        self.save()


class StudentSnapshots(keras.callbacks.Callback):
    """Every `every` steps: the student's and the EMA's trainable weights to RUN/snapshots/ (keras_ict.posthoc_ema
    builds EMAs of other lengths from them after training)."""

    def __init__(self, run_dir, every):
        super().__init__()
        self.run_dir, self.every = Path(run_dir), int(every)

    def on_train_batch_end(self, batch, logs=None):
        from keras_ict.posthoc_ema import save_snapshot, snapshot_path

        step = _step(self.model)
        if step % self.every == 0 and not snapshot_path(self.run_dir, step).is_file():
            save_snapshot(self.model, self.run_dir, step)


class FIDMonitor(keras.callbacks.Callback):
    """Every `every` steps and at the end of training: FID of the EMA model from `num` images.

    Logged as `fid{num}_{steps}step` (e.g. `fid1k_2step`), never as plain "FID": a small sample count biases
    FID upwards, so these values track progress and are not comparable with FID-50k. Rows go to
    `RUN_DIR/fid.csv` (step, metric, fid, num, seeds, sigmas) and to TensorBoard when a `StepLogger` with a
    writer is given. Reference statistics are computed (or read from the cache) when training begins.

    Args:
        run_dir: the run folder (fid.csv is appended there); None keeps results only in `history`.
        ref: a statistics `.npz` or a dataset source (see `keras_ict.evaluation.reference_statistics`).
        every: evaluate when the trainer's step counter is a multiple of this.
        num: generated images per evaluation (seeds seed_start .. seed_start + num - 1, the same every time).
        sigmas: {steps: [sigmas]} to evaluate, e.g. {1: [80.0], 2: [80.0, 0.821]}.
        ref_kwargs: passed to `reference_statistics` (split, resize, num, ...).
    """

    def __init__(self, run_dir, ref, every, num=1000, sigmas=None, seed_start=0, batch_size=64, logger=None,
                 weights=None, ref_kwargs=None, progress=False):
        super().__init__()
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if int(num) < 2:
            raise ValueError(f"num must be >= 2 (FID needs a covariance), got {num}")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.ref, self.every, self.num = ref, int(every), int(num)
        self.sigmas = dict(sigmas) if sigmas else None
        self.seed_start, self.batch_size, self.logger = int(seed_start), int(batch_size), logger
        self.weights, self.ref_kwargs, self.progress = weights, dict(ref_kwargs or {}), progress
        self.reference, self.history, self.last_step = None, {}, None

    def on_train_begin(self, logs=None):
        from keras_ict.evaluation import reference_statistics

        ema = self.model.ema_model
        if self.sigmas is None:
            self.sigmas = {1: [float(ema.sigma_max)]}
        if self.reference is None:
            size, _, channels = (int(v) for v in ema.image_shape)
            kwargs = dict(dict(image_size=size, channels=channels), **self.ref_kwargs)
            mu, sigma, _ = reference_statistics(self.ref, weights=self.weights, batch_size=self.batch_size,
                                                progress=self.progress, **kwargs)
            self.reference = (mu, sigma)

    def evaluate(self):
        """Computes and records FID for every entry of `sigmas` at the current step; returns {metric: fid}."""
        from keras_ict import fid
        from keras_ict.evaluation import generated_statistics, metric_name

        step = _step(self.model)
        results = {}
        for steps, sigmas in sorted(self.sigmas.items()):
            mu, sigma = generated_statistics(self.model.ema_model, num=self.num, sigmas=sigmas,
                                             seed_start=self.seed_start, batch_size=self.batch_size,
                                             weights=self.weights, progress=self.progress)
            value = fid.frechet_distance(mu, sigma, *self.reference)
            name = metric_name(self.num, len(sigmas))
            results[name] = value
            self.history.setdefault(name, []).append((step, value))
            self._record(step, name, value, sigmas)
        self.last_step = step
        return results

    def _record(self, step, name, value, sigmas):
        if self.run_dir is not None:
            path = self.run_dir / "fid.csv"
            new = not path.exists()
            with open(path, "a", newline="") as f:
                writer = csv.writer(f)
                if new:
                    writer.writerow(["step", "metric", "fid", "num", "seeds", "sigmas"])
                seeds = f"{self.seed_start}-{self.seed_start + self.num - 1}"
                writer.writerow([step, name, f"{value:.6g}", self.num, seeds, " ".join(f"{s:g}" for s in sigmas)])
        print(f"step {step:8d}  {name} {value:.3f}", flush=True)
        writer = getattr(self.logger, "writer", None)
        if writer is not None:
            import tensorflow as tf

            with writer.as_default(step=step):
                tf.summary.scalar(name, value)
            writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        if _step(self.model) % self.every == 0:
            self.evaluate()

    def on_train_end(self, logs=None):
        if self.reference is not None and _step(self.model) != self.last_step:
            self.evaluate()


def cpu_name():
    """The CPU's model name (/proc/cpuinfo on Linux; else what `platform` knows): machines differ 2-3x in speed,
    so every recorded time names its CPU."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def os_machine():
    import platform

    return {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
            "cpu_name": cpu_name()}
