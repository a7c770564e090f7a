"""Sampling speed: 1-step and 2-step images/s and batch-1 latency, Keras per backend vs ONNX Runtime vs SavedModel.

    python benchmarks/sample_throughput.py [--model zoo/mnist | --preset mnist] [--batch-size 64] [--repeats 5]

All runtimes use the same weights: a model folder (zoo entry or RUN_DIR/final), or a preset's network with
seeded random weights (speed does not depend on training). The model is exported once (keras_ict.export);
Keras is timed with `keras_ict.generate` in one subprocess per backend (predict_on_batch, per-seed noise
included), ONNX Runtime and the SavedModel on the exported files with the same noise. Times are the median of
--repeats after one warm-up call. Prints a table and writes JSON.
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


def median_time(fn, repeats):
    fn()  # warm-up: tracing / compilation / session initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def model_folder(args, scratch):
    """A model folder with config.json and weights: the given one, or a preset's network with seeded weights."""
    if args.model:
        return Path(args.model)
    import keras

    from keras_ict.files import write_json
    from keras_ict.recipes import build_consistency_model, model_config, resolve_config

    config = model_config(resolve_config(args.preset))
    keras.utils.set_random_seed(0)
    model = build_consistency_model(config).build_for_images()
    folder = Path(scratch) / "model"
    folder.mkdir()
    model.save_weights(folder / "model.weights.h5")
    write_json(folder / "config.json", config)
    return folder


def keras_worker(args):
    import keras

    from keras_ict.sampling import generate
    from keras_ict.zoo import from_preset

    model = from_preset(args.model_folder, verify=False)
    rows = []
    for steps in (1, 2):
        sigmas = model.sampling[f"sigmas_{steps}step"]
        for batch in (args.batch_size, 1):
            seeds = list(range(batch))
            labels = [s % model.label_dim for s in seeds] if model.conditional else None
            t = median_time(lambda: generate(model, seeds, sigmas=sigmas, labels=labels, batch_size=batch), args.repeats)
            rows.append({"runtime": f"keras/{keras.backend.backend()}", "steps": steps, "batch": batch, "seconds": t})
    return rows


def exported_rows(args, export_dir, info):
    import numpy as np

    from keras_ict.export import load_onnx, load_saved_model
    from keras_ict.sampling import seed_noise

    rows = []
    saved = load_saved_model(export_dir)
    for steps in (1, 2):
        endpoint = f"generate_{steps}step"
        session = load_onnx(export_dir / info["endpoints"][endpoint]["onnx_file"])
        for batch in (args.batch_size, 1):
            seeds = list(range(batch))
            noise = seed_noise(seeds, info["image_shape"], steps)
            feeds = {"noise": noise[0]}
            if steps == 2:
                feeds["noise2"] = noise[1]
            if info["label_dim"]:
                feeds["labels"] = (np.arange(batch) % info["label_dim"]).astype(np.int32)
            t = median_time(lambda: session.run(["images"], feeds), args.repeats)
            rows.append({"runtime": "onnxruntime", "steps": steps, "batch": batch, "seconds": t})
            signature = saved.signatures[endpoint]
            t = median_time(lambda: signature(**feeds)["images"].numpy(), args.repeats)
            rows.append({"runtime": "tf saved_model", "steps": steps, "batch": batch, "seconds": t})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder or zoo entry path (default: --preset with random weights)")
    parser.add_argument("--preset", default="mnist")
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "sample_throughput.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(keras_worker(args)))
        return
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from keras_ict.export import export

    with tempfile.TemporaryDirectory() as scratch:
        folder = model_folder(args, scratch)
        export_dir = Path(scratch) / "export"
        info = export(folder, export_dir)
        rows = []
        for backend in args.backends:
            cmd = [sys.executable, __file__, "--worker", "--model-folder", str(folder), "--batch-size",
                   str(args.batch_size), "--repeats", str(args.repeats)]
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
            if proc.returncode != 0:
                print(f"{backend}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.extend(json.loads(proc.stdout.strip().splitlines()[-1]))
        rows.extend(exported_rows(args, export_dir, info))
    for row in rows:
        row["img_per_s"] = row["batch"] / row["seconds"]
        row["latency_ms"] = 1000 * row["seconds"] if row["batch"] == 1 else None

    report = {
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "python": platform.python_version(),
        "keras": keras.__version__,
        "config": {k: v for k, v in vars(args).items() if k not in ("worker", "model_folder")},
        "image_shape": info["image_shape"],
        "results": rows,
    }
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import write_json
    from tables import sample_table

    write_json(args.json, report)

    print(sample_table(Path(args.json).name, report))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
