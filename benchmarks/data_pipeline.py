"""Images/s of the two data pipelines (tf.data and NumPy) against a training step: does loading ever limit training?

    python benchmarks/data_pipeline.py                       # MNIST .npz, CIFAR-10 JPEG folder, a resize
    python benchmarks/data_pipeline.py --batches 50 --train-backends tensorflow

Each (source, pipeline) pair builds `keras_ict.data.load_dataset` exactly as `keras-ict train` does (repeat,
shuffle, the recipe's flips and padding) and times `--batches` batches after `--warmup` batches, on one
process. Beside them, the train step of the CPU presets' network at the same batch size, from
benchmarks/train_throughput.py (one subprocess per backend). The table gives images/s of each and the ratio
loading / training: above 1 the pipeline keeps up with training on its own core. Prints the table and writes
JSON (machine, versions, rows). Timings mean something only on an otherwise idle machine (each row records
the 1-minute load average).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # also when loaded by file path (tests)
from _common import repo_relative, versions, write_json  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"
# name: (source, load_dataset settings). The first two are what the zoo recipes read.
SOURCES = {
    "mnist .npz, pad 28->32, labels": (SHARED / "mnist.npz", dict(image_size=32, labels=True)),
    "cifar10 JPEG folder (tar), flip": (SHARED / "cifar10_jpeg.tar.gz", dict(image_size=32, flip=True)),
    "mnist .npz, resize area 28->16": (SHARED / "mnist.npz", dict(image_size=16, resize="area")),
}


def time_pipeline(source, settings, pipeline, batch_size, batches, warmup):
    from keras_ict.data import load_dataset

    start = time.perf_counter()
    ds = load_dataset(source, batch_size=batch_size, seed=0, pipeline=pipeline, **settings)
    iterator = iter(ds.as_numpy_iterator())
    for _ in range(warmup):
        next(iterator)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - start
    return {"images_per_s": batches * batch_size / seconds, "setup_and_warmup_s": first}


def train_step_rows(backends, batch_size, timeout):
    rows = []
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "train.json"
            cmd = [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--variants", backend,
                   "--preset", "ncsnpp_mnist_small", "--batch-size", str(batch_size), "--json", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
            if proc.returncode != 0 or not out.is_file():
                rows.append({"backend": backend, "error": proc.stderr[-500:]})
                continue
            result = json.loads(out.read_text())["results"][0]
            rows.append({"backend": backend, "images_per_s": result["img_per_s_median"],
                         "step_s": result["step_s_median"]})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32, help="the CPU presets' batch")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--pipelines", nargs="+", default=["tf", "numpy"], choices=["tf", "numpy"])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument("--train-backends", nargs="*", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--json", default="benchmarks/results/data_pipeline.json")
    args = parser.parse_args(argv)
    for name in args.sources:
        if not SOURCES[name][0].exists():
            parser.error(f"source {SOURCES[name][0]} of {name!r} is missing")

    rows = []
    for name in args.sources:
        source, settings = SOURCES[name]
        for pipeline in args.pipelines:
            load = os.getloadavg()[0]
            row = time_pipeline(source, settings, pipeline, args.batch_size, args.batches, args.warmup)
            rows.append(dict(source=name, path=repo_relative(source), pipeline=pipeline, load_avg_1min=load, **row))
    train = train_step_rows(args.train_backends, args.batch_size, args.timeout)
    fastest = max((t["images_per_s"] for t in train if "images_per_s" in t), default=None)

    print(f"| source | pipeline | images/s | / fastest train step ({fastest and round(fastest, 1)} img/s) |")
    print("| --- | --- | ---: | ---: |")
    for r in rows:
        ratio = f"{r['images_per_s'] / fastest:.0f}x" if fastest else "-"
        print(f"| {r['source']} | {r['pipeline']} | {r['images_per_s']:.0f} | {ratio} |")
    print()
    print("| train step (ncsnpp_mnist_small, batch %d) | images/s |" % args.batch_size)
    print("| --- | ---: |")
    for t in train:
        print(f"| {t['backend']} | {t.get('images_per_s', float('nan')):.1f} |" if "error" not in t
              else f"| {t['backend']} | fails: {t['error'][-80:]!r} |")
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "versions": versions(),
        "config": {"batch_size": args.batch_size, "batches": args.batches, "warmup": args.warmup},
        "pipelines": rows,
        "train_step": train,
    }
    print("wrote", write_json(REPO / args.json if not Path(args.json).is_absolute() else args.json, report))


if __name__ == "__main__":
    main()
