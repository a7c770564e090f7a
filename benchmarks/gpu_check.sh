#!/usr/bin/env bash
# Issue 6's GPU figures in one prepared run: NCSN++ CIFAR-10 train-step img/s at batch 128 and 512 in float32
# and bf16 (Keras on JAX and torch, and the plain PyTorch loop), model FLOPs and the device's matmul peak for
# MFU, and the GPU-hours of the paper's 400k x 1024 run (tables.py).
#
#   bash benchmarks/gpu_check.sh [RESULT_DIR]        (default: $OUT when set, else benchmarks/results/gpu)
#
# Written for the `device` tool's machines (python3 3.12 with torch and jax[cuda], no Keras, no TensorFlow,
# no network). TensorFlow is not measured there: its wheel is far over the 64 MiB that travels. Before the
# call, here (not verified on a device yet: no session has been lent one):
#   1. Keras and the two packages it needs that are missing there, as wheels in the git-ignored .whl/:
#        python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#          --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#          -d .whl keras==3.15.1 namex optree
#   2. The tracked tree (~180 MB: zoo/ and fid_refs/) is over the 64 MiB that travels; untrack those two for
#      the call only:  git rm -r -q --cached zoo fid_refs && printf '/zoo/\n/fid_refs/\n' >> .git/info/exclude
#   3. device run: command 'bash benchmarks/gpu_check.sh "$OUT"', carry [".whl"], timeout_s 560.
#   4. Restore:  git reset -q && sed -i '\#^/zoo/$#d;\#^/fid_refs/$#d' .git/info/exclude
#   Then copy the JSON files into benchmarks/results/ and regenerate the tables (benchmarks/README.md, GPU).
# Each step writes its own JSON, so a run cut short keeps what finished; at most 8 files (the tool's limit).
# Knobs: NET, BATCHES, STEPS, VARIANTS, SKIP_BASELINE=1, DEVICE, TIMEOUT, PYTHON, WHEELS (empty: install none).
# Rough estimate, not measured: ~8 min on an H100 (JAX compiles dominate); if a call runs out, a second with
# SKIP_BASELINE=1 or a narrower VARIANTS / BATCHES finishes the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-${OUT:-benchmarks/results/gpu}}
NET=${NET:-ncsnpp_cifar10}
BATCHES=${BATCHES:-128,512}
STEPS=${STEPS:-2}
VARIANTS=${VARIANTS:-jax:true torch:false}
DEVICE=${DEVICE:-cuda}
TIMEOUT=${TIMEOUT:-300}
PY=${PYTHON:-python3}
WHEELS=${WHEELS-.whl}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

if [ -n "$WHEELS" ] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
        || { echo "installing the carried wheels failed" >&2; exit 1; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" -c "import keras, torch; print('keras', keras.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    || { echo "keras or torch cannot be imported: carry the wheels (BUILD_NOTES, GPU runs)" >&2; exit 1; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

status=0
step() { echo "== $*"; "$@" || { echo "== failed ($?): $*" >&2; status=1; }; }

step "$PY" benchmarks/model_flops.py --networks "$NET" --matmul-peak --device "$DEVICE" --json "$RESULTS/model_flops_gpu.json"
# Keras first (the product), then the plain loop. Keras picks the GPU itself (torch: cuda when available;
# jax: its default device).
for policy in float32 mixed_bfloat16; do
    step "$PY" benchmarks/train_throughput.py --variants $VARIANTS --presets "$NET" --batch-sizes "$BATCHES" \
        --dtype-policy "$policy" --steps-per-repeat "$STEPS" --repeats 3 --warmup 1 --timeout "$TIMEOUT" \
        --json "$RESULTS/train_throughput_${NET}_${policy}_gpu.json"
done
if [ "${SKIP_BASELINE:-0}" != 1 ]; then
    for amp in float32 bfloat16; do
        for batch in ${BATCHES//,/ }; do
            step timeout "$TIMEOUT" "$PY" benchmarks/torch_baseline.py --network "$NET" --batch-size "$batch" \
                --device "$DEVICE" --amp "$amp" --steps-per-repeat "$STEPS" --repeats 3 --warmup 1 \
                --json "$RESULTS/torch_baseline_${NET}_b${batch}_${amp}_gpu.json"
        done
    done
fi
"$PY" benchmarks/tables.py "$RESULTS"/*.json
exit $status
