#!/usr/bin/env bash
# Installs seqrender into the current Python environment (activate a venv/conda env first if you
# want one). torch goes first and an existing build is kept, so a CUDA user keeps theirs.
# `--test` also installs what the test suite needs (requirements-test.txt).
# --no-compile: pip would byte-compile every installed module (all of torch, triton, sympy, ...),
# about half of the set-up time here; Python compiles what is imported, once, on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
REQUIREMENTS=requirements.txt
if [ "${1:-}" = "--test" ]; then
  REQUIREMENTS=requirements-test.txt
elif [ -n "${1:-}" ]; then
  echo "usage: scripts/setup.sh [--test]" >&2
  exit 2
fi
PIP=("$PY" -m pip install --quiet --no-compile)
if ! "$PY" -c "import torch" 2>/dev/null; then
  "${PIP[@]}" "torch==2.13.0"
fi
"${PIP[@]}" -r "$REQUIREMENTS"
"${PIP[@]}" --no-deps \
  -e packages/posenc -e packages/flowmatch -e packages/attention -e packages/recon \
  -e packages/models -e experiments
