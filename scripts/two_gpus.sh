#!/usr/bin/env bash
# Two commands side by side, the first on GPU 0 and the second on GPU 1, when the machine has two GPUs; one
# after the other on GPU 0 otherwise. The second's output goes to LOG and its last lines are printed after
# both end; the exit status is non-zero if either failed.
# Usage (from scripts/gpu_check.sh):  bash scripts/two_gpus.sh LOG "FIRST COMMAND" "SECOND COMMAND"
set -u
log="${1:?usage: bash scripts/two_gpus.sh LOG FIRST SECOND}"
first="${2:?usage: bash scripts/two_gpus.sh LOG FIRST SECOND}"
second="${3:?usage: bash scripts/two_gpus.sh LOG FIRST SECOND}"
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ "$gpus" -lt 2 ]; then
    bash -c "$first" && bash -c "$second"
    exit
fi
CUDA_VISIBLE_DEVICES=1 bash -c "$second" >"$log" 2>&1 &
pid=$!
CUDA_VISIBLE_DEVICES=0 bash -c "$first"
status=$?
wait "$pid" || status=1
echo "--- the second command (GPU 1), last lines of $log:"
tail -n 40 "$log"
exit "$status"
