#!/usr/bin/env bash
# The `mnist-cond` zoo entry, end to end: train (resumes if interrupted; a no-op once finished), FID-10k 1- and
# 2-step against the committed MNIST reference statistics (labels = seed % 10), exports + card into
# zoo/mnist-cond, README table.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
RUN="${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo/mnist-cond"  # outside the checkout
REF=fid_refs/mnist-train-32px.npz
scripts/zoo/train_mnist_cond.sh
[ -f "$REF" ] || keras-ict fid-ref --data ../shared/datasets/mnist.npz --preset mnist --out "$REF"
[ -f "$RUN/fid10k.json" ] || keras-ict fid --model "$RUN/final" --ref "$REF" --num 10000 --steps 1,2 --out "$RUN/fid10k.json"
python scripts/zoo/publish.py mnist-cond --run "$RUN" --ref "$REF" --fid-json "$RUN/fid10k.json" \
    --dataset "MNIST train (../shared/datasets/mnist.npz: 60,000 images with labels, lossless, the official pixels), padded to 32x32" \
    --command "scripts/zoo/mnist_cond.sh" \
    --limits "A small class-conditional network trained for 3,000 steps at batch 32 on a 2-core CPU (about 1.6 epochs of MNIST), the same budget as the unconditional mnist entry. Most samples are recognisable digits of the requested class, with broken or blotchy strokes; some classes (4, 5, 8) are often malformed. FID-10k is far from what longer training reaches. The CPU was shared with other jobs for part of the training, so the wall time overstates the cost (the unconditional network's train step measured 0.72 s at this batch on an idle CPU)."
python scripts/zoo/table.py --readme
