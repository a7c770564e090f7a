#!/usr/bin/env bash
# Main job: a short real iCT training run on MNIST (../shared/datasets/mnist_small.npz by default),
# then 1-step and 2-step sample grids and a saved EMA model. Extra args go to examples/quickstart.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh
export KERAS_BACKEND=${KERAS_BACKEND:-tensorflow}  # fastest of the three on this 2-core CPU (BUILD_NOTES.md)
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec .venv/bin/python examples/quickstart.py "$@"
