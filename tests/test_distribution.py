"""Multi-device training on 2 simulated CPU devices equals single-device training for the same batch and noise.

TensorFlow: tf.distribute.MirroredStrategy over 2 logical CPUs; JAX: keras.distribution.DataParallel over 2
host devices (XLA_FLAGS=--xla_force_host_platform_device_count=2). Each runs in a subprocess because the
devices must be configured before the framework initialises. Keras' torch trainer has no multi-device fit.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

BACKEND = keras.backend.backend()
WORKER = Path(__file__).resolve().parent / "distribution_worker.py"


@pytest.mark.skipif(BACKEND == "torch", reason="Keras' torch backend has no multi-device fit (use torchrun + DDP yourself)")
def test_two_device_step_equals_single_device_step():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(WORKER), BACKEND], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["devices"] == 2
    assert result["loss_distributed"] == pytest.approx(result["loss_single"], rel=1e-5)
    assert result["weights_changed"] > 1e-3  # the step moved the weights, so equality below means something
    assert result["max_weight_diff"] < 1e-6
    assert result["max_ema_diff"] < 1e-6
    assert result["num_scales_distributed"] == 11.0
    # a last-value metric is not summed over replicas
    assert result["sample_shapes"] == [[3, 8, 8, 1], [3, 8, 8, 1]] and result["max_sample_diff"] < 1e-5
    if BACKEND == "tensorflow":
        assert result["replicas_draw_different_noise"] is True
        assert result["dropout_masks_of_global_batch"] is True
