"""A digit judge for MNIST-like models: a small classifier that says whether samples are digits, and which.

FID with the Inception network costs ~6 GFLOP per image on a CPU; this judge costs ~0.02, so a learning curve
can have many points. It reports, for uint8 images of shape (N, 32, 32, 1) (MNIST padded as our presets pad it):

- `judge_fd`: Frechet distance between the judge's penultimate features (128-d, before the ReLU) of the samples and of the MNIST
  training set. Like FID it falls as samples get closer to the data, but the numbers are not FID and do not
  compare with it.
- `judge_confidence`: mean top-class probability; `judge_recognisable`: fraction with top probability >= 0.9.
- `judge_class_entropy`: entropy of the predicted-class histogram over ln 10 (1.0: every digit equally often;
  low: the model makes few kinds of digit).
- `judge_label_accuracy` (class-conditional models, when the requested labels are given): fraction of samples
  whose top class is the requested digit.

The judge's weights and its reference statistics live in one `.npz` (default `fid_refs/mnist-digit-judge.npz`),
made by `python -m keras_ict.digit_judge --data ../shared/datasets/mnist.npz --out fid_refs/mnist-digit-judge.npz`
(seeded; prints and stores the held-out test accuracy).
"""

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

IMAGE_SHAPE = (32, 32, 1)
FEATURE_DIM = 128
CONFIDENT = 0.9
FORMAT = "keras-ict-digit-judge-1"


def default_judge_path():
    """$KERAS_ICT_DIGIT_JUDGE, else the repository's fid_refs/mnist-digit-judge.npz."""
    env = os.environ.get("KERAS_ICT_DIGIT_JUDGE")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[1] / "fid_refs" / "mnist-digit-judge.npz"


def build_classifier():
    """Three 3x3 conv + 2x2 max-pool stages (32, 64, 128 channels), 128-d features, 10 logits (~0.3M params)."""
    import keras
    from keras import layers

    inputs = keras.Input(IMAGE_SHAPE)
    x = inputs
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    # Features before the ReLU: after it, units that never fire on MNIST would make the covariance singular.
    features = layers.Dense(FEATURE_DIM, name="features")(x)
    logits = layers.Dense(10, name="logits")(layers.ReLU()(features))
    return keras.Model(inputs, [features, logits], name="digit_judge")


def _to_float(images_uint8):
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"the digit judge takes uint8 images of shape (N, 32, 32, 1), got {images.dtype} "
                         f"{images.shape}")
    return images.astype(np.float32) / 127.5 - 1.0


class DigitJudge:
    """Loads the judge from its `.npz` (weights + MNIST reference feature statistics + test accuracy)."""

    def __init__(self, path=None):
        path = Path(path) if path is not None else default_judge_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"digit judge file not found: {path} (set KERAS_ICT_DIGIT_JUDGE to the file, or make it with "
                f"`python -m keras_ict.digit_judge --data MNIST.npz --out {path}`)")
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != FORMAT:
                raise ValueError(f"{path} is not a digit judge file of format {FORMAT}")
            count = int(data["num_weights"])
            weights = [data[f"weight_{i}"] for i in range(count)]
            self.mu, self.sigma = data["mu"], data["sigma"]
            self.test_accuracy = float(data["test_accuracy"])
        self.path = path
        self.model = build_classifier()
        self.model.set_weights(weights)

    def predict(self, images_uint8, batch_size=500):
        """(features (N, 128), class probabilities (N, 10)) as NumPy arrays."""
        x = _to_float(images_uint8)
        features, logits = [], []
        for start in range(0, len(x), batch_size):
            f, g = self.model.predict_on_batch(x[start:start + batch_size])
            features.append(np.asarray(f, np.float64))
            logits.append(np.asarray(g, np.float64))
        logits = np.concatenate(logits)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return np.concatenate(features), probs / probs.sum(axis=1, keepdims=True)

    def score(self, images_uint8, labels=None):
        """The metrics of the module docstring for a batch of uint8 images (and requested labels, if any)."""
        from keras_ict import fid

        features, probs = self.predict(images_uint8)
        if len(features) < 2:
            raise ValueError("the digit judge needs at least 2 images")
        mu, sigma = fid.statistics(features)
        top = probs.max(axis=1)
        counts = np.bincount(probs.argmax(axis=1), minlength=10) / len(probs)
        entropy = -sum(p * math.log(p) for p in counts if p > 0) / math.log(10)
        result = {
            "judge_fd": fid.frechet_distance(mu, sigma, self.mu, self.sigma),
            "judge_confidence": float(top.mean()),
            "judge_recognisable": float((top >= CONFIDENT).mean()),
            "judge_class_entropy": float(entropy),
        }
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if labels.shape != (len(probs),):
                raise ValueError(f"labels must have one entry per image ({len(probs)}), got shape {labels.shape}")
            result["judge_label_accuracy"] = float((probs.argmax(axis=1) == labels).mean())
        return result


def judge_model(model, judge=None, *, num=2000, sigmas=(80.0,), seed_start=0, batch_size=64):
    """Samples `num` images from seeds seed_start.. (labels seed % label_dim) and scores them with the judge."""
    from keras_ict.sampling import _as_consistency_model, generate, to_uint8

    model = _as_consistency_model(model)
    if tuple(int(v) for v in model.image_shape) != IMAGE_SHAPE:
        raise ValueError(f"the digit judge scores 32x32x1 models (padded MNIST); this model makes {model.image_shape}")
    judge = judge if isinstance(judge, DigitJudge) else DigitJudge(judge)
    seeds = list(range(int(seed_start), int(seed_start) + int(num)))
    labels = [s % model.label_dim for s in seeds] if model.conditional else None
    images = to_uint8(generate(model, seeds, sigmas=sigmas, labels=labels, batch_size=batch_size))
    return judge.score(images, labels)


def _mnist_arrays(data, split):
    from keras_ict.evaluation import reference_images

    images = np.concatenate(list(reference_images(data, split=split, image_size=32, channels=1)))
    with np.load(data, allow_pickle=False) as npz:
        labels = npz[f"y_{split}"].astype(np.int64)
    if len(labels) != len(images):
        raise ValueError(f"{data}: {len(images)} images but {len(labels)} labels in split {split!r}")
    return images, labels


def train_judge(data, out, *, epochs=2, seed=0, batch_size=128):
    """Trains the judge on MNIST train (an .npz with x_/y_train and x_/y_test), writes weights + statistics."""
    import keras

    from keras_ict import fid
    from keras_ict.files import atomic_write_bytes_npz, sha256_file

    data, out = Path(data), Path(out)
    if not data.is_file():
        raise FileNotFoundError(f"MNIST .npz not found: {data}")
    start = time.monotonic()
    x_train, y_train = _mnist_arrays(data, "train")
    x_test, y_test = _mnist_arrays(data, "test")
    keras.utils.set_random_seed(seed)
    model = build_classifier()
    trainable = keras.Model(model.input, model.outputs[1])
    trainable.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    trainable.fit(_to_float(x_train), y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=2)
    _, accuracy = trainable.evaluate(_to_float(x_test), y_test, batch_size=500, verbose=0)
    weights = model.get_weights()
    judge = DigitJudge.__new__(DigitJudge)
    judge.model = model
    features, _ = judge.predict(x_train)
    mu, sigma = fid.statistics(features)
    arrays = {f"weight_{i}": w for i, w in enumerate(weights)}
    atomic_write_bytes_npz(
        out, format=np.array(FORMAT), num_weights=np.array(len(weights)), mu=mu, sigma=sigma,
        test_accuracy=np.array(accuracy), data_sha256=np.array(sha256_file(data)), seed=np.array(seed),
        epochs=np.array(epochs), backend=np.array(keras.backend.backend()), **arrays)
    print(f"digit judge: test accuracy {accuracy:.4f} on {len(y_test)} images; wrote {out} "
          f"({time.monotonic() - start:.0f} s, backend {keras.backend.backend()})")
    return accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train the MNIST digit judge (weights + reference statistics).")
    parser.add_argument("--data", required=True, help="MNIST .npz with x_train, y_train, x_test, y_test")
    parser.add_argument("--out", default=str(default_judge_path()))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    train_judge(args.data, args.out, epochs=args.epochs, seed=args.seed)


if __name__ == "__main__":
    main()
