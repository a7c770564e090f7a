#!/usr/bin/env bash
# The `mnist-ect` zoo entry, end to end: EDM diffusion pre-training (`mnist-edm`), consistency tuning from it
# (`mnist-ect --init`), digit-judge curve, FID-2k of the diffusion model (Heun, 18 steps), FID-10k 1- and 2-step of
# the tuned model, exports + card into zoo/mnist-ect, README table. Every stage resumes if interrupted and is a
# no-op once finished.
#
# The run folders are the `edm+ect` arm of benchmarks/ect_vs_ict.py (same folders, flags and seed), so the entry is
# the model that benchmark measured against iCT, and running either after the other trains nothing twice.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .venv/bin/activate
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
WORK="${KERAS_ICT_CACHE:-$HOME/.cache/keras_ict}/runs/ect_vs_ict/edm+ect"  # outside the checkout
EDM="$WORK/edm"
RUN="$WORK/ect"
REF=fid_refs/mnist-train-32px.npz
DATA="$(realpath ../shared/datasets/mnist.npz)"  # spelled as benchmarks/ect_vs_ict.py spells it (part of the runs' config)
SAME_AS_BENCHMARK=(--seed 1 --set checkpoint_every=250 --set keep_checkpoints=100000)
keras-ict train --preset mnist-edm --data "$DATA" --steps 1500 --out "$EDM" "${SAME_AS_BENCHMARK[@]}"
keras-ict train --preset mnist-ect --data "$DATA" --steps 1000 --out "$RUN" --init "$EDM" "${SAME_AS_BENCHMARK[@]}"
python benchmarks/recipe_study.py --score-run "$RUN" --judge-num 1000 --preset mnist  # the card's learning curve
[ -f "$REF" ] || keras-ict fid-ref --data "$DATA" --preset mnist --out "$REF"
[ -f "$EDM/fid2k_heun18.json" ] || keras-ict fid --model "$EDM/final" --ref "$REF" --num 2000 --heun-steps 18 --out "$EDM/fid2k_heun18.json"
[ -f "$WORK/fid10000.json" ] || keras-ict fid --model "$RUN/final" --ref "$REF" --num 10000 --steps 1,2 --out "$WORK/fid10000.json"
python scripts/zoo/publish.py mnist-ect --run "$RUN" --ref "$REF" --fid-json "$WORK/fid10000.json" \
    --init-run "$EDM" --init-fid-json "$EDM/fid2k_heun18.json" \
    --dataset "MNIST train (../shared/datasets/mnist.npz: 60,000 images, lossless, the official pixels), padded to 32x32" \
    --command "scripts/zoo/mnist_ect.sh" \
    --limits "${MNIST_ECT_LIMITS:-A small network (1.3M parameters, the mnist entry's) trained on a 2-core CPU: 1,500 steps of EDM diffusion training, then 1,000 steps of ECT tuning, both at batch 32 (80k images in all, the mnist entry's budget). Measured against iCT from scratch at equal CPU time (benchmarks/ect_vs_ict.py, same box, side by side): worse, FID-10k 161.5 / 119.8 against 121.0 / 103.5, although the diffusion model it starts from scores FID-2k 53.8 with 35 network calls (Heun, 18 steps): at this budget the 1,000 tuning steps lose most of the diffusion model's quality, and the split between the stages and ECT's q / stage length were not tuned. Malformed, often broken digits; far from the FID targets of issue 16 (10 one-step, 6 two-step).}"
python scripts/zoo/table.py --readme
