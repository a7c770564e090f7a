"""Training callbacks: StepLogger's interval means (also after a resume)."""

import csv

import keras
import numpy as np
import pytest
from keras import ops

from keras_ict import ConsistencyModel, ConsistencyTrainer
from keras_ict.callbacks import StepLogger
from tiny_network import TinyNet


def _rows(run_dir):
    with open(run_dir / "log.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


class _StepCounter:
    def __init__(self):
        self.step = 0


@pytest.mark.backend_independent
def test_step_logger_rows_are_interval_means_of_keras_running_means(tmp_path):
    """Keras passes callbacks the running mean since the epoch began (reset per epoch); rows must average the steps
    of their own interval only, whatever the epoch boundaries."""
    per_step = np.random.default_rng(0).uniform(1.0, 20.0, size=12)
    logger = StepLogger(tmp_path, batch_size=4, every=3)
    logger.set_model(_StepCounter())
    logger.on_train_begin()
    running = keras.metrics.Mean()
    for epoch, steps in enumerate((range(0, 5), range(5, 12))):  # a resume at step 5 starts a new epoch
        running.reset_state()
        logger.on_epoch_begin(epoch)
        for batch, step in enumerate(steps):
            running.update_state(per_step[step])
            logger.model.step = step + 1
            value = float(running.result())
            logger.on_train_batch_end(batch, {"loss": value, "mean_sigma": 2 * value, "num_scales": 11})
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == [3, 6, 9, 12]
    # Row 6 follows the epoch boundary at step 5: it averages step 6 alone (steps 4-5 were in the previous epoch,
    # whose last running mean was never written).
    expected = [per_step[0:3].mean(), per_step[5:6].mean(), per_step[6:9].mean(), per_step[9:12].mean()]
    np.testing.assert_allclose([r["loss"] for r in rows], expected, rtol=1e-6)
    np.testing.assert_allclose([r["mean_sigma"] for r in rows], 2 * np.array(expected), rtol=1e-6)
    assert [r["images_seen"] for r in rows] == [12, 24, 36, 48]


def _trainer():
    net = TinyNet(img_resolution=8, in_channels=1, width=8, seed=7)
    trainer = ConsistencyTrainer(ConsistencyModel(net, noise_label_scale=1.0), total_steps=40, ema_decay=0.9, seed=0)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    return trainer


def test_step_logger_after_resume_matches_losses_of_single_steps(tmp_path):
    """A run resumed at step 2 and logged every 3 steps: each row is the mean of the losses those steps had, read
    one step at a time from an identical trainer (a one-step fit's running mean is that step's loss)."""
    data = np.random.default_rng(1).uniform(-1, 1, (8 * 4, 8, 8, 1)).astype("float32")
    logged, reference = _trainer(), _trainer()
    logged(data[:4]), reference(data[:4])
    reference.set_weights(logged.get_weights())

    logged.fit(data[:8], batch_size=4, epochs=1, shuffle=False, verbose=0)  # steps 1-2, then "resume"
    logger = StepLogger(tmp_path, batch_size=4, every=3)
    logged.fit(data[8:], batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[logger])

    single = []
    for k in range(8):
        history = reference.fit(data[4 * k:4 * (k + 1)], batch_size=4, epochs=1, shuffle=False, verbose=0)
        single.append(history.history["loss"][0])
    assert int(ops.convert_to_numpy(reference.step)) == int(ops.convert_to_numpy(logged.step)) == 8
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == [3, 6]
    # Row 3 covers step 3 only (this fit began after step 2), row 6 steps 4-6.
    np.testing.assert_allclose([r["loss"] for r in rows], [single[2], np.mean(single[3:6])], rtol=1e-4)
