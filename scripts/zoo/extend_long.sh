#!/usr/bin/env bash
# Extend a finished long run with weight snapshots, for post-hoc EMAs (issue 16, session 18):
#
#   scripts/zoo/extend_long.sh mnist 3000 85m     # ENTRY, EXTRA_STEPS, TIME_BUDGET
#   python benchmarks/posthoc_ema.py --run ~/.cache/keras_ict/runs/zoo/mnist-long-ext --decays 0.999,0.9995,0.9998 \
#       --ref fid_refs/mnist-train-32px.npz
#
# The run folder ENTRY-long (unpacked from carried/ENTRY-long.tar if missing) is copied once to ENTRY-long-ext
# without its final/, and the copy continues exactly (same optimiser state, EMA, data order and curriculum: N stays
# at its last stage) for EXTRA_STEPS more steps with the student's and EMA's weights saved every 50 steps
# (snapshot_every) and no training-time FID (the post-hoc EMAs are scored afterwards). Rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")/../.."
usage="usage: $0 ENTRY EXTRA_STEPS TIME_BUDGET (ENTRY: mnist or cifar10-small; e.g. $0 mnist 3000 85m)"
ENTRY="${1:?$usage}"
EXTRA="${2:?$usage}"
BUDGET="${3:?$usage}"
case "$ENTRY" in
    mnist) DATA=../shared/datasets/mnist.npz; REF=fid_refs/mnist-train-32px.npz ;;
    cifar10-small) DATA=../shared/datasets/cifar10_jpeg.tar.gz; REF=fid_refs/cifar10-jpeg-train.npz ;;
    *) echo "unknown entry '$ENTRY'; $usage" >&2; exit 2 ;;
esac
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
RUNS="${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo"
SOURCE="$RUNS/$ENTRY-long"
RUN="$RUNS/$ENTRY-long-ext"
if [ ! -e "$RUN/config.json" ]; then
    if [ ! -e "$SOURCE/config.json" ] && [ -f "carried/$ENTRY-long.tar" ]; then
        keras-ict unpack "carried/$ENTRY-long.tar" --out "$SOURCE"
    fi
    if [ ! -f "$SOURCE/final/metadata.json" ]; then
        echo "$SOURCE has not finished: continue it with scripts/zoo/train_long.sh $ENTRY BUDGET" >&2
        exit 1
    fi
    mkdir -p "$RUNS"
    tmp=$(mktemp -d "$RUNS/.$ENTRY-long-ext.XXXXXX")
    cp -r "$SOURCE"/. "$tmp"/
    rm -rf "$tmp/final" "$tmp/fid10k.json"
    mv "$tmp" "$RUN"
fi
# The long run's curriculum spans its whole length (train_long.sh): the extension keeps it, so N stays at its last stage.
CURRICULUM=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['curriculum_steps'])" "$RUN/config.json")
keras-ict train --preset "$ENTRY" --data "$DATA" --out "$RUN" --set total_steps=$((CURRICULUM + EXTRA)) \
    --set curriculum_steps="$CURRICULUM" --set checkpoint_every=500 --set fid_every=0 --set fid_num=2000 \
    --set fid_steps=1,2 --set fid_ref="$REF" --set snapshot_every=50 --time-budget "$BUDGET"
