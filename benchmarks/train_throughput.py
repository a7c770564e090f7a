"""iCT train-step time and images/s per backend, after warm-up, min/median over repeats.

    python benchmarks/train_throughput.py --preset ncsnpp_mnist_small --batch-size 32
    python benchmarks/train_throughput.py --backends jax --preset ncsnpp_small --batch-size 64

Each backend runs in its own subprocess (KERAS_BACKEND is fixed per process). Prints a table and writes
JSON (machine, versions, config, timings) to --json.
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


def measure(args):
    import keras
    import numpy as np

    import keras_ict
    from keras_ict.networks import network_from_preset

    keras.utils.set_random_seed(0)
    network = network_from_preset(args.preset)
    trainer = keras_ict.ConsistencyTrainer(keras_ict.ConsistencyModel(network), total_steps=10_000, seed=0)
    trainer.compile(optimizer=keras_ict.optimizers.RAdam(1e-4), jit_compile=args.jit)
    shape = (args.batch_size,) + trainer.model.image_shape
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch_size * args.steps_per_repeat,) + shape[1:]).astype("float32")
    labels = None
    if trainer.model.conditional:
        labels = np.random.default_rng(1).integers(0, trainer.model.label_dim, len(x))

    def run():
        start = time.perf_counter()
        trainer.fit(x, labels, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False)
        return (time.perf_counter() - start) / args.steps_per_repeat

    for _ in range(args.warmup):
        run()
    times = sorted(run() for _ in range(args.repeats))
    return {
        "backend": keras.backend.backend(),
        "jit_compile": args.jit,
        "preset": args.preset,
        "params": int(network.count_params()),
        "batch_size": args.batch_size,
        "step_s_min": times[0],
        "step_s_median": times[len(times) // 2],
        "img_per_s_median": args.batch_size / times[len(times) // 2],
        "keras": keras.__version__,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--preset", default="ncsnpp_mnist_small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps-per-repeat", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--jit", default="auto", help="compile(jit_compile=...): auto, true or false")
    parser.add_argument("--json", default="benchmarks/results/train_throughput.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.jit = {"auto": "auto", "true": True, "false": False}[str(args.jit).lower()]

    if args.worker:
        print(json.dumps(measure(args)))
        return

    rows = []
    for backend in args.backends:
        cmd = [sys.executable, __file__, "--worker", "--preset", args.preset, "--batch-size", str(args.batch_size),
               "--steps-per-repeat", str(args.steps_per_repeat), "--repeats", str(args.repeats),
               "--warmup", str(args.warmup), "--jit", str(args.jit).lower()]
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            print(f"{backend}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    print(f"{'backend':<11} {'jit':<5} {'preset':<20} {'params':>10} {'batch':>5} {'step s (min)':>12} {'step s (med)':>12} {'img/s':>8}")
    for r in rows:
        print(f"{r['backend']:<11} {str(r['jit_compile']):<5} {r['preset']:<20} {r['params']:>10,} {r['batch_size']:>5} "
              f"{r['step_s_min']:>12.3f} {r['step_s_median']:>12.3f} {r['img_per_s_median']:>8.1f}")
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "python": platform.python_version(),
        "config": {k: v for k, v in vars(args).items() if k != "worker"},
        "results": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
