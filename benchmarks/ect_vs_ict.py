"""iCT from scratch against EDM diffusion pre-training + ECT consistency tuning on MNIST, at equal CPU time.

    python benchmarks/ect_vs_ict.py                    # train both arms (resumable), score, write JSON + PNG
    python benchmarks/ect_vs_ict.py --workers 2        # the two arms side by side, one thread each
    python benchmarks/ect_vs_ict.py --collect          # train nothing: JSON + PNG from the run folders (and the
                                                       # flags they were trained with, training_flags.json)

Arms (recipes of keras_ict.recipes, run with `keras-ict train` in their own folders under --work):
  ict       `mnist` for --ict-steps steps (the CPU recipe of issue 16)
  edm+ect   `mnist-edm` for --edm-steps steps, then `mnist-ect --init <that run>` for --ect-steps steps
Every kept checkpoint of a consistency model is scored with the digit judge (1- and 2-step samples of the EMA,
recipe_study.score_run); the curve's time axis is the training wall time, the ECT arm's including its diffusion
stage. `--final-fid N` adds FID-N 1- and 2-step of each arm's final model against the MNIST train statistics (the
zoo's protocol with N = 10000). The default step counts give the arms about equal CPU time on a 2-core box;
the JSON says what each arm actually took.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from _common import repo_relative, versions, write_json  # noqa: E402

DATA = REPO.parent / "shared" / "datasets" / "mnist.npz"
REF = "fid_refs/mnist-train-32px.npz"
KEEP_ALL = 100_000


def arm_stages(args):
    """arm -> [(stage name, recipe, steps, extra flags)] in the order they train."""
    edm_run = Path(args.work) / "edm+ect" / "edm"
    return {
        "ict": [("ict", "mnist", args.ict_steps, [])],
        "edm+ect": [("edm", "mnist-edm", args.edm_steps, []),
                    ("ect", "mnist-ect", args.ect_steps, ["--init", str(edm_run)])],
    }


def _run(command, log, env):
    with open(log, "a") as out:
        out.write(f"$ {' '.join(str(c) for c in command)}\n")
        out.flush()
        return subprocess.run([str(c) for c in command], stdout=out, stderr=subprocess.STDOUT, env=env,
                              cwd=REPO).returncode


def train_arm(arm, args):
    env = dict(os.environ, KERAS_BACKEND=args.backend, TF_CPP_MIN_LOG_LEVEL="2")
    if args.workers > 1:
        env.update(OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    folder = Path(args.work) / arm
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "train.log"
    for stage, recipe, steps, extra in arm_stages(args)[arm]:
        run_dir = folder / stage
        command = [sys.executable, "-m", "keras_ict", "train", "--preset", recipe, "--data", args.data,
                   "--steps", steps, "--out", run_dir, "--seed", args.seed, "--set", f"checkpoint_every={args.every}",
                   "--set", f"keep_checkpoints={KEEP_ALL}", *extra]
        command += [a for field in args.set for a in ("--set", field)]
        code = _run(command, log, env)
        print(f"{arm}/{stage}: train exit {code}", flush=True)
        if code:
            return code
        if recipe != "mnist-edm" and args.judge_num:  # the judge scores consistency models
            code = _run([sys.executable, HERE / "recipe_study.py", "--score-run", run_dir, "--judge-num",
                         args.judge_num, "--preset", "mnist"], log, env)
            if code:
                return code
    if args.final_fid:
        final = folder / arm_stages(args)[arm][-1][0] / "final"
        out = folder / f"fid{args.final_fid}.json"
        if not out.is_file():
            return _run([sys.executable, "-m", "keras_ict", "fid", "--model", final, "--ref", REPO / args.ref, "--num",
                         args.final_fid, "--steps", "1,2", "--out", out], log, env)
    return 0


def read_arm(arm, args):
    import recipe_study

    stages, wall_before, points, rows = arm_stages(args)[arm], 0.0, [], []
    for stage, recipe, _, _ in stages:
        run_dir = Path(args.work) / arm / stage
        if not (run_dir / "config.json").is_file():
            break
        row = recipe_study.read_run(run_dir)
        rows.append({"stage": stage, "recipe": recipe, "steps": row["steps"], "images_seen": row["images_seen"],
                     "wall_s": row["wall_s"], "img_per_s_median": row["img_per_s_median"]})
        # The diffusion model on its own (EDM's Heun sampler), where scripts/zoo/mnist_ect.sh measured it.
        for fid_json in sorted(run_dir.glob("fid*_heun*.json")):
            rows[-1].setdefault("fid_heun", {}).update(
                {r["metric"]: round(r["fid"], 2) for r in json.loads(fid_json.read_text())["results"]})
        for point in row["points"]:
            points.append(dict(point, stage=stage, hours=round((wall_before + (point["wall_s"] or 0.0)) / 3600, 4)))
        wall_before += row["wall_s"]
    fid_path = Path(args.work) / arm / f"fid{args.final_fid or 10000}.json"
    fids = {}
    if fid_path.is_file():
        fids = {r["metric"]: round(r["fid"], 2) for r in json.loads(fid_path.read_text())["results"]}
    return {"arm": arm, "stages": rows, "wall_s": round(wall_before, 1), "points": points, "final_fid": fids}


# The flags a training run was made with; --collect reads them back from the work folder, so the JSON describes the
# runs it reads, whatever flags --collect itself was given.
TRAINING_FLAGS = ("backend", "set", "workers", "seed", "judge_num", "ict_steps", "edm_steps", "ect_steps", "every",
                  "final_fid")


def _flags_path(args):
    return Path(args.work) / "training_flags.json"


def collect(args):
    if _flags_path(args).is_file():
        for name, value in json.loads(_flags_path(args).read_text()).items():
            setattr(args, name, value)
    arms = [read_arm(arm, args) for arm in arm_stages(args)]
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "versions": versions(),
        "protocol": {"backend": args.backend, "set": args.set,
                     "workers": args.workers, "seed": args.seed, "judge_num": args.judge_num,
                     "reference": args.ref, "steps": {"ict": args.ict_steps, "edm": args.edm_steps,
                                                      "ect": args.ect_steps}, "work": repo_relative(Path(args.work))},
        "arms": arms,
    }
    write_json(args.json, report)
    plot(report, args.png)
    print(table(report))
    return report


def _judge(point, num, steps):
    import recipe_study

    return point.get(recipe_study.judge_metric(num, "fd", steps))


def table(report):
    num = report["protocol"]["judge_num"] or 1000
    lines = ["| arm | stages (steps, wall s) | total wall h | judge FD 1-step / 2-step (last) | final FID 1-step / 2-step |",
             "| --- | --- | ---: | ---: | ---: |"]
    for arm in report["arms"]:
        stages = ", ".join(f"{s['stage']} {s['steps']} ({s['wall_s']:.0f})" for s in arm["stages"]) or "-"
        last = arm["points"][-1] if arm["points"] else {}
        fmt = lambda v: f"{v:.1f}" if v is not None else "-"  # noqa: E731
        fid = arm["final_fid"]
        lines.append(f"| {arm['arm']} | {stages} | {arm['wall_s'] / 3600:.2f} | {fmt(_judge(last, num, 1))} / "
                     f"{fmt(_judge(last, num, 2))} | {fmt(next((v for k, v in fid.items() if k.endswith('1step')), None))} / "
                     f"{fmt(next((v for k, v in fid.items() if k.endswith('2step')), None))} |")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num = report["protocol"]["judge_num"] or 1000
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm in report["arms"]:
        for steps, style in ((1, "-"), (2, "--")):
            pts = [(p["hours"], _judge(p, num, steps)) for p in arm["points"] if _judge(p, num, steps) is not None]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", label=f"{arm['arm']} {steps}-step")
        for stage in arm["stages"][:-1]:  # where the ECT arm's tuning starts
            ax.axvline(stage["wall_s"] / 3600, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("training wall time (hours, the ECT arm including its diffusion stage)")
    ax.set_ylabel(f"digit-judge distance ({num} samples, lower is better)")
    ax.set_yscale("log")
    ax.set_title("MNIST: iCT from scratch vs EDM + ECT at equal CPU time")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ict-steps", type=int, default=2500)
    parser.add_argument("--edm-steps", type=int, default=1500)
    parser.add_argument("--ect-steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=250, help="checkpoint (and judge) every this many steps")
    parser.add_argument("--judge-num", type=int, default=1000)
    parser.add_argument("--final-fid", type=int, default=0, help="FID of each final model with this many samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--ref", default=REF)
    parser.add_argument("--arms", nargs="+", default=["ict", "edm+ect"], choices=["ict", "edm+ect"])
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "keras_ict" / "runs" / "ect_vs_ict"))
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "ect_vs_ict_mnist.json"))
    parser.add_argument("--png", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a config field for every stage's `keras-ict train` (e.g. a smaller network for a smoke test)")
    parser.add_argument("--collect", action="store_true", help="train nothing; write JSON and PNG from the run folders")
    args = parser.parse_args()
    for name in ("ict_steps", "edm_steps", "ect_steps", "every", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.judge_num and args.judge_num < 2 or args.final_fid < 0:
        parser.error("--judge-num must be 0 or >= 2, --final-fid >= 0")
    if not args.collect and not Path(args.data).is_file():
        parser.error(f"{args.data} not found")
    args.png = args.png or str(Path(args.json).with_suffix(".png"))
    if not args.collect:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        write_json(_flags_path(args), {name: getattr(args, name) for name in TRAINING_FLAGS})
        start = time.monotonic()
        with ThreadPoolExecutor(args.workers) as pool:
            codes = dict(zip(args.arms, pool.map(lambda a: train_arm(a, args), args.arms)))
        print(f"trained {codes} in {time.monotonic() - start:.0f} s", flush=True)
        if any(codes.values()):
            print(f"failed arms: {[a for a, c in codes.items() if c]} (logs under {args.work})", file=sys.stderr)
    collect(args)
    print(f"wrote {repo_relative(Path(args.json))} and {repo_relative(Path(args.png))}")


if __name__ == "__main__":
    main()
