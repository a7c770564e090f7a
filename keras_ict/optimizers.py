"""RAdam (Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond"), the optimizer of iCT.

Keras 3 ships no RAdam, and the paper trains with it (lr 1e-4). This follows PyTorch's `torch.optim.RAdam`
(decoupled_weight_decay=False aside: weight decay here is Keras' decoupled one) so results are comparable:

    m_t = b1 m + (1 - b1) g;  v_t = b2 v + (1 - b2) g^2;  m_hat = m_t / (1 - b1^t)
    rho_inf = 2 / (1 - b2) - 1;  rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
    rho_t > 5:  theta -= lr * m_hat * r_t * sqrt(1 - b2^t) / (sqrt(v_t) + eps),
                r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
    otherwise:  theta -= lr * m_hat                      (un-adapted momentum SGD for the first steps)
"""

import math

import keras
from keras import ops

from .backends import torch_optimizer


@keras.saving.register_keras_serializable(package="keras_ict")
class RAdam(keras.optimizers.Optimizer):
    def __init__(self, learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8, name="radam", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not (0.0 <= beta_1 < 1.0 and 0.0 < beta_2 < 1.0):
            raise ValueError(f"need 0 <= beta_1 < 1 and 0 < beta_2 < 1, got {beta_1}, {beta_2}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        t = ops.cast(self.iterations + 1, dtype)
        # 1 - beta^t through expm1: in float32, 1 - 0.999^t loses most digits for small t.
        one_minus_b1_power = -ops.expm1(t * math.log(self.beta_1)) if self.beta_1 > 0 else ops.ones_like(t)
        one_minus_b2_power = -ops.expm1(t * math.log(self.beta_2))
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, (gradient - m) * (1.0 - self.beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1.0 - self.beta_2))
        m_hat = m / one_minus_b1_power

        rho_inf = 2.0 / (1.0 - self.beta_2) - 1.0
        rho_t = rho_inf - 2.0 * t * ops.exp(t * math.log(self.beta_2)) / one_minus_b2_power
        safe_rho = ops.maximum(rho_t, 5.0 + 1e-3)  # keeps the unused branch of `where` finite
        rect = ops.sqrt((safe_rho - 4.0) * (safe_rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * safe_rho))
        adaptive = rect * ops.sqrt(one_minus_b2_power) / (ops.sqrt(v) + self.epsilon)
        scale = ops.where(rho_t > 5.0, adaptive, ops.ones_like(adaptive))
        self.assign_sub(variable, lr * m_hat * scale)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        dtypes = {keras.backend.standardize_dtype(v.dtype) for v in trainable_variables}
        if not torch_optimizer.torch_multi_tensor_optimizer() or len(dtypes) != 1:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        index = [self._get_variable_index(v) for v in trainable_variables]
        torch_optimizer.torch_radam_update(
            grads, trainable_variables, [self._momentums[i] for i in index], [self._velocities[i] for i in index],
            self.iterations, learning_rate, self.beta_1, self.beta_2, self.epsilon,
        )

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package="keras_ict")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """lr(t) = peak * min(1, (t + 1) / warmup_steps) / sqrt(max(1, t / decay_ref_steps)): a linear ramp to
    `peak`, then constant, or with `decay_ref_steps` > 0 an inverse-square-root decay from that step on (EDM2's
    schedule, Karras et al. 2024). The decay depends on the step alone, not on the run's length, so a run
    stays extendable.

    Counting from t + 1 makes the first update non-zero; `warmup_steps=1` is a constant rate.
    """

    def __init__(self, peak, warmup_steps, decay_ref_steps=0):
        if peak <= 0:
            raise ValueError(f"peak learning rate must be positive, got {peak}")
        if int(warmup_steps) < 1:
            raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")
        if int(decay_ref_steps) < 0:
            raise ValueError(f"decay_ref_steps must be >= 0 (0: no decay), got {decay_ref_steps}")
        self.peak, self.warmup_steps, self.decay_ref_steps = float(peak), int(warmup_steps), int(decay_ref_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rate = self.peak * ops.minimum(1.0, (step + 1.0) / float(self.warmup_steps))
        if self.decay_ref_steps:
            rate = rate / ops.sqrt(ops.maximum(1.0, step / float(self.decay_ref_steps)))
        return rate

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "decay_ref_steps": self.decay_ref_steps}
