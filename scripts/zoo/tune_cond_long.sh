#!/usr/bin/env bash
# `mnist-cond` from the long `mnist` run (issue 16): class-conditional tuning instead of a second long run from
# scratch. The conditional network starts as the finished long run's EMA model (its label embedding at zero, so
# it starts by drawing the unconditional model's digits for every label: keras_ict/initialization.py) and learns
# the classes at the long run's last curriculum stage (N fixed at 151: s0 = s1 = 150), with the `mnist-cond`
# preset otherwise. Trained a session at a time and carried as carried/mnist-cond-long.tar, like train_long.sh:
#
#   scripts/zoo/tune_cond_long.sh 60m      # then: git add carried/mnist-cond-long.tar && git commit
#   scripts/zoo/publish_long.sh mnist-cond # once it has finished
#
# STEPS (default 6000 = 192k images at batch 32); FID-2k 1- and 2-step every 1,000 steps in its fid.csv.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUDGET="${1:?usage: $0 TIME_BUDGET (e.g. 60m)}"
STEPS="${STEPS:-6000}"
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
RUNS="${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo"
SOURCE="$RUNS/mnist-long"
if [ ! -e "$SOURCE/config.json" ] && [ -f carried/mnist-long.tar ]; then
    keras-ict unpack carried/mnist-long.tar --out "$SOURCE"
fi
if [ ! -f "$SOURCE/final/metadata.json" ]; then
    echo "the long mnist run ($SOURCE) has not finished: continue it with scripts/zoo/train_long.sh mnist BUDGET" >&2
    exit 1
fi
RUN="$RUNS/mnist-cond-long"
CARRIED=carried/mnist-cond-long.tar
if [ ! -e "$RUN/config.json" ] && [ -f "$CARRIED" ]; then
    keras-ict unpack "$CARRIED" --out "$RUN"
fi
keras-ict train --preset mnist-cond --data ../shared/datasets/mnist.npz --init "$SOURCE" --out "$RUN" \
    --set total_steps="$STEPS" --set s0=150 --set s1=150 --set checkpoint_every=500 \
    --set fid_every=1000 --set fid_num=2000 --set fid_steps=1,2 --set fid_ref=fid_refs/mnist-train-32px.npz \
    --time-budget "$BUDGET"
mkdir -p carried
keras-ict pack --run "$RUN" --out "$CARRIED"
