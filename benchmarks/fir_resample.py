"""FIR resampling: depthwise-convolution form vs separable slice-and-add form, per backend.

    python benchmarks/fir_resample.py
    python benchmarks/fir_resample.py --backends jax --repeats 9 --network-batch 8

`keras_ict.networks.fir.fir_down` / `fir_up` run the FIR up/down-sampling either as one depthwise
convolution each (`fir_down_depthwise` / `fir_up_depthwise`, the form before issue "JAX FIR backward") or,
where `keras_ict.backends.kernels.separable_fir_resampling()` says so (JAX), in separable form, one spatial
axis at a time as sums of weighted slices (`fir_down_separable` / `fir_up_separable`). This script
times both forms on each backend, whatever the default (marked `*` in the table):

* `fir_down`: forward + backward of one `fir_down(x, fir, 1)` ([1, 3, 3, 1] filter) at --shape (NHWC);
* `fir_up`: forward + backward of one `fir_up(x, fir, 1)` at --shape;
* `network`: forward + backward (gradients of all trainable weights) of --preset at --network-batch,
  eval mode (no dropout), the loss mean(y^2).

Each backend runs in its own subprocess, in its usual compiled mode: tensorflow tf.function (graph, no
XLA), jax jax.jit, torch eager. The two forms are traced separately (the form under test is patched into
`fir.fir_down` / `fir_up` while its function is traced / run) and measured interleaved: each repeat
times --iters calls of one form, then of the other; a repeat's figure is the mean per call, the table gives
the median (and min) over --repeats repeats after one warm-up repeat. Prints a table and writes JSON
(machine, versions, load average, config, results) to --json. Timings are only meaningful on an otherwise
idle machine.
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
sys.path.insert(0, str(REPO / "benchmarks"))  # also when loaded by file path (tests)
from _common import versions, write_json  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")



def _fwd_bwd(backend, fn, params, inputs):
    """A callable running loss = fn(params, inputs) and d loss / d params, synchronised."""
    if backend == "jax":
        import jax

        jax_step = jax.jit(jax.value_and_grad(fn))

        def run():
            loss, grads = jax_step(params, inputs)
            jax.block_until_ready(grads)
            return float(loss)

        return run
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss = fn(params, inputs)
            return loss, tape.gradient(loss, params)

        def run():
            loss, grads = step()
            _ = [g.numpy() for g in grads]
            return float(loss)

        return run

    def run():  # torch eager
        for p in params:
            p.grad = None
        loss = fn(params, inputs)
        loss.backward()
        return float(loss)

    return run


def worker(args):
    os.environ["KERAS_BACKEND"] = args.backend
    sys.path.insert(0, str(REPO))
    import keras
    import numpy as np
    from keras import ops

    from keras_ict.networks import ARCHITECTURES, build_architecture
    from keras_ict.networks import fir as fir_resampling

    backend = keras.backend.backend()
    if backend == "torch" and args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    from keras_ict.backends import kernels

    def sep_down(x, fir, pad):
        return fir_resampling.fir_down_separable(x, fir_resampling.separable_factors(fir), pad)

    def sep_up(x, fir, pad):
        return fir_resampling.fir_up_separable(x, fir_resampling.separable_factors(fir), pad)

    old_impl = {"down": fir_resampling.fir_down_depthwise, "up": fir_resampling.fir_up_depthwise}
    new_impl = {"down": sep_down, "up": sep_up}
    default = "separable" if kernels.separable_fir_resampling() else "depthwise"

    def with_impl(impl, thunk):
        """Runs thunk() with fir_resampling.fir_down / fir_up set to `impl` (traced functions keep theirs)."""
        saved = fir_resampling.fir_down, fir_resampling.fir_up
        fir_resampling.fir_down, fir_resampling.fir_up = impl["down"], impl["up"]
        try:
            return thunk()
        finally:
            fir_resampling.fir_down, fir_resampling.fir_up = saved

    fir = fir_resampling.fir_filter_2d([1, 3, 3, 1])
    rng = np.random.default_rng(0)
    cases = {}

    # Single FIR resampling ops: gradient with respect to the input.
    x_np = rng.standard_normal(args.shape).astype("float32")
    for op in ("down", "up"):
        for which, impl in (("old", old_impl), ("new", new_impl)):
            f = impl[op]

            def loss(params, inputs, f=f):
                y = f(params[0], fir, 1)
                return ops.mean(ops.square(y))

            if backend == "torch":
                import torch

                params = [torch.tensor(x_np, requires_grad=True)]
            else:
                params = [ops.convert_to_tensor(x_np)]
            cases.setdefault(f"fir_{op}", {})[which] = (impl, _fwd_bwd(backend, loss, params, None))

    # One whole network, gradients of its trainable weights.
    net = build_architecture(args.preset)
    config = ARCHITECTURES[args.preset]["config"]
    res, cin = config["img_resolution"], config["in_channels"]
    xb = rng.standard_normal((args.network_batch, res, res, cin)).astype("float32")
    nb = rng.uniform(-1.5, 1.0, size=(args.network_batch,)).astype("float32")
    net([xb, nb])  # build
    for which, impl in (("old", old_impl), ("new", new_impl)):
        if backend == "jax":
            non_trainable = [v.value for v in net.non_trainable_variables]

            def loss(params, inputs):
                y, _ = net.stateless_call(params, non_trainable, inputs, training=False)
                return ops.mean(ops.square(y))

            params = [v.value for v in net.trainable_variables]
        else:
            def loss(params, inputs):
                return ops.mean(ops.square(net(inputs, training=False)))

            params = [v.value for v in net.trainable_variables]
        inputs = [ops.convert_to_tensor(xb), ops.convert_to_tensor(nb)]
        cases.setdefault("network", {})[which] = (impl, _fwd_bwd(backend, loss, params, inputs))

    rows = []
    for case, pair in cases.items():
        losses = {w: with_impl(impl, run) for w, (impl, run) in pair.items()}  # trace / compile
        times = {"old": [], "new": []}
        for rep in range(args.repeats + 1):
            for which in ("old", "new"):
                impl, run = pair[which]

                def timed(run=run):
                    t0 = time.perf_counter()
                    for _ in range(args.iters):
                        run()
                    return (time.perf_counter() - t0) / args.iters

                t = with_impl(impl, timed)
                if rep:  # repeat 0 is a warm-up
                    times[which].append(t)
        row = {"backend": backend, "case": case, "default": default}
        for which in ("old", "new"):
            row[f"{which}_median_ms"] = 1e3 * float(np.median(times[which]))
            row[f"{which}_min_ms"] = 1e3 * float(np.min(times[which]))
            row[f"{which}_loss"] = losses[which]
        row["speedup_median"] = row["old_median_ms"] / row["new_median_ms"]
        row["loss_rel_diff"] = abs(losses["old"] - losses["new"]) / max(abs(losses["old"]), 1e-30)
        if backend == "torch":
            import torch

            row["torch_threads"] = torch.get_num_threads()
        rows.append(row)
    print(json.dumps(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--shape", type=lambda s: tuple(int(v) for v in s.split(",")), default=(16, 32, 32, 32),
                        help="NHWC shape of the single-op input (default 16,32,32,32)")
    parser.add_argument("--preset", default="ncsnpp_mnist_small")
    parser.add_argument("--network-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (after one warm-up repeat)")
    parser.add_argument("--iters", type=int, default=3, help="calls per repeat")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads; 0: torch's default")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "fir_resample.json"))
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. 'CPU shared')")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    load_start = os.getloadavg()[0]
    rows, failures = [], []
    for backend in args.backends:
        cmd = [sys.executable, __file__, "--worker", "--backend", backend, "--shape", ",".join(map(str, args.shape)),
               "--preset", args.preset, "--network-batch", str(args.network_batch), "--repeats", str(args.repeats),
               "--iters", str(args.iters), "--torch-threads", str(args.torch_threads)]
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
        if proc.returncode or not lines:
            failures.append({"backend": backend, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]})
            continue
        rows.extend(json.loads(lines[-1]))

    print("old: depthwise convolution, new: separable form; * the backend's default; ms per fwd+bwd")
    print(f"{'backend':<11} {'case':<9} {'old ms (med/min)':>19} {'new ms (med/min)':>19} {'old/new':>8}")
    for r in rows:
        mark = {w: "*" if r["default"] == f else " " for w, f in (("old", "depthwise"), ("new", "separable"))}
        print(f"{r['backend']:<11} {r['case']:<9} {mark['old']}{r['old_median_ms']:>9.2f}/{r['old_min_ms']:<8.2f}"
              f" {mark['new']}{r['new_median_ms']:>9.2f}/{r['new_min_ms']:<8.2f} {r['speedup_median']:>7.2f}x")
    for f in failures:
        print(f"{f['backend']}: fails: {f['error']}")
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "versions": versions(),
        "loadavg_1min_at_start": load_start,
        "loadavg_1min_at_end": os.getloadavg()[0],
        "note": args.note,
        "config": {k: v for k, v in vars(args).items() if k not in ("worker", "backend", "json")},
        "results": rows,
        "failures": failures,
    }
    print(f"wrote {write_json(args.json, report)}")


if __name__ == "__main__":
    main()
