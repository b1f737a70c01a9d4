"""What the suite's timing adds to a kernel's own time, and what a read of a few MB can reach.

The quantized-matmul suite timed each row as a CUDA-graph replay between two CUDA events, the L2 flushed
before every replay (``benchmarks.harness.time_cuda_graph``); on 8192×8192 every type's row took 6–16 µs more
than its bytes at the read ceiling and its loop's issue time (BENCHMARKS.md, eighteenth session). This probe
splits that floor, timing each case both ways on the same graph (since 2026-11-29 the suite reports both):

* **events**: exactly as the suite does (median of ``--runs`` replays);
* **kernel**: the device time of the same graph's kernels over replays, each after the same flush, from the
  profiler (``benchmarks.harness.time_graph_kernels``, as the suite now reports rows), so events − kernel is
  what the event pair and the graph launch add.

Cases: an empty kernel (torch ``add_`` on one element), torch reading 1–256 MiB (``sum`` of float16), and
``anybit.ops.quantized_matmul`` at M = 1 on the issue's 8192×8192 and 57344×8192 for int4 and uint1 (tuned
at its first call). Usage (GPU)::

    python benchmarks/timing_floor.py [--runs 50] [--out DIR]
"""

from __future__ import annotations

import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

#: torch reads of these many MiB (float16 ``sum``).
READ_MIB = (1, 4, 16, 64, 256)
#: quantized_matmul cases at M = 1: (weight type, N, K).
MATMUL_CASES = (("int4", 8192, 8192), ("uint1", 8192, 8192), ("int4", 57344, 8192))


def measure(label: str, fn, runs: int, bytes_read: int) -> dict:
    """One case: event µs as the suite times it, kernel µs from the profiler, on the same graph."""
    graph = harness.capture_graph(fn)
    events = harness.time_cuda(graph.replay, warmup=3, runs=runs, flush=True).median_us
    timing = harness.time_graph_kernels(graph, runs=runs)
    kernel = None if timing is None else round(timing.median_us, 2)
    row = {"case": label, "bytes": bytes_read, "events_us": round(events, 2), "kernel_us": kernel}
    row["added_us"] = None if kernel is None else round(events - kernel, 2)
    print(row, flush=True)
    return row


def matmul_case(dtype: str, n: int, k: int):
    """(call, weight bytes) of quantized_matmul at M = 1 on a fresh random weight of ``dtype``."""
    from anybit import kernels, ops

    weight = torch.randn(n, k, device="cuda") * 0.02
    packed = kernels.pack(kernels.quantize(weight, dtype, group_size=128, act_dtype=torch.float16))
    x = torch.randn(1, k, device="cuda", dtype=torch.float16)
    ops.quantized_matmul(x, packed)  # tunes and compiles before capture
    total = sum(
        t.numel() * t.element_size() for t in (packed.data, packed.scales, packed.zeros) if t is not None
    )
    return (lambda: ops.quantized_matmul(x, packed)), total


def main(argv: list[str] | None = None) -> int:
    """Print and write ``timing_floor.json``; exit status 2 without a GPU."""
    options = harness.gpu_options(
        __doc__.splitlines()[0],
        argv,
        "benchmarks/timing_floor.py",
        lambda parser: parser.add_argument("--runs", type=int, default=50),
    )
    if options is None:
        return 2
    rows = []
    one = torch.zeros(1, device="cuda")
    rows.append(measure("empty kernel (add_ on 1 element)", lambda: one.add_(1.0), options.runs, 0))
    for mib in READ_MIB:
        data = torch.randn(mib << 19, device="cuda", dtype=torch.float16)
        sink = torch.empty((), device="cuda", dtype=torch.float16)
        rows.append(
            measure(
                f"torch sum of {mib} MiB",
                lambda d=data, s=sink: torch.sum(d, dim=0, out=s),
                options.runs,
                mib << 20,
            )
        )
        del data
    for dtype, n, k in MATMUL_CASES:
        call, total = matmul_case(dtype, n, k)
        rows.append(measure(f"quantized_matmul {dtype} {n}x{k} M=1", call, options.runs, total))
    harness.write_json(options.out, "timing_floor.json", {"gpu": harness.gpu_description(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
