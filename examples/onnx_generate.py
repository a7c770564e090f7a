"""Generate images from an exported keras-ict model with ONNX Runtime only (numpy + Pillow + onnxruntime).

    python examples/onnx_generate.py --model zoo/mnist --seeds 0-63 --steps 1 --out grid.png

`--model` is a folder written by `keras-ict export` (or a zoo entry): it holds model.onnx (one step),
generate_2step.onnx and export.json. Image i uses `numpy.random.default_rng(seed_i)` noise, exactly as
keras-ict's `generate`, so the grid equals `keras-ict sample` for the same seeds.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image


def seed_noise(seeds, shape, draws):
    out = np.empty((draws, len(seeds)) + tuple(shape), np.float32)
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        for d in range(draws):
            out[d, i] = rng.standard_normal(shape)
    return out


def grid(images, ncols):
    n, h, w, c = images.shape
    rows = -(-n // ncols)
    out = np.zeros((rows * h, ncols * w, c), np.uint8)
    for i, image in enumerate(images):
        r, k = divmod(i, ncols)
        out[r * h : (r + 1) * h, k * w : (k + 1) * w] = image
    return out[..., 0] if c == 1 else out


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
    parser.add_argument("--out", default="onnx_grid.png")
    args = parser.parse_args()

    folder = Path(args.model)
    info = json.loads((folder / "export.json").read_text())
    endpoint = "generate_1step" if args.steps == 1 else "generate_2step"
    session = onnxruntime.InferenceSession(str(folder / info["endpoints"][endpoint]["onnx_file"]),
                                           providers=["CPUExecutionProvider"])
    seeds = parse_seeds(args.seeds)
    noise = seed_noise(seeds, info["image_shape"], args.steps)
    feeds = {"noise": noise[0]}
    if args.steps == 2:
        feeds["noise2"] = noise[1]
    if info["label_dim"]:
        labels = [int(v) for v in args.labels.split(",")] if args.labels else [s % info["label_dim"] for s in seeds]
        feeds["labels"] = np.resize(np.asarray(labels, np.int32), len(seeds))
    (images,) = session.run(["images_uint8"], feeds)
    Image.fromarray(grid(images, ncols=int(np.ceil(np.sqrt(len(seeds)))))).save(args.out)
    print(f"wrote {len(seeds)} images to {args.out}")


if __name__ == "__main__":
    main()
