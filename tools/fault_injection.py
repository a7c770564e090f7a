"""Kill `keras-ict train` and `keras-ict export` with SIGKILL at random moments; check nothing is ever corrupt.

    python tools/fault_injection.py [--kills 12] [--steps 24] [--backend tensorflow] \
[--json benchmarks/results/fault_injection.json]

Training: a small MNIST run that checkpoints every step is started and SIGKILLed, then restarted with the
same command, until it finishes. A quarter of the kills land in start-up (a random delay); the rest are timed
from the run's own output: after it reports a randomly chosen step, a random offset of up to 1.5 steps, so they
land inside a step or inside that step's checkpoint write however busy the machine is. After every kill the run
directory must hold an intact latest checkpoint (loadable, step recorded) or none yet, and no final/ folder
unless training finished. A finished run's weights (student and EMA) are compared with an uninterrupted run of
the same command: resume is exact, so they must be equal. If a run finishes before enough kills have landed,
a fresh run starts (a new round) until they have.

Export: `keras-ict export` of the finished run is SIGKILLed at random moments (a fraction of one export's time,
measured first or given as --export-seconds); afterwards the output folder must either be absent or complete
(export.json present and every file it names loadable), then a last uninterrupted export must succeed.

Prints a table of every kill and writes JSON.
"""

import argparse
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# One resolution level: what is checked is files and resumption, not the network, and an export of this net takes
# a third of the two-level one's time (Keras traces every layer).
TINY_NET = '{"model_channels": 8, "channel_mult": [1], "attn_resolutions": [], "num_blocks": 1}'


def train_command(run_dir, data, steps):
    return [sys.executable, "-m", "keras_ict", "train", "--preset", "mnist", "--data", str(data), "--out", str(run_dir),
            "--steps", str(steps), "--batch-size", "8", "--set", f"network_overrides={TINY_NET}", "--set", "log_every=1",
            "--set", "checkpoint_every=1", "--set", "sample_count=4", "--set", "keep_checkpoints=2"]


def environment(backend):
    return dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def _start(command, env, log, on_line=None):
    """Start `command` with its output copied to `log`; returns (process, reader thread, output lines)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO, text=True)
    lines = []

    def follow():
        with open(log, "a") as out:
            for line in process.stdout:
                out.write(line)
                lines.append(line)
                if on_line is not None:
                    on_line(line)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    return process, reader, lines


def resumed_from(lines):
    """(checkpoint path, step) that a `keras-ict train` run said it resumed from, or None for a fresh start."""
    for line in lines:
        match = re.match(r"resuming from (\S+) \(step (\d+)\)", line)
        if match:
            return {"path": match.group(1), "step": int(match.group(2))}
    return None


def run_and_kill(command, env, delay, log):
    """Start `command`, SIGKILL it after `delay` seconds unless it ended; returns (killed, returncode, lines)."""
    process, reader, lines = _start(command, env, log)
    try:
        process.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed = True
    reader.join()
    return killed, process.returncode, lines


def run_and_kill_at_step(command, env, target_step, offset_s, log):
    """Start `command`; once it reports step `target_step`, SIGKILL it `offset_s` later (so the kill lands in
    the next step or in the checkpoint write of that step, however slow the machine is right now).
    Returns (killed, returncode, lines)."""
    reached = threading.Event()

    def on_line(line):
        if line.startswith("step ") and int(line.split()[1]) >= target_step:
            reached.set()

    process, reader, lines = _start(command, env, log, on_line)
    while not reached.is_set() and process.poll() is None:
        reached.wait(0.05)
    if reached.is_set():
        time.sleep(offset_s)
    killed = process.poll() is None
    if killed:
        process.send_signal(signal.SIGKILL)
    process.wait()
    reader.join()
    return killed, process.returncode, lines


def timed_run(command, env):
    """Runs an uninterrupted training; returns (start-up seconds to step 1, seconds per step, total seconds)."""
    start = time.monotonic()
    stamps = []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO, text=True)
    for line in process.stdout:
        if line.startswith("step "):
            stamps.append(time.monotonic() - start)
    if process.wait() != 0 or len(stamps) < 2:
        raise SystemExit(f"the uninterrupted run failed: {' '.join(command)}")
    return stamps[0], (stamps[-1] - stamps[0]) / (len(stamps) - 1), time.monotonic() - start


def inspect_run(run_dir):
    """What a resume would see: the latest checkpoint must load; returns its step (or None)."""
    code = (
        "import sys, json; from keras_ict.checkpoint import latest_checkpoint, load_checkpoint;"
        "p = latest_checkpoint(sys.argv[1]);"
        "print(json.dumps(None if p is None else {'path': str(p), 'step': load_checkpoint(p)[1]['step']}))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True,
                            env=environment(os.environ.get("KERAS_BACKEND", "tensorflow")))
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1]) or {"step": None}


def final_weights(run_dir):
    import h5py
    import numpy as np

    arrays = []
    with h5py.File(Path(run_dir) / "final" / "model.weights.h5", "r") as f:
        f.visititems(lambda name, obj: arrays.append((name, np.asarray(obj))) if isinstance(obj, h5py.Dataset) else None)
    return dict(arrays)


def trainer_weights(run_dir):
    code = (
        "import sys, json, numpy as np; from keras_ict.checkpoint import latest_checkpoint, load_checkpoint;"
        "t, s = load_checkpoint(latest_checkpoint(sys.argv[1]));"
        "np.savez(sys.argv[2], *[np.asarray(v) for v in t.model.get_weights() + t.ema_model.get_weights()])"
    )
    out = Path(run_dir) / "weights_for_comparison.npz"
    subprocess.run([sys.executable, "-c", code, str(run_dir), str(out)], check=True, capture_output=True,
                   env=environment(os.environ.get("KERAS_BACKEND", "tensorflow")))
    import numpy as np

    with np.load(out) as data:
        return [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))]


def check_export(out):
    """An export folder is absent or complete."""
    if not out.exists():
        return "absent"
    info = json.loads((out / "export.json").read_text())
    for entry in info["endpoints"].values():
        if entry.get("onnx_file"):
            import onnx

            onnx.checker.check_model(str(out / entry["onnx_file"]))
    if "saved_model" in info["formats"] and not (out / "saved_model" / "saved_model.pb").is_file():
        raise AssertionError(f"{out}: saved_model/ incomplete")
    return "complete"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12, help="training kills (at least)")
    parser.add_argument("--export-kills", type=int, default=4)
    parser.add_argument("--export-seconds", type=float,
                        help="how long an export takes here (kill delays are drawn from it); default: time one export")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(REPO / "runs" / "fault_injection"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "mnist_small.npz"))
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "fault_injection.json"))
    args = parser.parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend

    import shutil

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env, rng, log = environment(args.backend), random.Random(args.seed), work / "log.txt"
    start = time.monotonic()

    straight = work / "straight"
    startup_s, step_s, full_run_s = timed_run(train_command(straight, args.data, args.steps), env)

    # A run can finish before its next kill lands (start-up and checkpoint times vary), so kills are spread over
    # rounds: each round is a fresh interrupted run, resumed until it finishes and then compared with the
    # uninterrupted one; rounds continue until enough training kills have landed.
    events, rounds, train_kills = [], [], 0
    reference_weights, reference_final = trainer_weights(straight), final_weights(straight)
    while train_kills < args.kills or not rounds:
        run = work / f"interrupted_{len(rounds)}"
        finished, latest, found = False, 0, None
        while not finished:
            # A quarter of the kills land in start-up (time-based); the rest land after a randomly chosen step
            # has been reported, at a random offset within about a step, i.e. inside the next step's
            # computation or inside that step's checkpoint write (checkpoints are written every step).
            if train_kills >= args.kills:
                killed, code, lines = run_and_kill(train_command(run, args.data, args.steps), env, 3600.0, log)  # let it finish
                where = "none"
            elif rng.random() < 0.25 or latest >= args.steps - 1:
                delay = rng.uniform(0.2, 1.0) * startup_s
                where = f"start-up, after {delay:.1f}s"
                killed, code, lines = run_and_kill(train_command(run, args.data, args.steps), env, delay, log)
            else:
                target = rng.randint(latest + 1, args.steps - 1)
                offset = rng.uniform(0.0, 1.5) * step_s
                where = f"{offset:.2f}s after step {target}"
                killed, code, lines = run_and_kill_at_step(train_command(run, args.data, args.steps), env, target, offset, log)
            train_kills += killed
            # This run started from what the previous kill left: the checkpoint found (and loaded) then, or
            # nothing. Compare with what the run itself reports it resumed from.
            resumed = resumed_from(lines)
            expected = None if found is None or found.get("step") is None else {"path": found["path"], "step": found["step"]}
            if not any(line.startswith(("resuming", "training")) for line in lines):
                resumed = "killed before loading"  # nothing loaded yet: nothing to compare
            resume_ok = resumed == "killed before loading" or resumed == expected
            state = inspect_run(run)
            loads = "error" not in state
            if not loads:
                raise SystemExit(f"after a kill the latest checkpoint of {run} does not load: {state['error']}")
            found = state
            latest = state["step"] or 0
            final_exists = (run / "final" / "metadata.json").is_file()
            leftovers = (sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("."))
                         if (run / "checkpoints").is_dir() else [])
            events.append({"what": "train", "round": len(rounds), "kill_at": where, "killed": killed,
                           "returncode": code, "resumed_from": resumed, "expected_resume": expected,
                           "resumed_from_checkpoint_found_after_previous_kill": resume_ok,
                           "latest_step": state["step"], "checkpoint_loads": loads,
                           "final": final_exists, "temporaries_left": leftovers})
            print(f"train  round {len(rounds)}  kill {killed!s:5}  at {where:28}  latest checkpoint step "
                  f"{state['step']}  final {final_exists}  temporaries {leftovers}", flush=True)
            if not killed:
                if code != 0:
                    raise AssertionError(f"training ended with exit code {code}; see {log}")
                finished = True
            elif final_exists and latest < args.steps:
                raise AssertionError("final/ exists although training had not finished")
        weights = trainer_weights(run)
        rounds.append({
            "run": run.name,
            "kills": sum(e["killed"] for e in events if e["what"] == "train" and e["round"] == len(rounds)),
            "max_abs_weight_diff_vs_uninterrupted": max(float(abs(x - y).max()) for x, y in zip(reference_weights, weights)),
            "final_weights_bitwise_equal": bool(all((reference_final[k] == v).all() for k, v in final_weights(run).items())),
        })
    max_diff = max(r["max_abs_weight_diff_vs_uninterrupted"] for r in rounds)
    final_equal = all(r["final_weights_bitwise_equal"] for r in rounds)

    export_out = work / "export"
    export_cmd = [sys.executable, "-m", "keras_ict", "export", "--model", str(run / "final"), "--out", str(export_out),
                  "--formats", "saved_model,onnx", "--overwrite", "--backend", "tensorflow"]
    export_s = args.export_seconds
    if args.export_kills and export_s is None:
        t0 = time.monotonic()
        subprocess.run(export_cmd, check=True, env=env, cwd=REPO, capture_output=True)
        export_s = time.monotonic() - t0
        shutil.rmtree(export_out)
    for _ in range(args.export_kills):
        delay = rng.uniform(0.2, 0.95) * export_s
        killed, code, _ = run_and_kill(export_cmd, env, delay, log)
        status = check_export(export_out)
        events.append({"what": "export", "delay_s": round(delay, 2), "killed": killed, "returncode": code, "export": status})
        print(f"export kill {killed!s:5}  after {delay:6.1f}s  output {status}", flush=True)
    if args.export_kills:
        killed, code, _ = run_and_kill(export_cmd, env, 3600.0, log)
        assert not killed and code == 0, f"the last export failed (exit {code}); see {log}"
        assert check_export(export_out) == "complete"

    kills = sum(e["killed"] for e in events)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "backend": args.backend,
        "steps": args.steps,
        "kills": kills,
        "train_kills": sum(e["killed"] for e in events if e["what"] == "train"),
        "export_kills": sum(e["killed"] for e in events if e["what"] == "export"),
        # Measured per run: the checkpoint found after the previous kill loaded, and the next run resumed from it.
        "every_resume_from_intact_checkpoint": all(
            e["checkpoint_loads"] and e["resumed_from_checkpoint_found_after_previous_kill"]
            for e in events if e["what"] == "train"
        ),
        "resumes_compared": sum(isinstance(e["resumed_from"], dict) for e in events if e["what"] == "train"),
        "exports_checked": bool(args.export_kills),
        "uninterrupted_run_s": round(full_run_s, 1),
        "startup_s": round(startup_s, 2),
        "step_s": round(step_s, 3),
        "kills_during_checkpoint_write": sum(bool(e["killed"] and e["temporaries_left"]) for e in events if e["what"] == "train"),
        "rounds": rounds,
        "max_abs_weight_diff_vs_uninterrupted": max_diff,
        "final_weights_bitwise_equal": bool(final_equal),
        "wall_s": round(time.monotonic() - start, 1),
        "events": events,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    intact = result["every_resume_from_intact_checkpoint"]
    print(f"{kills} kills ({result['train_kills']} training over {len(rounds)} runs, "
          f"{result['export_kills'] if args.export_kills else 'no'} export); {result['resumes_compared']} resumes compared "
          f"with the checkpoint found after the kill: {'all matched' if intact else 'MISMATCH'}; final weights vs "
          f"uninterrupted: max abs diff {max_diff:.3g}, bitwise equal {final_equal}")
    print(f"wrote {args.json}")
    if max_diff != 0.0 or not final_equal or not intact:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
