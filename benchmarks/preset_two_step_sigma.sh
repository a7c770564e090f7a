#!/usr/bin/env bash
# The two-step sigma a CPU preset should record, measured on a model the preset itself trains (issue 16):
#
#   bash benchmarks/preset_two_step_sigma.sh mnist 90m [SIGMAS]
#
# Trains PRESET for its own length (resumable: a rerun continues the run, a finished run is a no-op) under
# ${KERAS_ICT_CACHE:-~/.cache/keras_ict}/runs/preset-PRESET, then scores its two-step sampler at each intermediate
# sigma (benchmarks/two_step_sigma.py, FID-2k at seeds 0-1999) into
# benchmarks/results/two_step_sigma_preset-PRESET.json + PNG. The zoo's long runs were searched the same way
# (two_step_sigma_mnist*.json); this says whether the preset's length gives the same answer.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: $0 PRESET TIME_BUDGET [SIGMAS] (PRESET: mnist, mnist-cond or cifar10-small; e.g. $0 mnist 90m)"
PRESET="${1:?$usage}"
BUDGET="${2:?$usage}"
SIGMAS="${3:-0.1,0.2,0.3,0.5,0.821,1.5}"
case "$PRESET" in
    mnist | mnist-cond) DATA=../shared/datasets/mnist.npz; REF=fid_refs/mnist-train-32px.npz ;;
    cifar10-small) DATA=../shared/datasets/cifar10_jpeg.tar.gz; REF=fid_refs/cifar10-jpeg-train.npz ;;
    *) echo "unknown preset '$PRESET'; $usage" >&2; exit 2 ;;
esac
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
RUN="${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/preset-$PRESET"
python -c "import sys; sys.path.insert(0, 'benchmarks'); import two_step_sigma as t
try:
    t.parse_sigmas(sys.argv[1])
except ValueError as e:
    sys.exit(str(e))" "$SIGMAS"  # before training, not after it
keras-ict train --preset "$PRESET" --data "$DATA" --out "$RUN" --time-budget "$BUDGET"
if [ ! -f "$RUN/final/metadata.json" ]; then
    echo "$RUN has not finished within $BUDGET: rerun the same command to continue it" >&2
    exit 1
fi
python benchmarks/two_step_sigma.py --model "$RUN/final" --ref "$REF" --sigmas "$SIGMAS" \
    --json "benchmarks/results/two_step_sigma_preset-$PRESET.json"
