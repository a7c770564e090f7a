#!/usr/bin/env bash
# Trains the `cifar10-small` zoo entry (unconditional CIFAR-10 from the JPEG copy, CPU-sized NCSN++) exactly as
# recorded in zoo/cifar10-small/. Rerunning resumes an interrupted run. The whole entry: scripts/zoo/cifar10_small.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
keras-ict train --preset cifar10-small --data ../shared/datasets/cifar10_jpeg.tar.gz --steps 2000 --out "${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo/cifar10-small" "$@"
