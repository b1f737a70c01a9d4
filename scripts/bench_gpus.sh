#!/usr/bin/env bash
# The full quantized-matmul suite as one run over the GPUs of one host: the suite's 1120 rows (and its
# crossover rows) split into parts that run side by side, one process per GPU, then merged into one report.
# On one GPU the suite no longer fits a 10-minute device call (run STEPS=bench,bench_70b in two calls); on two
# or more every row is measured in the same call, on the same commit, each part with the read ceiling and the
# cuBLAS anchors of its own GPU (benchmarks/matmul_report.py lists them).
# Usage (repository root, on the GPU machine):  bash scripts/bench_gpus.sh OUT_DIR
#   parts: 2 GPUs: float16 | bfloat16 activations; 4 or more: each of those split into the Llama-3-8B shapes
#   with 70B qkv | the other three 70B shapes. BENCH_BUDGET_S (default 430): seconds after its warm-up
#   compile after which a part starts no new weight (those are listed as skipped), so that the merge runs
#   inside a 10-minute call. BENCH_LAYERS (optional): only these layers, split by activation dtype (the rest
#   of a suite whose call was cut, its parts merged afterwards with benchmarks/matmul_report.py --merge).
#   BENCH_MS (optional): only these rows M, e.g. 512,4096 for the prefill rows alone.
#   BENCH_TYPES (optional): only these weight types, e.g. uint3,uint5,int6 to tune them again (no BENCH_TUNING:
#   their rows tune in the run; each part's tuning.json then merges into the suite's file).
#   BENCH_TUNING (optional): a tuning file (a previous run's tuning.json, or several merged) pinned in every
#   part: the weights and M buckets it names are neither tuned nor precompiled beyond their configuration.
set -u
out="${1:?usage: bash scripts/bench_gpus.sh OUT_DIR}"
python="${PYTHON:-python3}"
gpus=$("$python" -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -lt 2 ]; then
    echo "bench_gpus.sh: $gpus GPU(s) visible; the one-call suite needs 2 or more (on one GPU run the steps" \
        "bench and bench_70b of scripts/gpu_check.sh, a device call each)" >&2
    exit 2
fi
small="8B qkv,8B o,8B gate_up,8B down,70B qkv"
large="70B o,70B gate_up,70B down"
parts=()
if [ -n "${BENCH_LAYERS:-}" ]; then
    parts+=("float16|$BENCH_LAYERS" "bfloat16|$BENCH_LAYERS")
elif [ "$gpus" -ge 4 ]; then
    for act in float16 bfloat16; do
        parts+=("$act|$small" "$act|$large")
    done
else
    parts+=("float16|$small,$large" "bfloat16|$small,$large")
fi
# The GPUs this script may use, as the caller's CUDA_VISIBLE_DEVICES names them (all of them if unset).
IFS=, read -r -a visible <<<"${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $((gpus - 1)))}"
export ANYBIT_BENCH_RUN="run-$(date -u +%Y%m%dT%H%M%SZ)"
pids=()
reports=()
mkdir -p "$out"
for index in "${!parts[@]}"; do
    act="${parts[$index]%%|*}"
    layers="${parts[$index]#*|}"
    part="$out/part$index"
    reports+=("$part/matmul.json")
    # Each part compiles its warm-up kernels on its share of the host's cores, into a cache of its own (the
    # GPUs are alike, so their tuning records would share keys: one writer a cache).
    CUDA_VISIBLE_DEVICES=${visible[$index]} ANYBIT_BENCH_PART="$index: $act, $layers" \
        ANYBIT_BUILD_PROCESSES=$(($(nproc) / ${#parts[@]})) \
        ANYBIT_CACHE_DIR="${ANYBIT_CACHE_DIR:-/tmp/anybit-cache}/part$index" \
        "$python" -m anybit bench --acts "$act" --layers "$layers" --budget-s "${BENCH_BUDGET_S:-430}" \
        ${BENCH_MS:+--ms "$BENCH_MS"} ${BENCH_TYPES:+--types "$BENCH_TYPES"} \
        ${BENCH_TUNING:+--tuning "$BENCH_TUNING"} --out "$part" \
        >"$out/part$index.log" 2>&1 &
    pids+=($!)
done
status=0
for index in "${!pids[@]}"; do
    wait "${pids[$index]}" || status=1
    echo "--- part $index (${parts[$index]}): last lines of its log"
    tail -n 5 "$out/part$index.log"
done
"$python" benchmarks/matmul_report.py --merge "${reports[@]}" --out "$out" || status=1
exit $status
