"""ConsistencyTrainer: iCT as a `keras.Model` you `compile` and `fit`, identical on every backend.

One training step (Song & Dhariwal 2024, Algorithm 1 with the iCT changes):
  1. N = N(k) from the trainer's own step counter (doubling curriculum).
  2. i ~ lognormal index distribution over the N-1 intervals; z ~ N(0, I).
  3. teacher = stopgrad f(x + sigma_i z, sigma_i), the student's own weights (no EMA teacher).
  4. student = f(x + sigma_{i+1} z, sigma_{i+1}) with the *same dropout mask* as the teacher pass.
  5. loss = mean_batch[ 1/(sigma_{i+1} - sigma_i) * pseudo_huber(student, teacher) ].
The EMA of the student (what sampling and export use) lives in `ema_model`, updated in the step.

Everything happens in `compute_loss`, the override point that every backend's `train_step` calls, so no
per-backend training code exists. State that must survive save/load and resume (step counter, noise seed
state, EMA weights) is held in Keras variables owned by the trainer.
"""

import math
import random

import keras
import numpy as np
from keras import ops

from keras_ict import losses, paper, schedules
from keras_ict.backends.distribution import mean_over_processes, num_replicas, replica_rows, step_logs
from keras_ict.backends.kernels import no_grad
from keras_ict.parameterization import ConsistencyModel


class _BatchMean(keras.losses.Loss):
    """Mean of per-sample losses through Keras' loss reduction, which also scales by 1 / replicas under
    tf.distribute (a plain mean returned from compute_loss would make gradients num_replicas too large)."""

    def __init__(self):
        super().__init__(reduction="sum_over_batch_size", name="batch_mean")

    def call(self, y_true, y_pred):
        return y_pred


@keras.saving.register_keras_serializable(package="keras_ict")
class LastValue(keras.metrics.Metric):
    """A metric that reports the most recent value it was given (for N(k), which is not averaged)."""

    def __init__(self, name="last_value", dtype="float32", **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        # Every replica holds the same value: sum-aggregation (the metric default) would multiply it.
        self.value = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, aggregation="only_first_replica", name="value"
        )

    def update_state(self, value):
        self.value.assign(ops.cast(value, self.dtype))

    def result(self):
        return ops.convert_to_tensor(self.value)

    def reset_state(self):
        self.value.assign(ops.zeros((), self.dtype))


def _seed_state_variables(model):
    """The network's random-seed state variables (one per Dropout layer), in a fixed order."""
    return [v for v in model.non_trainable_variables if v.name == "seed_generator_state"]


def _index_cdf_table(log_probs):
    """Per row, the float32 CDF of the index distribution: cdf[j] = P(index <= j), exactly 1.0 from the last
    interval of positive probability on (padding intervals included), computed in float64."""
    probs = np.exp(np.asarray(log_probs, dtype=np.float64))
    cdf = np.cumsum(probs, axis=1) / probs.sum(axis=1, keepdims=True)
    last = (probs.shape[1] - 1) - np.argmax(probs[:, ::-1] > 0, axis=1)
    cdf = cdf.astype(np.float32)
    for row, j in enumerate(last):
        cdf[row, j:] = 1.0
    return cdf


class EMATrainer(keras.Model):
    """What every keras-ict trainer shares: a student model that is optimised, its EMA (`ema_model`, what sampling
    and export use), a step counter, the trainer's noise stream and the network's dropout states, all saved with
    the trainer so a resumed run continues exactly. Subclasses validate their arguments, then call
    `_build_models` and implement `compute_loss`."""

    def _build_models(self, student, ema_decay, ema_warmup, seed):
        if not isinstance(student, ConsistencyModel):
            raise TypeError(f"the student must be a ConsistencyModel, got {type(student).__name__}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.ema_decay, self.ema_warmup = float(ema_decay), bool(ema_warmup)
        self.seed = int(random.randrange(2**31)) if seed is None else int(seed)
        self.model = student.build_for_images()
        self.ema_model = type(student).from_config(student.get_config()).build_for_images()
        self.ema_model.set_weights(self.model.get_weights())
        self.ema_model.trainable = False
        self._ema_pairs = [(e, s) for e, s in zip(self.ema_model.weights, self.model.weights) if s.trainable]
        if any(tuple(e.shape) != tuple(s.shape) for e, s in self._ema_pairs):
            raise RuntimeError("EMA model weights do not line up with the student's")
        self._dropout_states = _seed_state_variables(self.model)
        self.step = keras.Variable(0, dtype="int32", trainable=False, name="step")
        self.noise_seed = keras.random.SeedGenerator(self.seed, name="noise_seed")
        self.num_scales_tracker = LastValue(name="num_scales")
        self.sigma_tracker = keras.metrics.Mean(name="mean_sigma")
        self._batch_mean = _BatchMean()

    @property
    def student(self):
        """The model being trained (Keras' Distiller calls it the student). It is stored as `model`, the
        attribute name saved checkpoints use, which stays as an alias."""
        return self.model

    def call(self, inputs, training=False):
        # A trainer is not a predictor: its work happens in compute_loss. Sample with `ema_model`.
        return inputs

    def _unpack(self, x, y):
        if isinstance(x, (tuple, list)) and len(x) == 2 and y is None:
            x, y = x
        if isinstance(x, dict):
            x, y = x["images"], x.get("labels", y)
        if y is not None and not self.model.conditional:
            raise ValueError(
                "the dataset yields labels but the model is unconditional; drop the labels "
                "(e.g. dataset.map(lambda x, y: x)) or build a network with label_dim > 0"
            )
        if y is None and self.model.conditional:
            raise ValueError("the model is class-conditional but the dataset yields no labels")
        return x, y

    def update_ema(self):
        """ema <- ema + (1 - decay) (theta - ema) for every trainable weight of the student."""
        rate = 1.0 - self.ema_decay
        if self.ema_warmup:
            step = ops.cast(self.step.value, "float32")
            rate = 1.0 - ops.minimum(ops.convert_to_tensor(self.ema_decay, "float32"), (1.0 + step) / (10.0 + step))
        for ema, weight in self._ema_pairs:
            ema.assign(ema + rate * (ops.stop_gradient(ops.cast(weight.value, ema.dtype)) - ema))

    def batch_loss(self, per_sample):
        """The global batch's mean loss from per-sample losses (Keras' reduction: right under every strategy)."""
        return mean_over_processes(self._batch_mean(ops.zeros_like(per_sample), per_sample))

    def finish_step(self):
        """After the loss of a training step: the EMA folds in the weights this step starts from (compute_loss
        sees no post-update weights on any backend), then the step counter advances."""
        self.update_ema()
        self.step.assign(self.step.value + 1)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return step_logs(super().compute_metrics(x, y, y_pred, sample_weight))

    def _random_states(self):
        # Keras saves no SeedGenerator state; without these a reload would restart the noise and dropout
        # streams and a resumed run would diverge from an uninterrupted one.
        return [self.noise_seed.state] + self._dropout_states

    def save_own_variables(self, store):
        super().save_own_variables(store)
        for i, variable in enumerate(self._random_states()):
            store[f"random_state_{i}"] = variable

    def load_own_variables(self, store):
        keys = list(store.keys())
        super().load_own_variables({k: store[k] for k in keys if not k.startswith("random_state_")})
        for i, variable in enumerate(self._random_states()):
            if f"random_state_{i}" in keys:
                variable.assign(store[f"random_state_{i}"])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "consistency_model": keras.saving.serialize_keras_object(self.model),
                "ema_decay": self.ema_decay,
                "ema_warmup": self.ema_warmup,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["consistency_model"] = keras.saving.deserialize_keras_object(config["consistency_model"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_ict")
class ConsistencyTrainer(EMATrainer):
    """Trains a `ConsistencyModel` with improved consistency training.

    Args:
        consistency_model: the student f_theta. Its weights are the ones being optimised.
        total_steps: the planned number of training steps; also K of the curriculum unless `curriculum_steps`.
        curriculum_steps: K in K' = floor(K / (log2 floor(s1/s0) + 1)); None means `total_steps` (the paper's
            choice). A smaller K reaches N = s1 + 1 earlier and then holds it, so a run can be extended
            without changing its curriculum.
        s0, s1: initial and final number of discretisation intervals (10 and 1280 in the paper).
        p_mean, p_std: lognormal noise-level distribution (-1.1, 2.0).
        rho: Karras schedule exponent (7).
        huber_c: pseudo-Huber c; None means 0.00054 sqrt(H W C).
        ema_decay: EMA rate of `ema_model` (0.99993 for CIFAR-10 in the paper).
        ema_warmup: False (the paper: the rate is `ema_decay` from the first step) or True: min(ema_decay,
            (1 + k) / (10 + k)) at step k (TensorFlow's `num_updates` form), so the EMA forgets the random
            initialisation quickly in short runs and reaches `ema_decay` later (0.999 at k ~ 9,000).
        seed: seed of the trainer's noise stream (index and z sampling); None draws one and records it in
            the config so a reloaded trainer continues the same stream.

    The remaining arguments switch individual iCT changes back to original consistency training (Song et al.
    2023), for ablations; their defaults are iCT:
        distance: "pseudo_huber" (iCT) or "l2" (squared L2 of the sample).
        weighting: "reciprocal" (lambda = 1 / (sigma_{i+1} - sigma_i), iCT) or "uniform" (lambda = 1).
        index_distribution: "lognormal" (iCT) or "uniform" over the N - 1 intervals.
        curriculum: "exponential" (iCT's N(k)) or "ct" (CT's sqrt schedule, with its s0 = 2, s1 = 150 usually).
        teacher: "student" (iCT: the student's weights under stop-gradient) or "ema" (CT: a separate EMA of the
            student with mu(k) = exp(s0 ln(teacher_mu0) / N(k)), updated each step like `ema_model`; same
            dropout masks as the student).

    Data: `fit` on batches of NHWC images in [-1, 1], or (images, integer_labels) for a conditional model.
    """

    def __init__(
        self,
        consistency_model,
        total_steps,
        s0=schedules.S0,
        s1=schedules.S1,
        p_mean=schedules.P_MEAN,
        p_std=schedules.P_STD,
        rho=schedules.RHO,
        huber_c=None,
        ema_decay=paper.EMA_DECAY,
        seed=None,
        distance="pseudo_huber",
        weighting="reciprocal",
        index_distribution="lognormal",
        curriculum="exponential",
        teacher="student",
        teacher_mu0=paper.TEACHER_MU0,
        curriculum_steps=None,
        ema_warmup=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        chosen = dict(distance=distance, weighting=weighting, index_distribution=index_distribution,
                      curriculum=curriculum, teacher=teacher)
        for name, allowed in paper.TRAINER_SWITCHES.items():
            if chosen[name] not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {chosen[name]!r}")
        if not 0.0 < teacher_mu0 < 1.0:
            raise ValueError(f"teacher_mu0 must be in (0, 1), got {teacher_mu0}")
        self.distance, self.weighting, self.index_distribution = distance, weighting, index_distribution
        self.curriculum, self.teacher, self.teacher_mu0 = curriculum, teacher, float(teacher_mu0)
        if not isinstance(consistency_model, ConsistencyModel):
            raise TypeError(f"consistency_model must be a ConsistencyModel, got {type(consistency_model).__name__}")
        self.total_steps = int(total_steps)
        self.curriculum_steps = self.total_steps if curriculum_steps is None else int(curriculum_steps)
        self.s0, self.s1 = int(s0), int(s1)
        self.curriculum_interval = schedules.curriculum_interval(self.curriculum_steps, self.s0, self.s1)
        self.p_mean, self.p_std, self.rho = float(p_mean), float(p_std), float(rho)
        self.huber_c = float(losses.pseudo_huber_c(consistency_model.image_shape) if huber_c is None else huber_c)
        if self.huber_c <= 0:
            raise ValueError(f"huber_c must be positive, got {self.huber_c}")

        grid = (consistency_model.sigma_min, consistency_model.sigma_max, self.rho, self.p_mean, self.p_std)
        if self.curriculum == "exponential":  # one row per stage of N(k)
            sigma_table, logp_table = schedules.curriculum_tables(
                self.s0, self.s1, *grid, index_distribution=self.index_distribution)
        else:  # one row per N value of the CT schedule
            sigma_table, logp_table = schedules.noise_tables(
                list(range(self.s0 + 1, self.s1 + 2)), self.s1, *grid, index_distribution=self.index_distribution)
        self._sigma_table = sigma_table.astype("float32")
        self._cdf_table = _index_cdf_table(logp_table)

        self._build_models(consistency_model, ema_decay, ema_warmup, seed)
        self.teacher_model = None
        if self.teacher == "ema":
            self.teacher_model = ConsistencyModel.from_config(consistency_model.get_config()).build_for_images()
            self.teacher_model.set_weights(self.model.get_weights())
            self.teacher_model.trainable = False
            self._teacher_pairs = [(t, w) for t, w in zip(self.teacher_model.weights, self.model.weights) if w.trainable]
            self._teacher_dropout_states = _seed_state_variables(self.teacher_model)
        self.built = True  # every weight exists now (call() creates none), so saving before fit is complete

    def _curriculum_row(self):
        """(row of the noise tables, N) at the current step."""
        if self.curriculum == "ct":
            num_scales = schedules.ct_num_discretization_steps(self.step.value, self.curriculum_steps, self.s0, self.s1)
            return num_scales - (self.s0 + 1), num_scales
        stage = schedules.curriculum_stage(self.step.value, self.curriculum_steps, self.s0, self.s1)
        return stage, schedules.num_discretization_steps(self.step.value, self.curriculum_steps, self.s0, self.s1)

    def sample_noise_levels(self, batch_size):
        """(sigma_i, sigma_{i+1}, N) for one batch at the current step, using the trainer's noise stream."""
        row, num_scales = self._curriculum_row()
        sigmas = ops.take(ops.convert_to_tensor(self._sigma_table), row, axis=0)
        cdf = ops.take(ops.convert_to_tensor(self._cdf_table), row, axis=0)
        # Inverse-CDF sampling from one uniform per example: an elementwise draw, the same on any thread count
        # (TensorFlow's categorical kernel gives other indices for another intra-op thread count).
        u = keras.random.uniform((batch_size, 1), seed=self.noise_seed)
        index = ops.sum(ops.cast(ops.greater_equal(u, ops.expand_dims(cdf, 0)), "int32"), axis=1)
        index = ops.minimum(index, num_scales - 2)  # the last interval's cdf is exactly 1 > u: a guard only
        return ops.take(sigmas, index), ops.take(sigmas, index + 1), num_scales

    def draw_noise(self, images):
        """(sigma_i, sigma_{i+1}, N, z) for a batch of images from the trainer's noise stream.

        Under tf.distribute every replica, and in a torch `ddp` run every process, runs the step with the same
        generator state, so each draws the noise of all replicas and keeps its own slice (elsewhere the replica
        count is 1 and this is a plain draw): replicas get different noise, and the stream stays one stream.
        """
        replicas = num_replicas()
        batch = ops.shape(images)[0]
        sigma, sigma_next, num_scales = self.sample_noise_levels(batch * replicas)
        noise = keras.random.normal((replicas * batch,) + tuple(images.shape[1:]), seed=self.noise_seed)
        return replica_rows(sigma), replica_rows(sigma_next), num_scales, replica_rows(noise)

    def consistency_distance(self, images, noise, sigma, sigma_next, labels=None, training=True, clean_target=None):
        """Per-sample d(f(x + sigma_{i+1} z, sigma_{i+1}), stopgrad f(x + sigma_i z, sigma_i)) for given noise.

        The teacher is the student's own weights under stop-gradient, and both passes use the same dropout
        mask: the network's seed states are replayed for the student pass. `clean_target` (per-sample bool)
        replaces the teacher by the clean image where it is true (consistency tuning's r = 0).
        """
        images, noise = ops.cast(images, "float32"), ops.cast(noise, "float32")
        expand = lambda s: ops.reshape(ops.cast(s, "float32"), (-1, 1, 1, 1))  # noqa: E731
        extra = [labels] if labels is not None else []
        teacher_inputs = [images + expand(sigma) * noise, sigma] + extra
        if self.teacher_model is not None:
            # CT's separate EMA teacher: its dropout layers start from the student's seed states, so both
            # passes draw the same masks; the student's own states are left untouched by the teacher pass.
            for variable, state in zip(self._teacher_dropout_states, self._dropout_states):
                variable.assign(state.value)
            with no_grad():
                teacher = ops.stop_gradient(self.teacher_model(teacher_inputs, training=training))
        else:
            saved_states = [ops.copy(v.value) for v in self._dropout_states]
            with no_grad():
                teacher = ops.stop_gradient(self.model(teacher_inputs, training=training))
            for variable, state in zip(self._dropout_states, saved_states):
                variable.assign(state)
        if clean_target is not None:
            teacher = ops.where(ops.reshape(clean_target, (-1, 1, 1, 1)), ops.cast(images, teacher.dtype), teacher)
        student = self.model([images + expand(sigma_next) * noise, sigma_next] + extra, training=training)
        if self.distance == "l2":
            return losses.squared_l2(student, teacher)
        return losses.pseudo_huber(student, teacher, self.huber_c)

    def consistency_loss(self, images, noise, sigma, sigma_next, labels=None, training=True):
        """Per-sample iCT loss lambda(sigma_i) d(...) with lambda = 1 / (sigma_{i+1} - sigma_i)."""
        sigma, sigma_next = ops.cast(sigma, "float32"), ops.cast(sigma_next, "float32")
        distance = self.consistency_distance(images, noise, sigma, sigma_next, labels, training)
        if self.weighting == "uniform":
            return distance
        return losses.consistency_weight(sigma, sigma_next) * distance

    def teacher_decay(self, num_scales):
        """CT's target-network rate mu(k) = exp(s0 ln(mu0) / N(k))."""
        return ops.exp(self.s0 * math.log(self.teacher_mu0) / ops.cast(num_scales, "float32"))

    def update_teacher(self, num_scales):
        """teacher <- teacher + (1 - mu(k)) (theta - teacher), for `teacher="ema"` (original CT)."""
        rate = 1.0 - self.teacher_decay(num_scales)
        for target, weight in self._teacher_pairs:
            target.assign(target + ops.cast(rate, target.dtype)
                          * (ops.stop_gradient(ops.cast(weight.value, target.dtype)) - target))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        images, labels = self._unpack(x, y)
        sigma, sigma_next, num_scales, noise = self.draw_noise(images)
        per_sample = self.consistency_loss(images, noise, sigma, sigma_next, labels, training=training)
        loss = self.batch_loss(per_sample)
        self.num_scales_tracker.update_state(num_scales)
        self.sigma_tracker.update_state(mean_over_processes(ops.mean(sigma_next)))
        if training:
            if self.teacher_model is not None:
                self.update_teacher(num_scales)
            self.finish_step()
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "total_steps": self.total_steps,
                "s0": self.s0,
                "s1": self.s1,
                "p_mean": self.p_mean,
                "p_std": self.p_std,
                "rho": self.rho,
                "huber_c": self.huber_c,
                "distance": self.distance,
                "weighting": self.weighting,
                "index_distribution": self.index_distribution,
                "curriculum": self.curriculum,
                "teacher": self.teacher,
                "teacher_mu0": self.teacher_mu0,
                "curriculum_steps": self.curriculum_steps,
            }
        )
        return config
