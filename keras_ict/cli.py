"""The `keras-ict` command line (also `python -m keras_ict`).

    keras-ict train --preset mnist --data ../shared/datasets/mnist.npz --out runs/mnist [--time-budget 45m]
    keras-ict sample --model runs/mnist/final --seeds 0-63 --sigmas 80,0.821 --out grid.png
    keras-ict fid --model runs/mnist/final --ref fid_refs/mnist-train-32px.npz --num 10000 --steps 1,2
    keras-ict fid-ref --data ../shared/datasets/mnist.npz --preset mnist --out fid_refs/mnist-train-32px.npz
    keras-ict pack --run runs/mnist --out mnist-run.tar      # resume on another machine: keras-ict unpack
    keras-ict presets

User errors print one line `keras-ict: error: ...` and exit with status 2, before any file is written.
"""

import argparse
import os
import re
import sys
import time
from pathlib import Path

BACKENDS = ("jax", "tensorflow", "torch")
# Every backend's names (keras_ict.backends.distribution.STRATEGIES, which needs Keras imported, says which
# backend has which; this module parses flags before the backend is chosen).
STRATEGY_NAMES = ("mirrored", "multiworker", "tpu", "data-parallel", "ddp")


class UserError(Exception):
    """A problem with the command's input, reported in one line without a traceback."""


def parse_duration(text):
    """'45m', '2h', '90s', '1h30m' or plain seconds -> seconds."""
    text = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
        if not parts or "".join(a + b for a, b in parts) != text:
            raise UserError(f"cannot read duration {text!r}; use e.g. 45m, 2h, 1h30m or seconds")
        seconds = sum(float(a) * {"h": 3600, "m": 60, "s": 1}[b] for a, b in parts)
    if seconds <= 0:
        raise UserError(f"duration must be positive, got {text!r}")
    return seconds


def parse_seeds(text):
    """'0-63' (inclusive), '1,5,9' or a mix '0-3,10' -> list of ints."""
    seeds = []
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)-(\d+)", part)
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if hi < lo:
                raise UserError(f"seed range {part!r} is empty")
            seeds.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            seeds.append(int(part))
        else:
            raise UserError(f"cannot read seeds {text!r}; use e.g. 0-63 or 1,5,9")
    return seeds


def parse_floats(text, what):
    try:
        return [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UserError(f"cannot read {what} {text!r}; use comma-separated numbers like 80,0.821") from None


def select_backend(name):
    """Set KERAS_BACKEND before Keras is imported; refuse a switch once Keras is loaded."""
    if name is None:
        return
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise UserError(f"Keras is already loaded with backend {keras.backend.backend()!r} in this process")
        return
    os.environ["KERAS_BACKEND"] = name


# ---------------------------------------------------------------------------------------------- train


def _overrides(args):
    overrides = {}
    for item in args.set or []:
        if "=" not in item:
            raise UserError(f"--set needs key=value, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip().replace("-", "_")] = None if value.strip().lower() == "none" else value.strip()
    for flag, key in (("data", "data"), ("steps", "total_steps"), ("batch_size", "batch_size"), ("lr", "learning_rate"),
                      ("seed", "seed"), ("init", "init")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "trust_pickle", False):
        overrides["trust_pickle"] = True
    return overrides


def cmd_train(args):
    select_backend(args.backend)
    budget = parse_duration(args.time_budget) if args.time_budget else None
    from keras_ict.training import train

    result = train(args.preset, args.out, fresh=args.fresh, time_budget_s=budget, stop_at_step=args.stop_at_step,
                   strategy=args.strategy, coordinator=args.coordinator, num_processes=args.num_processes,
                   process_id=args.process_id, connect_timeout_s=args.connect_timeout,
                   data_pipeline=args.data_pipeline, overrides=_overrides(args))
    if not result.ok:
        print(f"keras-ict: error: {result.message}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------- sample


def _check_sampler_flags(args):
    if args.heun_steps is not None and args.heun_steps < 1:
        raise UserError(f"--heun-steps must be >= 1, got {args.heun_steps}")
    if args.heun_steps is not None and (args.steps is not None or args.sigmas is not None):
        raise UserError("--heun-steps (diffusion models) cannot be combined with --steps or --sigmas (consistency "
                        "models)")


def _is_diffusion_model(args, model):
    """True for a diffusion model (sampled with EDM's Heun sampler); the sampler flags must fit the model."""
    from keras_ict.parameterization import EDMDenoiser

    diffusion = isinstance(model, EDMDenoiser)
    if diffusion and (args.steps is not None or args.sigmas is not None):
        raise UserError(f"{args.model} is a diffusion model (EDMDenoiser): it is sampled with EDM's Heun sampler, "
                        "--heun-steps N (default 18), not --steps / --sigmas")
    if not diffusion and args.heun_steps is not None:
        raise UserError(f"{args.model} is a consistency model: --heun-steps is for diffusion models; use --steps or "
                        "--sigmas")
    return diffusion


def cmd_sample(args):
    select_backend(args.backend)
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".npz"):
        raise UserError(f"--out must end in .png or .npz, got {out.name!r}")
    if args.seeds is not None:
        seeds = parse_seeds(args.seeds)
        if args.num is not None and args.num != len(seeds):
            raise UserError(f"--num {args.num} does not match the {len(seeds)} seeds of --seeds {args.seeds}")
    else:
        if args.num is None or args.num < 1:
            raise UserError("give --num N (>= 1) or --seeds A-B")
        seeds = list(range(args.num))
    _check_sampler_flags(args)

    import numpy as np

    from keras_ict.sampling import generate, save_image_grid, to_uint8
    from keras_ict.zoo import from_preset

    explicit_sigmas = parse_floats(args.sigmas, "--sigmas") if args.sigmas else None
    model = from_preset(args.model)
    diffusion = _is_diffusion_model(args, model)
    if diffusion:
        from keras_ict import paper

        heun_steps = args.heun_steps or paper.EDM_HEUN_STEPS
    elif explicit_sigmas:
        sigmas = explicit_sigmas
    else:
        sigmas = model.sampling.get("sigmas_2step" if args.steps == 2 else "sigmas_1step", [model.sigma_max])
    labels = None
    if args.labels is not None:
        labels = [int(v) for v in parse_floats(args.labels, "--labels")]
        labels = labels[0] if len(labels) == 1 else labels
    elif model.conditional:
        labels = [s % model.label_dim for s in seeds]
    if diffusion:
        from keras_ict.diffusion import heun_sample

        images = heun_sample(model, seeds, num_steps=heun_steps, labels=labels, batch_size=args.batch_size)
    else:
        images = generate(model, seeds, sigmas=sigmas, labels=labels, batch_size=args.batch_size)
    if out.suffix.lower() == ".png":
        save_image_grid(images, out, ncols=args.ncols)
    else:
        from keras_ict.files import atomic_write_bytes_npz

        sampler = dict(heun_steps=np.asarray(heun_steps)) if diffusion else dict(sigmas=np.asarray(sigmas))
        atomic_write_bytes_npz(out, images=to_uint8(images), seeds=np.asarray(seeds),
                               labels=np.asarray(labels if labels is not None else []), **sampler)
    print(f"wrote {len(seeds)} images to {out}")
    return 0


# ------------------------------------------------------------------------------------------------ fid


def _parse_steps(text):
    steps = sorted({int(v) for v in parse_floats(text, "--steps")})
    if not steps or any(s not in (1, 2) for s in steps):
        raise UserError(f"--steps must be 1, 2 or 1,2, got {text!r}")
    return steps


def cmd_fid(args):
    select_backend(args.backend)
    if args.num < 2:
        raise UserError(f"--num must be >= 2 (FID needs a covariance), got {args.num}")
    if args.seed_start < 0:
        raise UserError("--seed-start must be >= 0")
    if args.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    _check_sampler_flags(args)
    steps = _parse_steps(args.steps or "1") if args.sigmas is None else [None]
    sigmas = parse_floats(args.sigmas, "--sigmas") if args.sigmas else None
    if args.out is not None and Path(args.out).suffix.lower() != ".json":
        raise UserError(f"--out must end in .json, got {Path(args.out).name!r}")
    from keras_ict.evaluation import check_reference

    check_reference(args.ref)

    from keras_ict.evaluation import compute_fid, resolve_sigmas
    from keras_ict.files import write_json
    from keras_ict.zoo import from_preset

    model = from_preset(args.model)
    diffusion = _is_diffusion_model(args, model)
    runs = [dict(heun_steps=args.heun_steps)] if diffusion else [dict(steps=step or 1, sigmas=sigmas) for step in steps]
    if not diffusion:
        for step in steps:  # fail on a missing two-step sigma before any feature is computed
            resolve_sigmas(model, step, sigmas)
    results = []
    for sampler_args in runs:
        result = compute_fid(
            model, args.ref, num=args.num, seed_start=args.seed_start, batch_size=args.batch_size,
            weights=args.weights, split=args.split, resize=args.resize, **sampler_args,
        )
        result["model"] = str(args.model)
        results.append(result)
        how = (f"Heun {result['heun_steps']} steps, {result['network_calls']} network calls" if diffusion
               else f"sigmas {result['sigmas']}")
        print(f"{result['metric']} {result['fid']:.4f}  (model {args.model}, seeds {result['seeds']}, {how}, "
              f"ref {args.ref}, {result['backend']}, {result['wall_s']} s)", flush=True)
    if args.out:
        write_json(Path(args.out), {"results": results})
        print(f"wrote {args.out}")
    return 0


def cmd_fid_ref(args):
    select_backend(args.backend)
    out = Path(args.out)
    if out.suffix.lower() != ".npz":
        raise UserError(f"--out must end in .npz, got {out.name!r}")
    if args.num is not None and args.num < 2:
        raise UserError(f"--num must be >= 2 (FID needs a covariance), got {args.num}")
    if args.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    image_size, channels, resize = args.image_size, args.channels, args.resize
    if args.preset is not None:
        from keras_ict.recipes import model_config, resolve_config

        config = resolve_config(args.preset, {})
        net = model_config(config)["network"]["config"]
        image_size = image_size or net["img_resolution"]
        channels = channels or net["in_channels"]
        resize = resize or config["resize"]
    if not Path(args.data).expanduser().exists() and not args.data.startswith("tfds:"):
        from keras_ict.data import KNOWN_TFDS_NAMES

        if args.data not in KNOWN_TFDS_NAMES:
            raise UserError(f"--data {args.data!r}: no such file or folder, and not a TFDS name (tfds:NAME)")

    from keras_ict import fid
    from keras_ict.evaluation import reference_statistics

    start = time.monotonic()
    mu, sigma, info = reference_statistics(
        args.data, split=args.split, image_size=image_size, channels=channels, resize=resize, num=args.num,
        weights=args.weights, batch_size=args.batch_size, tfds_data_dir=args.tfds_data_dir,
    )
    meta = {k: v for k, v in info.items() if k not in ("ref", "ref_sha256", "cached")}
    flags = [f"--data {args.data}", f"--split {args.split}"] + [
        f"--{name.replace('_', '-')} {getattr(args, name)}"
        for name in ("num", "preset", "image_size", "channels", "resize", "tfds_data_dir") if getattr(args, name) is not None
    ]
    meta["command"] = "keras-ict fid-ref " + " ".join(flags) + f" --out {out.name}"
    fid.save_statistics(out, mu, sigma, metadata=meta)
    print(f"wrote {out} ({info['num_images']} images of {args.data} [{args.split}], "
          f"{info['image_size']}x{info['image_size']}x{info['channels']}, sha256 {fid._sha256(out)}, "
          f"{time.monotonic() - start:.0f} s)", flush=True)
    return 0


def cmd_export(args):
    select_backend(args.backend)
    from keras_ict.export import FORMATS

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats or any(f not in FORMATS for f in formats):
        raise UserError(f"--formats must list {' and/or '.join(FORMATS)}, got {args.formats!r}")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"--out {out} exists; add --overwrite to replace it")
    model = Path(args.model)
    if not (model.is_dir() or (model.suffix == ".keras" and model.is_file())):
        from keras_ict.zoo import available as zoo_list

        if args.model not in zoo_list():
            raise UserError(f"--model {args.model!r} is neither a model folder, a .keras file nor a zoo entry")

    from keras_ict.export import export

    report = export(args.model, out, formats=formats, two_step_sigma=args.two_step_sigma, overwrite=args.overwrite)
    errors = ", ".join(
        f"{name} {fmt} {err:.1e}" for name, e in report["endpoints"].items() for fmt, err in e["max_abs_error_vs_keras"].items()
    )
    print(f"exported {args.model} to {out} ({', '.join(report['formats'])}); max abs error vs Keras: {errors}", flush=True)
    return 0


def cmd_pack(args):
    from keras_ict.run_archive import pack_run

    manifest = pack_run(args.run, args.out)
    size = Path(args.out).stat().st_size / 2**20
    print(f"packed {args.run} ({len(manifest['files'])} files, checkpoint {manifest['checkpoint'] or 'none'}) into "
          f"{args.out} ({size:.1f} MB); resume elsewhere with: keras-ict unpack {args.out} --out RUN && "
          "keras-ict train --out RUN ... (the same flags)")
    return 0


def cmd_unpack(args):
    from keras_ict.run_archive import unpack_run

    manifest = unpack_run(args.archive, args.out)
    print(f"unpacked {args.archive} into {args.out} ({len(manifest['files'])} files verified, checkpoint "
          f"{manifest['checkpoint'] or 'none'}); `keras-ict train --out {args.out}` with the run's flags resumes it")
    return 0


def cmd_presets(args):
    from keras_ict.recipes import RECIPES

    for name in sorted(RECIPES):
        print(f"{name:<15} {RECIPES[name]['description']}")
    return 0


# ----------------------------------------------------------------------------------------------- main


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-ict", description="Improved consistency training in Keras 3.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train (or resume) a run")
    train.add_argument("--preset", required=True)
    train.add_argument("--out", required=True, help="run directory; an existing one with the same config resumes")
    train.add_argument("--data", help="tfds name, .npz, image folder or .tar.gz (default: the preset's)")
    train.add_argument("--backend", choices=BACKENDS)
    length = train.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="total training steps K (sets the curriculum)")
    length.add_argument("--time-budget", help="stop this invocation after e.g. 45m (resumable)")
    train.add_argument("--stop-at-step", type=int, help="stop this invocation once the step counter reaches this")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--init", metavar="SOURCE",
                       help="start from a run folder, model folder or zoo entry (its network weights), or an EDM "
                       "state dict (.npz; .pt with --trust-pickle): e.g. an mnist-edm run for --preset mnist-ect")
    train.add_argument("--trust-pickle", action="store_true",
                       help="allow --init to be a pickled .pt file (loading one can run code from it)")
    train.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override any preset field (repeatable)")
    train.add_argument("--fresh", action="store_true", help="delete an existing run in --out and start over")
    train.add_argument("--strategy", choices=STRATEGY_NAMES,
                       help="several devices or processes: mirrored | multiworker (TF_CONFIG) | tpu (tensorflow), "
                            "data-parallel (jax), ddp (torch, under torchrun)")
    train.add_argument("--coordinator", metavar="HOST:PORT",
                       help="data-parallel with several JAX processes: process 0's address (JAX_COORDINATOR_ADDRESS)")
    train.add_argument("--num-processes", type=int, help="JAX processes in the run (JAX_NUM_PROCESSES)")
    train.add_argument("--process-id", type=int, help="this JAX process's id, 0 .. N-1 (JAX_PROCESS_ID)")
    train.add_argument("--connect-timeout", type=float, metavar="SECONDS",
                       help="how long a process waits for its coordinator before failing (default 300)")
    train.add_argument("--data-pipeline", choices=("tf", "numpy"),
                       help="tf.data (default where TensorFlow is installed) or numpy (a PyDataset, no TensorFlow); "
                            "the same batches either way")
    train.set_defaults(func=cmd_train)

    sample = sub.add_parser("sample", help="sample a grid PNG or an .npz from a model")
    sample.add_argument("--model", required=True, help="RUN_DIR/final, a model folder, or a zoo name")
    sample.add_argument("--num", type=int)
    sample.add_argument("--seeds")
    sample.add_argument("--steps", type=int, choices=(1, 2), help="use the model's 1- or 2-step sigmas (default 1)")
    sample.add_argument("--heun-steps", type=int,
                        help="diffusion models (e.g. an mnist-edm run): EDM's Heun sampler with N steps (default 18)")
    sample.add_argument("--sigmas", help="explicit decreasing sigmas, e.g. 80,0.821")
    sample.add_argument("--labels", help="class label(s) for a conditional model: one for all or one per seed")
    sample.add_argument("--batch-size", type=int, default=64)
    sample.add_argument("--ncols", type=int)
    sample.add_argument("--backend", choices=BACKENDS)
    sample.add_argument("--out", required=True)
    sample.set_defaults(func=cmd_sample)

    fid_p = sub.add_parser("fid", help="FID of a model against reference statistics or a dataset")
    fid_p.add_argument("--model", required=True, help="RUN_DIR/final, a model folder, or a zoo name")
    fid_p.add_argument("--ref", required=True, help="statistics .npz (mu, sigma), or a dataset (path or tfds:NAME)")
    fid_p.add_argument("--num", type=int, default=50_000, help="generated images (default 50000, the standard)")
    fid_p.add_argument("--steps", help="1, 2 or 1,2: the model's one- and/or two-step sigmas (default 1)")
    fid_p.add_argument("--sigmas", help="explicit decreasing sigmas instead of --steps, e.g. 80,0.821")
    fid_p.add_argument("--heun-steps", type=int,
                       help="diffusion models (e.g. an mnist-edm run): EDM's Heun sampler with N steps (default 18)")
    fid_p.add_argument("--seed-start", type=int, default=0, help="first seed; image i uses seed start+i")
    fid_p.add_argument("--split", default="train", help="dataset split when --ref is a dataset")
    fid_p.add_argument("--resize", choices=("bilinear", "area", "nearest"), help="resize dataset images")
    fid_p.add_argument("--batch-size", type=int, default=64)
    fid_p.add_argument("--weights", help="Inception weights (.pt or converted .weights.h5); default shared/fid")
    fid_p.add_argument("--backend", choices=BACKENDS)
    fid_p.add_argument("--out", help="also write the results with their protocol to this .json")
    fid_p.set_defaults(func=cmd_fid)

    ref_p = sub.add_parser("fid-ref", help="FID reference statistics (mu, sigma) of a dataset split")
    ref_p.add_argument("--data", required=True, help=".npz, image folder, .tar.gz or tfds:NAME")
    ref_p.add_argument("--out", required=True, help="statistics file to write (.npz)")
    ref_p.add_argument("--split", default="train")
    ref_p.add_argument("--num", type=int, help="use only the first N images (default: all)")
    ref_p.add_argument("--preset", help="take image size, channels and resizing from a training preset")
    ref_p.add_argument("--image-size", type=int, help="pad/resize to this size (default: the images' own)")
    ref_p.add_argument("--channels", type=int, choices=(1, 3))
    ref_p.add_argument("--resize", choices=("bilinear", "area", "nearest"))
    ref_p.add_argument("--tfds-data-dir", help="where a tfds:NAME dataset is prepared (default $TFDS_DATA_DIR)")
    ref_p.add_argument("--batch-size", type=int, default=64)
    ref_p.add_argument("--weights", help="Inception weights (.pt or converted .weights.h5); default shared/fid")
    ref_p.add_argument("--backend", choices=BACKENDS)
    ref_p.set_defaults(func=cmd_fid_ref)

    exp = sub.add_parser("export", help="export a model to TF SavedModel and ONNX (verified against Keras)")
    exp.add_argument("--model", required=True, help="RUN_DIR/final, a model folder, a zoo name or a .keras file")
    exp.add_argument("--out", required=True, help="output folder (created; written atomically)")
    exp.add_argument("--formats", default="saved_model,onnx", help="saved_model and/or onnx (comma-separated)")
    exp.add_argument("--two-step-sigma", type=float, help="intermediate sigma of generate_2step (default: the model's)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    exp.add_argument("--backend", choices=BACKENDS)
    exp.set_defaults(func=cmd_export)

    pack = sub.add_parser("pack", help="pack a run (config, logs, newest checkpoint) to resume it on another machine")
    pack.add_argument("--run", required=True, help="the run folder (--out of keras-ict train)")
    pack.add_argument("--out", required=True, help="archive to write: .tar, or .tar.gz / .tgz")
    pack.set_defaults(func=cmd_pack)

    unpack = sub.add_parser("unpack", help="restore a packed run into a new folder (sha256-checked)")
    unpack.add_argument("archive", help="an archive written by keras-ict pack")
    unpack.add_argument("--out", required=True, help="run folder to create (must not exist or be empty)")
    unpack.set_defaults(func=cmd_unpack)

    presets = sub.add_parser("presets", help="list the training presets")
    presets.set_defaults(func=cmd_presets)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
        if os.environ.get("KERAS_ICT_TRACEBACK") == "1":  # for bug reports: the whole traceback
            raise
        print(f"keras-ict: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. disk full or permission denied while writing: not a bug, no traceback
        print(f"keras-ict: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("keras-ict: interrupted; the last complete checkpoint is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
