"""RAdam's update for many variables at once with torch's multi-tensor (`_foreach`) kernels."""

import keras


def torch_multi_tensor_optimizer():
    """Whether RAdam updates all variables at once with torch's multi-tensor (`_foreach`) kernels.

    Its per-variable `update_step` costs about 25 small ops per variable, several times the multi-tensor form
    (which is what Keras' own torch Adam/AdamW and `torch.optim.RAdam` do); measured in BUILD_NOTES.md ("Speed").
    """
    return keras.backend.backend() == "torch"


def torch_radam_update(grads, variables, momentums, velocities, iterations, learning_rate, beta_1, beta_2, epsilon):
    """`keras_ict.optimizers.RAdam.update_step` for many same-dtype variables at once (see its docstring)."""
    import math

    import torch

    with torch.no_grad():
        params = [v.value for v in variables]
        dtype = params[0].dtype
        grads = [keras.ops.convert_to_tensor(g).to(dtype) for g in grads]
        m = [v.value for v in momentums]
        v = [v.value for v in velocities]
        t = keras.ops.convert_to_tensor(iterations + 1).to(dtype)
        lr = keras.ops.convert_to_tensor(learning_rate).to(dtype)
        one_minus_b1_power = -torch.expm1(t * math.log(beta_1)) if beta_1 > 0 else torch.ones_like(t)
        one_minus_b2_power = -torch.expm1(t * math.log(beta_2))
        torch._foreach_lerp_(m, grads, 1.0 - beta_1)
        torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), 1.0 - beta_2)
        rho_inf = 2.0 / (1.0 - beta_2) - 1.0
        rho_t = rho_inf - 2.0 * t * torch.exp(t * math.log(beta_2)) / one_minus_b2_power
        safe_rho = torch.clamp(rho_t, min=5.0 + 1e-3)
        rect = torch.sqrt((safe_rho - 4.0) * (safe_rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * safe_rho))
        # rho_t is one number per step: the rectified and the plain momentum branches become two scalar
        # coefficients, one of them zero (no host sync, so torch.compile keeps one graph).
        adaptive = rho_t > 5.0
        zero = torch.zeros_like(t)
        c_adaptive = torch.where(adaptive, lr * rect * torch.sqrt(one_minus_b2_power) / one_minus_b1_power, zero)
        c_plain = torch.where(adaptive, zero, lr / one_minus_b1_power)
        denom = torch._foreach_add(torch._foreach_sqrt(v), epsilon)
        step = torch._foreach_div(m, denom)
        torch._foreach_mul_(step, c_adaptive)
        torch._foreach_add_(step, torch._foreach_mul(m, c_plain))
        torch._foreach_sub_(params, step)
