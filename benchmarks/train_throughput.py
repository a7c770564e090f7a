"""iCT train-step time, images/s and peak memory per backend variant, network and batch size.

    python benchmarks/train_throughput.py --preset ncsnpp_mnist_small --batch-size 32
    python benchmarks/train_throughput.py --backends jax --preset ncsnpp_small --batch-size 64
    python benchmarks/train_throughput.py --variants all --presets ncsnpp_mnist_small ncsnpp_small \\
        --batch-sizes 32,64,128,256
    python benchmarks/train_throughput.py --variants all --presets ncsnpp_cifar10 --batch-sizes 8 \\
        --steps-per-repeat 2 --repeats 3

A variant is a backend and its `compile(jit_compile=...)`: `--variants` takes `backend[:jit]` tokens
(jit: auto, true, false), or `all` for tensorflow:false (TF graph, the CPU default of "auto"),
tensorflow:true (XLA), jax:true (jax.jit, the only compiled JAX mode), torch:false (eager, torch's
default) and torch:true (torch.compile). Without `--variants`, `--backends` x `--jit` is used (the old
interface). Each (network, variant, batch size) runs in its own subprocess (KERAS_BACKEND is fixed per
process, and the peak RSS, ru_maxrss, is per process). A variant that fails or times out becomes a
"fails: <reason>" row instead of stopping the run.

Timing: one `fit` call per measurement; a callback reads the loss after every step (a host sync, so
asynchronous dispatch cannot hide work) and takes the wall time between consecutive step ends. The first
`--warmup` repeats (each `--steps-per-repeat` steps; the first step includes tracing / compilation, reported
separately as first_step_s) are dropped; each remaining repeat's step time is the mean over its steps, and
the table gives the min and median over repeats. (Before issue 6 each repeat timed a whole `fit` call, so
its figures also carried fit's per-call set-up, about 0.1 s per step at 3 steps per repeat.) Peak memory
is the worker's ru_maxrss, so it includes the framework, the compiler's own memory and the input arrays
(input_data_mib). Prints a table and writes JSON to --json: machine, versions, config, the measured rows
under "results" and the failed runs (with "error") under "failures".

torch:true runs with dynamo's automatic_dynamic_shapes off (with it on, inductor fails on these networks;
--torch-dynamic-shapes restores it). Its train step compiles on the first step and again on the second
(a guard on p.grad in zero_grad), so give it at least 2 warm-up steps (--warmup 1 --steps-per-repeat 2).

Timings are only meaningful on an otherwise idle machine: each row records the 1-minute load average; on a
busy 2-core box, torch with its default 2 intra-op threads was seen to run 20x slower than with 1.
"""

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # also when loaded by file path (tests)
from _common import maxrss_mib, versions, write_json  # noqa: E402

ALL_VARIANTS = ["tensorflow:false", "tensorflow:true", "jax:true", "torch:false", "torch:true"]
_ALIASES = {"tf": "tensorflow", "pytorch": "torch"}



def parse_jit(value):
    value = str(value).lower()
    if value not in ("auto", "true", "false"):
        raise argparse.ArgumentTypeError(f"jit must be auto, true or false, got {value!r}")
    return {"auto": "auto", "true": True, "false": False}[value]


def parse_variant(token):
    backend, _, jit = token.partition(":")
    backend = _ALIASES.get(backend.lower(), backend.lower())
    if backend not in ("tensorflow", "jax", "torch"):
        raise argparse.ArgumentTypeError(f"unknown backend in variant {token!r}")
    return backend, parse_jit(jit or "auto")


def variant_label(backend, jit):
    """Human label of what actually runs (jit is the resolved value where known)."""
    names = {
        ("tensorflow", False): "tensorflow (tf.function)",
        ("tensorflow", True): "tensorflow + XLA",
        ("jax", True): "jax (jax.jit)",
        ("jax", False): "jax (eager)",
        ("torch", False): "torch (eager)",
        ("torch", True): "torch + torch.compile",
    }
    return names.get((backend, jit), f"{backend} jit={jit}")


def measure(args):
    load_start = os.getloadavg()[0]
    import keras
    import numpy as np

    import keras_ict
    from keras_ict.networks import build_architecture

    rss_imported = maxrss_mib()

    backend = keras.backend.backend()
    dynamo_note = None
    if backend == "torch" and args.jit is True and not args.torch_dynamic_shapes:
        import torch

        # With dynamo's default automatic dynamic shapes, a recompile marks a dimension symbolic and inductor
        # then fails on this network ("cannot determine truth value of Relational"); static shapes compile.
        torch._dynamo.config.automatic_dynamic_shapes = False
        dynamo_note = "automatic_dynamic_shapes=False"
    keras.config.set_dtype_policy(args.dtype_policy)
    keras.utils.set_random_seed(0)
    network = build_architecture(args.preset)
    trainer = keras_ict.ConsistencyTrainer(keras_ict.ConsistencyModel(network), total_steps=10_000, seed=0)
    trainer.compile(optimizer=keras_ict.optimizers.RAdam(1e-4), jit_compile=args.jit)
    resolved_jit = bool(trainer.jit_compile)
    rss_built = maxrss_mib()

    warmup_steps = args.warmup * args.steps_per_repeat
    total_steps = warmup_steps + args.repeats * args.steps_per_repeat
    shape = (args.batch_size,) + trainer.model.image_shape
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch_size * total_steps,) + shape[1:]).astype("float32")
    labels = None
    if trainer.model.conditional:
        labels = np.random.default_rng(1).integers(0, trainer.model.label_dim, len(x))

    class StepTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.marks = []

        def on_train_batch_begin(self, batch, logs=None):
            if not self.marks:
                self.marks.append(time.perf_counter())

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # waits for the step's result
            self.marks.append(time.perf_counter())

    timer = StepTimes()
    trainer.fit(x, labels, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    steps = np.diff(np.asarray(timer.marks))
    if len(steps) != total_steps:
        raise RuntimeError(f"expected {total_steps} steps, timed {len(steps)}")
    measured = steps[warmup_steps:].reshape(args.repeats, args.steps_per_repeat).mean(axis=1)
    times = sorted(float(t) for t in measured)
    median = float(np.median(times))
    row = {
        "backend": backend,
        "jit_compile": args.jit,
        "jit_compile_resolved": resolved_jit,
        "variant": variant_label(backend, resolved_jit),
        "preset": args.preset,
        "params": int(network.count_params()),
        "batch_size": args.batch_size,
        "dtype_policy": args.dtype_policy,
        "step_s_min": times[0],
        "step_s_median": median,
        "img_per_s_median": args.batch_size / median,
        "img_per_s_max": args.batch_size / times[0],
        "repeat_step_s": times,
        "first_step_s": float(steps[0]),
        "warmup_step_s": [float(t) for t in steps[:warmup_steps]],
        "peak_rss_mib": maxrss_mib(),
        "rss_after_import_mib": rss_imported,
        "rss_after_build_mib": rss_built,
        "input_data_mib": (x.nbytes + (labels.nbytes if labels is not None else 0)) / 2**20,
        "loadavg_1min_at_start": load_start,
        "loadavg_1min_at_end": os.getloadavg()[0],
        "keras": keras.__version__,
        "backend_version": __import__(backend).__version__,
    }
    row.update(_accelerator(backend))
    if backend == "torch":
        import torch

        row["torch_threads"] = torch.get_num_threads()
        if dynamo_note:
            row["torch_dynamo"] = dynamo_note
    return row


def _accelerator(backend):
    """The GPU the step ran on and the framework's peak device memory; None for both on CPU."""
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return {"device_name": torch.cuda.get_device_name(), "peak_device_mib": torch.cuda.max_memory_allocated() / 2**20}
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            peak = (device.memory_stats() or {}).get("peak_bytes_in_use")
            return {"device_name": device.device_kind, "peak_device_mib": peak / 2**20 if peak else None}
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
            return {"device_name": name, "peak_device_mib": tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20}
    return {"device_name": None, "peak_device_mib": None}


def _failure_reason(proc_stderr, returncode):
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc_stderr)  # Keras colours its error messages
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    # The last line of a traceback is "SomeError: message"; prefer it over trailing warnings.
    for line in reversed(lines):
        if "Error" in line.split(":")[0] or "Exception" in line.split(":")[0]:
            return line[:200]
    if returncode < 0:
        return f"killed by signal {-returncode}" + (" (out of memory?)" if -returncode == signal.SIGKILL else "")
    return lines[-1][:200] if lines else f"exit status {returncode}"


def run_variant(args, preset, backend, jit, batch_size):
    cmd = [sys.executable, __file__, "--worker", "--preset", preset, "--batch-size", str(batch_size),
           "--steps-per-repeat", str(args.steps_per_repeat), "--repeats", str(args.repeats),
           "--warmup", str(args.warmup), "--jit", str(jit).lower(), "--dtype-policy", args.dtype_policy]
    if args.torch_dynamic_shapes:
        cmd.append("--torch-dynamic-shapes")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    base = {"backend": backend, "jit_compile": jit, "variant": variant_label(backend, jit),
            "preset": preset, "batch_size": batch_size, "dtype_policy": args.dtype_policy}
    start = time.perf_counter()
    # Own process group, so a timeout also ends helpers the worker started (torch inductor's compile workers).
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return dict(base, error=f"timeout after {args.timeout:.0f} s", wall_s=time.perf_counter() - start)
    except BaseException:  # Ctrl-C: the worker's session does not get the terminal's SIGINT
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"{backend} jit={jit} {preset} b{batch_size}: failed\n{stderr[-2000:]}", file=sys.stderr)
        return dict(base, error=_failure_reason(stderr, proc.returncode), wall_s=wall)
    try:
        row = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return dict(base, error="no result from the worker", wall_s=wall)
    row["wall_s"] = wall
    return row


def print_table(rows):
    head = (f"{'preset':<20} {'params':>11} {'variant':<26} {'batch':>5} {'step s (min)':>12} {'step s (med)':>12} "
            f"{'img/s (med)':>11} {'peak MiB':>9} {'1st step s':>10}")
    print(head)
    for r in rows:
        params = f"{r['params']:,}" if "params" in r else ""
        lead = f"{r['preset']:<20} {params:>11} {r['variant']:<26} {r['batch_size']:>5} "
        if "error" in r:
            print(lead + f"fails: {r['error']}")
            continue
        print(lead + f"{r['step_s_min']:>12.3f} {r['step_s_median']:>12.3f} {r['img_per_s_median']:>11.1f} "
              f"{r['peak_rss_mib']:>9.0f} {r['first_step_s']:>10.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--jit", default="auto", type=parse_jit,
                        help="compile(jit_compile=...) with --backends: auto, true or false")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="backend[:jit] tokens, or 'all' (= " + " ".join(ALL_VARIANTS) + "); overrides --backends/--jit")
    parser.add_argument("--preset", default="ncsnpp_mnist_small")
    parser.add_argument("--presets", nargs="+", default=None, help="several networks (overrides --preset)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batch-sizes", default=None, help="comma-separated, e.g. 32,64,128,256 (overrides --batch-size)")
    parser.add_argument("--dtype-policy", default="float32",
                        help="Keras dtype policy of the network, e.g. mixed_bfloat16 (GPU bf16 runs)")
    parser.add_argument("--steps-per-repeat", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="warm-up repeats (of --steps-per-repeat steps) dropped")
    parser.add_argument("--torch-dynamic-shapes", action="store_true",
                        help="torch:true with dynamo's default automatic dynamic shapes (fails on these networks)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per (network, variant, batch) run")
    parser.add_argument("--json", default="benchmarks/results/train_throughput.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps_per_repeat < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("need --steps-per-repeat >= 1, --repeats >= 1, --warmup >= 0")

    if args.worker:
        print(json.dumps(measure(args)))
        return

    if args.variants:
        tokens = ALL_VARIANTS if args.variants == ["all"] else args.variants
        variants = [parse_variant(t) for t in tokens]
    else:
        variants = [(_ALIASES.get(b, b), args.jit) for b in args.backends]
    presets = args.presets or [args.preset]
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else [args.batch_size]
    except ValueError:
        parser.error(f"--batch-sizes {args.batch_sizes!r}: expected comma-separated integers, e.g. 128,512")
    if min(batch_sizes) < 1:
        parser.error(f"batch sizes must be >= 1, got {batch_sizes}")

    rows = []
    for preset in presets:
        for backend, jit in variants:
            for batch_size in batch_sizes:
                row = run_variant(args, preset, backend, jit, batch_size)
                rows.append(row)
                status = f"fails: {row['error']}" if "error" in row else f"{row['step_s_median']:.3f} s/step"
                print(f"[{preset} {row['variant']} b{batch_size}] {status}", file=sys.stderr, flush=True)

    print_table(rows)
    # "results" holds measured rows only (the layout older readers expect); failed runs go to "failures".
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
                    "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "XLA_FLAGS", "TF_NUM_INTRAOP_THREADS")
                                    if k in os.environ},
                    "loadavg_1min_at_start": os.getloadavg()[0]},
        "python": platform.python_version(),
        "versions": versions(),
        "config": dict({k: v for k, v in vars(args).items() if k != "worker"},
                       variants_run=[f"{b}:{str(j).lower()}" for b, j in variants],
                       timing="wall time between consecutive step ends inside one fit call, loss read each step",
                       presets_run=presets, batch_sizes_run=batch_sizes),
        "results": [r for r in rows if "error" not in r],
        "failures": [r for r in rows if "error" in r],
    }
    print(f"wrote {write_json(args.json, report)}")


if __name__ == "__main__":
    main()
