"""A new user's install, per backend: does `pip install keras-ict[<extra>]` alone train, sample and score?

    scripts/check_install.sh                         # the extras jax, torch and tensorflow
    scripts/check_install.sh --extras jax --keep     # one extra; keep its venv (printed) for a look

For each extra: a fresh venv, keras-ict installed as a wheel built from this checkout with its dependencies from
the package index (`pip install keras_ict-*.whl[extra]`), then, from a folder outside the checkout with
KERAS_BACKEND set to that extra's backend: `keras-ict train --steps 2` (a tiny network on
../shared/datasets/mnist_small.npz), `keras-ict sample` and `keras-ict fid`. Reports per extra the install time,
the venv's size, which frameworks came along, and each command's exit status; writes
benchmarks/results/install_check.json. `fid` reads the Inception TorchScript file from ../shared/fid with
`--weights` (an installed wheel has no ../shared beside it) and converts it without torch in every venv.
Install times depend on the package index (here a local mirror) and the disk; they are not a benchmark.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "mnist_small.npz"
WEIGHTS = REPO.parent / "shared" / "fid" / "inception-2015-12-05-fid-trunk.pt"
EXTRAS = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}  # extra -> KERAS_BACKEND
FRAMEWORKS = ("tensorflow", "jax", "torch", "tensorflow_datasets")
TINY_NET = '{"model_channels": 8, "channel_mult": [1], "attn_resolutions": [], "num_blocks": 1}'


def run(cmd, log, **kwargs):
    start = time.monotonic()
    with open(log, "w") as out:
        code = subprocess.run([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, **kwargs).returncode
    return code, time.monotonic() - start


def folder_mb(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def check_extra(extra, wheel, work, keep):
    venv, logs = work / f"venv-{extra}", work / f"logs-{extra}"
    shutil.rmtree(venv, ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    row = {"extra": extra, "backend": EXTRAS[extra]}
    start = time.monotonic()
    code, _ = run([sys.executable, "-m", "venv", venv], logs / "venv.log")
    python = venv / "bin" / "python"
    if code == 0:
        code, _ = run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], logs / "pip-upgrade.log")
    if code == 0:
        code, _ = run([python, "-m", "pip", "install", "--quiet", f"{wheel}[{extra}]"], logs / "pip.log")
    row["install_s"] = round(time.monotonic() - start, 1)
    row["installed"] = code == 0
    row["venv_mb"] = round(folder_mb(venv))
    if code != 0:
        row["error"] = (logs / "pip.log").read_text()[-500:] if (logs / "pip.log").exists() else "venv failed"
        return row
    probe = "import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in %r}))" % (FRAMEWORKS,)
    row["frameworks"] = json.loads(subprocess.run([str(python), "-c", probe], capture_output=True, text=True).stdout)
    env = dict(os.environ, KERAS_BACKEND=EXTRAS[extra], TF_CPP_MIN_LOG_LEVEL="2", KERAS_ICT_CACHE=str(work / f"cache-{extra}"))
    env.pop("PYTHONPATH", None)
    cli, out = venv / "bin" / "keras-ict", work / f"run-{extra}"
    shutil.rmtree(out, ignore_errors=True)
    commands = {
        "train": [cli, "train", "--preset", "mnist", "--data", DATA, "--steps", "2", "--batch-size", "8",
                  "--set", f"network_overrides={TINY_NET}", "--set", "sample_count=4", "--out", out],
        "sample": [cli, "sample", "--model", out / "final", "--seeds", "0-3", "--out", out / "grid.png"],
        "fid": [cli, "fid", "--model", out / "final", "--ref", DATA, "--num", "16", "--steps", "1",
                "--weights", WEIGHTS, "--out", out / "fid.json"],
    }
    for name, cmd in commands.items():
        code, seconds = run(cmd, logs / f"{name}.log", env=env, cwd=work)  # outside the checkout
        row[name] = {"exit": code, "s": round(seconds, 1)}
        if code != 0:
            row[name]["tail"] = (logs / f"{name}.log").read_text()[-400:]
            break
    if not keep:
        shutil.rmtree(venv, ignore_errors=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extras", nargs="+", default=list(EXTRAS), choices=list(EXTRAS))
    parser.add_argument("--work", help="folder for the venvs and runs (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the venvs")
    parser.add_argument("--json", default="benchmarks/results/install_check.json")
    args = parser.parse_args(argv)
    for path in (DATA, WEIGHTS):
        if not path.is_file():
            parser.error(f"{path} is missing")
    work = Path(args.work or tempfile.mkdtemp(prefix="keras-ict-install-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}", flush=True)

    shutil.rmtree(work / "wheel", ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "wheel"), str(REPO)],
                   check=True)
    (wheel,) = (work / "wheel").glob("keras_ict-*.whl")

    rows = []
    for extra in args.extras:
        print(f"=== [{extra}] ===", flush=True)
        row = check_extra(extra, wheel, work, args.keep)
        row["measured"] = {"date": time.strftime("%Y-%m-%d"), "platform": platform.platform(), "cpus": os.cpu_count()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    # Extras not checked this time keep their earlier rows (each row says when and where it was measured).
    earlier = REPO / args.json
    if earlier.is_file():
        old_report = json.loads(earlier.read_text())
        for row in old_report.get("extras", []):
            if row["extra"] not in args.extras:
                row.setdefault("measured", {"platform": old_report.get("machine", {}).get("platform")})
                rows.append(row)
        rows.sort(key=lambda r: list(EXTRAS).index(r["extra"]))
    print()
    print("| extra | install s | venv MB | also installed | train | sample | fid |")
    print("| --- | ---: | ---: | --- | --- | --- | --- |")
    ok = True
    for r in rows:
        others = ", ".join(m for m, present in r.get("frameworks", {}).items() if present and m != r["backend"]) or "-"
        cells = [("ok" if r[c]["exit"] == 0 else f"exit {r[c]['exit']}") + f" ({r[c]['s']} s)" if c in r else "-"
                 for c in ("train", "sample", "fid")]
        ok &= r["installed"] and all(c in r and r[c]["exit"] == 0 for c in ("train", "sample", "fid"))
        print(f"| [{r['extra']}] | {r['install_s']} | {r['venv_mb']} | {others} | " + " | ".join(cells) + " |")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _common import versions, write_json

    report = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
              "python": platform.python_version(), "dev_venv_versions": versions(), "wheel": wheel.name, "extras": rows}
    print("wrote", write_json(REPO / args.json, report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
