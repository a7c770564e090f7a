"""Training throughput with one process against two processes on this machine, per backend's own engine.

    python benchmarks/multiprocess_scaling.py                         # all three backends, CPU
    python benchmarks/multiprocess_scaling.py --backends torch --steps 60 --batch-size 64

Each row is one `keras-ict train` run on `--data` (default ../shared/datasets/mnist_small.npz) with the `mnist`
recipe's network, `--steps` steps at the global `--batch-size`: one process without a strategy, then two
processes on 127.0.0.1 (TensorFlow: two TF_CONFIG workers with `--strategy multiworker`; JAX: two processes
joined by `--coordinator`; torch: `torchrun --nproc-per-node 2 ... --strategy ddp`). Throughput is read from
the writer's log.csv (wall time per logged step), leaving out the first `--warmup` steps (tracing and
compilation): global img/s and img/s per process.

Caveat: on a 2-core CPU two processes share the cores the one process had, so the figure says what the
several-process machinery costs (collectives, a slice of the batch per process), not how it scales on
several GPUs or machines. Run it on an otherwise idle machine; each row records the 1-minute load average.
Writes --json (default benchmarks/results/multiprocess_scaling.json) and prints a table.
"""

import argparse
import csv
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # also when loaded by file path (tests)
from _common import repo_relative, versions, write_json  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
STRATEGY = {"tensorflow": "multiworker", "jax": "data-parallel", "torch": "ddp"}


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def train_args(args, run_dir, strategy=None):
    sets = {"log_every": 1, "checkpoint_every": 100000, "sample_count": 4, "fid_every": 0}
    command = ["-m", "keras_ict", "train", "--preset", args.preset, "--data", str(args.data), "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--out", str(run_dir)]
    command += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    return command + (["--strategy", strategy] if strategy else [])


def launch(backend, processes, args, run_dir, logs):
    """Popen objects of one run; the writer's log is logs/p0.log."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("XLA_FLAGS", None)
    python = [sys.executable]
    if processes == 1:
        return [subprocess.Popen(python + train_args(args, run_dir), stdout=open(logs / "p0.log", "w"),
                                 stderr=subprocess.STDOUT, env=env, cwd=REPO)]
    if backend == "torch":
        (port,) = free_ports(1)
        torchrun = python + ["-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-addr",
                             "127.0.0.1", "--master-port", str(port)]
        return [subprocess.Popen(torchrun + train_args(args, run_dir, "ddp"), stdout=open(logs / "p0.log", "w"),
                                 stderr=subprocess.STDOUT, env=env, cwd=REPO)]
    ports = free_ports(processes)
    procs = []
    for index in range(processes):
        penv = dict(env)
        extra = []
        if backend == "tensorflow":
            cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
            penv["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        else:
            extra = ["--coordinator", f"127.0.0.1:{ports[0]}", "--num-processes", str(processes),
                     "--process-id", str(index)]
        procs.append(subprocess.Popen(python + train_args(args, run_dir, STRATEGY[backend]) + extra,
                                      stdout=open(logs / f"p{index}.log", "w"), stderr=subprocess.STDOUT, env=penv,
                                      cwd=REPO))
    return procs


def throughput(run_dir, warmup, batch_size):
    """(global img/s, steps timed) from log.csv's wall_s column after `warmup` steps."""
    with open(run_dir / "log.csv") as f:
        rows = {int(r["step"]): float(r["wall_s"]) for r in csv.DictReader(f)}
    steps = sorted(s for s in rows if s >= warmup)
    if len(steps) < 2:
        raise RuntimeError(f"{run_dir}/log.csv has fewer than 2 steps after the warm-up of {warmup}")
    seconds = rows[steps[-1]] - rows[steps[0]]
    return (steps[-1] - steps[0]) * batch_size / seconds, steps[-1] - steps[0]


def measure(backend, processes, args, work):
    run_dir, logs = work / f"{backend}-{processes}", work / f"{backend}-{processes}-logs"
    shutil.rmtree(run_dir, ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    start = time.monotonic()
    procs = launch(backend, processes, args, run_dir, logs)
    codes = [p.wait(timeout=args.timeout) for p in procs]
    wall = time.monotonic() - start
    row = {"backend": backend, "processes": processes, "strategy": STRATEGY[backend] if processes > 1 else None,
           "global_batch": args.batch_size, "load_avg_1m": round(load, 2), "run_wall_s": round(wall, 1)}
    if codes != [0] * len(procs):
        tail = (logs / "p0.log").read_text()[-1500:]
        return dict(row, error=f"exit codes {codes}: {tail}")
    img_s, timed = throughput(run_dir, args.warmup, args.batch_size)
    return dict(row, steps_timed=timed, img_per_s=round(img_s, 2), img_per_s_per_process=round(img_s / processes, 2))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--preset", default="mnist")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "mnist_small.npz")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing (compilation)")
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (divisible by 2)")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "multiprocess_scaling.json")
    args = parser.parse_args(argv)
    if args.batch_size % 2:
        parser.error("--batch-size must be divisible by 2 (two processes split it)")
    if not args.steps > args.warmup + 1:
        parser.error("--steps must exceed --warmup + 1")
    if not args.data.exists():
        parser.error(f"--data {args.data} does not exist")
    work = Path(tempfile.mkdtemp(prefix="keras-ict-scaling-"))
    rows = []
    try:
        for backend in args.backends:
            for processes in (1, 2):
                rows.append(measure(backend, processes, args, work))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| backend | processes | global img/s | img/s per process | load |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        if "error" in r:
            print(f"| {r['backend']} | {r['processes']} | fails | | {r['load_avg_1m']} |")
        else:
            print(f"| {r['backend']} | {r['processes']} | {r['img_per_s']} | {r['img_per_s_per_process']} | {r['load_avg_1m']} |")
    write_json(args.json, {
        "benchmark": "multiprocess_scaling",
        "command": "python benchmarks/multiprocess_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "versions": versions(),
        "config": {"preset": args.preset, "data": repo_relative(args.data), "steps": args.steps, "warmup": args.warmup,
                   "global_batch": args.batch_size},
        "caveat": "CPU processes on one 2-core machine share its cores: this measures the cost of the several-process "
                  "machinery, not scaling across GPUs or machines.",
        "results": [r for r in rows if "error" not in r],
        "failures": [r for r in rows if "error" in r],
    })
    print(f"wrote {repo_relative(args.json)}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
