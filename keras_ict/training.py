"""Train or resume a run folder: the library entry point behind `keras-ict train`.

    import keras_ict
    result = keras_ict.train("mnist", "runs/mnist", data="../shared/datasets/mnist.npz", steps=2000)
    result.final            # RUN_DIR/final, load with keras_ict.from_preset(result.final)

A run folder holds config.json (the resolved recipe), checkpoints/ (resumable, written atomically), log.csv,
samples/, tensorboard/, fid.csv (with `fid_every`) and, once the last step is done, final/ (EMA weights, config,
metadata, sample grids). Calling `train` again on the same folder resumes from its newest checkpoint, exactly
(same batches, noise and dropout masks); only run-length fields (steps, logging, checkpoint cadence) may
change between calls. Bad input raises ValueError / FileNotFoundError before any file is written.
"""

import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from keras_ict.files import LOCK_NAME


@dataclass
class TrainResult:
    """What `train` did. `status`: "finished", "already finished", "stopped" (time budget or stop step: call
    again to resume) or "non-finite loss" (training stopped at `bad_step`; checkpoints before it are intact)."""

    run_dir: Path
    status: str
    step: int
    total_steps: int
    final: Path | None
    trainer: object
    message: str
    bad_step: int | None = None

    @property
    def ok(self):
        return self.status != "non-finite loss"


def check_run_dir(run_dir, config, fresh):
    """'new', 'fresh' or 'resume' for `run_dir`; ValueError if it holds something else or another recipe."""
    from keras_ict.files import read_json
    from keras_ict.recipes import FIELD_DEFAULTS, RUN_LENGTH_FIELDS

    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir} exists and is not a directory")
    if not config_path.is_file():
        if run_dir.is_dir() and any(p.name != LOCK_NAME for p in run_dir.iterdir()) and not fresh:
            raise ValueError(f"--out {run_dir} is not empty and is not a keras-ict run directory")
        return "new"
    if fresh:
        return "fresh"
    old = dict(FIELD_DEFAULTS, **read_json(config_path))
    length_fields = set(RUN_LENGTH_FIELDS)
    if old.get("curriculum_steps") is not None and old.get("curriculum_steps") == config.get("curriculum_steps"):
        # With its own curriculum length, total_steps only says when to stop: the run can be extended.
        length_fields.add("total_steps")
    differing = sorted(k for k in set(old) | set(config) if k not in length_fields and old.get(k) != config.get(k))
    if differing:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in differing[:6])
        raise ValueError(
            f"{run_dir} holds a run with a different config ({detail}); use another --out, or --fresh to start over"
        )
    return "resume"


def check_data(config, model_shape):
    """The data source's `dataset_info`, after checking it can feed a network of `model_shape` (H, W, C)."""
    from keras_ict.data import dataset_info
    from keras_ict.data.sources import prepare_tfds, resolve_source

    kind, where = resolve_source(config["data"], "train", None)
    if kind == "tfds":
        prepare_tfds(where, config["tfds_data_dir"])
    info = dataset_info(config["data"], tfds_data_dir=config["tfds_data_dir"])
    height, width, channels = info["image_shape"]
    res, want_channels = model_shape[0], model_shape[2]
    # Grayscale and RGB convert into each other (repeat / luminance); other mismatches cannot be fed.
    if channels != want_channels and not {channels, want_channels} <= {1, 3}:
        raise ValueError(f"data has {channels} channels but the network expects {want_channels}")
    if (height > res or width > res) and config["resize"] is None:
        raise ValueError(f"data images are {height}x{width}, larger than the network's {res}x{res}; add --set resize=area")
    if config["label_dim"] and info.get("num_classes") and info["num_classes"] > config["label_dim"]:
        raise ValueError(f"data has {info['num_classes']} classes but the model has label_dim={config['label_dim']}")
    if config["label_dim"] and not info.get("num_classes"):
        raise ValueError("the preset is class-conditional but the data has no labels")
    return info


def train(recipe, run_dir, *, data=None, steps=None, batch_size=None, learning_rate=None, seed=None, fresh=False,
          time_budget_s=None, stop_at_step=None, strategy=None, coordinator=None, num_processes=None, process_id=None,
          connect_timeout_s=None, data_pipeline=None, callbacks=(), verbose=None, overrides=None, **fields):
    """Trains (or resumes) the run in `run_dir` with a recipe; returns a `TrainResult`.

    Args:
        recipe: a training recipe name (`keras_ict.recipes.RECIPES`, e.g. "mnist", "cifar10") or a dict of
            config fields with a "preset" entry naming the recipe it starts from (e.g. a run's config.json).
        run_dir: the run folder (created; resumed when it holds a run of the same recipe).
        data, steps, batch_size, learning_rate, seed: shortcuts for the config fields data, total_steps,
            batch_size, learning_rate and seed; any other field as a keyword (e.g. s1=150) or in `overrides`
            (a dict: field -> value, strings are parsed as `keras-ict train --set` parses them).
        fresh: delete what `run_dir` holds and start over.
        time_budget_s: stop cleanly (checkpoint written) after this many seconds; call again to resume.
        stop_at_step: stop once the step counter reaches this.
        strategy: a distribution strategy name of `keras_ict.backends.distribution.STRATEGIES` for this backend.
            Several processes: "multiworker" reads TF_CONFIG, "ddp" torchrun's variables, "data-parallel" the
            next three arguments (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID). Only the
            chief / process 0 writes `run_dir`; the others read its checkpoints to resume.
        coordinator, num_processes, process_id: a several-process JAX run ("HOST:PORT" of process 0).
        connect_timeout_s: how long a process waits for its coordinator before a ConnectionError (default 300).
        data_pipeline: "tf" (tf.data) or "numpy" (a keras.utils.PyDataset, no TensorFlow needed); None: tf.data
            where TensorFlow is installed. Both give the same batches, so a run may resume with the other one.
        callbacks: extra Keras callbacks for `fit`.
        verbose: Keras' progress bar (default: when stdout is a terminal; otherwise one line per log interval).
    """
    from keras_ict.backends.distribution import planned_processes, start_processes
    from keras_ict.recipes import model_config, resolve_config

    if isinstance(recipe, dict):
        base = dict(recipe)
        if "preset" not in base:
            raise ValueError("a recipe given as a dict needs a 'preset' entry naming the recipe it starts from")
        name = base.pop("preset")
        base.pop("description", None)
    else:
        name, base = recipe, {}
    changes = dict(base, **(overrides or {}), **fields)
    for key, value in (("data", data), ("total_steps", steps), ("batch_size", batch_size),
                       ("learning_rate", learning_rate), ("seed", seed)):
        if value is not None:
            changes[key] = value
    config = resolve_config(name, changes)
    run_dir = Path(run_dir)
    if time_budget_s is not None and not float(time_budget_s) > 0:
        raise ValueError(f"time budget must be positive, got {time_budget_s}")
    if stop_at_step is not None and int(stop_at_step) < 1:
        raise ValueError("--stop-at-step must be >= 1")
    if connect_timeout_s is not None and not float(connect_timeout_s) > 0:
        raise ValueError(f"--connect-timeout must be positive, got {connect_timeout_s}")
    process_flags = dict(coordinator=coordinator, num_processes=num_processes, process_id=process_id)
    _check_divisible(config["batch_size"], planned_processes(strategy, **process_flags), strategy)
    mode = check_run_dir(run_dir, config, fresh)
    cls_kwargs = model_config(config)["network"]["config"]
    image_shape = (cls_kwargs["img_resolution"], cls_kwargs["img_resolution"], cls_kwargs["in_channels"])
    data_pipeline = check_data_pipeline(data_pipeline, config["data"])
    info = check_data(config, image_shape)
    if config["init"]:
        from keras_ict.initialization import check_init

        check_init(config)
    if config["fid_every"] and config["fid_ref"]:
        from keras_ict.evaluation import check_reference

        check_reference(str(config["fid_ref"]), "fid_ref")

    # Input is valid: join the run's other processes (a bounded wait for the coordinator), then files are
    # written, by the one writing process alone.
    from keras_ict.files import folder_lock

    processes = start_processes(strategy, connect_timeout_s=connect_timeout_s, **process_flags)
    _check_divisible(config["batch_size"], processes, strategy)
    if not processes.writer:
        return _train_as_worker(config, run_dir, mode, info, image_shape, strategy, time_budget_s, stop_at_step,
                                callbacks, verbose, processes.index, data_pipeline)
    with folder_lock(run_dir):
        return _train_in_folder(config, run_dir, mode, info, image_shape, strategy, time_budget_s, stop_at_step,
                                callbacks, verbose, data_pipeline=data_pipeline)


def check_data_pipeline(name, source):
    """The data pipeline to train with ("tf" or "numpy"), or ValueError naming what is missing."""
    from keras_ict.data import PIPELINES, default_pipeline
    from keras_ict.data.sources import resolve_source

    if name is not None and name not in PIPELINES:
        raise ValueError(f"data pipeline must be one of {', '.join(PIPELINES)}, got {name!r}")
    name = default_pipeline() if name is None else name
    if name == "tf" and default_pipeline() != "tf":
        raise ValueError("the tf data pipeline needs TensorFlow (pip install 'keras-ict[tensorflow]'); "
                         "or train with --data-pipeline numpy")
    if name == "numpy" and resolve_source(source, "train", None)[0] == "tfds":
        raise ValueError(f"TFDS source {source!r} needs the tf data pipeline: install TensorFlow and TensorFlow "
                         "Datasets (pip install 'keras-ict[tfds]'), or pass an offline source")
    return name


def _check_divisible(batch_size, processes, strategy):
    source = {"multiworker": "TF_CONFIG", "ddp": "WORLD_SIZE"}.get(strategy, "--num-processes")
    if processes.count > 1 and batch_size % processes.count:
        raise ValueError(f"batch size {batch_size} is not divisible by the {processes.count} workers of {source}")


def _train_as_worker(config, run_dir, mode, info, image_shape, strategy, time_budget_s, stop_at_step, callbacks,
                     verbose, worker_index, data_pipeline):
    """A process of a multi-process run other than the writer: it runs every step and callback with the writer
    (collective ops need all processes) but writes into a private temporary folder, removed at the end, as
    TensorFlow's non-chief writers do; it resumes from the writer's latest checkpoint in `run_dir`, which it only
    reads. The folder's name is fixed per run folder and worker, so a relaunch after a kill removes what the
    killed worker left."""
    import hashlib
    import tempfile

    from keras_ict.checkpoint import latest_checkpoint

    key = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    scratch = Path(tempfile.gettempdir()) / f"keras-ict-worker-{key}-{worker_index}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        resume_from = None if mode == "fresh" else latest_checkpoint(run_dir)
        result = _train_in_folder(config, scratch, "new", info, image_shape, strategy, time_budget_s, stop_at_step,
                                  callbacks, verbose, resume_from=resume_from, data_pipeline=data_pipeline)
        return dataclasses.replace(result, run_dir=run_dir, final=None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train_in_folder(config, run_dir, mode, info, image_shape, strategy, time_budget_s, stop_at_step, callbacks,
                     verbose, resume_from=None, data_pipeline=None):
    import keras

    from keras_ict import callbacks as cb
    from keras_ict.backends.distribution import batch_shard, distribution_scope, prepare_trainer, training_replicas
    from keras_ict.checkpoint import latest_checkpoint, load_checkpoint, save_final
    from keras_ict.data import load_dataset
    from keras_ict.files import write_json
    from keras_ict.recipes import build_trainer, model_config
    from keras_ict.sampling import generate, preview_samples

    if mode == "fresh":
        for path in run_dir.iterdir():
            if path.name != LOCK_NAME:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    if not (run_dir / "config.json").is_file() or mode == "resume":
        write_json(run_dir / "config.json", config)  # on resume: only run-length fields can differ

    checkpoint = resume_from or latest_checkpoint(run_dir)
    with distribution_scope(strategy):
        if checkpoint is not None:
            trainer, state = load_checkpoint(checkpoint)
            print(f"resuming from {checkpoint} (step {state['step']})", flush=True)
        else:
            keras.utils.set_random_seed(config["seed"])
            trainer, state = build_trainer(config), {"step": 0, "wall_s": 0.0}
            if config["init"]:
                from keras_ict.initialization import initialize_trainer

                print(f"initialised from {initialize_trainer(trainer, config)}", flush=True)
    prepare_trainer(trainer)

    def current_step():
        return int(keras.ops.convert_to_numpy(trainer.step))

    step, total = current_step(), config["total_steps"]
    label_dim = config["label_dim"]
    seeds = list(range(config["sample_count"]))
    labels = [s % label_dim for s in seeds] if label_dim else None

    def result(status, final=None, message="", bad_step=None):
        return TrainResult(run_dir, status, current_step(), total, final, trainer, message, bad_step)

    def final_outputs(wall_s):
        meta = {
            "preset": config["preset"],
            "data": str(config["data"]),
            "dataset_examples": info.get("num_examples"),
            "steps": current_step(),
            "images_seen": current_step() * config["batch_size"],
            "wall_time_s": round(wall_s, 1),
            "backend": keras.backend.backend(),
            "keras": keras.__version__,
            "machine": cb.os_machine(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        two_step = (config["sigma_max"], config["two_step_sigma"])
        if config["method"] == "edm":  # a diffusion model: EDM's sampler
            samples = {"samples_heun.png": preview_samples(trainer.ema_model, seeds, labels=labels)}
        else:
            samples = {
                "samples_1step.png": generate(trainer.ema_model, seeds, sigmas=(config["sigma_max"],), labels=labels),
                "samples_2step.png": generate(trainer.ema_model, seeds, sigmas=two_step, labels=labels),
            }
        return save_final(trainer, run_dir / "final", model_config(config), meta, samples)

    if step >= total:
        message = f"{run_dir} already finished {step} of {total} steps"
        print(message, flush=True)
        final = run_dir / "final"
        if not (final / "model.weights.h5").is_file():
            final = final_outputs(state.get("wall_s", 0.0))
            print(f"wrote {final}")
        return result("already finished", final, message)

    dataset = load_dataset(
        config["data"], image_size=image_shape[0], channels=image_shape[2], labels=bool(label_dim),
        num_classes=label_dim or None, batch_size=config["batch_size"], seed=config["seed"], flip=config["flip"],
        resize=config["resize"], skip_batches=step, shard=batch_shard(), pipeline=data_pipeline,
        tfds_data_dir=config["tfds_data_dir"],
    )
    nan_guard = cb.StopOnNonFinite()
    verbose = (1 if sys.stdout.isatty() else 0) if verbose is None else int(verbose)
    logger = cb.StepLogger(run_dir, config["batch_size"], config["log_every"], wall_offset=state.get("wall_s", 0.0),
                           print_rows=not verbose)
    checkpoints = cb.CheckpointAndSample(
        run_dir, config["checkpoint_every"], config["keep_checkpoints"], seeds, labels, logger, nan_guard,
        state_fn=lambda: {"wall_s": logger.wall_time(), "images_seen": current_step() * config["batch_size"]},
    )
    fit_callbacks = [nan_guard, logger, checkpoints]
    budget = cb.TimeBudget(time_budget_s) if time_budget_s else None
    if budget:
        fit_callbacks.append(budget)
    if stop_at_step:
        fit_callbacks.append(cb.StopAtStep(stop_at_step))
    if config["fid_every"]:
        two_step = [config["sigma_max"], config["two_step_sigma"]]
        fit_callbacks.append(cb.FIDMonitor(
            run_dir, config["fid_ref"] or config["data"], config["fid_every"], num=config["fid_num"],
            sigmas={s: ([config["sigma_max"]] if s == 1 else two_step) for s in config["fid_steps"]},
            logger=logger, ref_kwargs={"resize": config["resize"], "tfds_data_dir": config["tfds_data_dir"]},
        ))
    if config["snapshot_every"]:
        fit_callbacks.append(cb.StudentSnapshots(run_dir, config["snapshot_every"]))
    fit_callbacks += list(callbacks)
    replicas = training_replicas(trainer)
    on_devices = f" over {replicas} replicas" if replicas > 1 else ""
    print(f"training {config['preset']} on {keras.backend.backend()}: steps {step} -> {total}, "
          f"batch {config['batch_size']}{on_devices}, run dir {run_dir}", flush=True)
    trainer.fit(dataset, epochs=1, steps_per_epoch=total - step, shuffle=False, callbacks=fit_callbacks, verbose=verbose)

    step = current_step()
    if nan_guard.bad_step is not None:
        last = latest_checkpoint(run_dir)
        message = (f"the loss became NaN/Inf at step {nan_guard.bad_step}; training stopped. "
                   f"Last good checkpoint: {last if last else 'none'}")
        return result("non-finite loss", None, message, nan_guard.bad_step)
    if step < total:
        reason = "time budget" if budget and budget.expired else "stop requested"
        message = f"stopped at step {step} of {total} ({reason}); run the same command again to resume"
        print(message, flush=True)
        return result("stopped", None, message)
    final = final_outputs(logger.wall_time())
    message = f"finished {step} steps; model in {final} (load with keras_ict.from_preset({str(final)!r}))"
    print(message, flush=True)
    return result("finished", final, message)
