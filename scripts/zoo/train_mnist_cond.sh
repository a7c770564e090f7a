#!/usr/bin/env bash
# Trains the `mnist-cond` zoo entry (class-conditional MNIST, CPU-sized NCSN++) exactly as recorded in zoo/mnist-cond/.
# Rerunning resumes an interrupted run. The whole entry (train, FID, exports, card): scripts/zoo/mnist_cond.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
# Trained with the session-11 CPU recipe of the `mnist-cond` preset (EMA warm-up, lr 1e-3 with a 200-step warm-up,
# s1 150, 2500 steps; the curriculum spans the whole run, as in the `mnist` entry).
keras-ict train --preset mnist-cond --data ../shared/datasets/mnist.npz --steps 2500 --set curriculum_steps=2500 --out "${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo/mnist-cond" "$@"
