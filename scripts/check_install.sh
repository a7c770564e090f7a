#!/usr/bin/env bash
# A new user's install, per backend: a fresh venv per extra from the package index, then train / sample / fid with
# that backend alone. Usage and output: scripts/check_install.py (this wrapper only makes sure .venv exists).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup_venv.sh
exec .venv/bin/python scripts/check_install.py "$@"
