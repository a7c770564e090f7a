"""Generate images from an exported keras-ict model with TensorFlow only (no Keras code, no keras-ict).

    python examples/savedmodel_generate.py --model zoo/mnist --seeds 0-63 --steps 2 --out grid.png

`--model` is a folder written by `keras-ict export` (or a zoo entry) holding saved_model/ and export.json.
The SavedModel has the serving signatures generate_1step, generate_2step and denoise. Image i uses
`numpy.random.default_rng(seed_i)` noise, exactly as keras-ict's `generate`.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import tensorflow as tf


def seed_noise(seeds, shape, draws):
    out = np.empty((draws, len(seeds)) + tuple(shape), np.float32)
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        for d in range(draws):
            out[d, i] = rng.standard_normal(shape)
    return out


def parse_seeds(text):
    seeds = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    return seeds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="export folder or zoo entry")
    parser.add_argument("--seeds", default="0-63")
    parser.add_argument("--steps", type=int, choices=(1, 2), default=1)
    parser.add_argument("--labels", help="class label(s) for a conditional model (default: seed % classes)")
    parser.add_argument("--out", default="savedmodel_grid.png")
    args = parser.parse_args()

    folder = Path(args.model)
    info = json.loads((folder / "export.json").read_text())
    signature = tf.saved_model.load(str(folder / "saved_model")).signatures[f"generate_{args.steps}step"]
    seeds = parse_seeds(args.seeds)
    noise = seed_noise(seeds, info["image_shape"], args.steps)
    feeds = {"noise": tf.constant(noise[0])}
    if args.steps == 2:
        feeds["noise2"] = tf.constant(noise[1])
    if info["label_dim"]:
        labels = [int(v) for v in args.labels.split(",")] if args.labels else [s % info["label_dim"] for s in seeds]
        feeds["labels"] = tf.constant(np.resize(np.asarray(labels, np.int32), len(seeds)))
    images = signature(**feeds)["images_uint8"].numpy()
    n, h, w, c = images.shape
    ncols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // ncols)
    canvas = np.zeros((rows * h, ncols * w, c), np.uint8)
    for i, image in enumerate(images):
        r, k = divmod(i, ncols)
        canvas[r * h : (r + 1) * h, k * w : (k + 1) * w] = image
    tf.io.write_file(args.out, tf.io.encode_png(canvas))
    print(f"wrote {n} images to {args.out}")


if __name__ == "__main__":
    main()
