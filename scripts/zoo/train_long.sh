#!/usr/bin/env bash
# A long run of a CPU zoo entry (issue 16), trained a session at a time and carried between machines as
# carried/ENTRY-long.tar (this project's machines keep nothing outside git):
#
#   scripts/zoo/train_long.sh mnist 60m    # unpack if needed, train for 60 minutes, pack into carried/
#   git add carried/mnist-long.tar && git commit -m "mnist-long: ..."
#
# ENTRY is mnist, mnist-cond or cifar10-small. The recipe is the entry's preset (the CPU recipe of the study) with
# the curriculum spread over the whole long run (STEPS, default 30,000 = 960k images at batch 32), and FID-2k 1- and
# 2-step logged every 2,500 steps (fid.csv: the learning curve the card shows and budget_extrapolation.py reads).
# Rerunning with the same flags resumes exactly; a finished run is a no-op. The run folder lies outside the
# checkout, under ${KERAS_ICT_CACHE:-~/.cache/keras_ict}/runs/zoo/ENTRY-long.
set -euo pipefail
cd "$(dirname "$0")/../.."
usage="usage: $0 ENTRY TIME_BUDGET (ENTRY: mnist, mnist-cond or cifar10-small; e.g. $0 mnist 60m)"
ENTRY="${1:?$usage}"
BUDGET="${2:?$usage}"
case "$ENTRY" in
    mnist | mnist-cond) DATA=../shared/datasets/mnist.npz; REF=fid_refs/mnist-train-32px.npz ;;
    cifar10-small) DATA=../shared/datasets/cifar10_jpeg.tar.gz; REF=fid_refs/cifar10-jpeg-train.npz ;;
    *) echo "unknown entry '$ENTRY'; $usage" >&2; exit 2 ;;
esac
STEPS="${STEPS:-30000}"
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
RUN="${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo/$ENTRY-long"
CARRIED="carried/$ENTRY-long.tar"
if [ ! -e "$RUN/config.json" ] && [ -f "$CARRIED" ]; then
    keras-ict unpack "$CARRIED" --out "$RUN"
fi
keras-ict train --preset "$ENTRY" --data "$DATA" --set total_steps="$STEPS" --out "$RUN" \
    --set curriculum_steps="$STEPS" --set checkpoint_every=500 \
    --set fid_every=2500 --set fid_num=2000 --set fid_steps=1,2 --set fid_ref="$REF" \
    --time-budget "$BUDGET"
mkdir -p carried
keras-ict pack --run "$RUN" --out "$CARRIED"
