#!/usr/bin/env bash
# The long `mnist` run of issue 16 (targets FID-10k 1-step <= 10, 2-step <= 6), trained a session at a time and
# carried between machines as carried/mnist-long.tar (this project's machines keep nothing outside git):
#
#   scripts/zoo/train_mnist_long.sh 60m      # unpack if needed, train for 60 minutes, pack into carried/
#   git add carried/mnist-long.tar && git commit -m "mnist-long: ..."
#
# The recipe is the `mnist` preset (the CPU recipe of the study) with the curriculum spread over the whole long
# run, and FID-2k 1- and 2-step logged every 2,500 steps (fid.csv: the learning curve the card shows). Rerunning
# with the same flags resumes exactly; a finished run is a no-op.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
BUDGET="${1:?usage: $0 TIME_BUDGET (e.g. 60m)}"
RUN="${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo/mnist-long"  # outside the checkout
CARRIED=carried/mnist-long.tar
STEPS=30000  # 960k images at batch 32: about four sessions of this 2-core CPU
if [ ! -e "$RUN/config.json" ] && [ -f "$CARRIED" ]; then
    keras-ict unpack "$CARRIED" --out "$RUN"
fi
keras-ict train --preset mnist --data ../shared/datasets/mnist.npz --set total_steps="$STEPS" --out "$RUN" \
    --set curriculum_steps="$STEPS" --set checkpoint_every=500 \
    --set fid_every=2500 --set fid_num=2000 --set fid_steps=1,2 --set fid_ref=fid_refs/mnist-train-32px.npz \
    --time-budget "$BUDGET"
mkdir -p carried
keras-ict pack --run "$RUN" --out "$CARRIED"
