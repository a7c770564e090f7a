"""FID against the EMA's length, from one run's weight snapshots (keras_ict.posthoc_ema).

    python benchmarks/posthoc_ema.py --run ~/.cache/keras_ict/runs/zoo/mnist-long-ext \
        --decays 0.999,0.9995,0.9998 --ref fid_refs/mnist-train-32px.npz [--num 2000] [--steps 1,2] \
        [--upto-step S] [--json benchmarks/results/posthoc_ema_RUN.json] [--save-decay D --save-to FOLDER]

The run must have trained with `--set snapshot_every=M`. Each decay b gives the EMA that the run would have had
had it switched to b at its first snapshot (it starts from the run's own EMA there), built from the snapshots and
scored with the zoo's protocol at fixed seeds. The JSON holds one row per decay (EMA length 1 / (1 - b) steps,
FID 1- and 2-step, the coefficient left on the starting EMA) and the measured error of rebuilding the run's own
EMA from the same snapshots; the PNG shows FID against the EMA length. Rows already in the JSON for the same
snapshots, reference and count are kept. `--save-decay D --save-to FOLDER` also writes that EMA as a model folder
(config.json, model.weights.h5, metadata.json: the run's final/ record plus `posthoc_ema`) that
`keras_ict.from_preset`, `keras-ict fid`, `--init` and `scripts/zoo/publish.py --model` take; the run's final/
must be at the last snapshot used.
"""

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import parse_number_list, repo_relative, save_figure, versions, write_json  # noqa: E402


def parse_decays(text):
    values = parse_number_list(text, "--decays")
    if any(not 0 < v < 1 for v in values):
        raise ValueError(f"--decays must list values in (0, 1), got {text!r}")
    return values


def table(report):
    lines = ["| EMA decay | EMA length (steps) | weight on the starting EMA | " +
             " | ".join(report["metrics"]) + " |", "| ---: | ---: | ---: |" + " ---: |" * len(report["metrics"])]
    for row in sorted(report["rows"], key=lambda r: r["decay"]):
        own = " (the run's)" if row["decay"] == report["run_ema_decay"] else ""
        lines.append(f"| {row['decay']:g}{own} | {row['ema_length_steps']:.0f} | {row['start_coefficient']:.3f} | " +
                     " | ".join(f"{row[m]:.2f}" if m in row else "-" for m in report["metrics"]) + " |")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(report["rows"], key=lambda r: r["ema_length_steps"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for metric in report["metrics"]:
        pts = [(r["ema_length_steps"], r[metric]) for r in rows if metric in r]
        ax.plot(*zip(*pts), "o-", label=metric)
    ax.axvline(1 / (1 - report["run_ema_decay"]), color="grey", ls=":", label="the run's EMA")
    ax.set(xscale="log", xlabel="EMA length 1 / (1 - decay), steps", ylabel="FID",
           title=f"{report['run']}: steps {report['snapshots']['first']}-{report['snapshots']['last']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def posthoc_steps(run_dir, upto):
    from keras_ict import posthoc_ema

    return [s for s in posthoc_ema.snapshot_steps(run_dir) if upto is None or s <= upto]


def save_model(run_dir, model, decay, upto, folder):
    """The post-hoc EMA as a model folder, through a temp folder and a rename."""
    import shutil
    import tempfile

    from keras_ict.files import publish_dir, read_json, sha256_file, write_json
    from keras_ict.recipes import model_config

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    config = model_config(read_json(Path(run_dir) / "config.json"))
    first = posthoc_steps(run_dir, upto)[0]
    # The weights are this EMA, not the run's ema_decay: the card and metadata say so.
    config["training"]["posthoc_ema"] = {"decay": decay, "from_step": first, "to_step": upto}
    run_meta = read_json(Path(run_dir) / "final" / "metadata.json")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_weights(tmp / "model.weights.h5")
        write_json(tmp / "config.json", config)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        meta = {k: v for k, v in run_meta.items() if k != "files"}
        meta["posthoc_ema"] = dict(config["training"]["posthoc_ema"], command="python " + " ".join(sys.argv))
        write_json(tmp / "metadata.json", dict(meta, files=files))
        publish_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run folder trained with snapshot_every > 0")
    parser.add_argument("--decays", required=True, help="comma-separated EMA decays, e.g. 0.999,0.9995,0.9998")
    parser.add_argument("--ref", required=True, help="FID reference statistics (.npz)")
    parser.add_argument("--num", type=int, default=2000, help="generated images per FID (seeds 0..num-1)")
    parser.add_argument("--steps", default="1,2", help="1, 2 or 1,2: one- and/or two-step FID")
    parser.add_argument("--upto-step", type=int, default=None, help="use the snapshots up to this step (default: all)")
    parser.add_argument("--json", default=None, help="default: benchmarks/results/posthoc_ema_RUNNAME.json")
    parser.add_argument("--png", default=None, help="default: next to the JSON")
    parser.add_argument("--save-decay", type=float, default=None, help="also write this decay's EMA as a model folder")
    parser.add_argument("--save-to", default=None, help="the model folder --save-decay writes")
    args = parser.parse_args(argv)
    try:
        decays = parse_decays(args.decays)
    except ValueError as e:
        parser.error(str(e))
    sampler_steps = sorted({int(s) for s in args.steps.split(",") if s.strip()}) if args.steps else []
    if not sampler_steps or any(s not in (1, 2) for s in sampler_steps):
        parser.error(f"--steps must list 1 and/or 2, got {args.steps!r}")
    if args.num < 2:
        parser.error(f"--num must be >= 2 (FID needs a covariance), got {args.num}")
    if not Path(args.ref).is_file():
        parser.error(f"--ref {args.ref}: no such statistics file")
    if (args.save_decay is None) != (args.save_to is None):
        parser.error("--save-decay and --save-to go together")
    if args.save_decay is not None and not 0 < args.save_decay < 1:
        parser.error(f"--save-decay must be in (0, 1), got {args.save_decay}")

    from keras_ict import posthoc_ema
    from keras_ict.evaluation import compute_fid, metric_name
    from keras_ict.files import read_json, sha256_file

    run_dir = Path(args.run).expanduser()
    if not (run_dir / "config.json").is_file():
        parser.error(f"--run {args.run}: not a run folder (no config.json)")
    steps = posthoc_steps(run_dir, args.upto_step)
    if len(steps) < 2:
        parser.error(f"--run {args.run}: {len(steps)} snapshot(s) up to the chosen step; train with "
                     "--set snapshot_every=M (two or more are needed)")
    if args.save_decay is not None:
        final_meta = run_dir / "final" / "metadata.json"
        final_step = read_json(final_meta)["steps"] if final_meta.is_file() else None
        if final_step != steps[-1]:
            parser.error(f"--save-decay: the run's final/ is at step {final_step}, the last snapshot used at {steps[-1]}; "
                         f"a saved model carries the run's record at its step: finish the run there (resume it with "
                         f"--set total_steps={steps[-1]}) or pass --upto-step {final_step}")
    run_decay = float(read_json(run_dir / "config.json")["ema_decay"])
    json_path = Path(args.json or HERE / "results" / f"posthoc_ema_{run_dir.name}.json")
    key = {"snapshots": [steps[0], steps[-1], len(steps)], "ref_sha256": sha256_file(args.ref), "num": args.num}
    metrics = [metric_name(args.num, s) for s in sampler_steps]
    rows = []
    if json_path.is_file():
        import json

        old = json.loads(json_path.read_text())
        rows = old.get("rows", []) if old.get("key") == key else []
    report = {
        "run": run_dir.name,
        "run_ema_decay": run_decay,
        "snapshots": {"first": steps[0], "last": steps[-1], "count": len(steps),
                      "spacing_steps": sorted({b - a for a, b in zip(steps, steps[1:])})},
        "reconstruction_error_run_decay": posthoc_ema.reconstruction_error(run_dir, run_decay, steps[-1]),
        "key": key,
        "metrics": metrics,
        "protocol": {"seeds": f"0-{args.num - 1}", "ref": repo_relative(args.ref),
                     "command": "python benchmarks/posthoc_ema.py " + " ".join(sys.argv[1:] if argv is None else argv)},
        "versions": versions(),
        "rows": rows,
    }
    print(f"rebuilding the run's own EMA ({run_decay:g}) from the snapshots: relative error "
          f"{report['reconstruction_error_run_decay']:.2e}", flush=True)
    for decay in decays:
        row = next((r for r in report["rows"] if r["decay"] == decay), None)
        if row is not None and all(m in row for m in metrics):
            continue
        model = posthoc_ema.posthoc_model(run_dir, decay, steps[-1])
        start_coefficient, _ = posthoc_ema.ema_coefficients(steps, decay)
        row = row or {"decay": decay, "ema_length_steps": round(1 / (1 - decay), 1),
                      "start_coefficient": round(start_coefficient, 4)}
        for sampler, metric in zip(sampler_steps, metrics):
            if metric in row:
                continue
            start = time.monotonic()
            result = compute_fid(model, args.ref, num=args.num, steps=sampler, progress=False)
            row[metric] = round(result["fid"], 4)
            row[f"{metric}_wall_s"] = round(time.monotonic() - start, 1)
            print(f"decay {decay:g}: {metric} {result['fid']:.2f}", flush=True)
            report["rows"] = sorted([r for r in report["rows"] if r["decay"] != decay] + [row], key=lambda r: r["decay"])
            write_json(json_path, report)  # after every FID: an interrupted call keeps what it scored
    write_json(json_path, report)
    plot(report, Path(args.png or json_path.with_suffix(".png")))
    print(table(report))
    if args.save_decay is not None:
        save_model(run_dir, posthoc_ema.posthoc_model(run_dir, args.save_decay, steps[-1]), args.save_decay, steps[-1],
                   args.save_to)
        print(f"wrote the EMA {args.save_decay:g} to {args.save_to}")
    print(f"wrote {repo_relative(json_path)}")


if __name__ == "__main__":
    main()
