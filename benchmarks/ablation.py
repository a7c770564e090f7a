"""The paper's ablations at small scale: original CT vs iCT, and iCT with each change reverted, on MNIST.

    python benchmarks/ablation.py [--steps 3000] [--fid-num 10000] [--variants ict ct ...] [--backend tensorflow]
                                  [--reuse ict=runs/zoo/mnist] [--preset mnist|cifar10-small] [--seed 0]

Every variant trains one recipe (same network, data, batch, optimizer, seed and steps; `mnist` by default)
with `keras_ict.train` in this process (on --backend), so an interrupted run resumes when the script is started
again (across sessions), then `keras_ict.compute_fid` computes FID 1-step and 2-step with the same protocol
(seeds 0..fid_num-1, the committed reference statistics of the preset's data). Prints a table and writes JSON
with the compute used (wall time per variant). `--preset cifar10-small` runs the same ablation on CIFAR-10
(JPEG copy), and `--seed N` (the training seed: initial weights, data order, noise; FID seeds stay
0..fid_num-1) repeats it for run-to-run noise, each into its own work folder and JSON.

`--collect` runs nothing: it reports the variants that are already finished (final model and FID file)
and names the ones that are not, so the table can be read while the runs go on in the background. The JSON
is rewritten after every variant, so it always holds what has finished.

`--reuse VARIANT=RUN_DIR` takes an existing run instead of training one (the `mnist` zoo entry is the `ict`
variant at 3000 steps): the same `keras_ict.train` call is made on it, which refuses a run made with a
different config and does nothing for a finished one; its FID file is used if its protocol matches.
Run folders go to `~/.cache/keras_ict/runs/ablation[-PRESET][-seedN]` (`$KERAS_ICT_CACHE/runs/...`) unless
--work says otherwise: outside the checkout, so a clean checkout never holds them.

Variants (Song & Dhariwal 2024 Sec. 3-4 vs Song et al. 2023):
  ict                 iCT: student teacher, pseudo-Huber, lambda = 1/(s_{i+1} - s_i), lognormal indices, s0 10 / s1 1280
  ct                  original CT: EMA teacher (mu0 0.9), squared L2, lambda = 1, uniform indices, CT curriculum s0 2 / s1 150
  ict-ema-teacher     iCT with CT's EMA teacher
  ict-l2              iCT with squared L2 instead of pseudo-Huber
  ict-uniform-index   iCT with uniform instead of lognormal index sampling
  ict-old-curriculum  iCT with CT's curriculum (sqrt schedule, s0 2, s1 150)
"""

import argparse
import contextlib
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import versions, write_json  # noqa: E402
from tables import ablation_table  # noqa: E402

# Per preset: training data (relative to the repository root) and the FID reference statistics of that data.
PRESET_DATA = {
    "mnist": ("../shared/datasets/mnist.npz", "fid_refs/mnist-train-32px.npz"),
    "cifar10-small": ("../shared/datasets/cifar10_jpeg.tar.gz", "fid_refs/cifar10-jpeg-train.npz"),
}
# The recipe the committed ablations ran with (the CPU recipe before session 11's study: iCT's s1 1280, lr 2e-4,
# no warm-ups), kept so that the runs resume and the table reproduces; each variant changes it as it says.
ABLATION_RECIPE = {"s1": "1280", "learning_rate": "0.0002", "lr_warmup_steps": "0", "ema_warmup": "false"}
CT_CURRICULUM = {"curriculum": "ct", "s0": "2", "s1": "150"}
VARIANTS = {
    "ict": {},
    "ct": dict(CT_CURRICULUM, teacher="ema", distance="l2", weighting="uniform", index_distribution="uniform"),
    "ict-ema-teacher": {"teacher": "ema"},
    "ict-l2": {"distance": "l2"},
    "ict-uniform-index": {"index_distribution": "uniform"},
    "ict-old-curriculum": CT_CURRICULUM,
}


def logged(log, what, fn):
    """fn() with its printed output appended to `log` (after a line saying `what`); returns (result, seconds)."""
    with open(log, "a") as out, contextlib.redirect_stdout(out):
        print(f"$ {what}", flush=True)
        start = time.monotonic()
        result = fn()
    return result, time.monotonic() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--fid-num", type=int, default=10_000)
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--preset", default="mnist", choices=list(PRESET_DATA))
    parser.add_argument("--seed", type=int, default=0, help="training seed of every variant")
    parser.add_argument("--data", default=None, help="relative to the repository root (default: the preset's data)")
    parser.add_argument("--reuse", nargs="*", default=[], metavar="VARIANT=RUN_DIR")
    parser.add_argument("--collect", action="store_true", help="report finished variants only; train and evaluate nothing")
    parser.add_argument("--ref", default=None, help="FID reference statistics (default: the preset's)")
    parser.add_argument("--work", default=None, help="run folders (default: ~/.cache/keras_ict/runs/ablation[-PRESET][-seedN])")
    parser.add_argument("--json", default=None, help="default: benchmarks/results/ablation[_PRESET][_seedN].json")
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = args.backend  # before anything imports Keras
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_ict.evaluation import compute_fid
    from keras_ict.files import cache_root
    from keras_ict.training import train
    from keras_ict.zoo import from_preset

    data, ref = PRESET_DATA[args.preset]
    # mnist at seed 0 keeps the names of the first runs.
    suffix = ("" if args.preset == "mnist" else f"-{args.preset}") + (f"-seed{args.seed}" if args.seed else "")
    args.data = args.data or data
    args.ref = args.ref or str(REPO / ref)
    args.work = args.work or str(cache_root() / "runs" / f"ablation{suffix}")
    args.json = args.json or str(REPO / "benchmarks" / "results" / f"ablation{suffix.replace('-', '_')}.json")
    if not Path(args.ref).is_file():
        raise SystemExit(f"reference statistics {args.ref} not found; make them with keras-ict fid-ref (see README)")

    reuse = {}
    for item in args.reuse:
        name, sep, folder = item.partition("=")
        folder = (REPO / Path(folder).expanduser()) if sep else None
        if not sep or name not in VARIANTS or not (folder / "config.json").is_file():
            raise SystemExit(f"--reuse {item!r}: expected VARIANT=RUN_DIR with a variant in {list(VARIANTS)} and a run folder")
        reuse[name] = folder
    ref_sha = hashlib.sha256(Path(args.ref).read_bytes()).hexdigest()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.variants:
        run_dir = reuse.get(name, work / name)
        log = work / f"{name}.log"
        fid_json = run_dir / (f"fid{args.fid_num // 1000}k.json" if args.fid_num % 1000 == 0 else f"fid{args.fid_num}.json")
        if args.collect and not (fid_json.is_file() and (run_dir / "final" / "metadata.json").is_file()):
            continue
        overrides = dict(ABLATION_RECIPE, **VARIANTS[name], **({"seed": str(args.seed)} if args.seed else {}))
        train_s = 0.0
        if not args.collect:
            data_path = str(REPO / args.data) if not Path(args.data).is_absolute() else args.data
            _, train_s = logged(log, f"keras_ict.train({args.preset!r}, {str(run_dir)!r}, data={data_path!r}, "
                                f"steps={args.steps}, overrides={overrides!r})",
                                lambda: train(args.preset, run_dir, data=data_path, steps=args.steps, overrides=overrides))
        fid_s = 0.0
        if fid_json.is_file():
            old = json.loads(fid_json.read_text())["results"]
            if ({(r["num"], r["steps"], r["reference"]["ref_sha256"]) for r in old}
                    != {(args.fid_num, 1, ref_sha), (args.fid_num, 2, ref_sha)}):
                raise SystemExit(f"{fid_json} was made with another protocol (count, steps or reference); move it away")
        else:
            def fid_both():
                model = from_preset(run_dir / "final")
                results = [dict(compute_fid(model, args.ref, num=args.fid_num, steps=steps), model=str(run_dir / "final"))
                           for steps in (1, 2)]
                write_json(fid_json, {"results": results})

            _, fid_s = logged(log, f"compute_fid({str(run_dir / 'final')!r}, {args.ref!r}, num={args.fid_num}, steps 1 and 2)",
                              fid_both)
        results = json.loads(fid_json.read_text())["results"]
        meta = json.loads((run_dir / "final" / "metadata.json").read_text())
        if args.collect:
            _check_finished_run(name, run_dir, meta, args.steps, args.preset, args.seed)
        row = {"variant": name, "overrides": VARIANTS[name], "steps": meta["steps"], "images_seen": meta["images_seen"],
               "train_wall_s": meta["wall_time_s"], "fid_wall_s": round(sum(r["wall_s"] for r in results), 1),
               "this_invocation_s": round(train_s + fid_s, 1), "backend": meta["backend"]}
        for r in results:
            row[r["metric"]] = r["fid"]
        rows.append(row)
        print(f"{name}: " + ", ".join(f"{r['metric']} {r['fid']:.2f}" for r in results), flush=True)
        _write_report(args, rows)

    report = _write_report(args, rows)
    print(ablation_table(report))
    print(f"wrote {args.json}")


def _check_finished_run(name, run_dir, meta, steps, preset, seed):
    # --collect skips `keras_ict.train`, which is what normally refuses a folder trained with another recipe.
    config = json.loads((run_dir / "config.json").read_text())
    wrong = {k: config.get(k) for k, v in VARIANTS[name].items() if str(config.get(k)) != v}
    if config.get("preset") != preset or config.get("seed", 0) != seed or meta["steps"] != steps or wrong:
        raise SystemExit(f"{run_dir} is not the {name!r} variant at {steps} steps, seed {seed} (preset {config.get('preset')}, "
                         f"seed {config.get('seed', 0)}, "
                         f"steps {meta['steps']}, differing settings {wrong}); move it away")


def _write_report(args, rows):
    done = {r["variant"] for r in rows}
    unfinished = [v for v in args.variants if v not in done]
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "versions": versions(),
        "config": {k: v for k, v in vars(args).items()},
        "results": rows,
        "unfinished": unfinished,
    }
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
