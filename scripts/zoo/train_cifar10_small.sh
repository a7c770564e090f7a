#!/usr/bin/env bash
# Trains the `cifar10-small` zoo entry (unconditional CIFAR-10 from the JPEG copy, CPU-sized NCSN++) exactly as
# recorded in zoo/cifar10-small/. Rerunning resumes an interrupted run. The whole entry: scripts/zoo/cifar10_small.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
# Trained with the session-11 CPU recipe of the `cifar10-small` preset (EMA warm-up, lr 1e-3 with a 200-step warm-up,
# s1 150, 2500 steps; the curriculum spans the whole run), taken from the MNIST study without a CIFAR-10 study.
keras-ict train --preset cifar10-small --data ../shared/datasets/cifar10_jpeg.tar.gz --steps 2500 --set curriculum_steps=2500 --out "${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo/cifar10-small" "$@"
