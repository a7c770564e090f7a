"""Markdown tables for benchmarks/README.md from the JSON files the benchmark scripts wrote.

    python benchmarks/tables.py [RESULT.json ...]     (default: every train/torch-baseline/sample/ablation file in results/)

Train-step files (`train_throughput.py`, `torch_baseline.py`) are merged into one table per network and batch
size, with each row's images/s relative to the plain-PyTorch eager baseline of the same network and batch
(when one was measured); `sample_throughput.py` files give a sampling table, `ablation.py` files the FID
table of the ablation variants, `model_flops.py` the FLOPs table and (from results/model_flops.json when no
FLOPs file is named) the train table's TFLOP/s and, with --peak-tflops, MFU columns. Files whose name contains
"_at_" are earlier measurements kept for comparison and are skipped unless named explicitly.
"""

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(paths):
    train, sample, ablation, flops = [], [], [], []
    for path in paths:
        report = json.loads(Path(path).read_text())
        rows = report.get("results", [])
        if rows and "train_step_flops_per_image" in rows[0]:
            flops.append(report)
        elif rows and "overrides" in rows[0]:
            ablation.append(report)
        elif rows and "runtime" in rows[0]:
            sample.append((Path(path).name, report))
        elif rows and "step_s_median" in rows[0]:
            train.extend(dict(row, source=Path(path).name) for row in rows)
            for failure in report.get("failures", []):
                train.append(dict(failure, source=Path(path).name, failed=True))
    return train, sample, ablation, flops


PAPER_RUN_IMAGES = 400_000 * 1024  # the paper's CIFAR-10 run: 400k steps at batch 1024


def train_table(rows, flops=None, peak_tflops=None):
    """One row per measurement; with `flops` ({network: train-step FLOPs per image}, model_flops.py) the achieved
    TFLOP/s, with `peak_tflops` also model FLOPs utilisation; NCSN++ CIFAR-10 rows get the hours the paper's
    400k x 1024 run would take at that speed."""
    flops = flops or {}
    extra = " TFLOP/s |" + (" MFU |" if peak_tflops else "") + " h for 400k x 1024 |"
    lines = ["| network | variant | batch | step s (min) | step s (median) | img/s (median) | vs plain torch |"
             " peak RSS MiB | first step s |" + extra,
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * extra.count("|")]
    key = lambda r: (r.get("device_name") or "", r.get("preset", ""), r.get("batch_size", 0))  # noqa: E731
    for device, preset, batch in sorted({key(r) for r in rows}):
        group = [r for r in rows if key(r) == (device, preset, batch)]
        base = next((r for r in group if r.get("variant") == "torch-plain (eager)"
                     and r.get("dtype_policy", "float32") == "float32"), None)
        for r in group:
            if r.get("failed"):
                lines.append(f"| {preset} | {_label(r)} | {batch} | fails: {r.get('error', r.get('reason', ''))[:80]} |"
                             + " |" * (5 + extra.count("|")))
                continue
            ratio = f"{r['img_per_s_median'] / base['img_per_s_median']:.2f}x" if base else ""
            achieved = flops[preset] * r["img_per_s_median"] / 1e12 if preset in flops else None
            cells = [f"{achieved:.3f}" if achieved is not None else ""]
            if peak_tflops:
                cells.append(f"{100 * achieved / peak_tflops:.1f}%" if achieved is not None else "")
            cells.append(f"{PAPER_RUN_IMAGES / r['img_per_s_median'] / 3600:,.0f}" if preset == "ncsnpp_cifar10" else "")
            lines.append(f"| {preset} | {_label(r)} | {batch} | {r['step_s_min']:.3f} | {r['step_s_median']:.3f} | "
                         f"{r['img_per_s_median']:.1f} | {ratio} | {r['peak_rss_mib']:.0f} | {r['first_step_s']:.1f} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def _label(r):
    """The row's variant, with its precision when not float32 and its GPU when it ran on one."""
    label = r.get("variant", r.get("backend", ""))
    if r.get("dtype_policy", "float32") != "float32":
        label += f" {r['dtype_policy']}"
    if r.get("device_name"):
        label += f" @ {r['device_name']}"
    return label


def flops_table(report):
    lines = ["| network | params | forward GFLOP/image | train step GFLOP/image |", "| --- | ---: | ---: | ---: |"]
    for r in report["results"]:
        lines.append(f"| {r['network']} | {r['params']:,} | {r['forward_flops_per_image'] / 1e9:.3f} | "
                     f"{r['train_step_flops_per_image'] / 1e9:.3f} |")
    return "\n".join(lines)


def sample_table(name, report):
    batch = report["config"]["batch_size"]
    rows = report["results"]
    lines = [f"{name}: model {report['config'].get('model') or report['config'].get('preset')}, "
             f"image shape {report['image_shape']}",
             "", f"| runtime | steps | batch {batch} img/s | batch 1 latency ms |", "| --- | ---: | ---: | ---: |"]
    for runtime in dict.fromkeys(r["runtime"] for r in rows):
        for steps in (1, 2):
            big = next(r for r in rows if r["runtime"] == runtime and r["steps"] == steps and r["batch"] == batch)
            one = next(r for r in rows if r["runtime"] == runtime and r["steps"] == steps and r["batch"] == 1)
            lines.append(f"| {runtime} | {steps} | {big['img_per_s']:.1f} | {one['latency_ms']:.1f} |")
    return "\n".join(lines)


def ablation_table(report):
    """FID per ablation variant, with the change from `ict` (positive = worse than iCT) and the compute used."""
    rows = report["results"]
    metrics = sorted({k for r in rows for k in r if k.startswith("fid") and k.endswith("step")}, key=lambda m: (len(m), m))
    base = next((r for r in rows if r["variant"] == "ict"), None)
    head = "| variant | reverted / changed | " + " | ".join(f"{m} | vs ict" for m in metrics)
    lines = [head + " | steps | images | train min | FID min |",
             "| --- | --- |" + " ---: | ---: |" * len(metrics) + " ---: | ---: | ---: | ---: |"]
    for r in rows:
        changes = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "(none: iCT)"
        cells = []
        for m in metrics:
            delta = f"{r[m] - base[m]:+.2f}" if base and r is not base and m in base else ""
            cells.append(f"{r[m]:.2f} | {delta}")
        lines.append(f"| {r['variant']} | {changes} | " + " | ".join(cells) +
                     f" | {r['steps']} | {r['images_seen']} | {r['train_wall_s'] / 60:.0f} | {r.get('fid_wall_s', 0) / 60:.0f} |")
    train_min = sum(r["train_wall_s"] for r in rows) / 60
    fid_min = sum(r.get("fid_wall_s", 0) for r in rows) / 60
    machine = report.get("machine", {})
    lines.append(f"\ncompute, the variants above: {train_min + fid_min:.0f} min wall (train {train_min:.0f}, FID {fid_min:.0f}) "
                 f"on {machine.get('cpus', '?')} CPUs ({machine.get('processor', '?')}), {rows[0]['backend'] if rows else '?'}")
    if report.get("unfinished"):
        lines.append(f"not finished yet: {', '.join(report['unfinished'])}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak TFLOP/s at the measured precision: adds an MFU column")
    args = parser.parse_args()
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        parser.error("--peak-tflops must be positive")
    files = args.files or sorted(
        p for pattern in ("train_throughput_*.json", "torch_baseline_*.json", "sample_throughput*.json", "ablation*.json",
                          "model_flops*.json")
        for p in RESULTS.glob(pattern) if "_at_" not in p.name
    )
    if not files:
        raise SystemExit(f"no result files given or found in {RESULTS}")
    train, sample, ablation, flops = _load(files)
    for report in flops:
        print(flops_table(report), end="\n\n")
    if not flops and train and (RESULTS / "model_flops.json").is_file():  # for the TFLOP/s column only
        flops = [json.loads((RESULTS / "model_flops.json").read_text())]
    flops_per_image = {r["network"]: r["train_step_flops_per_image"] for report in flops for r in report["results"]}
    if train:
        print(train_table(train, flops_per_image, args.peak_tflops), end="\n\n")
    for name, report in sample:
        print(sample_table(name, report), end="\n\n")
    for report in ablation:
        print(ablation_table(report), end="\n\n")


if __name__ == "__main__":
    main()
