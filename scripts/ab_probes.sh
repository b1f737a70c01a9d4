#!/usr/bin/env bash
# The decode probes on each tree that scripts/ab_trees.sh made (ab/<tree>/), in one device call: a Llama-3-8B
# layer's projections plain and folded, alone and in a row (fused_probe), then every int4 configuration of
# the layer's shapes in a row from DRAM and from L2 (layer_sequence --sweep). Logs and JSON under
# $RESULTS/<tree>/; packed into $OUT/ab_probes.tgz at the end.
# Usage on the device machine, from the repository root:  bash scripts/ab_probes.sh main next_k-groups
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
RESULTS="${RESULTS:-/tmp/anybit-ab}"
PYTHON="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 ANYBIT_CACHE_DIR="${ANYBIT_CACHE_DIR:-/tmp/anybit-cache}"
mkdir -p "$OUT" "$RESULTS"
for tree in "$@"; do
    dir="$RESULTS/$tree"
    mkdir -p "$dir"
    echo "=== $tree: fused_probe ($(date -u +%T) UTC)"
    timeout 150 "$PYTHON" "ab/$tree/benchmarks/fused_probe.py" --out "$dir" 2>&1 | grep -v Warn | tee "$dir/fused_probe.log"
    echo "=== $tree: layer_sequence --sweep ($(date -u +%T) UTC)"
    timeout 200 "$PYTHON" "ab/$tree/benchmarks/layer_sequence.py" --types int4 --copies 16 --sweep --out "$dir" \
        >"$dir/sweep.log" 2>&1
    grep "MB:" "$dir/sweep.log"
    tar czf "$OUT/ab_probes.tgz" -C "$RESULTS" .
done
