#!/usr/bin/env bash
# The `mnist` zoo entry, end to end: train (resumes if interrupted; a no-op once finished), FID-10k 1- and
# 2-step against the committed MNIST reference statistics, exports + card into zoo/mnist, README table.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
RUN="${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/zoo/mnist"  # outside the checkout
REF=fid_refs/mnist-train-32px.npz
keras-ict train --preset mnist --data ../shared/datasets/mnist.npz --steps 3000 --out "$RUN"
[ -f "$REF" ] || keras-ict fid-ref --data ../shared/datasets/mnist.npz --preset mnist --out "$REF"
[ -f "$RUN/fid10k.json" ] || keras-ict fid --model "$RUN/final" --ref "$REF" --num 10000 --steps 1,2 --out "$RUN/fid10k.json"
python scripts/zoo/publish.py mnist --run "$RUN" --ref "$REF" --fid-json "$RUN/fid10k.json" \
    --dataset "MNIST train (../shared/datasets/mnist.npz: 60,000 images, lossless, the official pixels), padded to 32x32" \
    --command "scripts/zoo/mnist.sh" \
    --limits "A small network trained for 3,000 steps at batch 32 on a 2-core CPU (about 1.6 epochs of MNIST): digit strokes, many malformed; FID-10k is far from what longer training reaches. The wall time was measured while the CPU was shared with FID reference extraction, so it overstates the training cost (the train-step benchmark measured 0.72 s/step for this network and batch on an idle CPU: benchmarks/README.md)."
python scripts/zoo/table.py --readme
