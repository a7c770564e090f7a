#!/usr/bin/env bash
# Session 17 (issue 16): the end of the long mnist run, the mnist-cond tuning and both FID-10k on a lent GPU
# machine (the `device` tool: one H200, torch + JAX, no TensorFlow, no keras). The recipe and every flag are
# those of scripts/zoo/train_long.sh mnist, scripts/zoo/tune_cond_long.sh and scripts/zoo/publish_long.sh; only
# the backend (JAX instead of TensorFlow: the run resumes across backends, same batches) and the device differ.
# JAX_DEFAULT_MATMUL_PRECISION=highest keeps float32 matrix products in float32 (no TF32), so the FID is the
# zoo's protocol. Its inputs do not fit in one call (a call carries at most 64 MiB; the tracked tree alone is
# ~256 MB), and a path carried by one call is removed by the next, so they are staged into /tmp/st of the warm
# machine (kept while it stays warm: 30 s between calls), from a checkout whose zoo/, fid_refs/ and carried/ are
# taken out of the index for the calls (`git rm -r --cached` + .git/info/exclude; `git reset` afterwards):
#   split -b 61500000 ../shared/fid/inception-2015-12-05-fid-trunk.pt .stage/inception.part-
#   mv .stage/inception.part-aa .stageA/; cp ../shared/datasets/mnist.npz .stageC/   (all four .stage* ignored)
#   run carry [.stageA/inception.part-aa]: mkdir -p /tmp/st && cp .stageA/inception.part-aa /tmp/st/
#   run carry [.stage/inception.part-ab, fid_refs/mnist-train-32px.npz]: cp both to /tmp/st/
#   run carry [carried/mnist-long.tar, .stageC/mnist.npz, .whl]:
#       mkdir -p .stage fid_refs && cp /tmp/st/inception.part-* .stage/ && cp /tmp/st/*.npz fid_refs/ &&
#       cp .stageC/mnist.npz .stage/ && TOTAL_S=... bash scripts/zoo/gpu_finish_mnist.sh
# (.whl: keras 3.15.1, namex 0.1.0, optree 0.20.0 for cp312, the device README's pip download). TOTAL_S: the
# seconds this script may take (the call's timeout less ~20 s). Writes the runs to $OUT as runs.tar.part-*
# (finished runs without checkpoints, an unfinished one as a `keras-ict pack` archive); unpack here with
#   cat runs.tar.part-* | tar x -C ~/.cache/keras_ict/runs/zoo
# Session 17 tried it before the jit_compile fix in keras_ict/checkpoint.py: the TF checkpoint resumed on JAX ran
# its step eagerly, 30 steps in 240 s; the machine could not be had again that session.
set -uo pipefail
OUT="${OUT:?run on the device machine (OUT unset)}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
export KERAS_BACKEND=jax JAX_DEFAULT_MATMUL_PRECISION=highest XLA_PYTHON_CLIENT_PREALLOCATE=false
export KERAS_ICT_CACHE=/tmp/keras_ict
mkdir -p ../shared/fid ../shared/datasets
cat .stage/inception.part-* > ../shared/fid/inception-2015-12-05-fid-trunk.pt
cp .stage/mnist.npz ../shared/datasets/mnist.npz
sha256sum ../shared/fid/inception-2015-12-05-fid-trunk.pt ../shared/datasets/mnist.npz fid_refs/mnist-train-32px.npz
nvidia-smi -L; lscpu | grep 'Model name'
ict() { python3 -m keras_ict "$@"; }
RUNS="$KERAS_ICT_CACHE/runs/zoo"
TOTAL_S="${TOTAL_S:-420}"
DEADLINE=$(( $(date +%s) + TOTAL_S ))  # the command's own limit: the tuning gets what is left, less 90 s
REF=fid_refs/mnist-train-32px.npz
ict unpack carried/mnist-long.tar --out "$RUNS/mnist-long" || exit 1
START=$(date +%s)
ict train --preset mnist --data ../shared/datasets/mnist.npz --set total_steps=30000 --out "$RUNS/mnist-long" \
    --set curriculum_steps=30000 --set checkpoint_every=500 \
    --set fid_every=2500 --set fid_num=2000 --set fid_steps=1,2 --set fid_ref="$REF" \
    --time-budget "${MNIST_BUDGET:-$(( TOTAL_S - 100 ))}s" 2>&1 | grep -v -E "^(I0000|WARNING: All log)"
echo "mnist-long: $(( $(date +%s) - START )) s"
split_out() { ( cd "$OUT" && rm -f runs.tar.part-* && split -b 15M runs.tar runs.tar.part- && rm runs.tar ); }
pack() {  # finished runs travel without checkpoints (the final EMA model is in final/)
    tar cf "$OUT/runs.tar" -C "$RUNS" --exclude='*/checkpoints' "$@" && split_out
}
pack_unfinished() {  # NAME: its newest checkpoint too (keras-ict pack), to continue on the CPU
    ict pack --run "$RUNS/$1" --out "$OUT/$1.tar" && tar cf "$OUT/runs.tar" -C "$OUT" "$1.tar" && rm "$OUT/$1.tar" && split_out
}
left() { echo $(( DEADLINE - $(date +%s) )); }
if [ -f "$RUNS/mnist-long/final/metadata.json" ]; then
    pack mnist-long  # before the FID: a command cut off at its limit still brings back what is in $OUT
    START=$(date +%s)
    ict fid --model "$RUNS/mnist-long/final" --ref "$REF" --num 10000 --steps 1,2 --out "$RUNS/mnist-long/fid10k.json"
    echo "mnist-long FID-10k: $(( $(date +%s) - START )) s"; cp "$RUNS/mnist-long/fid10k.json" "$OUT/mnist-long-fid10k.json"
    if [ "$(left)" -lt 200 ]; then echo "no time left for the mnist-cond tuning ($(left) s)"; ls -la "$OUT"; exit 0; fi
    START=$(date +%s)
    COND_BUDGET=$(( $(left) - 90 ))
    ict train --preset mnist-cond --data ../shared/datasets/mnist.npz --init "$RUNS/mnist-long" \
        --out "$RUNS/mnist-cond-long" \
        --set total_steps=6000 --set s0=150 --set s1=150 --set checkpoint_every=500 \
        --set fid_every=1000 --set fid_num=2000 --set fid_steps=1,2 --set fid_ref="$REF" \
        --time-budget "${COND_BUDGET}s" 2>&1 | grep -v -E "^(I0000|WARNING: All log)"
    echo "mnist-cond-long: $(( $(date +%s) - START )) s"
    if [ -f "$RUNS/mnist-cond-long/final/metadata.json" ]; then
        pack mnist-long mnist-cond-long
        START=$(date +%s)
        ict fid --model "$RUNS/mnist-cond-long/final" --ref "$REF" --num 10000 --steps 1,2 \
            --out "$RUNS/mnist-cond-long/fid10k.json"
        echo "mnist-cond-long FID-10k: $(( $(date +%s) - START )) s"
        cp "$RUNS/mnist-cond-long/fid10k.json" "$OUT/mnist-cond-long-fid10k.json"
    else
        tar cf "$OUT/finished.tar" -C "$RUNS" --exclude='*/checkpoints' mnist-long
        pack_unfinished mnist-cond-long
    fi
else
    pack_unfinished mnist-long
fi
ls -la "$OUT"
