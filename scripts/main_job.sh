#!/usr/bin/env bash
# Main job: a short real iCT training run on MNIST with the `mnist` recipe (CPU, about 5 minutes), then 1-step
# and 2-step sample grids and an export to TF SavedModel + ONNX (checked against Keras). 300 steps are far too
# few for digits, so it also samples the `mnist` zoo entry (the same recipe trained for a whole session) into the
# same folder: zoo_mnist_2step.png. Data: ../shared/datasets/mnist_small.npz when present, else tfds "mnist".
# Extra arguments go to `keras-ict train` (e.g. --steps 1000, --fresh, --backend jax).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# TensorFlow is the fastest of the three backends on a small CPU (BUILD_NOTES.md); KERAS_BACKEND overrides.
backend=${KERAS_BACKEND:-tensorflow}
data=../shared/datasets/mnist_small.npz
[ -f "$data" ] || data=mnist
out=runs/main
.venv/bin/keras-ict train --preset mnist --data "$data" --steps 300 --out "$out" --backend "$backend" "$@"
.venv/bin/keras-ict sample --model "$out/final" --seeds 0-63 --steps 1 --out "$out/grid_1step.png" --backend "$backend"
.venv/bin/keras-ict sample --model "$out/final" --seeds 0-63 --steps 2 --out "$out/grid_2step.png" --backend "$backend"
.venv/bin/keras-ict export --model "$out/final" --out "$out/export" --overwrite --backend "$backend"
.venv/bin/python examples/onnx_generate.py --model "$out/export" --seeds 0-63 --out "$out/grid_onnx.png"
.venv/bin/keras-ict sample --model mnist --seeds 0-63 --steps 2 --out "$out/zoo_mnist_2step.png" --backend "$backend"
echo "Files: $out/final/ (EMA weights, config, metadata, samples), $out/grid_1step.png, $out/grid_2step.png,"
echo "       $out/export/ (saved_model/, model.onnx, generate_2step.onnx, denoise.onnx, export.json),"
echo "       $out/grid_onnx.png (ONNX Runtime, no keras-ict), $out/log.csv, $out/tensorboard/, $out/samples/, $out/checkpoints/,"
echo "       $out/zoo_mnist_2step.png (the mnist zoo entry, 2 steps: what the recipe reaches with a session's training)"
