"""The Python API end to end: train a small iCT model on MNIST, then sample 1-step and 2-step grids.

    KERAS_BACKEND=tensorflow python examples/quickstart.py --steps 300 --out runs/quickstart

(`keras-ict train --preset mnist ...` does the same with checkpoints, logging and resume.)
"""

import argparse
from pathlib import Path

import keras

import keras_ict
from keras_ict.data import load_dataset
from keras_ict.networks import build_architecture

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist_small.npz"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA if DEFAULT_DATA.is_file() else "mnist"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="runs/quickstart")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    dataset = load_dataset(args.data, image_size=32, batch_size=args.batch_size, seed=0)  # [-1, 1], 28 -> 32 padded
    model = keras_ict.ConsistencyModel(build_architecture("ncsnpp_mnist_small"))
    trainer = keras_ict.ConsistencyTrainer(model, total_steps=args.steps, ema_decay=0.999)
    trainer.compile(optimizer=keras_ict.optimizers.RAdam(2e-4))
    trainer.fit(dataset, epochs=1, steps_per_epoch=args.steps, shuffle=False)  # the pipeline shuffles

    out = Path(args.out)
    for steps, sigmas in ((1, (80.0,)), (2, (80.0, 0.821))):
        images = keras_ict.generate(trainer.ema_model, seeds=range(64), sigmas=sigmas)
        print("wrote", keras_ict.save_image_grid(images, out / f"samples_{steps}step.png", ncols=8))


if __name__ == "__main__":
    main()
