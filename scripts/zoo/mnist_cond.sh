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
    --limits "A small class-conditional network (1.3M parameters) trained for 2,500 steps at batch 32 on a 2-core CPU (80k images, 1.3 epochs of MNIST) with the session-11 CPU recipe (EMA warm-up, lr 1e-3, s1 150), the budget of the unconditional mnist entry. Most samples are digits of the requested class, with uneven or broken strokes; some (often 3, 4, 5 and 8) are the wrong digit or malformed (the digit judge's requested-digit rate is on this card). Far from the FID targets of issue 16 (10 one-step, 6 two-step), which need much longer training (see the learning curve). The CPU was shared with test runs for part of the training, so the wall time overstates the cost."
python scripts/zoo/table.py --readme
