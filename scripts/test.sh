#!/usr/bin/env bash
# Run the whole test suite once per Keras backend, each in its own pytest process.
# Usage: scripts/test.sh [pytest args...]
#   KERAS_ICT_BACKENDS="jax torch"   pick backends (default: tensorflow jax torch)
#   KERAS_ICT_TEST_REPORTS=DIR        keep the passes' JUnit XML files in DIR
#   KERAS_ICT_TEST_WORKERS=1         pytest-xdist workers per pass (default 2: tests that wait on subprocesses
#                                    overlap; every worker runs its math on one thread, so two workers do not
#                                    oversubscribe a 2-core CPU)
# Tests marked backend_independent run in the torch pass only (the first without one), tests marked once(backend)
# on that backend only
# (tests/conftest.py); a plain `pytest tests` runs everything on the current backend.
# At the end: each pass's wall time and the 25 slowest tests of the whole run.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh || exit 1
backends=${KERAS_ICT_BACKENDS:-tensorflow jax torch}
workers=${KERAS_ICT_TEST_WORKERS:-2}
if [ -n "${KERAS_ICT_TEST_REPORTS:-}" ]; then  # keep each pass's JUnit XML there (for per-test timings)
  reports=$KERAS_ICT_TEST_REPORTS
  mkdir -p "$reports"
else
  reports=$(mktemp -d)
  trap 'rm -rf "$reports"' EXIT
fi
parallel=()
if [ "$workers" -gt 1 ]; then
  # loadgroup: tests marked @pytest.mark.xdist_group("name") (e.g. ones that need a fixed port or the CPU to
  # themselves) share one worker; the rest are spread as with --dist load.
  parallel=(-n "$workers" --dist loadgroup)
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1
fi
status=0
summary=()
for backend in $backends; do
  echo "=== KERAS_BACKEND=$backend ==="
  start=$(date +%s)
  xla_flags=${XLA_FLAGS:-}
  if [ "$backend" = jax ]; then
    # The JAX pass is mostly XLA compilation (one per new op shape, ~0.1 s each on a 2-core CPU); cheaper code
    # generation cut a sample of its tests by 14% (BUILD_NOTES.md, "Test suite"). Subprocesses inherit it.
    xla_flags="$xla_flags --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
  fi
  XLA_FLAGS=$xla_flags KERAS_BACKEND=$backend KERAS_ICT_SUITE_BACKENDS="$backends" TF_CPP_MIN_LOG_LEVEL=2 \
    .venv/bin/python -m pytest -q -p no:cacheprovider "${parallel[@]}" --junitxml="$reports/$backend.xml" "$@" tests
  rc=$?
  wall=$(( $(date +%s) - start ))
  echo "=== $backend: exit $rc, ${wall} s ==="
  summary+=("$backend: exit $rc, ${wall} s")
  [ $rc -eq 0 ] || status=1
done
echo "=== wall time per backend ==="
printf '%s\n' "${summary[@]}"
.venv/bin/python scripts/slowest_tests.py --top 25 "$reports"/*.xml || true
exit $status
