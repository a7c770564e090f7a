"""Train a small iCT model on MNIST on the CPU, then sample 1-step and 2-step grids.

    KERAS_BACKEND=jax python examples/quickstart.py --steps 400 --out runs/quickstart

Data: an .npz with `x_train` (N, 28, 28) uint8 like keras.datasets.mnist; defaults to the offline copy in
../shared/datasets/mnist_small.npz. Images are padded 28 -> 32 and scaled to [-1, 1].
"""

import argparse
import os
import time
from pathlib import Path

import keras
import numpy as np

import keras_ict
from keras_ict.networks import network_from_preset

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist_small.npz"


def load_mnist_npz(path):
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: data file not found: {path}")
    with np.load(path) as data:
        if "x_train" not in data:
            raise SystemExit(f"error: {path} has no 'x_train' array (keys: {sorted(data.keys())})")
        x = data["x_train"]
    if x.ndim != 3 or x.dtype != np.uint8:
        raise SystemExit(f"error: expected x_train of shape (N, H, W) uint8, got {x.shape} {x.dtype}")
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))  # 28 -> 32, background is 0
    return (x.astype(np.float32) / 127.5 - 1.0)[..., None]


class PrintLoss(keras.callbacks.Callback):
    def __init__(self, every):
        super().__init__()
        self.every, self.start = every, time.time()

    def on_train_batch_end(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.step))
        if step % self.every == 0:
            print(
                f"step {step:5d}  loss {logs['loss']:.4f}  N {int(logs['num_scales']):4d}  "
                f"mean sigma {logs['mean_sigma']:.3f}  {time.time() - self.start:6.1f}s",
                flush=True,
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--ema-decay", type=float, default=0.995)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/quickstart")
    args = parser.parse_args()
    if args.steps < 1 or args.batch_size < 1:
        raise SystemExit("error: --steps and --batch-size must be >= 1")

    x = load_mnist_npz(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    print(f"backend {keras.backend.backend()}, {len(x)} images from {args.data}, {args.steps} steps of {args.batch_size}")

    network = network_from_preset("ncsnpp_mnist_small", dropout=args.dropout)
    model = keras_ict.ConsistencyModel(network)
    trainer = keras_ict.ConsistencyTrainer(model, total_steps=args.steps, ema_decay=args.ema_decay, seed=args.seed)
    trainer.compile(optimizer=keras_ict.optimizers.RAdam(args.lr))
    print(f"network: {network.count_params():,} parameters")

    # Exactly args.steps batches: reshuffled passes over the data, concatenated, fed as one epoch.
    rng = np.random.default_rng(args.seed)
    passes = -(-args.steps * args.batch_size // len(x))
    order = np.concatenate([rng.permutation(len(x)) for _ in range(passes)])[: args.steps * args.batch_size]
    trainer.fit(
        x[order], batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0,
        callbacks=[PrintLoss(every=max(1, args.steps // 20)), keras.callbacks.TerminateOnNaN()],
    )

    seeds = range(64)
    one = keras_ict.generate(trainer, seeds, sigmas=(80.0,))
    two = keras_ict.generate(trainer, seeds, sigmas=(80.0, 0.821))
    keras_ict.save_image_grid(one, out / "samples_1step.png", ncols=8)
    keras_ict.save_image_grid(two, out / "samples_2step.png", ncols=8)
    ema_path = out / "ema_model.keras"
    tmp = out / ".ema_model.keras.tmp.keras"
    trainer.ema_model.save(tmp)
    os.replace(tmp, ema_path)
    print(f"wrote {out / 'samples_1step.png'}, {out / 'samples_2step.png'} and {ema_path}")


if __name__ == "__main__":
    main()
