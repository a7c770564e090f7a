#!/usr/bin/env bash
# Trains the `mnist-cond` zoo entry (class-conditional MNIST, CPU-sized NCSN++) exactly as recorded in zoo/mnist-cond/.
# Rerunning resumes an interrupted run. The whole entry (train, FID, exports, card): scripts/zoo/mnist_cond.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
keras-ict train --preset mnist-cond --data ../shared/datasets/mnist.npz --steps 3000 --out "${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo/mnist-cond" "$@"
