"""Sanity figures for the FID port: dataset-vs-dataset FIDs from reference statistics.

    python benchmarks/fid_reference_sanity.py [--data-dir ../shared/datasets] [--json benchmarks/results/fid_sanity.json]

Computes (or reads from the content-hash cache, see keras_ict.evaluation) the statistics of CIFAR-10 (JPEG copy)
train and test and of MNIST train (padded to 32x32, one channel, as the mnist preset trains), then prints:
  * CIFAR-10 JPEG test (10k) vs train (50k): the published figure for the real (PNG) data with this network is
    3.15 (Song & Dhariwal 2024, Table / EDM convention: "FID of the test set"); the JPEG copy differs in pixels;
  * the first 512 train vs the first 512 test images (folder order: all airplanes; small-sample bias);
  * CIFAR-10 train vs MNIST train.
Computing everything from scratch takes about 70 minutes on a 2-core CPU (120k images through Inception).
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import repo_relative, write_json  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "fid_sanity.json"))
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

    import keras

    from keras_ict import fid
    from keras_ict.evaluation import reference_statistics

    data = Path(args.data_dir)
    cifar, mnist = data / "cifar10_jpeg.tar.gz", data / "mnist.npz"
    start = time.monotonic()
    stats = {
        "cifar10-jpeg train (50k)": reference_statistics(cifar, split="train"),
        "cifar10-jpeg test (10k)": reference_statistics(cifar, split="test"),
        "cifar10-jpeg train[:512]": reference_statistics(cifar, split="train", num=512),
        "cifar10-jpeg test[:512]": reference_statistics(cifar, split="test", num=512),
        "mnist train (60k, 32x32)": reference_statistics(mnist, split="train", image_size=32, channels=1),
    }
    pairs = [
        ("cifar10-jpeg test (10k)", "cifar10-jpeg train (50k)", "published 3.15 for the real CIFAR-10 test vs train"),
        ("cifar10-jpeg test[:512]", "cifar10-jpeg train[:512]",
         "first 512 in folder order: all class 0 (airplane), so not comparable with the issue's 74.7 (other images)"),
        ("mnist train (60k, 32x32)", "cifar10-jpeg train (50k)",
         "full sets (MNIST padded, grey repeated to RGB by the FID preprocessing); the issue's 317.9 used 512 images of each"),
    ]
    rows = []
    for a, b, note in pairs:
        value = fid.frechet_distance(stats[a][0], stats[a][1], stats[b][0], stats[b][1])
        rows.append({"a": a, "b": b, "fid": value, "note": note,
                     "sha256": [stats[a][2]["ref_sha256"], stats[b][2]["ref_sha256"]]})
    print("| A | B | FID | note |\n| --- | --- | ---: | --- |")
    for r in rows:
        print(f"| {r['a']} | {r['b']} | {r['fid']:.2f} | {r['note']} |")
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "wall_s": round(time.monotonic() - start, 1),
        "results": rows,
        "statistics": {k: {kk: vv for kk, vv in v[2].items() if kk != "cached"} for k, v in stats.items()},
    }
    write_json(args.json, result)
    print(f"wrote {repo_relative(args.json)}")


if __name__ == "__main__":
    main()
