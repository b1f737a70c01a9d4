"""The decode kernel under Nsight Compute: what bounds it, at M = 4 and at M = 16, and on a small shape.

The suite shows two things the timings alone cannot explain (BENCHMARKS.md, eighth session): on 57344×8192
every type but the 8-bit ones takes ~17 µs longer at M = 16 than at M = 4, whatever its own time (int4 68
→ 85 µs, float6 124 → 141), and a small projection (4096×4096) pays ~8 µs above its bytes' time. This
script runs each case's tuned kernel once between ``cudaProfilerStart`` and ``cudaProfilerStop`` (after
tuning and a warm-up outside that range), so ``ncu --profile-from-start off`` profiles exactly one launch
per case: occupancy, issue activity, the tensor pipe's share, warp stall reasons, DRAM and L2 traffic.

Usage (GPU, repository root; ``scripts/gpu_check.sh`` step ``ncu`` runs it)::

    ncu --clock-control none --profile-from-start off --section ... python3 benchmarks/ncu_decode.py
    python3 benchmarks/ncu_decode.py --cases int4:57344x8192:4,int4:57344x8192:16   # without ncu: a dry run
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import anybit.ops  # noqa: E402
from benchmarks import matmul_cases as cases  # noqa: E402
from benchmarks.matmul import Weight  # noqa: E402

DEFAULT_CASES = (
    "int4:57344x8192:4,int4:57344x8192:16,float6_e3m2:57344x8192:4,float6_e3m2:57344x8192:16,"
    "int8:57344x8192:4,int8:57344x8192:16,int4:4096x4096:1"
)


def parse_cases(text: str) -> list[tuple[str, int, int, int]]:
    """``type:NxK:M,...`` → [(type, N, K, M)], with a clear error for a malformed entry."""
    parsed = []
    for entry in filter(None, text.split(",")):
        try:
            dtype, shape, m = entry.split(":")
            n, k = (int(side) for side in shape.lower().split("x"))
            parsed.append((dtype, n, k, int(m)))
        except ValueError:
            problem = f"--cases expects type:NxK:M entries, e.g. int4:57344x8192:16; got {entry!r}"
            raise SystemExit(problem) from None
    return parsed


def main(argv: list[str] | None = None) -> int:
    """Profile one launch per case; exit status 1 if a result is wrong, 2 without a GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=DEFAULT_CASES, help="type:NxK:M entries, comma-separated")
    options = parser.parse_args(argv)
    wanted = parse_cases(options.cases)
    if not torch.cuda.is_available():
        print("benchmarks/ncu_decode.py needs a CUDA GPU")
        return 2
    correct = True
    for dtype, n, k, m in wanted:
        weight = Weight(cases.Case("layers", f"{n}x{k}", n, k, dtype, "float16", (m,)))
        x = weight.x[:m]
        for _ in range(3):  # tunes this M bucket on the first call, then warm runs outside the profiled range
            y = anybit.ops.quantized_matmul(x, weight.packed)
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStart()
        y = anybit.ops.quantized_matmul(x, weight.packed)
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStop()
        check = weight.check(y)
        correct &= check["ok"]
        print(f"profiled {dtype} {n}x{k} M={m}: relative error {check['relative_error']:.1e}", flush=True)
        del weight, x, y
        torch.cuda.empty_cache()
    return 0 if correct else 1


if __name__ == "__main__":
    raise SystemExit(main())
