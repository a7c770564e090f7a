#!/usr/bin/env bash
# The `cifar10-small` zoo entry, end to end: train (resumes if interrupted; a no-op once finished), FID-10k 1- and
# 2-step against the committed statistics of the same JPEG copy's train split, exports + card into
# zoo/cifar10-small, README table.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
RUN="${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo/cifar10-small"  # outside the checkout
REF=fid_refs/cifar10-jpeg-train.npz
scripts/zoo/train_cifar10_small.sh
[ -f "$REF" ] || keras-ict fid-ref --data ../shared/datasets/cifar10_jpeg.tar.gz --split train --out "$REF"
[ -f "$RUN/fid10k.json" ] || keras-ict fid --model "$RUN/final" --ref "$REF" --num 10000 --steps 1,2 --out "$RUN/fid10k.json"
python scripts/zoo/publish.py cifar10-small --run "$RUN" --ref "$REF" --fid-json "$RUN/fid10k.json" \
    --dataset "CIFAR-10 train from the JPEG copy (../shared/datasets/cifar10_jpeg.tar.gz: 50,000 images re-encoded as JPEG, NOT pixel-identical to the official CIFAR-10), random horizontal flips" \
    --command "scripts/zoo/cifar10_small.sh" \
    --limits "A small network trained for 2,500 steps at batch 32 on a 2-core CPU (80k images, 1.6 epochs) with the session-11 CPU recipe (EMA warm-up, lr 1e-3, s1 150; studied on MNIST only): grainy, high-contrast colour textures with blotchy layouts and no recognisable objects. FID-10k is against the JPEG copy's own train statistics, so it is not comparable with published CIFAR-10 FIDs (the JPEG test set scores 3.11 against them, the real data 3.15 in published work); those statistics were computed from TensorFlow's default (fast-IDCT) JPEG decoding, while training now decodes with the accurate IDCT (pixels up to 4 levels apart). The CPU was shared with other jobs during training, so the wall time overstates the cost."
python scripts/zoo/table.py --readme
