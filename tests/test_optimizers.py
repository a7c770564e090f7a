"""RAdam against a float64 NumPy transcription of torch.optim.RAdam's update."""

import keras
import numpy as np
import pytest
from keras import ops

from harness import TINY_NETWORK, assert_config_round_trip
from keras_ict.backends import torch_optimizer
from keras_ict.optimizers import RAdam


def ref_radam(theta, grads, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8):
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    rho_inf = 2 / (1 - b2) - 1
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho_t > 5:
            r = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            theta -= lr * m_hat * r * np.sqrt(1 - b2**t) / (np.sqrt(v) + eps)
        else:
            theta -= lr * m_hat
    return theta


def test_radam_matches_reference_through_the_rectification_switch():
    rng = np.random.default_rng(0)
    theta0 = rng.standard_normal((3, 4)).astype(np.float32)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(12)]  # rho_t > 5 from t = 6
    var = keras.Variable(theta0)
    opt = RAdam(learning_rate=1e-2)
    for g in grads:
        opt.apply_gradients([(ops.convert_to_tensor(g), var)])
    np.testing.assert_allclose(ops.convert_to_numpy(var), ref_radam(theta0, grads), rtol=1e-5, atol=1e-6)


def test_radam_config_round_trip_and_fit():
    opt = RAdam(learning_rate=3e-4, beta_2=0.99)
    clone = assert_config_round_trip(opt, {"beta_2": 0.99})
    assert clone.beta_2 == 0.99 and float(ops.convert_to_numpy(clone.learning_rate)) == np.float32(3e-4)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=RAdam(1e-2), loss="mse")
    x = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    history = model.fit(x, x.sum(axis=1, keepdims=True), epochs=20, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


class _PerVariableRAdam(RAdam):
    """RAdam through Keras' generic per-variable loop (what every backend but torch runs)."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        for grad, var in zip(grads, trainable_variables):
            self.update_step(grad, var, learning_rate)


@pytest.mark.skipif(not torch_optimizer.torch_multi_tensor_optimizer(), reason="one update path only: no multi-tensor form here")
def test_radam_backend_update_matches_per_variable_update():
    # On torch, RAdam updates all variables with multi-tensor kernels: compared with the per-variable loop
    # that other backends run. Several shapes, through the rectification switch (rho_t > 5 from t = 6).
    rng = np.random.default_rng(1)
    shapes = [(3, 4), (5,), (2, 3, 3, 4)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(10)]
    fast, slow = [keras.Variable(x) for x in init], [keras.Variable(x) for x in init]
    opt_fast, opt_slow = RAdam(learning_rate=1e-2), _PerVariableRAdam(learning_rate=1e-2)
    for step_grads in grads:
        opt_fast.apply_gradients([(ops.convert_to_tensor(g), v) for g, v in zip(step_grads, fast)])
        opt_slow.apply_gradients([(ops.convert_to_tensor(g), v) for g, v in zip(step_grads, slow)])
    for a, b, x0 in zip(fast, slow, init):
        assert not np.allclose(ops.convert_to_numpy(a), x0)
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b), rtol=1e-6, atol=1e-7)


def test_linear_warmup_ramps_to_the_peak_then_holds():
    from keras_ict.optimizers import LinearWarmup

    schedule = LinearWarmup(1e-3, 4)
    rates = [float(ops.convert_to_numpy(schedule(t))) for t in range(6)]
    np.testing.assert_allclose(rates, [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3], rtol=1e-6)
    optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(RAdam(schedule)))
    assert isinstance(optimizer._learning_rate, LinearWarmup) and optimizer._learning_rate.warmup_steps == 4
    for bad in ((0.0, 4), (1e-3, 0), (1e-3, 4, -1)):
        with pytest.raises(ValueError):
            LinearWarmup(*bad)


def test_inverse_sqrt_decay_after_the_reference_step():
    from keras_ict.optimizers import LinearWarmup

    schedule = LinearWarmup(1e-3, 2, decay_ref_steps=100)
    rates = {t: float(ops.convert_to_numpy(schedule(t))) for t in (0, 1, 50, 100, 400, 10_000)}
    expected = {0: 5e-4, 1: 1e-3, 50: 1e-3, 100: 1e-3, 400: 5e-4, 10_000: 1e-4}
    for t, rate in expected.items():
        np.testing.assert_allclose(rates[t], rate, rtol=1e-6, err_msg=f"step {t}")
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(RAdam(schedule)))._learning_rate
    assert (restored.warmup_steps, restored.decay_ref_steps) == (2, 100)
    assert LinearWarmup.from_config({"peak": 1e-3, "warmup_steps": 2}).decay_ref_steps == 0  # older checkpoints


def test_recipe_lr_decay_builds_the_schedule_and_refuses_negative():
    from keras_ict import recipes
    from keras_ict.optimizers import LinearWarmup

    config = recipes.resolve_config("mnist", {"lr_decay_ref_steps": 500, "lr_warmup_steps": 0,
                                              "network_overrides": TINY_NETWORK})
    schedule = recipes.build_trainer(config).optimizer._learning_rate
    assert isinstance(schedule, LinearWarmup) and (schedule.warmup_steps, schedule.decay_ref_steps) == (1, 500)
    with pytest.raises(ValueError, match="lr_decay_ref_steps"):
        recipes.resolve_config("mnist", {"lr_decay_ref_steps": -1})
