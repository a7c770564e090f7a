"""Learning curves of CPU recipe variants: FID of the EMA model against images seen, per variant.

    python benchmarks/recipe_study.py [--preset mnist] [--variants base s1-150 ...] [--images 64000]
                                      [--eval-every 32000] [--fid-num 2000] [--workers 2] [--collect]

Every variant is the preset with a few fields changed (VARIANTS below). It trains with `keras-ict train` for
`--images` images (steps = images / batch size, so batch-size variants see the same images) with
training-time FID of the EMA model every `--eval-every` images (`fid_every`; FID-2k 1-step and 2-step by
default, against the committed reference statistics of the preset's data, seeds 0..fid_num-1). Every variant
fixes its curriculum length in images (`curriculum_steps`), so a later call with a larger `--images` extends the
same runs (successive halving: screen many variants on a short budget, then continue the best ones) without
changing their curricula. Runs resume after any interruption: start the same command again.

`--workers 2` trains two variants at once, one CPU thread each (on a 2-core CPU two single-threaded runs
get more done than one two-threaded run, and a run beside other work is not oversubscribed). img/s per variant
is the median over logged intervals, measured beside the other worker: compare networks' speed with
`benchmarks/train_throughput.py` on an idle CPU.

After training, every kept checkpoint (every 250 steps, 8k images at batch 32) is scored by the digit judge
(`keras_ict.digit_judge`: a small MNIST classifier; Frechet distance in its feature space, `judge2k_fd_*`, plus
the share of recognisable digits and, for class-conditional presets, of the requested digit) from `--judge-num`
samples 1- and 2-step: ~0.02 GFLOP per image against Inception's ~6, so the curves get a point every 8k images
while FID-2k marks every `--eval-every` images. Scores go to RUN_DIR/judge.csv; `--judge-only` scores the
checkpoints of all run folders that have no score yet, training nothing.

`--collect` trains nothing: it reads every run folder under `--work` and writes the JSON and the PNG
(FID and judge distance against images seen and FID against training hours, one line per variant).
"""

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import repo_relative, versions, write_json  # noqa: E402

PRESET_DATA = {
    "mnist": ("../shared/datasets/mnist.npz", "fid_refs/mnist-train-32px.npz"),
    "mnist-cond": ("../shared/datasets/mnist.npz", "fid_refs/mnist-train-32px.npz"),
    "cifar10-small": ("../shared/datasets/cifar10_jpeg.tar.gz", "fid_refs/cifar10-jpeg-train.npz"),
}

# Curriculum length in images (K of K' = floor(K / (log2 floor(s1/s0) + 1))), the same for every variant
# unless it says otherwise, so that extending a run keeps its curriculum.
CURRICULUM_IMAGES = 64_000

# name -> (config fields changed from the preset, what the variant tests). Values are config fields, except
# "curriculum_images", which becomes curriculum_steps = curriculum_images / batch_size.
VARIANTS = {
    "base": ({}, "the preset (s1 1280, curriculum over 64k images)"),
    "s1-40": ({"s1": 40}, "s1 40"),
    "s1-80": ({"s1": 80}, "s1 80"),
    "s1-150": ({"s1": 150}, "s1 150"),
    "s1-320": ({"s1": 320}, "s1 320"),
    "s1-150-curr32k": ({"s1": 150, "curriculum_images": 32_000}, "s1 150, curriculum over 32k images"),
    "s1-150-curr128k": ({"s1": 150, "curriculum_images": 128_000}, "s1 150, curriculum over 128k images"),
    "lr5e-4": ({"learning_rate": 5e-4, "lr_warmup_steps": 200}, "lr 5e-4, 200-step warm-up"),
    "lr1e-3": ({"learning_rate": 1e-3, "lr_warmup_steps": 200}, "lr 1e-3, 200-step warm-up"),
    "batch64": ({"batch_size": 64}, "batch 64 (half the steps)"),
    "batch128": ({"batch_size": 128}, "batch 128 (a quarter of the steps)"),
    "ema0.9999": ({"ema_decay": 0.9999}, "EMA 0.9999"),
    "ema-warmup": ({"ema_warmup": True}, "EMA decay min(0.999, (1 + k) / (10 + k))"),
    "dropout0": ({"dropout": 0.0}, "dropout 0"),
    "dropout0.3": ({"dropout": 0.3}, "dropout 0.3"),
    "pmean-0.5": ({"p_mean": -0.5, "p_std": 1.5}, "P_mean -0.5, P_std 1.5"),
    "width64": ({"network_overrides": {"model_channels": 64}}, "64 base channels (~4x FLOPs)"),
    "width16": ({"network_overrides": {"model_channels": 16}}, "16 base channels (~1/4 of the FLOPs)"),
    "blocks2": ({"network_overrides": {"num_blocks": 2}}, "2 blocks per resolution"),
    "no-attn": ({"network_overrides": {"attn_resolutions": []}}, "no attention"),
    "ddpmpp": (
        {"network_overrides": {"embedding_type": "positional", "channel_mult_noise": 1, "encoder_type": "standard",
                               "resample_filter": [1, 1], "fourier_scale": 16.0}},
        "DDPM++-style small net (positional embedding, plain resampling)",
    ),
}
# Combinations of winners are added here as the study goes on (each with the reason in BUILD_NOTES.md).
# "ew" = EMA warm-up: in the first screen (session 8) the EMA with decay 0.999 lagged its student by most of a
# 1000-step run (grey backgrounds, judge distance of the EMA far above the student's), hiding every other effect.
_EW = {"ema_warmup": True}
_LR1E3 = {"learning_rate": 1e-3, "lr_warmup_steps": 200}
COMBINATIONS = {
    "ew-lr1e-3": ({**_EW, **_LR1E3}, "EMA warm-up, lr 1e-3 with 200-step warm-up"),
    "ew-lr1e-3-s1-80": ({**_EW, **_LR1E3, "s1": 80}, "EMA warm-up, lr 1e-3, s1 80"),
    "ew-lr1e-3-dropout0": ({**_EW, **_LR1E3, "dropout": 0.0}, "EMA warm-up, lr 1e-3, dropout 0"),
    "ew-lr5e-4": ({**_EW, "learning_rate": 5e-4, "lr_warmup_steps": 200}, "EMA warm-up, lr 5e-4"),
    "ew-lr1e-3-width16": ({**_EW, **_LR1E3, "network_overrides": {"model_channels": 16}},
                          "EMA warm-up, lr 1e-3, 16 base channels"),
    "ew-lr1e-3-batch64": ({**_EW, **_LR1E3, "batch_size": 64}, "EMA warm-up, lr 1e-3, batch 64"),
    # Session 11: s1 again, now through the warmed-up EMA, with the curriculum spread over the whole 80k-image
    # run (the 32k screen could not tell s1 apart through an EMA that lagged the whole run).
    "ew-lr1e-3-curr80k": ({**_EW, **_LR1E3, "curriculum_images": 80_000},
                          "EMA warm-up, lr 1e-3, s1 1280, curriculum over 80k images"),
    "ew-lr1e-3-s1-150-curr80k": ({**_EW, **_LR1E3, "s1": 150, "curriculum_images": 80_000},
                                 "EMA warm-up, lr 1e-3, s1 150, curriculum over 80k images"),
}
# Session 18: tuning from the finished long mnist run (carried/mnist-long.tar; flat at FID-2k ~50 / ~24 over its
# last 480k images at a constant lr 1e-3), at its last curriculum stage (N fixed at 151), one change each against
# the same continuation unchanged ("tune-lr1e-3"): is the plateau the noise of a high constant learning rate?
# "init_run" names a carried run (carried/NAME.tar), unpacked under RUNS/zoo/NAME when missing; its final/ is
# the init. The EMA warm-up restarts with the run (its window is ~k/9 steps at step k).
_FROM_MNIST_LONG = {"init_run": "mnist-long", "s0": 150, "s1": 150}
COMBINATIONS.update({
    "tune-lr1e-3": ({**_FROM_MNIST_LONG}, "from the long mnist run, N 151, lr 1e-3 (the long run's: control)"),
    "tune-lr3e-4": ({**_FROM_MNIST_LONG, "learning_rate": 3e-4}, "from the long mnist run, N 151, lr 3e-4"),
    "tune-lr1e-4": ({**_FROM_MNIST_LONG, "learning_rate": 1e-4}, "from the long mnist run, N 151, lr 1e-4"),
    "tune-lr3e-5": ({**_FROM_MNIST_LONG, "learning_rate": 3e-5}, "from the long mnist run, N 151, lr 3e-5"),
})
KEEP_ALL_CHECKPOINTS = 100_000


def carried_run_dir(name):
    """Where a carried run (carried/NAME.tar) lies when unpacked: the folder scripts/zoo/train_long.sh uses."""
    return Path(os.environ.get("KERAS_ICT_CACHE", Path.home() / ".cache" / "keras_ict")) / "runs" / "zoo" / name


def ensure_carried_run(name):
    """The carried run's folder, unpacked from carried/NAME.tar if it is not there; it must have finished."""
    run_dir = carried_run_dir(name)
    archive = REPO / "carried" / f"{name}.tar"
    if not (run_dir / "config.json").is_file():
        if not archive.is_file():
            raise FileNotFoundError(f"init_run {name}: neither {run_dir} nor {repo_relative(archive)} exists")
        from keras_ict.run_archive import unpack_run

        unpack_run(archive, run_dir)
    if not (run_dir / "final" / "model.weights.h5").is_file():
        raise ValueError(f"init_run {name}: {run_dir} has not finished (no final/); finish it first")
    return run_dir


def variant_overrides(name, batch_size):
    fields, _ = {**VARIANTS, **COMBINATIONS}[name]
    fields = dict(fields)
    if "init_run" in fields:
        fields["init"] = str(carried_run_dir(fields.pop("init_run")))
    batch = int(fields.get("batch_size", batch_size))
    curriculum_images = int(fields.pop("curriculum_images", CURRICULUM_IMAGES))
    fields["curriculum_steps"] = max(1, curriculum_images // batch)
    return fields, batch


def _set_args(fields):
    out = []
    for key, value in fields.items():
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        out += ["--set", f"{key}={text}"]
    return out


def train_variant(name, args, preset_batch):
    init_run = {**VARIANTS, **COMBINATIONS}[name][0].get("init_run")
    if init_run:
        ensure_carried_run(init_run)
    fields, batch = variant_overrides(name, preset_batch)
    steps = args.images // batch
    every = max(1, args.eval_every // batch)
    # Checkpoints between FID points too: a session that ends mid-interval loses at most 250 steps. All are kept:
    # `--judge` draws the digit judge's curve from them afterwards.
    fields.update(fid_every=every, fid_num=args.fid_num, fid_ref=str(REPO / args.ref), fid_steps="1,2",
                  checkpoint_every=min(every, 250), keep_checkpoints=KEEP_ALL_CHECKPOINTS, seed=args.seed)
    run_dir = Path(args.work) / name
    command = [sys.executable, "-m", "keras_ict", "train", "--preset", args.preset, "--data", args.data,
               "--steps", str(steps), "--out", str(run_dir)] + _set_args(fields)
    env = dict(os.environ, KERAS_BACKEND=args.backend, TF_CPP_MIN_LOG_LEVEL="2")
    if args.workers > 1:  # one thread per run (see the module docstring)
        env.update(OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    log = Path(args.work) / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    print(f"{name}: exit {code} after {time.monotonic() - start:.0f} s (log {log})", flush=True)
    if code == 0 and args.judge_num:
        code = judge_variant(run_dir, args, env, log)
    return code


def judge_variant(run_dir, args, env, log):
    """Scores the run's unscored checkpoints with the digit judge in a subprocess (the same backend and threads)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--score-run", str(run_dir), "--judge-num",
               str(args.judge_num), "--judge-every", str(args.judge_every), "--preset", args.preset]
    with open(log, "a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    print(f"{run_dir.name}: judge exit {code}", flush=True)
    return code


def judge_metric(num, what, steps):
    return f"judge{num // 1000}k_{what}_{steps}step" if num % 1000 == 0 else f"judge{num}_{what}_{steps}step"


JUDGE_FIELDS = {"judge_fd": "fd", "judge_recognisable": "recognisable", "judge_label_accuracy": "label_accuracy"}


def score_run(run_dir, num, every_images=0):
    """Appends digit-judge scores (1- and 2-step) of every complete, unscored checkpoint to RUN_DIR/judge.csv
    (with `every_images`, only of checkpoints at a multiple of that many images, and the last one)."""
    from keras_ict.checkpoint import load_checkpoint
    from keras_ict.digit_judge import DigitJudge, judge_model
    from keras_ict.files import atomic_write_text

    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    sigmas = {1: [config["sigma_max"]], 2: [config["sigma_max"], config["two_step_sigma"]]}
    path = run_dir / "judge.csv"
    done = set()
    if path.is_file():
        with open(path) as f:
            done = {int(r["step"]) for r in csv.DictReader(f) if int(r["num"]) == num}
    judge = DigitJudge()
    root = run_dir / "checkpoints"
    folders = sorted(p for p in root.iterdir() if p.name.startswith("step_") and (p / "state.json").is_file()) \
        if root.is_dir() else []
    batch = int(config["batch_size"]) if every_images else 0
    last = max((int(p.name.split("_")[1]) for p in folders), default=0)
    for folder in folders:
        step = int(folder.name.split("_")[1])
        if step in done or (every_images and step != last and (step * batch) % every_images):
            continue
        trainer, _ = load_checkpoint(folder)
        rows = []
        for steps, sig in sigmas.items():
            scores = judge_model(trainer.ema_model, judge, num=num, sigmas=sig)
            rows += [(step, judge_metric(num, JUDGE_FIELDS[k], steps), v) for k, v in scores.items() if k in JUDGE_FIELDS]
        # The student itself, one step: how far the EMA lags behind it at this budget.
        scores = judge_model(trainer.student, judge, num=num, sigmas=sigmas[1])
        rows += [(step, judge_metric(num, "student_" + JUDGE_FIELDS[k], 1), v) for k, v in scores.items()
                 if k in JUDGE_FIELDS]
        # The whole file is rewritten through a temporary name: a kill loses at most this checkpoint's rows.
        old = path.read_text() if path.is_file() else "step,metric,value,num,seeds\n"
        new = "".join(f"{step_},{metric},{value:.6g},{num},0-{num - 1}\n" for step_, metric, value in rows)
        atomic_write_text(path, old + new)
        print(f"{run_dir.name} step {step}: " + "  ".join(f"{m} {v:.3f}" for _, m, v in rows), flush=True)


def read_run(run_dir):
    """One variant's curve from its run folder: FID points, throughput and the config it ran with."""
    config = json.loads((run_dir / "config.json").read_text())
    batch = int(config["batch_size"])
    log_rows = []
    if (run_dir / "log.csv").is_file():
        with open(run_dir / "log.csv") as f:
            log_rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    rates = []
    for a, b in zip(log_rows, log_rows[1:]):
        if b["step"] > a["step"] and b["wall_s"] > a["wall_s"]:
            rates.append((b["step"] - a["step"]) * batch / (b["wall_s"] - a["wall_s"]))
    rates.sort()
    img_s = rates[len(rates) // 2] if rates else None
    points = {}
    for name, value_column in (("fid.csv", "fid"), ("judge.csv", "value")):
        if not (run_dir / name).is_file():
            continue
        with open(run_dir / name) as f:
            for r in csv.DictReader(f):
                step = int(r["step"])
                point = points.setdefault(step, {"step": step, "images": step * batch})
                point[r["metric"]] = float(r[value_column])
    wall = {int(r["step"]): r["wall_s"] for r in log_rows}
    for point in points.values():
        point["wall_s"] = wall.get(point["step"])
        point["train_hours_at_median_speed"] = round(point["images"] / img_s / 3600, 4) if img_s else None
    steps_done = max([int(r["step"]) for r in log_rows] + list(points) + [0])
    return {
        "batch_size": batch,
        "steps": steps_done,
        "images_seen": steps_done * batch,
        "wall_s": log_rows[-1]["wall_s"] if log_rows else 0.0,
        "img_per_s_median": round(img_s, 2) if img_s else None,
        "points": [points[s] for s in sorted(points)],
        "config": {k: config.get(k) for k in ("s0", "s1", "curriculum_steps", "learning_rate", "lr_warmup_steps",
                                               "lr_decay_ref_steps", "batch_size", "ema_decay", "dropout", "p_mean",
                                               "p_std", "network", "network_overrides", "seed")},
        "init": Path(config["init"]).name if config.get("init") else None,  # a folder name: no machine paths
    }


def collect(args):
    work = Path(args.work)
    rows = {}
    for run_dir in sorted(p for p in work.iterdir() if (p / "config.json").is_file()) if work.is_dir() else []:
        row = read_run(run_dir)
        name = run_dir.name
        row["variant"] = name
        row["what"] = {**VARIANTS, **COMBINATIONS}.get(name, (None, "not in VARIANTS"))[1]
        row["source"] = "run folder"
        rows[name] = row
    # Run folders do not always outlive the machine they trained on: a variant whose folder is gone keeps the
    # curve an earlier --collect wrote.
    if Path(args.json).is_file():
        for row in json.loads(Path(args.json).read_text()).get("variants", []):
            if row.get("variant") and row["variant"] not in rows:
                kept = "earlier JSON (its run folder was not on the machine that collected)"
                source = row.get("source", "run folder")
                rows[row["variant"]] = dict(row, source=kept if source == "run folder" else source)
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "versions": versions(),
        "protocol": {"preset": args.preset, "fid_num": args.fid_num, "reference": repo_relative(REPO / args.ref),
                     "eval_every_images": args.eval_every, "backend": args.backend, "workers": args.workers,
                     "judge_num": args.judge_num, "judge": "keras_ict.digit_judge (fid_refs/mnist-digit-judge.npz)",
                     "work": repo_relative(work)},
        "variants": list(rows.values()),
    }
    write_json(args.json, report)
    plot(report, args.png)
    print(table(report))
    return report


def table(report):
    judge_num = report["protocol"].get("judge_num") or 2000
    lines = ["| variant | what | images | img/s | FID-1step (last) | FID-2step (last) | best 2-step (at images) | "
             "judge FD 1-step / 2-step (last) |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for row in sorted(report["variants"], key=lambda r: _last(r, 2) if _last(r, 2) is not None else 1e9):
        best = min(((p.get(_metric(report, 2)), p["images"]) for p in row["points"] if p.get(_metric(report, 2)) is not None),
                   default=(None, None))
        fmt = lambda v: f"{v:.1f}" if v is not None else "-"  # noqa: E731
        lines.append(f"| {row['variant']} | {row['what']} | {row['images_seen']} | {fmt(row['img_per_s_median'])} | "
                     f"{fmt(_last(row, 1))} | {fmt(_last(row, 2))} | {fmt(best[0])} ({best[1]}) | "
                     f"{fmt(_last_judge(row, judge_num, 1))} / {fmt(_last_judge(row, judge_num, 2))} |")
    return "\n".join(lines)


def _metric(report, steps):
    num = report["protocol"]["fid_num"]
    return f"fid{num // 1000}k_{steps}step" if num % 1000 == 0 else f"fid{num}_{steps}step"


def _last(row, steps):
    metric = f"_{steps}step"
    values = [v for p in row["points"] for k, v in p.items() if k.startswith("fid") and k.endswith(metric)]
    return values[-1] if values else None


def _last_judge(row, num, steps):
    values = [p[judge_metric(num, "fd", steps)] for p in row["points"] if judge_metric(num, "fd", steps) in p]
    return values[-1] if values else None


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(13, 13))
    judge_num = report["protocol"].get("judge_num") or 2000
    for index, row in enumerate(report["variants"]):
        color = f"C{index % 10}"
        style = "-" if index < 10 else "--"
        for col, steps in enumerate((1, 2)):
            pts = [p for p in row["points"] if p.get(_metric(report, steps)) is not None]
            if pts:
                y = [p[_metric(report, steps)] for p in pts]
                axes[0, col].plot([p["images"] / 1000 for p in pts], y, style, color=color, marker="o",
                                  label=row["variant"])
                hours = [p["train_hours_at_median_speed"] for p in pts]
                if all(h is not None for h in hours):
                    axes[1, col].plot(hours, y, style, color=color, marker="o", label=row["variant"])
            judge = judge_metric(judge_num, "fd", steps)
            pts = [p for p in row["points"] if p.get(judge) is not None]
            if pts:
                axes[2, col].plot([p["images"] / 1000 for p in pts], [p[judge] for p in pts], style, color=color,
                                  marker=".", label=row["variant"])
            student = judge_metric(judge_num, "student_fd", 1)
            pts = [p for p in row["points"] if p.get(student) is not None]
            if steps == 1 and pts:  # the student itself (dotted): how far the EMA lags
                axes[2, col].plot([p["images"] / 1000 for p in pts], [p[student] for p in pts], ":", color=color,
                                  marker="x")
    for col, steps in enumerate((1, 2)):
        axes[0, col].set(xlabel="images seen (thousands)", ylabel=_metric(report, steps), title=f"{steps}-step")
        axes[1, col].set(xlabel="training hours at the run's median img/s", ylabel=_metric(report, steps))
        axes[2, col].set(xlabel="images seen (thousands)", ylabel=judge_metric(judge_num, "fd", steps) +
                         " (digit judge, not FID)" + ("; dotted: student" if steps == 1 else ""))
        for ax in axes[:, col]:
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
    axes[0, 1].legend(fontsize=7, ncol=2)
    machine = report["machine"]
    fig.suptitle(f"recipe study, preset {report['protocol']['preset']} ({machine['cpus']} CPUs, {report['protocol']['backend']})")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(Path(path).name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mnist", choices=list(PRESET_DATA))
    parser.add_argument("--variants", nargs="+", default=None, help=f"default: all of {list(VARIANTS)}")
    parser.add_argument("--images", type=int, default=64_000, help="training budget per variant, in images")
    parser.add_argument("--eval-every", type=int, default=32_000, help="FID every this many images")
    parser.add_argument("--fid-num", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--data", default=None, help="default: the preset's data under ../shared")
    parser.add_argument("--ref", default=None, help="FID statistics, relative to the repo (default: the preset's)")
    parser.add_argument("--work", default=None, help="run folders (default: ~/.cache/keras_ict/runs/recipe_study-PRESET[-seedN])")
    parser.add_argument("--json", default=None, help="default: benchmarks/results/recipe_study_PRESET[_seedN].json")
    parser.add_argument("--png", default=None, help="default: next to the JSON")
    parser.add_argument("--judge-num", type=int, default=None,
                        help="digit-judge samples per checkpoint (0: off; default 2000 on MNIST presets, else 0)")
    parser.add_argument("--judge-every", type=int, default=0,
                        help="score only checkpoints at multiples of this many images, and the last (0: every one)")
    parser.add_argument("--judge-only", action="store_true", help="train nothing; score unscored checkpoints")
    parser.add_argument("--score-run", help=argparse.SUPPRESS)  # one run folder, in the worker's subprocess
    parser.add_argument("--collect", action="store_true", help="train nothing; write JSON and PNG from the run folders")
    args = parser.parse_args()
    if args.judge_num is None:
        args.judge_num = 2000 if args.preset.startswith("mnist") else 0
    if args.judge_num and not args.preset.startswith("mnist"):
        parser.error(f"the digit judge scores MNIST models only; use --judge-num 0 with preset {args.preset}")
    if args.judge_every < 0:
        parser.error(f"--judge-every must be >= 0, got {args.judge_every}")
    if args.judge_num and args.judge_num < 2:
        parser.error(f"--judge-num must be 0 (off) or >= 2, got {args.judge_num}")
    if args.score_run:
        score_run(args.score_run, args.judge_num, args.judge_every)
        return

    names = args.variants or list(VARIANTS)
    unknown = [n for n in names if n not in {**VARIANTS, **COMBINATIONS}]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list({**VARIANTS, **COMBINATIONS})}")
    if args.images < 1 or args.eval_every < 1 or args.fid_num < 2 or args.workers < 1:
        parser.error("--images, --eval-every and --workers must be >= 1 and --fid-num >= 2")
    data, ref = PRESET_DATA[args.preset]
    args.data = args.data or data
    args.ref = args.ref or ref
    if not (REPO / args.ref).is_file():
        parser.error(f"FID reference statistics {args.ref} not found (make them with keras-ict fid-ref)")
    suffix = args.preset.replace("-", "_") + (f"_seed{args.seed}" if args.seed else "")
    args.work = args.work or str(Path.home() / ".cache" / "keras_ict" / "runs" / f"recipe_study-{args.preset}"
                                 f"{'-seed%d' % args.seed if args.seed else ''}")
    args.json = args.json or str(REPO / "benchmarks" / "results" / f"recipe_study_{suffix}.json")
    args.png = args.png or str(Path(args.json).with_suffix(".png"))

    if args.judge_only:
        if not args.judge_num:
            parser.error("--judge-only needs --judge-num >= 2")
        env = dict(os.environ, KERAS_BACKEND=args.backend, TF_CPP_MIN_LOG_LEVEL="2")
        work = Path(args.work)
        runs = sorted(p for p in work.iterdir() if (p / "config.json").is_file()) if work.is_dir() else []
        for run_dir in runs:
            judge_variant(run_dir, args, env, work / f"{run_dir.name}.log")
    elif not args.collect:
        from keras_ict.recipes import RECIPES

        preset_batch = RECIPES[args.preset]["batch_size"]
        with ThreadPoolExecutor(args.workers) as pool:
            codes = list(pool.map(lambda n: train_variant(n, args, preset_batch), names))
        failed = [n for n, c in zip(names, codes) if c != 0]
        if failed:
            print(f"failed: {failed} (see their logs under {args.work})", file=sys.stderr)
    collect(args)
    print(f"wrote {repo_relative(Path(args.json))} and {repo_relative(Path(args.png))}")


if __name__ == "__main__":
    main()
