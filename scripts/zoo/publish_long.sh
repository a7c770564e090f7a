#!/usr/bin/env bash
# Publish a finished long run (scripts/zoo/train_long.sh ENTRY BUDGET, trained a session at a time) as the zoo
# entry ENTRY: FID-10k 1- and 2-step against the committed references, the compute to issue 16's targets
# extrapolated from the run's FID-2k curve (benchmarks/results/budget_ENTRY_long.json + PNG), exports, card with
# the learning curve, README table.
#
#   scripts/zoo/publish_long.sh mnist
#
# FROM_IMAGES (default 240000): the extrapolation fits the curve's points from there on (for mnist: from the
# curriculum's second stage, where the 1-step curve starts to fall).
set -euo pipefail
cd "$(dirname "$0")/../.."
usage="usage: $0 ENTRY (mnist, mnist-cond or cifar10-small)"
ENTRY="${1:?$usage}"
case "$ENTRY" in
    mnist) REF=fid_refs/mnist-train-32px.npz
        DATASET="MNIST train (../shared/datasets/mnist.npz: 60,000 images, lossless, the official pixels), padded to 32x32" ;;
    mnist-cond) REF=fid_refs/mnist-train-32px.npz
        DATASET="MNIST train (../shared/datasets/mnist.npz: 60,000 images with labels, lossless, the official pixels), padded to 32x32" ;;
    cifar10-small) REF=fid_refs/cifar10-jpeg-train.npz
        DATASET="CIFAR-10 train (../shared/datasets/cifar10_jpeg.tar.gz: 50,000 images, a JPEG copy, not pixel-identical)" ;;
    *) echo "unknown entry '$ENTRY'; $usage" >&2; exit 2 ;;
esac
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
RUN="${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo/$ENTRY-long"
CARRIED="carried/$ENTRY-long.tar"
if [ ! -e "$RUN/config.json" ] && [ -f "$CARRIED" ]; then
    keras-ict unpack "$CARRIED" --out "$RUN"
fi
if [ ! -f "$RUN/final/metadata.json" ]; then
    echo "$RUN has not finished training (no final/): continue it with scripts/zoo/train_long.sh $ENTRY BUDGET" >&2
    exit 1
fi
EXTRAPOLATION="benchmarks/results/budget_${ENTRY}_long.json"
# shellcheck disable=SC2046  # the flags are words
python benchmarks/budget_extrapolation.py --run "$RUN" $(python scripts/zoo/targets.py "$ENTRY") \
    --from-images "${FROM_IMAGES:-240000}" --json "$EXTRAPOLATION"
[ -f "$RUN/fid10k.json" ] || keras-ict fid --model "$RUN/final" --ref "$REF" --num 10000 --steps 1,2 --out "$RUN/fid10k.json"
STEPS_DONE=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['steps'])" "$RUN/final/metadata.json")
python scripts/zoo/publish.py "$ENTRY" --run "$RUN" --ref "$REF" --fid-json "$RUN/fid10k.json" \
    --extrapolation "$EXTRAPOLATION" --dataset "$DATASET" \
    --command "scripts/zoo/train_long.sh $ENTRY BUDGET (once per session until it finishes), then scripts/zoo/publish_long.sh $ENTRY" \
    --limits "A small network trained on a 2-core CPU for $STEPS_DONE steps at batch 32, a session at a time (the run moved between machines as carried/$ENTRY-long.tar, so the wall time adds up sessions on different CPUs), with the curriculum spread over the whole run. Where the target table above says not reached, the extrapolated compute says roughly what reaching it would take with this recipe."
python scripts/zoo/table.py --readme
if [ "$ENTRY" = mnist ]; then  # README's picture of the zoo entry (the same command as in scripts/main_job.sh)
    keras-ict sample --model mnist --seeds 0-63 --steps 2 --out docs/zoo_mnist_2step.png
fi
