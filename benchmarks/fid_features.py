"""FID feature extraction: parity with the TorchScript reference and images/s, per backend.

    python benchmarks/fid_features.py [--batch-size 16] [--batches 3] [--backends tensorflow jax torch]

Each backend runs in a subprocess; the TorchScript module (../shared/fid) is timed in its own subprocess
with torch. Prints a table and writes JSON.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def images(n):
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def keras_worker(args):
    import keras

    from keras_ict import fid

    x = images(args.batch_size * (args.batches + 1))
    model = fid.build_inception()
    batch = fid.preprocess(x[: args.batch_size])
    model.predict_on_batch(batch)  # warm-up / compile
    times = []
    for i in range(1, args.batches + 1):
        batch = fid.preprocess(x[i * args.batch_size : (i + 1) * args.batch_size])
        start = time.perf_counter()
        model.predict_on_batch(batch)
        times.append(time.perf_counter() - start)
    feats = fid.inception_features(x[:4])
    return {"backend": keras.backend.backend(), "img_per_s": args.batch_size / sorted(times)[len(times) // 2],
            "features4": feats.tolist()}


def torch_worker(args):
    import numpy as np
    import torch

    from keras_ict import fid

    module = torch.jit.load(str(fid.default_weights_path()), map_location="cpu").eval()
    x = images(args.batch_size * (args.batches + 1))
    to_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(fid.preprocess(a).transpose(0, 3, 1, 2)))  # noqa: E731
    with torch.no_grad():
        module(to_nchw(x[: args.batch_size]))
        times = []
        for i in range(1, args.batches + 1):
            batch = to_nchw(x[i * args.batch_size : (i + 1) * args.batch_size])
            start = time.perf_counter()
            module(batch)
            times.append(time.perf_counter() - start)
        ref = module(to_nchw(x[:4])).numpy()
    return {"backend": "torchscript reference", "img_per_s": args.batch_size / sorted(times)[len(times) // 2],
            "features4": ref.tolist()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/fid_features.json")
    parser.add_argument("--worker", choices=["keras", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps((keras_worker if args.worker == "keras" else torch_worker)(args)))
        return
    import numpy as np

    rows = []
    jobs = [("torch", "torch")] + [(b, "keras") for b in args.backends]
    for backend, worker in jobs:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        cmd = [sys.executable, __file__, "--worker", worker, "--batch-size", str(args.batch_size), "--batches", str(args.batches)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        if proc.returncode:
            sys.exit(f"{backend}/{worker} failed:\n{proc.stderr[-2000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ref = np.asarray(rows[0]["features4"])
    print(f"{'implementation':<24} {'img/s (batch %d)' % args.batch_size:>16} {'max rel. error vs reference':>28}")
    for r in rows:
        r["max_rel_error"] = float(np.abs(np.asarray(r.pop("features4")) - ref).max() / np.abs(ref).max())
        print(f"{r['backend']:<24} {r['img_per_s']:>16.2f} {r['max_rel_error']:>28.2e}")
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "config": vars(args), "results": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
