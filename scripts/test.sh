#!/usr/bin/env bash
# Run the whole test suite once per Keras backend, each in its own process.
# Usage: scripts/test.sh [pytest args...]     (KERAS_ICT_BACKENDS="jax torch" to pick backends)
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh || exit 1
status=0
for backend in ${KERAS_ICT_BACKENDS:-tensorflow jax torch}; do
  echo "=== KERAS_BACKEND=$backend ==="
  KERAS_BACKEND=$backend TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests
  rc=$?
  echo "=== $backend: exit $rc ==="
  [ $rc -eq 0 ] || status=1
done
exit $status
