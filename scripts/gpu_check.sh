#!/usr/bin/env bash
# One device call: environment report, the GPU test tiers (plus the CPU tiers of tests/cuda and tests/runtime)
# and the launch-overhead measurement; benchmarks only when named. Logs and JSON go to $OUT.
# Every step runs even if an earlier one failed; the exit status is non-zero if any step failed. The default
# steps (the GPU tiers) take ~9-10 minutes on a fresh machine (every kernel compiled and tuned cold; their
# limits are ceilings, ~19 minutes together: run it with `timeout 590` so the call still brings its logs back);
# the quick benchmarks (STEPS=benchmarks,bench_quick,e2e_quick) and the full matmul suite (bench and
# bench_70b, up to 580 s each: a warm-up compile in a process pool, then the measuring) need calls of their own.
# Usage on the device machine, from the repository root:  bash scripts/gpu_check.sh
#   STEPS=gpu_runtime,bench_quick bash scripts/gpu_check.sh   runs only the named steps (a short device call).
# Everything is written under $RESULTS; at the end it is packed into $OUT/gpu_results.tgz and the markdown
# summaries are copied to $OUT (the device tool brings back only a few files).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
RESULTS="${RESULTS:-/tmp/anybit-gpu-results}"
mkdir -p "$OUT" "$RESULTS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export ANYBIT_CACHE_DIR="${ANYBIT_CACHE_DIR:-/tmp/anybit-cache}"
PYTHON="${PYTHON:-python3}"
STEPS="${STEPS:-}"
# Steps too long for the default call, run only when named: the full matmul suite (STEPS=bench and bench_70b,
# the default packing: weights as the A operand, the transposed decode kernel; STEPS=bench_b the same packed
# as the B operand: the x-as-A decode kernel), the decode probe (every tuning configuration of seven shapes
# for uint4, int4, int8 and uint2, packed as the B and the A operand), the full end-to-end run (32 layers, the
# fastest model, 128 tokens; STEPS=e2e int4 and int3, STEPS=e2e_more int2 and float6_e3m2, at batch 1 and
# 16), the same with lm_head quantized (int4, batch 1), and the layer
# sequence (a Llama-3-8B layer's fused projections alone, in a row, and inside a 32-layer model).
# The GPU's clocks, power, temperature and throttle reasons once a second for the whole call: long steps
# (the full suite) can run at lower clocks than a fresh process, which changes kernel timings and rankings.
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active \
        --format=csv -lms 1000 >"$RESULTS/clocks.csv" 2>&1 &
    clock_logger=$!
    trap 'kill $clock_logger 2>/dev/null' EXIT
fi
ONLY_WHEN_NAMED="benchmarks,eager_breakdown,read_floor,fp4_ab,bench_quick,planes,bench_planes,bench,bench_70b,bench_gpus,e2e_gpus,edge_spread,edge_stages,wide_tiles,bench_wide,bench_b,probe,e2e,e2e_more,e2e_operands,e2e_lm_head,sequence,pdl_ab,sweep,stages,warps,float_ab,prefetch,rows,ncu,occupancy,tensor,e2e_batches,e2e_gated,e2e_folded,fused_probe,floor,e2e_inductor_pdl,attention,mlp,e2e_mlp,attention_tests,e2e_int4,cluster,cluster_tuning,bias_after_dot,cluster16,variants,first_process,e2e_quick,zero_bias,demo,tiles,timing_floor,compiled_launch,wgmma_tests,wgmma_ab,small_shape,narrow_tiles,occupancy32,registers,bench_gpus_8b,bench_gpus_70b,bench_prefill,bench_gpus_pinned,wave_splits,floor_pdl,small_registers,uint1_pairs,int8_route,registers_occupancy,half_route,mma_rates,top_plane,tree_ab,bench_one_gpu,retune_types,first_call,bound_launch,bound_e2e"
failed=()

step() {  # step NAME TIMEOUT_SECONDS COMMAND...: run one step, tee its output to $RESULTS/NAME.log
    local name="$1" seconds="$2"
    local override="LIMIT_$name"
    seconds="${!override:-$seconds}"  # e.g. LIMIT_gpu_kernels=90 shortens one step for a tight call
    shift 2
    if [ -n "$STEPS" ] && [[ ",$STEPS," != *",$name,"* ]]; then
        return 0
    fi
    if [ -z "$STEPS" ] && [[ ",$ONLY_WHEN_NAMED," == *",$name,"* ]]; then
        return 0  # too long for the default call: run it with STEPS=...
    fi
    echo "=== $name: $* (limit ${seconds}s, $(date -u +%T) UTC)"
    local started=$SECONDS
    timeout --kill-after=10 "$seconds" "$@" 2>&1 | tee "$RESULTS/$name.log"
    local status=${PIPESTATUS[0]}
    echo "=== $name: exit $status after $((SECONDS - started))s"
    tar czf "$OUT/gpu_results.tgz" -C "$RESULTS" . 2>/dev/null  # a call cut short still brings these back
    if [ "$status" -ne 0 ]; then
        failed+=("$name($status)")
    fi
}

step environment 20 bash -c "nvidia-smi; $PYTHON - <<'PY'
import sys, torch
print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda)
print('gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')
from cuda.bindings import nvrtc, driver
import cuda.bindings
print('cuda-bindings', cuda.bindings.__version__, '| nvrtc', nvrtc.nvrtcVersion()[1:])
from anybit.runtime.nvrtc import cuda_include_dirs
print('cuda headers', cuda_include_dirs())
PY"
# The GPU tier in separate pytest processes, the runtime's first: a kernel that kills its CUDA context
# (illegal instruction, trap) can only fail the rest of its own step. Within test_gpu_programs and
# test_examples_gpu every case runs in a process of its own as well. -v and a per-test limit
# (pytest-timeout): a hanging kernel shows up by name instead of eating the step.
gpu_pytest=("$PYTHON" -m pytest -m gpu -v -rs -p timeout --timeout=120)  # a test tuning on cold caches: ~45 s
step gpu_conversions 60 "${gpu_pytest[@]}" tests/cuda/test_conversions.py tests/cuda/test_binary_dot.py
step gpu_programs 70 "${gpu_pytest[@]}" -n 8 tests/cuda/test_gpu_programs.py
step gpu_examples 75 "${gpu_pytest[@]}" -n 8 tests/cuda/test_examples_gpu.py
# The kernel library's sweep (every type x group x activation dtype x zero option) compiles hundreds of
# kernels: spread it over processes (pytest-xdist) so NVRTC runs on every core.
step gpu_kernels 240 "$PYTHON" -m pytest -m gpu -q -rs -p timeout --timeout=150 -n 16 tests/kernels ${KERNELS_K:+-k "$KERNELS_K"}
step benchmarks 60 "$PYTHON" benchmarks/run_all.py --out "$RESULTS"
step bench_quick 200 "$PYTHON" -m anybit bench --quick --out "$RESULTS/bench"
step gpu_runtime 90 "${gpu_pytest[@]}" tests/runtime
# ops tunes every M bucket of several types (16-row buckets: the occupancy variants too; 16 < M ≤ 128: both
# paths timed): one process took 230 s for 15 of its 25 tests on a fresh machine (2026-11-29), so both
# tiers spread over processes (the picks of tuning beside other tests are slower, never wrong).
step gpu_ops 420 "${gpu_pytest[@]}" -n 8 tests/ops
step gpu_nn 240 "${gpu_pytest[@]}" -n 8 tests/nn
# Any other GPU test (exit 5: none collected, which is fine).
step gpu_other 60 bash -c '"$@"; status=$?; [ $status -eq 5 ] && exit 0; exit $status' _ "${gpu_pytest[@]}" \
    tests --ignore=tests/runtime --ignore=tests/cuda/test_conversions.py \
    --ignore=tests/cuda/test_gpu_programs.py --ignore=tests/cuda/test_examples_gpu.py \
    --ignore=tests/kernels --ignore=tests/ops --ignore=tests/nn
tiers=()
for directory in tests/cuda tests/runtime; do
    [ -d "$directory" ] && tiers+=("$directory")
done
if [ ${#tiers[@]} -gt 0 ]; then
    step cpu_tiers 120 "$PYTHON" -m pytest -m "not gpu" -q -rs "${tiers[@]}"
fi
step launch_overhead 20 "$PYTHON" -m anybit.runtime.overhead --out "$RESULTS/launch_overhead.json"
# The full suite in two calls (its 1120 rows timed by kernel time no longer fit one 10-minute call): bench
# the Llama-3-8B shapes and 70B qkv, bench_70b the other three 70B shapes (each with its crossover rows); merge with
# `python benchmarks/matmul_report.py --merge bench/matmul.json bench_70b/matmul.json --out DIR`.
step bench 580 "$PYTHON" -m anybit bench --layers "8B qkv,8B o,8B gate_up,8B down,70B qkv" --out "$RESULTS/bench"
step bench_70b 580 "$PYTHON" -m anybit bench --layers "70B o,70B gate_up,70B down" --out "$RESULTS/bench_70b"
# The whole suite as one run in one call on a machine of 2 or more GPUs (nvidia-h200-x2): parts side by side,
# one per GPU, merged into bench_gpus/matmul.md (scripts/bench_gpus.sh). Since the small weights' tuning
# space (twenty-sixth session) its warm-up compile takes ~150 s and two GPUs no longer finish it in one call:
# run bench_gpus_8b and bench_gpus_70b (a call each) and merge their matmul.json with
# benchmarks/matmul_report.py --merge.
step bench_gpus 585 bash scripts/bench_gpus.sh "$RESULTS/bench_gpus"
step bench_gpus_8b 585 env BENCH_LAYERS="8B qkv,8B o,8B gate_up,8B down,70B qkv" bash scripts/bench_gpus.sh \
    "$RESULTS/bench_gpus_8b"
step bench_gpus_70b 585 env BENCH_LAYERS="70B o,70B gate_up,70B down" bash scripts/bench_gpus.sh \
    "$RESULTS/bench_gpus_70b"
# The whole suite in one call with the last full run's tuning pinned (benchmarks/tunings/, made with
# benchmarks/merge_tuning.py from the parts' tuning.json): the weights and M buckets it names are neither
# tuned nor precompiled beyond their configuration, so both parts fit one call on two GPUs. It must come from
# the current kernels (an older kernel's records are not found: those rows tune, as without it).
step bench_gpus_pinned 585 env BENCH_TUNING="$PWD/benchmarks/tunings/nvidia-h200-suite.json" \
    bash scripts/bench_gpus.sh "$RESULTS/bench_gpus_pinned"
# The whole suite in one process on one GPU (301 s on an H200 with the pinned tuning, 19.5 s of it the
# warm-up compile on 16 cores, thirty-sixth session), for when no machine of two GPUs is lent;
# BENCH_BUDGET_S (default 400) stops starting new weights that long after the compile, inside the call.
step bench_one_gpu 585 "$PYTHON" -m anybit bench --tuning "$PWD/benchmarks/tunings/nvidia-h200-suite.json" \
    --budget-s "${BENCH_BUDGET_S:-400}" --out "$RESULTS/bench_one_gpu"
# The suite's prefill rows alone (M = 512 and 4096, every layer, type and activation dtype; each row and
# its cuBLAS anchors timed in turns): to re-measure them after a change to the prefill path.
step bench_prefill 585 env BENCH_MS="512,4096" bash scripts/bench_gpus.sh "$RESULTS/bench_prefill"
# The suite's decode rows of RETUNE_TYPES (default the types whose conversion changed after the suite's file
# was tuned: uint3, uint5, int6) tuned again in the run, nothing pinned; merge each part's tuning.json after
# the suite's file (benchmarks/merge_tuning.py, later wins) to carry the new configurations into it.
step retune_types 585 env BENCH_TYPES="${RETUNE_TYPES:-uint3,uint5,int6}" BENCH_MS="1,4,16" \
    bash scripts/bench_gpus.sh "$RESULTS/retune_types"
# The first call of a new shape on the suite's largest tuning spaces, cold, in fresh processes (the < 20 s
# target), the cached call after it (no NVRTC), and the staged tuning's picks against every configuration
# timed (benchmarks/first_call.py; ~3 minutes on one H200).
step first_call 400 "$PYTHON" benchmarks/first_call.py --grid --out "$RESULTS/first_call"
# Wider warp tiles (128 bytes a thread: twice the columns a warp) against the narrow 64, both forced on
# every weight, in one call: WIDE_TYPES (default the 5- and 6-bit types and float4_e2m1) on WIDE_LAYERS
# (default the three 70B target shapes) at M = 1 and 16. bench_wide: every row of the types the default
# packing widens (choose_layout: 5-, 6- and 8-bit weights of 2^27 weights or more) on the two large 70B
# shapes, with the default packing.
wide_types="uint5,int6,float4_e2m1,float5_e2m2,float6_e3m2,float6_e2m3"
step wide_tiles 580 bash -c "for width in 64 128; do $PYTHON -m anybit bench --types ${WIDE_TYPES:-$wide_types} \
    --layers '${WIDE_LAYERS:-70B gate_up,70B down,70B o}' --ms 1,16 --bytes-per-thread \$width \
    --out $RESULTS/wide_\$width || exit 1; done"
wide_default_types="uint5,int6,float5_e2m2,float6_e3m2,float6_e2m3,int8,float8_e4m3,float8_e5m2"
step bench_wide 400 "$PYTHON" -m anybit bench --types "${WIDE_DEFAULT_TYPES:-$wide_default_types}" \
    --layers "70B gate_up,70B down" --out "$RESULTS/bench_wide"
step e2e_quick 120 "$PYTHON" benchmarks/e2e.py --quick --out "$RESULTS/e2e"
# `anybit demo` as a newcomer runs it: empty anybit, Inductor and Triton caches (its kernels tuned cold, built
# in worker processes), then again with the caches it left; the wall time of each.
step demo 560 bash -c "export ANYBIT_CACHE_DIR=/tmp/anybit-demo TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-demo \
    TRITON_CACHE_DIR=/tmp/triton-demo; rm -rf /tmp/anybit-demo /tmp/inductor-demo /tmp/triton-demo; \
    for run in \"empty caches\" \"its caches kept\"; do start=\$(date +%s); $PYTHON -m anybit demo || exit 1; \
    echo \"anybit demo, \$run: \$(( \$(date +%s) - start )) s\"; done"
step bench_b 580 "$PYTHON" -m anybit bench --operand b --out "$RESULTS/bench_b"
step probe 300 "$PYTHON" benchmarks/decode_probe.py --types uint4,int4,int8,uint2 --operands b,a \
    --out "$RESULTS/probe"
step sequence 200 "$PYTHON" benchmarks/layer_sequence.py --types int4,int2 --model-layers 32 \
    --out "$RESULTS/sequence"
# Every configuration of a Llama-3-8B layer's four projections, 16 copies in a row, plain and dependent,
# with torch's read and cuBLAS fp16 of the same sequence (int4 as the end-to-end model quantizes it).
step sweep 240 "$PYTHON" benchmarks/layer_sequence.py --types int4 --copies 16 --sweep --out "$RESULTS/sweep"
# Deeper copy rings: the layer's projections in a row and the issue's large shapes alone, 4 to 12 stages.
step stages 300 bash -c "$PYTHON benchmarks/layer_sequence.py --types int4 --copies 16 --sweep --stages 4,6,8,12 \
    --out $RESULTS/stages_sequence && $PYTHON benchmarks/decode_probe.py --types int4,uint4 \
    --shapes 8192x8192,8192x28672,57344x8192 --stages 4,8 --out $RESULTS/stages_probe"
# Warp counts that divide the grid more evenly over the SMs (7 warps: 28672 / 224 = 128 blocks for 132 SMs).
step warps 240 bash -c "$PYTHON benchmarks/layer_sequence.py --types int4 --copies 16 --sweep \
    --warps 2,4,6,7,8,12,14,16 --out $RESULTS/warps_sequence && $PYTHON benchmarks/decode_probe.py \
    --types int4,uint4 --shapes 14336x4096,8192x28672,57344x8192 --warps 4,7,8,14 --out $RESULTS/warps_probe"
# Float weights, this tree against another (AB_TREE, e.g. a worktree of main carried along): every
# configuration of the issue's shapes at M = 1, one process each, the same GPU.
step float_ab 300 bash -c "$PYTHON benchmarks/decode_probe.py --types float4_e2m1,float5_e2m2,float6_e3m2 \
    --shapes 8192x8192,8192x28672,57344x8192 --out $RESULTS/float_here && cd \"\${AB_TREE:?}\" && \
    PYTHONPATH=\$PWD $PYTHON benchmarks/decode_probe.py --types float4_e2m1,float5_e2m2,float6_e3m2 \
    --shapes 8192x8192,8192x28672,57344x8192 --out $RESULTS/float_other"
# float4_e2m1 with float16: every configuration at M = 1 on the three target shapes (and M = 16 on the largest)
# here and in AB_TREE (a worktree of another commit, carried along): what a conversion change buys.
step fp4_ab 300 bash -c "for tree in \$PWD \"\${AB_TREE:?}\"; do name=\$( [ \"\$tree\" = \"\$PWD\" ] && echo here || echo other); \
    (cd \"\$tree\" && PYTHONPATH=\$PWD $PYTHON benchmarks/decode_probe.py --types float4_e2m1 --operands a --m 1 \
    --shapes 57344x8192,8192x28672,8192x8192 --out $RESULTS/fp4_\$name && PYTHONPATH=\$PWD $PYTHON \
    benchmarks/decode_probe.py --types float4_e2m1 --operands a --m 16 --shapes 57344x8192 \
    --out $RESULTS/fp4_\${name}_16) || exit 1; done"
# x read by wgmma from shared memory (the converted weights the A operand from registers) against ldmatrix +
# mma.sync: the dot's GPU tests, which descriptor offsets it takes, then every configuration with and without
# it, M = 16 on the three target shapes (int4 and uint4 on the first GPU; float6_e3m2, and int4 and uint2 at
# M = 1, on the second where there are two), one probe a shape so a cut-short call keeps the finished ones.
wgmma_probe() {  # wgmma_probe TYPE WARPS M SHAPES: the probes, for two_gpus.sh
    echo "for shape in $4; do $PYTHON benchmarks/decode_probe.py --types $1 --m $3 --warps $2 --stages 3,4 \
        --sm-warps 0,24 --wgmma --shapes \$shape --out $RESULTS/wgmma_$1_m$3_\$shape || exit 1; done"
}
large="57344x8192 8192x28672 8192x8192"
step wgmma_tests 120 bash -c "$PYTHON -m pytest -m gpu -q -p timeout --timeout=120 tests/lang/test_dot_shared.py \
    && $PYTHON scripts/wgmma_offsets_check.py"
step wgmma_ab 585 bash scripts/two_gpus.sh "$RESULTS/wgmma_second.log" \
    "$(wgmma_probe int4 8 16 "$large") && $(wgmma_probe uint4 8 16 "$large")" \
    "$(wgmma_probe float6_e3m2 4,8 16 "$large") && $(wgmma_probe int4 4,8 1 57344x8192) && \
    $(wgmma_probe uint2 4,8 1 57344x8192)"
# The 8192×8192 cells (60% target; a fixed ~5.5 µs a launch beside the bytes): every configuration with
# more warp counts and ring depths, each split also reduced in a thread-block cluster, timed alone (as the
# suite times a row) and in the tuner's row; M = 1 on the first GPU, M = 16 on the second. One probe a type.
small_probe() {  # small_probe TYPES WARPS STAGES M: the probes, for two_gpus.sh
    echo "for type in $(echo $1 | tr , ' '); do $PYTHON benchmarks/decode_probe.py --types \$type --m $4 \
        --warps $2 --stages $3 --cluster --shapes 8192x8192 --out $RESULTS/small_\${type}_m$4 || exit 1; done"
}
step small_shape 540 bash scripts/two_gpus.sh "$RESULTS/small_second.log" \
    "$(small_probe int4,uint4,float4_e2m1,uint5 1,2,4,8 3,4,6 1)" \
    "$(small_probe int6,float6_e3m2,float5_e2m2,int4 2,4,8 2,3,4 16)"
# Would the next projection's weights read into L2 during a layer's other work pay off (an experiment: a
# side stream in the graph reads them while attention and the element-wise stand-ins run)?
step prefetch 200 "$PYTHON" benchmarks/l2_prefetch.py --layers 8 --out "$RESULTS/prefetch"
# Rows of x past M and the first measurement of a new weight: the decode kernel at M = 1, 4, 1, 2, 8, 16 on
# one weight, plainly and settled as the suite settles it; with AB_TREE (a worktree of another branch,
# carried along) its settled run too, e.g. next/x-zero-fill against main.
step rows 240 bash -c "$PYTHON benchmarks/rows_probe.py --out $RESULTS/rows_plain && $PYTHON \
    benchmarks/rows_probe.py --settle --out $RESULTS/rows_settled && if [ -n \"\${AB_TREE:-}\" ]; then \
    cd \"\$AB_TREE\" && PYTHONPATH=\$PWD $PYTHON benchmarks/rows_probe.py --settle --out $RESULTS/rows_other; fi"
# The decode kernel under Nsight Compute (one launch per case: occupancy, issue, tensor pipe, stall reasons,
# DRAM and L2 traffic): the report, its details page and its raw metrics as CSV, and the headline lines.
step ncu 240 bash -c "NCU=\$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1); \
    \${NCU:?ncu not found} --clock-control none --profile-from-start off --section SpeedOfLight \
    --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
    --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis -f -o $RESULTS/ncu_decode \
    $PYTHON benchmarks/ncu_decode.py \${NCU_CASES:+--cases \$NCU_CASES} && \$NCU -i $RESULTS/ncu_decode.ncu-rep --page details \
    >$RESULTS/ncu_details.txt && \$NCU -i $RESULTS/ncu_decode.ncu-rep --page raw --csv >$RESULTS/ncu_raw.csv; \
    grep -E 'ab_Tuned|Duration|DRAM Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Block Limit|stalled' $RESULTS/ncu_details.txt | cut -c1-200"
# More resident warps for the warp-starved kernels (BENCHMARKS.md, eighth session: uint1/uint2 hold 80–176
# registers a thread; int4 at 16 rows is latency-bound): every configuration with 3 and 4 stages, unbounded
# and compiled for 24 and 32 resident warps an SM (min_blocks), at M = 1 and M = 16.
step occupancy 420 bash -c "$PYTHON benchmarks/decode_probe.py --types uint1,uint2,int4 \
    --shapes 57344x8192,8192x28672,8192x8192 --stages 3,4 --sm-warps 0,24,32 --out $RESULTS/occupancy_m1 && \
    $PYTHON benchmarks/decode_probe.py --types uint2,int4,int8 --shapes 57344x8192,8192x28672 --m 16 \
    --stages 3,4 --sm-warps 0,24,32 --out $RESULTS/occupancy_m16"
# What the suite's timing adds to a kernel's own time: event µs (as the suite times a row) against the
# profiler's kernel µs on the same graphs, for an empty kernel, torch reads of 1-256 MiB and quantized_matmul.
# The compiled launch backend (anybit/runtime/compiled_launch.c): every backend's GPU tests, the launch
# overhead through each, an eager quantized_matmul's host time through bindings and compiled (checked
# against float64), then the ops tier with every kernel launched through the compiled backend.
step compiled_launch 400 bash -c "$PYTHON -m pytest -m gpu -q -p timeout --timeout=120 tests/runtime \
    tests/lang/test_dependent_launch.py && $PYTHON -m anybit.runtime.overhead \
    --out $RESULTS/launch_overhead_backends.json && for backend in bindings compiled; do \
    ANYBIT_LAUNCH_BACKEND=\$backend $PYTHON benchmarks/eager_host.py --out $RESULTS/eager_host || exit 1; \
    done && ANYBIT_LAUNCH_BACKEND=compiled $PYTHON -m pytest -m gpu -q -p timeout --timeout=120 -n 8 tests/ops"
# An eager call's host time split into its parts on this host (the Python path without the launch, the
# launch alone, the output's torch.empty, cuBLAS's eager call), then the bare launch's costs.
step eager_breakdown 120 bash -c "$PYTHON benchmarks/eager_host.py --breakdown --out $RESULTS/eager_breakdown \
    && $PYTHON -m anybit.runtime.overhead --out $RESULTS/eager_breakdown/launch_overhead.json"
# Eager calls through bound launches (Launcher.bind): their GPU tests, the runtime's launch tests, then the
# eager host time with binding off (ANYBIT_BIND_LAUNCHES=0: the checked launcher every call) and on, in one
# process each on the same host, with the breakdown of one call.
step bound_launch 300 bash -c "${gpu_pytest[*]} -n 8 tests/ops/test_gpu_ops.py tests/ops/test_gpu_int8_route.py \
    tests/ops/test_gpu_half_route.py -k 'bound or graph or eager or every_m or compile or route' \
    && ${gpu_pytest[*]} tests/runtime/test_gpu.py tests/runtime/test_compiled_launch.py \
    tests/runtime/test_bound_launch.py \
    && ANYBIT_BIND_LAUNCHES=0 $PYTHON benchmarks/eager_host.py --out $RESULTS/bound_launch_off \
    && $PYTHON benchmarks/eager_host.py --breakdown --out $RESULTS/bound_launch_on \
    && ANYBIT_BIND_LAUNCHES=0 $PYTHON benchmarks/eager_host.py --out $RESULTS/bound_launch_off_again \
    && $PYTHON benchmarks/eager_host.py --out $RESULTS/bound_launch_on_again"
# Eager decode end to end (no CUDA graph: each step's launches paced by the host) with binding off and on:
# int4, 8 Llama-3-8B layers, batch 1 and 16.
step bound_e2e 300 bash -c "for run in 0a 1a 0b 1b; do ANYBIT_BIND_LAUNCHES=\${run:0:1} $PYTHON \
    benchmarks/e2e.py --no-graph --types int4 --layers 8 --batches 1,16 --new-tokens 32 --prompts 8 \
    --repeats 3 --out $RESULTS/bound_e2e_\$run || exit 1; grep -h 'int4' $RESULTS/bound_e2e_\$run/e2e.md | head -4; done"
# 1-bit codes stored pair-interleaved (as a 1-bit plane is) against the plain order, each with and without
# the conversion's bias after the dot: uint1 at M = 1 on the two large shapes, one per GPU. In SASS the
# interleaved order takes the ALU pipe's share of a chunk from 191 to 167 instructions (no PRMT): whether
# that pipe binds the 1-bit loop.
step uint1_pairs 300 bash scripts/two_gpus.sh "$RESULTS/uint1_pairs_second.log" \
    "$PYTHON benchmarks/decode_probe.py --types uint1 --shapes 57344x8192 --warps 4,8 --stages 3,4 \
    --bias-after-dot --interleave-1bit both --out $RESULTS/uint1_pairs_0" \
    "$PYTHON benchmarks/decode_probe.py --types uint1 --shapes 8192x28672 --warps 4,8 --stages 3,4 \
    --bias-after-dot --interleave-1bit both --out $RESULTS/uint1_pairs_1"
# The int8 route (the packed 1-, 2- and 4-bit codes made int8 four a lop3, x in two int8 fixed-point planes,
# mma.m16n8k32; quantized_matmul takes it at M = 1 where its first call measures it faster): its GPU tests
# (the kernels, and through quantized_matmul), then every configuration against quantized_matmul on the three
# target shapes at M = INT8_MS (default 1; benchmarks/int8_route.py).
step int8_route 560 bash -c "$PYTHON -m pytest -m gpu -q -p timeout --timeout=150 tests/kernels/test_gpu_int8.py \
    tests/ops/test_gpu_int8_route.py && $PYTHON benchmarks/int8_route.py --ms ${INT8_MS:-1} --out $RESULTS/int8_route"
# What the fastest plain read of each target cell's bytes reaches (torch, cuBLAS, the VM's streaming read; kernel
# time, L2 flushed, the read ceiling in the same process): limits.py --reads puts it beside the suite's rows.
step read_floor 480 "$PYTHON" benchmarks/read_floor.py --out "$RESULTS/read_floor"
step timing_floor 240 "$PYTHON" benchmarks/timing_floor.py --out "$RESULTS/timing_floor"
# Narrower warp tiles for the 1- and 2-bit types (16 and 32 bytes a thread against 64: 2-4× the block
# columns, fewer weights a warp a step): every configuration of each at M = 1 on the issue's three shapes.
step tiles 420 "$PYTHON" benchmarks/decode_probe.py --types uint1,uint2 --shapes 57344x8192,8192x28672,8192x8192 \
    --bytes-per-thread 16,32,64 --out "$RESULTS/tiles"
# Bit planes against whole codes (3-, 5- and 6-bit types), every configuration at M = 1 on the issue's largest
# shape, both storages in one process: what the two-plane conversion buys.
step planes 330 "$PYTHON" benchmarks/decode_probe.py --types uint3,uint5,int6,float5_e2m2,float6_e3m2,float6_e2m3 \
    --shapes 57344x8192 --planar both --out "$RESULTS/planes"
# The suite's rows of the planar types on the issue's three target shapes (decode and prefill, both activation
# dtypes): the figures BENCHMARKS.md takes for them.
step bench_planes 400 "$PYTHON" -m anybit bench --types uint3,uint5,int6,float5_e2m2,float6_e3m2,float6_e2m3 \
    --layers "70B gate_up,70B down,70B o" --out "$RESULTS/bench_planes"
# Tensor-core throughput at the decode kernel's shapes, mma.sync against wgmma.m64n8k16 / m64n16k16 with A
# from registers and B from shared memory (~1 min): whether a wgmma path would pay at 8 and 16 rows of x.
step tensor 120 "$PYTHON" benchmarks/tensor_probe.py --out "$RESULTS/tensor"
# Dependent launches on and off: a Llama-3-8B layer's projections in a row (CUDA graph), int4 and int2.
step pdl_ab 150 bash -c "$PYTHON benchmarks/layer_sequence.py --types int4,int2 --copies 8 \
    --out $RESULTS/pdl_off && ANYBIT_PDL=1 $PYTHON benchmarks/layer_sequence.py --types int4,int2 --copies 8 \
    --out $RESULTS/pdl_on"
# The issue's end-to-end run as the fastest model runs (fused projections, silu · up in the gate/up epilogue,
# norms and residual adds folded, the decode attention and the greedy pick in anybit kernels), 128 tokens,
# batch 1 and 16, in two halves (~150 s a type after ~100 s of fp16, which each half measures for same-run
# ratios): a device call each. Every model measured so far is written out as it finishes.
e2e_settings="--compile --fuse --gated-mlp --fold-norms --fuse-attention quantized --greedy anybit --batches 1,16 \
    --new-tokens 128 --prompts 256 --repeats 2"
# e2e also times int4 with lm_head quantized too (as gpt-fast's int4 does; the issue's default keeps it fp16),
# batch 1, after the full run (its tuning cached by then): a row beside the default, not the issue's figure.
step e2e 575 bash -c "$PYTHON benchmarks/e2e.py $e2e_settings --types int4,int3 --out $RESULTS/e2e_full && \
    $PYTHON benchmarks/e2e.py ${e2e_settings/--batches 1,16/--batches 1} --types int4 --quantize-lm-head \
    --no-baseline --no-agreement --out $RESULTS/e2e_lm_head_int4"
step e2e_more 560 bash -c "$PYTHON benchmarks/e2e.py $e2e_settings --types int2,float6_e3m2 --out $RESULTS/e2e_more"
# How far one run's figure spreads from the next's at the targets' edge: the M = 1 rows of the types whose cells
# sit within a few points of 80% on the two large shapes, three runs each from empty caches (tuned anew),
# float16 on the first GPU and bfloat16 on the second where there are two (scripts/two_gpus.sh).
edge="--types uint5,float4_e2m1,float6_e2m3,float6_e3m2 --ms 1 --layers '70B gate_up,70B down'"
edge_runs() {  # edge_runs ACT: the three runs' command, for two_gpus.sh
    echo "for run in 1 2 3; do ANYBIT_CACHE_DIR=/tmp/edge-$1-\$run $PYTHON -m anybit bench $edge --acts $1 \
        --out $RESULTS/edge_$1_\$run || exit 1; done"
}
step edge_spread 560 bash scripts/two_gpus.sh "$RESULTS/edge_bfloat16.log" "$(edge_runs float16)" \
    "$(edge_runs bfloat16)"
# Deeper and shallower copy rings for the edge rows at M = 1 (the tuner tries 4 stages at 8 rows): every
# configuration with 3 to 6 stages, the wide-tile types at their default 128 bytes a thread on one GPU, the
# 4-bit types at 64 on the other where there are two.
edge_wide="$PYTHON benchmarks/decode_probe.py --types uint5,float6_e2m3,float6_e3m2 --bytes-per-thread 128 \
    --shapes 57344x8192,8192x28672 --stages 3,4,5,6 --out $RESULTS/edge_stages_wide"
edge_narrow="$PYTHON benchmarks/decode_probe.py --types float4_e2m1,int4 --bytes-per-thread 64 \
    --shapes 57344x8192,8192x28672,8192x8192 --stages 3,4,5,6 --out $RESULTS/edge_stages_narrow"
step edge_stages 560 bash scripts/two_gpus.sh "$RESULTS/edge_narrow.log" "$edge_wide" "$edge_narrow"
# Both halves in one call on a machine of two GPUs, side by side (each half with its own fp16 baseline; one
# after the other on one GPU, too long for one call there).
step e2e_gpus 585 bash scripts/two_gpus.sh "$RESULTS/e2e_more.log" \
    "$PYTHON benchmarks/e2e.py $e2e_settings --types int4,int3 --out $RESULTS/e2e_full" \
    "$PYTHON benchmarks/e2e.py $e2e_settings --types int2,float6_e3m2 --out $RESULTS/e2e_more"
# Serving batch sizes end to end: fp16 and int4 at batch 1, 16, 32 and 64 (32 and 64: M above the decode
# threshold, where branch next/measured-path lets each weight take the faster path).
step e2e_batches 420 "$PYTHON" benchmarks/e2e.py --compile --fuse --types int4 --batches 1,16,32,64 \
    --new-tokens 64 --prompts 4 --repeats 2 --out "$RESULTS/e2e_batches"
# The gated MLP epilogue end to end (branch next/gated-epilogue): int4 at batch 1 with q/k/v and gate/up
# fused, then the same with silu · up in the gate/up kernel (one element-wise kernel fewer a layer).
step e2e_gated 300 bash -c "$PYTHON benchmarks/e2e.py --compile --fuse --types int4 --batches 1 \
    --new-tokens 64 --prompts 4 --repeats 2 --out $RESULTS/e2e_fused && $PYTHON benchmarks/e2e.py --compile \
    --fuse --gated-mlp --types int4 --batches 1 --new-tokens 64 --prompts 4 --repeats 2 --out $RESULTS/e2e_gated"
# Norms and residual adds folded into the projections (anybit.fold_norms) against the fused, gated model,
# int4 at batch 1, profiled (kernels a step): what removing the element-wise kernels between projections buys.
step e2e_folded 330 bash -c "$PYTHON benchmarks/e2e.py --compile --fuse --gated-mlp --types int4 --batches 1 \
    --new-tokens 64 --prompts 4 --repeats 2 --out $RESULTS/e2e_gated_only && $PYTHON benchmarks/e2e.py \
    --compile --fuse --gated-mlp --fold-norms --profile --types int4 --batches 1 --new-tokens 64 --prompts 4 \
    --repeats 2 --out $RESULTS/e2e_folded"
# The same folded model with Inductor's Triton kernels launched as dependents too (both models alike, where
# this torch has TORCHINDUCTOR_ENABLE_PDL): the decode kernels then overlap the element-wise ones as well.
step e2e_inductor_pdl 200 env TORCHINDUCTOR_ENABLE_PDL=1 "$PYTHON" benchmarks/e2e.py --compile --fuse \
    --gated-mlp --fold-norms --types int4 --batches 1 --new-tokens 64 --prompts 4 --repeats 2 \
    --out "$RESULTS/e2e_inductor_pdl"
# The fused decode attention against the compiled torch step it replaces (Llama-3-8B heads, batch 1 and 16,
# caches of 145 to 4096 positions, 1 to 16 runs, tiles 8 and 16) and the greedy kernel against argmax, then
# int4 end to end with the attention in both models (the like-for-like ratio), profiled.
step attention 420 bash -c "$PYTHON benchmarks/attention_probe.py --lengths 145,1024,4096 --splits 1,2,4,8,16 \
    --out $RESULTS/attention && $PYTHON benchmarks/e2e.py --compile --fuse --gated-mlp --fold-norms \
    --fuse-attention both --greedy anybit --types int4 --batches 1 --new-tokens 128 --prompts 4 --repeats 3 \
    --no-agreement --profile --out $RESULTS/e2e_attention"
# The fused gated MLP kernel: its GPU tests, then a Llama-3-8B MLP as the folded model's two kernels against
# the fused kernel, 16 distinct copies in a row, M = 1 and 16, stages 3/4/6 (int4, then int2 and int8).
step mlp 300 bash -c "$PYTHON -m pytest -m gpu -q -p timeout --timeout=120 tests/kernels/test_gpu_mlp.py && \
    $PYTHON benchmarks/mlp_probe.py --types int4,int2,int8 --out $RESULTS/mlp"
# The issue's int4 run with each MLP in one kernel (anybit.fuse_mlp), fp16 of the same run, batch 1 and 16;
# MLP_LAUNCH (stages x split, e.g. 4x2) picks the kernel's variant the mlp step found fastest.
step e2e_mlp 560 bash -c "$PYTHON benchmarks/e2e.py $e2e_settings --fuse-mlp --mlp-launch ${MLP_LAUNCH:-4x1} \
    --types int4 --out $RESULTS/e2e_mlp"
# The attention kernel's GPU tests, then the issue's run for int4 alone with the fp16 of the same run (batch
# 1 and 16, 256 prompts): a shorter call than e2e when one type's figure is what changed.
step attention_tests 120 "${gpu_pytest[@]}" -n 8 tests/kernels/test_gpu_attention.py
step e2e_int4 420 "$PYTHON" benchmarks/e2e.py $e2e_settings --types int4 \
    --attention-combine "${ATTENTION_COMBINE:-auto}" --out "$RESULTS/e2e_int4"
# Thread-block clusters: the VM's cluster tests, the attention kernel's runs and the decode kernels' split-K
# reduced in a cluster on the GPU; the attention probe with the runs combined through global memory against
# in a cluster (batch 1 and 16, 145 and 1024 positions, 2/4/8 runs, tile 16); then int4 end to end at batch 1
# on main's tree (`bash scripts/ab_trees.sh main` first: ab/main, where it exists) and on this tree with the
# cluster combine (its tuner also tries split-K in a cluster), one after the other.
cluster_e2e="--compile --fuse --gated-mlp --fold-norms --fuse-attention quantized --greedy anybit --types int4 \
    --batches 1 --new-tokens 128 --prompts 4 --repeats 3 --no-agreement"
step cluster 480 bash -c "$PYTHON -m pytest -m gpu -q -p timeout --timeout=60 tests/lang/test_cluster.py \
    tests/kernels/test_gpu_attention.py tests/kernels/test_gpu_kernels.py -k 'cluster or neighbour' && \
    $PYTHON benchmarks/attention_probe.py --lengths 145,1024 --splits 2,4,8 --tiles 16 --combines global,cluster \
    --out $RESULTS/attention_cluster; if [ -d ab/main ]; then $PYTHON ab/main/benchmarks/e2e.py $cluster_e2e \
    --out $RESULTS/e2e_main; fi; $PYTHON benchmarks/e2e.py $cluster_e2e --no-baseline --attention-combine cluster \
    --out $RESULTS/e2e_cluster"
# Clusters past the portable 8 blocks (the H200's 16, opted in at load): the cluster GPU tests, then the
# attention's runs at batch 1 combined through global memory against in a cluster of 8, 10 and 16 runs.
step cluster16 240 bash -c "$PYTHON -m pytest -m gpu -q -p timeout --timeout=120 tests/lang/test_cluster.py \
    tests/kernels/test_gpu_attention.py tests/kernels/test_gpu_kernels.py -k 'cluster or neighbour' && \
    $PYTHON benchmarks/attention_probe.py --batches 1 --lengths 145,1024,4096 --splits 8,10,16 --tiles 8,16 \
    --combines global,cluster --out $RESULTS/attention_cluster16"
# The tuner's opt-in variants, timed: int4 end to end at batch 1 tuned without them, then (its tuning records
# kept in tuning-plain/ and cleared: the compiled kernels stay cached) with split-K in a cluster and the
# conversion's bias after the dot in the space (ANYBIT_TUNE_SPLIT_IN_CLUSTER=1 ANYBIT_TUNE_BIAS_AFTER_DOT=1;
# the run's tuning.json says which each shape picked), then every configuration of the layer's four shapes in
# a row with and without the cluster (layer_sequence --sweep --split-in-cluster: it prints per shape, so a
# cut run still reports).
step cluster_tuning 590 bash -c "$PYTHON benchmarks/e2e.py $cluster_e2e --no-baseline --out $RESULTS/e2e_plain_tuning; \
    cp -r $ANYBIT_CACHE_DIR/tuning $RESULTS/tuning-plain; rm -rf $ANYBIT_CACHE_DIR/tuning; \
    ANYBIT_TUNE_SPLIT_IN_CLUSTER=1 ANYBIT_TUNE_BIAS_AFTER_DOT=1 $PYTHON benchmarks/e2e.py $cluster_e2e --no-baseline \
    --out $RESULTS/e2e_variant_tuning; \
    $PYTHON benchmarks/layer_sequence.py --types int4 --copies 16 --sweep --split-in-cluster --out $RESULTS/cluster_sweep"
# The opt-in variants in one call: the attention at batch 1 with 8 and 16 runs combined through global memory
# against in a cluster (tile 16), int4 end to end tuned plainly, then with both tuner variants, then every
# configuration of the layer's shapes in a row with and without the bias after the dot (int4).
step variants 590 bash -c "$PYTHON benchmarks/attention_probe.py --batches 1 --lengths 145,1024 --splits 8,16 \
    --tiles 16 --combines global,cluster --out $RESULTS/attention_cluster16; \
    $PYTHON benchmarks/e2e.py $cluster_e2e --no-baseline --out $RESULTS/e2e_plain_tuning; \
    cp -r $ANYBIT_CACHE_DIR/tuning $RESULTS/tuning-plain; rm -rf $ANYBIT_CACHE_DIR/tuning; \
    ANYBIT_TUNE_SPLIT_IN_CLUSTER=1 ANYBIT_TUNE_BIAS_AFTER_DOT=1 $PYTHON benchmarks/e2e.py $cluster_e2e --no-baseline \
    --out $RESULTS/e2e_variant_tuning; \
    $PYTHON benchmarks/layer_sequence.py --types int4 --copies 16 --sweep --bias-after-dot --out $RESULTS/bias_sweep"
# Is a machine's first end-to-end process slower at steady state (int4 batch 1: 2.105 and 2.111 ms a step in
# the first e2e process of two calls, 1.885-1.927 in later ones, the decode kernels' tuned times equal)? The
# same profiled run twice, the first on empty anybit, Inductor and Triton caches (fresh directories, whatever the
# machine ran before), the second on what the first left: the kernel groups' times (eager steps and CUDA-graph
# replays, both profiled) say where a difference lies.
first_e2e="--compile --fuse --gated-mlp --fold-norms --fuse-attention quantized --greedy anybit --types int4 \
    --batches 1 --new-tokens 128 --prompts 4 --repeats 3 --no-agreement --no-baseline --profile"
step first_process 560 bash -c "export ANYBIT_CACHE_DIR=/tmp/anybit-cold TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-cold \
    TRITON_CACHE_DIR=/tmp/triton-cold; rm -rf /tmp/anybit-cold /tmp/inductor-cold /tmp/triton-cold; $PYTHON benchmarks/e2e.py $first_e2e --out $RESULTS/e2e_first; \
    $PYTHON benchmarks/e2e.py $first_e2e --out $RESULTS/e2e_second"
# Zero points off after the dot too (bias_after_dot with uint codes: z · Σx a chunk): its GPU tests, then every
# configuration with and without it on the issue's three decode shapes at M = 1 (uint1, uint2, uint4; the
# SASS says 459 -> 375, 445 -> 364 and 260 -> 240 main-loop instructions at 8 rows).
step zero_bias 300 bash -c "$PYTHON -m pytest -m gpu -q -p timeout --timeout=120 -n 4 \
    tests/kernels/test_gpu_kernels.py -k 'bias' && $PYTHON benchmarks/decode_probe.py --types uint1,uint2,uint4 \
    --shapes 57344x8192,8192x28672,8192x8192 --bias-after-dot --out $RESULTS/zero_bias"
# The same packed bytes read as narrower warp tiles (a wide tile is two narrow ones side by side for codes
# stored whole): every configuration at M = 16 on the two large shapes with 32- and 64-byte tiles (4-bit),
# 64- and 128-byte tiles (the 6-bit types' planes, packed apart), 16 warps a block included; int4 on
# 8192x8192 too. One probe a type and shape list at a time on each GPU.
narrow_probe() {  # narrow_probe TYPES WIDTHS SHAPES M TAG: the probes, for two_gpus.sh
    echo "for type in $(echo $1 | tr , ' '); do $PYTHON benchmarks/decode_probe.py --types \$type --m $4 \
        --warps 4,8,16 --stages 2,3,4 --bytes-per-thread $2 --shapes $3 --out $RESULTS/narrow_\${type}_$5 \
        || exit 1; done"
}
step narrow_tiles 585 bash scripts/two_gpus.sh "$RESULTS/narrow_second.log" \
    "$(narrow_probe int4,float4_e2m1 32,64 57344x8192,8192x28672 16 large)" \
    "$(narrow_probe int6 64,128 57344x8192,8192x28672 16 large) && $(narrow_probe float6_e3m2 64,128 57344x8192 16 large) \
    && $(narrow_probe int4 32,64 8192x8192 16 small)"
# Four blocks of 8 warps an SM at M = 16: a 2-stage ring (41 KB a block) with registers capped at 64
# (min_blocks 4), against the 3-stage, 3-block variant in the space; 4-warp blocks at 8 an SM too.
occupancy_probe() {  # occupancy_probe TYPES: the probes, for two_gpus.sh
    echo "for type in $(echo $1 | tr , ' '); do $PYTHON benchmarks/decode_probe.py --types \$type --m 16 \
        --warps 4,7,8 --stages 2,3 --sm-warps 0,24,32 --shapes 57344x8192,8192x28672 \
        --out $RESULTS/occupancy32_\$type || exit 1; done"
}
step occupancy32 585 bash scripts/two_gpus.sh "$RESULTS/occupancy32_second.log" \
    "$(occupancy_probe int4,uint4)" "$(occupancy_probe float4_e2m1,int6,float6_e3m2)"
# The weight bytes straight into registers a chunk ahead (weights_in_registers: no shared ring for them, x's
# ring and barrier kept): this session's GPU tests on GPU 0 (the kernels' tier, load_global's promise, the
# tuner's tie-break, the runtime tier), then every configuration with and without it at M = 16 on the two
# large shapes (int4 and float4_e2m1 on GPU 0; int6, uint4 and int4 at M = 1 on GPU 1).
registers_probe() {  # registers_probe TYPES M STAGES: the probes, for two_gpus.sh
    echo "for type in $(echo $1 | tr , ' '); do $PYTHON benchmarks/decode_probe.py --types \$type --m $2 \
        --warps 4,8 --stages $3 --weights-in-registers --shapes 57344x8192,8192x28672 \
        --out $RESULTS/registers_\${type}_m$2 || exit 1; done"
}
step registers 585 bash scripts/two_gpus.sh "$RESULTS/registers_second.log" \
    "$PYTHON -m pytest -m gpu -q -rs -p timeout --timeout=150 -n 16 tests/kernels tests/lang/test_copy_in_bounds.py \
    && $PYTHON -m pytest -m gpu -q -p timeout --timeout=150 -n 4 tests/runtime \
    && $PYTHON -m pytest -m gpu -q -p timeout --timeout=150 tests/ops/test_gpu_ops.py -k ties \
    && $(registers_probe int4,float4_e2m1 16 3,4)" \
    "$(registers_probe int6 16 2,3) && $(registers_probe uint4 16 3,4) && $(registers_probe int4 1 3,4)"
# Grids that fill the last wave: split-K counts past the powers of two and past the tuner's grid target (runs
# of 2+ chunks), so that blocks come close to a whole number of waves of the SMs' resident blocks. M = 1 on
# the first GPU (the issue-bound low-bit types, 1.13–1.36 waves in the suite), M = 16 on the second.
split_probe() {  # split_probe TYPES SHAPES M EXTRA: the probes, for two_gpus.sh
    echo "for type in $(echo $1 | tr , ' '); do $PYTHON benchmarks/decode_probe.py --types \$type --m $3 \
        --shapes $2 --splits 1,2,3,4,5,6,7,8,12 $4 --out $RESULTS/splits_\${type}_m$3_$2 || exit 1; done"
}
step wave_splits 585 bash scripts/two_gpus.sh "$RESULTS/splits_second.log" \
    "$(split_probe uint3,uint1,uint2,float4_e2m1 57344x8192 1 '--warps 4,8') && \
    $(split_probe uint5 57344x8192 1 '--warps 4,8 --bytes-per-thread 128 --stages 2,4 --weights-in-registers') && \
    $(split_probe float4_e2m1,uint3,uint2,uint1 8192x28672 1 '--warps 4,8')" \
    "$(split_probe int4,uint4,float4_e2m1 57344x8192 16 '--warps 8 --stages 3 --sm-warps 0,24 --weights-in-registers') && \
    $(split_probe int6,float6_e3m2,uint5 57344x8192 16 '--warps 8 --stages 2,3 --bytes-per-thread 128 \
        --weights-in-registers') && \
    $(split_probe int4,uint4 8192x28672 16 '--warps 8 --stages 3,4 --weights-in-registers')"
# The read floor's readers (torch, cuBLAS, the VM's streaming read) on the first GPU; on the second, every
# configuration of 8192×8192 and 57344×8192 at M = 1 timed as the suite times a row with the kernel launched
# as a programmatic dependent (the default) and without (ANYBIT_PDL=0): does the launch mode change the
# kernel's own measured time?
pdl_probe() {  # pdl_probe PDL: the probe, for two_gpus.sh
    echo "ANYBIT_PDL=$1 $PYTHON benchmarks/decode_probe.py --types int4,uint4,uint2 --shapes 8192x8192,57344x8192 \
        --out $RESULTS/pdl_$1"
}
step floor_pdl 585 bash scripts/two_gpus.sh "$RESULTS/floor_pdl_second.log" \
    "$PYTHON benchmarks/read_floor.py --out $RESULTS/read_floor" "$(pdl_probe 0) && $(pdl_probe 1)"
# 8192×8192 with the weight bytes loaded straight into registers (no shared ring for them) at 8 rows too, where
# the tuning space has them for wide tiles only: every configuration with and without, M = 1 on the first GPU
# and M = 16 on the second (a streaming read of those bytes reaches 80–92% of the ceiling; the kernels 50–65%).
small_registers_probe() {  # small_registers_probe TYPES M WARPS STAGES: the probes, for two_gpus.sh
    echo "for type in $(echo $1 | tr , ' '); do $PYTHON benchmarks/decode_probe.py --types \$type --m $2 \
        --warps $3 --stages $4 --cluster --weights-in-registers --shapes 8192x8192 \
        --out $RESULTS/small_registers_\${type}_m$2 || exit 1; done"
}
step small_registers 585 bash scripts/two_gpus.sh "$RESULTS/small_registers_second.log" \
    "$(small_registers_probe int4,uint4,float4_e2m1,uint5,float5_e2m2,uint3 1 2,4,8 3,4)" \
    "$(small_registers_probe int4,float4_e2m1,int6,float6_e3m2,float5_e2m2,uint4 16 4,8 2,3,4)"
# bf16 activations through the fp16 loop (anybit.ops.half_choice): the GPU tests of its kernels and of the
# route through quantized_matmul (and the int8 route's, which share the route choice), then the route against
# the bf16 decode kernel on the issue's three shapes at M = 1 and 16 (the suite's tuning pinned), half the
# types on each GPU.
half_route_probe() {  # half_route_probe TYPES: the probe, for two_gpus.sh
    echo "$PYTHON benchmarks/half_route.py --types $1 --out $RESULTS/half_route_\$CUDA_VISIBLE_DEVICES"
}
step half_route 585 bash scripts/two_gpus.sh "$RESULTS/half_route_second.log" \
    "$PYTHON -m pytest -m gpu -q -p timeout --timeout=200 tests/kernels/test_gpu_half_x.py \
    tests/ops/test_gpu_half_route.py tests/ops/test_gpu_int8_route.py && $(half_route_probe uint4,int4,float4_e2m1)" \
    "$(half_route_probe int8,float6_e3m2,uint5,float6_e2m3)"
# A 6-bit float's top plane with its bits spread where float16 puts them (PackedLayout.top_plane_stride:
# float6_e2m3's sign and top exponent bit 4 apart) against the plain uint2 top plane: every configuration of
# 4 and 8 warps, 3 and 4 stages and the splits around the suite's picks, on the three target shapes at M = 1
# and 16 (GPU 1), beside the GPU tiers of the kernels and the test programs (GPU 0).
top_plane_probe() {  # top_plane_probe M: both top planes of float6_e2m3 on the target shapes at M rows
    local probe="$PYTHON benchmarks/decode_probe.py --types float6_e2m3 --m $1 --top-plane both --warps 4,8"
    probe="$probe --stages 3,4"
    local out="$RESULTS/top_plane_m$1"
    echo "$probe --shapes 57344x8192 --bytes-per-thread 128 --splits 1,2 --out ${out}_70b_gate_up \
        && $probe --shapes 8192x28672 --bytes-per-thread 128 --splits 4,8 --out ${out}_70b_down \
        && $probe --shapes 8192x8192 --splits 4,8 --out ${out}_70b_o"
}
step top_plane 585 bash scripts/two_gpus.sh "$RESULTS/top_plane_second.log" \
    "$PYTHON -m pytest -m gpu -q -rs -p timeout --timeout=150 -n 12 tests/kernels \
    tests/cuda/test_gpu_programs.py tests/cuda/test_conversions.py tests/nn" \
    "$(top_plane_probe 1) && $(top_plane_probe 16)"
# The suite's rows of some types on trees made by scripts/ab_trees.sh (ab/<tree>/), in turns: AB_TREES (e.g.
# "main next_joint-gathers-2"), AB_TYPES, AB_LAYERS (default the three 70B target shapes), AB_MS (default
# 1,16), AB_ROUNDS (default 2), the suite's pinned tuning in every run, a cache of its own a tree.
ab_layers="${AB_LAYERS:-70B o,70B gate_up,70B down}"
step tree_ab 585 bash -c "for round in \$(seq ${AB_ROUNDS:-2}); do for tree in ${AB_TREES:-main}; do \
    [ -d ab/\$tree ] || { echo \"tree_ab: no ab/\$tree: run scripts/ab_trees.sh <branch> first\"; exit 1; }; \
    echo \"=== round \$round \$tree (\$(date -u +%T) UTC)\"; (cd ab/\$tree && \
    ANYBIT_CACHE_DIR=$ANYBIT_CACHE_DIR/ab-\$tree PYTHONPATH=\$PWD timeout 200 $PYTHON -m anybit bench \
    --types ${AB_TYPES:-int4} --layers '$ab_layers' --ms ${AB_MS:-1,16} \
    --tuning $PWD/benchmarks/tunings/nvidia-h200-suite.json --out $RESULTS/tree_ab/\$tree-\$round) || exit 1; \
    done; done"
# Warp mma issue rates of f16, int8 and binary operands (operands in registers, no memory in the loop).
step mma_rates 120 "$PYTHON" benchmarks/mma_rates.py --out "$RESULTS/mma_rates"
# The 16-row loop with the weight bytes in registers and registers capped for 3 blocks of 8 warps an SM
# (min_blocks, the occupancy variant's bound, which the space tries with the ring only): every configuration
# of 3 and 4 stages with and without either, on the two large shapes (4- and 5-bit types on the first GPU,
# the 6-bit and float5 types on the second).
occupancy_probe() {  # occupancy_probe TYPES: the probes, for two_gpus.sh
    echo "for type in $(echo $1 | tr , ' '); do ANYBIT_AUTOTUNE=0 $PYTHON benchmarks/decode_probe.py --types \$type \
        --m 16 --warps 8 --stages 3,4 --sm-warps 0,24 --splits 2,4,8 --weights-in-registers \
        --shapes 57344x8192,8192x28672 --out $RESULTS/occupancy_\${type} || exit 1; done"
}
step registers_occupancy 585 bash scripts/two_gpus.sh "$RESULTS/registers_occupancy_second.log" \
    "$(occupancy_probe int4,uint4,float4_e2m1,uint5)" "$(occupancy_probe int6,float6_e3m2,float5_e2m2,float6_e2m3)"
# The weights' magic number taken off by a second dot (bias_after_dot): its GPU tests, then every
# configuration of a Llama-3-8B layer's four shapes in a row with and without it (int4 and int2, M = 1).
step bias_after_dot 300 bash -c "$PYTHON -m pytest -m gpu -q -p timeout --timeout=120 -n 4 \
    tests/lang/test_cast_biased.py tests/kernels/test_gpu_kernels.py -k 'bias or biased' && \
    $PYTHON benchmarks/layer_sequence.py --types int4,int2 --copies 16 --sweep --bias-after-dot \
    --out $RESULTS/bias_sweep"
# What folding the norms and residual adds costs each projection (int4, M = 1, alone and 32 in a row).
step fused_probe 150 "$PYTHON" benchmarks/fused_probe.py --out "$RESULTS/fused_probe"
# What a decode projection's ~5 µs floor is made of: a chain of empty kernels in one CUDA graph (dependent,
# plain, torch add), then every int4 configuration of the layer's shapes in a row, from DRAM and from L2.
step floor 240 bash -c "$PYTHON benchmarks/launch_floor.py --out $RESULTS/floor && $PYTHON \
    benchmarks/layer_sequence.py --types int4 --copies 16 --sweep --out $RESULTS/floor_sweep"
# The end-to-end int4 model packed both ways (B: the decode kernel; A: the transposed kernel), batch 1.
step e2e_operands 300 bash -c "$PYTHON benchmarks/e2e.py --compile --fuse --types int4 --batches 1 --new-tokens 64 \
    --prompts 4 --repeats 2 --operand b --out $RESULTS/e2e_b && $PYTHON benchmarks/e2e.py --compile --fuse --types int4 \
    --batches 1 --new-tokens 64 --prompts 4 --repeats 2 --operand a --out $RESULTS/e2e_a"
step e2e_lm_head 300 "$PYTHON" benchmarks/e2e.py --compile --fuse --quantize-lm-head --types int4 --batches 1 \
    --new-tokens 64 --prompts 16 --repeats 2 --out "$RESULTS/e2e_lm_head"

# The decode kernels' tuning picks of this call (every candidate's time): what made a run's configurations.
[ -d "$ANYBIT_CACHE_DIR/tuning" ] && cp -r "$ANYBIT_CACHE_DIR/tuning" "$RESULTS/"
tar czf "$OUT/gpu_results.tgz" -C "$RESULTS" . 2>/dev/null
for summary in "$RESULTS"/benchmarks.md "$RESULTS"/bench/matmul.md "$RESULTS"/bench_planes/matmul.md "$RESULTS"/e2e/e2e.md \
    "$RESULTS"/e2e_full/e2e.md "$RESULTS"/e2e_lm_head/e2e.md "$RESULTS"/e2e_int4/e2e.md; do
    [ -f "$summary" ] && cp "$summary" "$OUT/$(basename "$(dirname "$summary")")-$(basename "$summary")"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED steps: ${failed[*]}"
    exit 1
fi
echo "all steps passed"
