#!/usr/bin/env bash
# Trains the `mnist` zoo entry (unconditional MNIST, CPU-sized NCSN++) exactly as recorded in zoo/mnist/.
# Rerunning resumes an interrupted run. Then: scripts/zoo/mnist.sh publishes it.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
keras-ict train --preset mnist --data ../shared/datasets/mnist.npz --steps 2500 --set curriculum_steps=2500 --out "${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo/mnist" "$@"
