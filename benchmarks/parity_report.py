"""Max abs error of the Keras networks against EDM's own outputs (../shared/parity), per backend.

    python benchmarks/parity_report.py [--shared ../shared] [--backends tensorflow jax torch]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def errors(shared):
    import keras
    import numpy as np

    from keras_ict.networks import from_edm_config, load_edm_state_dict

    out = {}
    for path in sorted((Path(shared) / "parity").glob("*.npz")):
        data = np.load(path)
        meta = json.loads(str(data["meta"]))
        net = from_edm_config(meta["edm_class"], **meta["kwargs"])
        load_edm_state_dict(net, path)
        inputs = [data["input/x_nchw"].transpose(0, 2, 3, 1).astype("float32"), data["input/noise_labels"].astype("float32")]
        if "input/class_labels_onehot" in data.files:
            inputs.append(data["input/class_labels_onehot"].astype("float32"))
        y = keras.ops.convert_to_numpy(net(inputs))
        out[path.name] = float(np.abs(y - data["output/y_nchw"].transpose(0, 2, 3, 1)).max())
    return {"backend": keras.backend.backend(), "max_abs_error": out}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(REPO.parent / "shared"))
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--json", default="benchmarks/results/parity.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(errors(args.shared)))
        return
    rows = []
    for backend in args.backends:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run([sys.executable, __file__, "--worker", "--shared", args.shared],
                              env=env, capture_output=True, text=True, cwd=REPO)
        if proc.returncode:
            sys.exit(f"{backend} failed:\n{proc.stderr[-2000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    names = list(rows[0]["max_abs_error"])
    print(f"{'fixture':<36}" + "".join(f"{r['backend']:>12}" for r in rows))
    for name in names:
        print(f"{name:<36}" + "".join(f"{r['max_abs_error'][name]:>12.2e}" for r in rows))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
