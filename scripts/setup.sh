#!/usr/bin/env bash
# Installs seqrender into the current Python environment (activate a venv/conda env first if you
# want one). torch goes first and an existing build is kept, so a CUDA user keeps theirs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -r requirements.txt
"$PY" -m pip install --quiet --no-deps \
  -e packages/posenc -e packages/flowmatch -e packages/attention -e packages/recon \
  -e packages/models -e experiments
