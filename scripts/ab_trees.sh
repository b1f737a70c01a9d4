#!/usr/bin/env bash
# Copies of anybit/, benchmarks/, tests/ and pyproject.toml from each named branch under
# ab/<branch, / as _>/, for A/B runs of the probes in one device call:
# `python3 ab/<tree>/benchmarks/fused_probe.py` imports that tree's anybit (the
# benchmarks put their own repository root first on sys.path; PYTHONPATH cannot choose the tree).
# ab/ is not ignored, so it travels to the device with the working tree; do not commit it.
# Usage: bash scripts/ab_trees.sh main next/own-prefetch
set -euo pipefail
cd "$(dirname "$0")/.."
for branch in "$@"; do
    tree="ab/${branch//\//_}"
    rm -rf "$tree"
    mkdir -p "$tree"
    git archive "$branch" anybit benchmarks tests pyproject.toml | tar x -C "$tree"
    echo "$tree: $(git rev-parse --short "$branch")"
done
