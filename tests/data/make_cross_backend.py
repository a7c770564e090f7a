"""Write the cross-backend fixture of the current backend: weights, outputs and a fixed-noise loss.

    for b in tensorflow jax torch; do KERAS_BACKEND=$b python tests/data/make_cross_backend.py; done
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import cross_backend_case as case  # noqa: E402


def main():
    backend = keras.backend.backend()
    keras.utils.set_random_seed({"tensorflow": 1, "jax": 2, "torch": 3}[backend])
    model = case.build_model()
    # Randomise every trainable weight (the zero-ish default init of output convs would make the outputs
    # nearly independent of the weights, and the test would prove little).
    rng = np.random.default_rng({"tensorflow": 1, "jax": 2, "torch": 3}[backend])
    for w in model.trainable_weights:
        shape = tuple(w.shape)
        scale = 0.3 if len(shape) < 2 else 1.0 / np.sqrt(np.prod(shape[:-1]))
        w.assign(rng.standard_normal(shape).astype("float32") * scale)
    x, sigma, noise, sigma_i, sigma_next = case.inputs()
    out = ops.convert_to_numpy(model([x, sigma]))
    loss = ops.convert_to_numpy(case.build_trainer(model).consistency_loss(x, noise, sigma_i, sigma_next, training=False))
    target = HERE / "cross_backend"
    target.mkdir(exist_ok=True)
    model.save_weights(target / f"{backend}.weights.h5")
    np.savez(target / f"{backend}.npz", output=out, loss=loss, keras_version=keras.__version__)
    print(f"wrote {target}/{backend}.*  loss {loss}")


if __name__ == "__main__":
    main()
