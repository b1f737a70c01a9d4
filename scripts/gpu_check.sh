#!/usr/bin/env bash
# One device call: environment report, the GPU test tier (plus the CPU tiers of tests/cuda and tests/runtime),
# the launch-overhead measurement and, when present, the benchmarks. Logs and JSON go to $OUT.
# Every step runs even if an earlier one failed; the exit status is non-zero if any step failed. Step limits
# add up to 475 s, under the 8 minutes one device call may take.
# Usage on the device machine, from the repository root:  bash scripts/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export ANYBIT_CACHE_DIR="${ANYBIT_CACHE_DIR:-$OUT/anybit-cache}"
PYTHON="${PYTHON:-python3}"
failed=()

step() {  # step NAME TIMEOUT_SECONDS COMMAND...: run one step, tee its output to $OUT/NAME.log
    local name="$1" seconds="$2"
    shift 2
    echo "=== $name: $* (limit ${seconds}s)"
    local started=$SECONDS
    timeout --kill-after=10 "$seconds" "$@" 2>&1 | tee "$OUT/$name.log"
    local status=${PIPESTATUS[0]}
    echo "=== $name: exit $status after $((SECONDS - started))s"
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
gpu_pytest=("$PYTHON" -m pytest -m gpu -v -rs -p timeout --timeout=45)
step gpu_runtime 40 "${gpu_pytest[@]}" tests/runtime
step gpu_conversions 30 "${gpu_pytest[@]}" tests/cuda/test_conversions.py
step gpu_programs 70 "${gpu_pytest[@]}" tests/cuda/test_gpu_programs.py
step gpu_examples 75 "${gpu_pytest[@]}" tests/cuda/test_examples_gpu.py
# Any other GPU test (exit 5: none collected, which is fine).
step gpu_other 120 bash -c '"$@"; status=$?; [ $status -eq 5 ] && exit 0; exit $status' _ "${gpu_pytest[@]}" \
    tests --ignore=tests/runtime --ignore=tests/cuda/test_conversions.py \
    --ignore=tests/cuda/test_gpu_programs.py --ignore=tests/cuda/test_examples_gpu.py
tiers=()
for directory in tests/cuda tests/runtime; do
    [ -d "$directory" ] && tiers+=("$directory")
done
if [ ${#tiers[@]} -gt 0 ]; then
    step cpu_tiers 40 "$PYTHON" -m pytest -m "not gpu" -q -rs "${tiers[@]}"
fi
step launch_overhead 20 "$PYTHON" -m anybit.runtime.overhead --out "$OUT/launch_overhead.json"
if [ -f benchmarks/run_all.py ]; then
    step benchmarks 60 "$PYTHON" benchmarks/run_all.py --out "$OUT"
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED steps: ${failed[*]}"
    exit 1
fi
echo "all steps passed"
