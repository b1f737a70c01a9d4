#!/usr/bin/env bash
# Create .venv (once) and install anybit with its test, CUDA-compiler and SASS-disassembler extras (nvdisasm,
# 6 MB: the tests that read the generated kernels' SASS on the CPU run in CI too).
# The CPU PyTorch wheel is pinned so a fresh machine never pulls a multi-GB CUDA build; a machine that
# already has torch in the venv keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # On our machines pip finds the CPU wheel of torch 2.13.0 on local disk (pip's find-links).
    .venv/bin/pip install --quiet "torch==2.13.0"
fi
.venv/bin/pip install --quiet -e ".[test,cuda,sass]"
