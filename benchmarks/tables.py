"""Markdown tables for benchmarks/README.md from the JSON files the benchmark scripts wrote.

    python benchmarks/tables.py [RESULT.json ...]     (default: every train/torch-baseline/sample/ablation file in results/)

Train-step files (`train_throughput.py`, `torch_baseline.py`) are merged into one table per network and batch
size, with each row's images/s relative to the plain-PyTorch eager baseline of the same network and batch
(when one was measured); `sample_throughput.py` files give a sampling table, `ablation.py` files the FID
table of the ablation variants. Files whose name contains
"_at_" are earlier measurements kept for comparison and are skipped unless named explicitly.
"""

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(paths):
    train, sample, ablation = [], [], []
    for path in paths:
        report = json.loads(Path(path).read_text())
        rows = report.get("results", [])
        if rows and "overrides" in rows[0]:
            ablation.append(report)
        elif rows and "runtime" in rows[0]:
            sample.append((Path(path).name, report))
        elif rows and "step_s_median" in rows[0]:
            train.extend(dict(row, source=Path(path).name) for row in rows)
            for failure in report.get("failures", []):
                train.append(dict(failure, source=Path(path).name, failed=True))
    return train, sample, ablation


def train_table(rows):
    lines = ["| network | variant | batch | step s (min) | step s (median) | img/s (median) | vs plain torch | peak RSS MiB | first step s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    key = lambda r: (r.get("preset", ""), r.get("batch_size", 0))  # noqa: E731
    for preset, batch in sorted({key(r) for r in rows}):
        group = [r for r in rows if key(r) == (preset, batch)]
        base = next((r for r in group if r.get("variant") == "torch-plain (eager)"), None)
        for r in group:
            if r.get("failed"):
                lines.append(f"| {preset} | {r.get('variant', r.get('backend'))} | {batch} | fails: {r.get('reason', '')[:80]} | | | | | |")
                continue
            ratio = f"{r['img_per_s_median'] / base['img_per_s_median']:.2f}x" if base else ""
            lines.append(f"| {preset} | {r['variant']} | {batch} | {r['step_s_min']:.3f} | {r['step_s_median']:.3f} | "
                         f"{r['img_per_s_median']:.1f} | {ratio} | {r['peak_rss_mib']:.0f} | {r['first_step_s']:.1f} |")
    return "\n".join(lines)


def sample_table(name, report):
    batch = report["config"]["batch_size"]
    rows = report["results"]
    lines = [f"{name}: model {report['config'].get('model') or report['config'].get('preset')}, image shape {report['image_shape']}",
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
    if report.get("unfinished"):
        lines.append(f"\nnot finished yet: {', '.join(report['unfinished'])}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    files = args.files or sorted(
        p for pattern in ("train_throughput_*.json", "torch_baseline_*.json", "sample_throughput*.json")
        for p in RESULTS.glob(pattern) if "_at_" not in p.name
    )
    if not files:
        raise SystemExit(f"no result files given or found in {RESULTS}")
    train, sample, ablation = _load(files)
    if train:
        print(train_table(train), end="\n\n")
    for name, report in sample:
        print(sample_table(name, report), end="\n\n")
    for report in ablation:
        print(ablation_table(report), end="\n\n")


if __name__ == "__main__":
    main()
