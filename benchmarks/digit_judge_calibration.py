"""Where the digit judge's scores lie: real MNIST test digits, uniform noise, and the zoo's MNIST models.

    python benchmarks/digit_judge_calibration.py [--num 2000] [--json benchmarks/results/digit_judge_calibration.json]

The judge (`keras_ict.digit_judge`, fid_refs/mnist-digit-judge.npz) scores `--num` images of each kind: the first
MNIST test images (padded to 32x32, with their labels), uniform noise, and 1- and 2-step samples of the zoo
entries `mnist` and `mnist-cond` (seeds 0.., labels seed % 10). The real-digit row is the floor of `judge_fd`
at this sample count (a finite sample biases Frechet distances upwards), the noise row its ceiling.
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import repo_relative, versions, write_json  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "mnist.npz"))
    parser.add_argument("--zoo", nargs="*", default=["mnist", "mnist-cond"])
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "digit_judge_calibration.json"))
    args = parser.parse_args()
    if not 2 <= args.num <= 10_000:
        parser.error(f"--num must be in [2, 10000] (the MNIST test split), got {args.num}")
    if not Path(args.data).is_file():
        parser.error(f"MNIST .npz not found: {args.data}")

    import keras

    from keras_ict import zoo
    from keras_ict.digit_judge import DigitJudge, _mnist_arrays, judge_model
    from keras_ict.evaluation import resolve_sigmas

    judge = DigitJudge()
    images, labels = _mnist_arrays(args.data, "test")
    rows = [dict(kind="MNIST test digits", **judge.score(images[:args.num], labels[:args.num]))]
    noise = np.random.default_rng(0).integers(0, 256, (args.num, 32, 32, 1)).astype(np.uint8)
    rows.append(dict(kind="uniform noise", **judge.score(noise)))
    for name in args.zoo:
        model = zoo.from_preset(name)
        for sigmas in (resolve_sigmas(model, 1), resolve_sigmas(model, 2)):
            start = time.monotonic()
            scores = judge_model(model, judge, num=args.num, sigmas=sigmas)
            rows.append(dict(kind=f"zoo {name}, {len(sigmas)}-step", wall_s=round(time.monotonic() - start, 1),
                             **scores))
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.machine()},
        "versions": versions(),
        "backend": keras.backend.backend(),
        "judge": {"file": repo_relative(judge.path), "test_accuracy": judge.test_accuracy},
        "num": args.num,
        "rows": rows,
    }
    write_json(args.json, report)
    keys = ("judge_fd", "judge_recognisable", "judge_confidence", "judge_class_entropy", "judge_label_accuracy")
    print("| images | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    for row in rows:
        print(f"| {row['kind']} | " + " | ".join(f"{row[k]:.3f}" if k in row else "-" for k in keys) + " |")
    print(f"wrote {repo_relative(Path(args.json))}")


if __name__ == "__main__":
    main()
