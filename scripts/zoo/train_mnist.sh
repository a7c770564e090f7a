#!/usr/bin/env bash
# Trains the `mnist` zoo entry (unconditional MNIST, CPU-sized NCSN++) exactly as recorded in zoo/mnist/.
# Rerunning resumes an interrupted run. Then: scripts/zoo/publish.sh mnist
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
keras-ict train --preset mnist --data ../shared/datasets/mnist.npz --steps 3000 --out runs/zoo/mnist "$@"
