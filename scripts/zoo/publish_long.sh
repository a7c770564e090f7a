#!/usr/bin/env bash
# Publish a finished long run as the zoo entry ENTRY: FID-10k 1- and 2-step against the committed references, the
# compute to issue 16's targets (scripts/zoo/targets.py) extrapolated from the run's FID-2k curve
# (benchmarks/results/budget_ENTRY_long.json + PNG), exports, card with the learning curve, README table.
# The runs: scripts/zoo/train_long.sh ENTRY BUDGET (mnist, cifar10-small), scripts/zoo/tune_cond_long.sh BUDGET
# (mnist-cond: the class-conditional tuning of the long mnist run), each trained a session at a time.
#
#   scripts/zoo/publish_long.sh mnist
#
# FROM_IMAGES: the extrapolation fits the curve's points from there on (default for mnist 240000, the curriculum's
# second stage, where its 1-step curve starts to fall; 0 for the others).
# RUN_NAME: the run folder under runs/zoo (default ENTRY-long). MODEL: publish this model folder instead of the run's
# final/ (a post-hoc EMA: benchmarks/posthoc_ema.py --save-to). TWO_STEP_SIGMA_JSON: a benchmarks/two_step_sigma.py
# search of that model, whose best intermediate sigma the entry then samples with. publish.py computes the FIDs that
# neither the run's fid10k.json nor the entry published with the same weights holds at the sigmas published.
set -euo pipefail
cd "$(dirname "$0")/../.."
usage="usage: $0 ENTRY (mnist, mnist-cond or cifar10-small)"
ENTRY="${1:?$usage}"
TRAINED_BY="scripts/zoo/train_long.sh $ENTRY"
INIT_RUN=""
FROM_DEFAULT=0
HOW="with the curriculum spread over the whole run"
case "$ENTRY" in
    mnist) REF=fid_refs/mnist-train-32px.npz FROM_DEFAULT=240000
        DATASET="MNIST train (../shared/datasets/mnist.npz: 60,000 images, lossless, the official pixels), padded to 32x32" ;;
    mnist-cond) REF=fid_refs/mnist-train-32px.npz INIT_RUN=mnist-long TRAINED_BY=scripts/zoo/tune_cond_long.sh
        HOW="tuned from the long unconditional mnist run at its last curriculum stage (N 151)"
        DATASET="MNIST train (../shared/datasets/mnist.npz: 60,000 images with labels, lossless, the official pixels), padded to 32x32" ;;
    cifar10-small) REF=fid_refs/cifar10-jpeg-train.npz
        DATASET="CIFAR-10 train (../shared/datasets/cifar10_jpeg.tar.gz: 50,000 images, a JPEG copy, not pixel-identical)" ;;
    *) echo "unknown entry '$ENTRY'; $usage" >&2; exit 2 ;;
esac
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
RUNS="${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo"
RUN_NAME="${RUN_NAME:-$ENTRY-long}"
RUN="$RUNS/$RUN_NAME"
for name in "$RUN_NAME" ${INIT_RUN:+"$INIT_RUN"}; do
    if [ ! -e "$RUNS/$name/config.json" ] && [ -f "carried/$name.tar" ]; then
        keras-ict unpack "carried/$name.tar" --out "$RUNS/$name"
    fi
done
if [ ! -f "$RUN/final/metadata.json" ]; then
    echo "$RUN has not finished training (no final/): continue it with $TRAINED_BY BUDGET" >&2
    exit 1
fi
EXTRAPOLATION="benchmarks/results/budget_${ENTRY}_long.json"
# shellcheck disable=SC2046  # the flags are words
python benchmarks/budget_extrapolation.py --run "$RUN" $(python scripts/zoo/targets.py "$ENTRY") \
    --from-images "${FROM_IMAGES:-$FROM_DEFAULT}" --json "$EXTRAPOLATION"
FID_ARGS=()
# FID-10k of the run's final/ made earlier (fid10k.json) and the published entry's own results for the same weights
# are reused by publish.py at the sigmas it publishes with; it computes the rest.
if [ -z "${MODEL:-}" ] && [ -f "$RUN/fid10k.json" ]; then
    FID_ARGS=(--fid-json "$RUN/fid10k.json")
fi
STEPS_DONE=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['steps'])" "${MODEL:-$RUN/final}/metadata.json")
python scripts/zoo/publish.py "$ENTRY" --run "$RUN" --ref "$REF" "${FID_ARGS[@]}" \
    ${MODEL:+--model "$MODEL"} ${TWO_STEP_SIGMA_JSON:+--two-step-sigma-json "$TWO_STEP_SIGMA_JSON"} \
    --extrapolation "$EXTRAPOLATION" --dataset "$DATASET" ${INIT_RUN:+--init-run "$RUNS/$INIT_RUN"} \
    --command "$TRAINED_BY BUDGET (once per session until it finishes), then scripts/zoo/publish_long.sh $ENTRY" \
    --limits "A small network trained on a 2-core CPU for $STEPS_DONE steps at batch 32, a session at a time (the run moved between machines as carried/$ENTRY-long.tar, so the wall time adds up sessions on different CPUs), $HOW. Where the target table above says not reached, the extrapolated compute says roughly what reaching it would take with this recipe."
python scripts/zoo/table.py --readme
if [ "$ENTRY" = mnist ]; then  # README's picture of the zoo entry (the same command as in scripts/main_job.sh)
    keras-ict sample --model mnist --seeds 0-63 --steps 2 --out docs/zoo_mnist_2step.png
fi
