"""What the suite's timing adds to a kernel's own time, and what a read of a few MB can reach.

The quantized-matmul suite times each row as a CUDA-graph replay between two CUDA events, the L2 flushed
before every replay (``benchmarks.harness.time_cuda_graph``). On 8192×8192 every type's row took 6–16 µs more
than its bytes at the read ceiling and its loop's issue time (BENCHMARKS.md, eighteenth session). This probe
splits that floor, timing each case both ways on the same graph:

* **events**: exactly as the suite does (median of ``--runs`` replays);
* **kernel**: the device duration ``torch.profiler`` records for the case's own kernel over replays of the
  same graph, each after the same flush (the flush's kernel recorded too and left out by name), so events −
  kernel is what the event pair and the graph launch add.

Cases: an empty kernel (torch ``add_`` on one element), torch reading 1–256 MiB (``sum`` of float16), and
``anybit.ops.quantized_matmul`` at M = 1 on the issue's 8192×8192 and 57344×8192 for int4 and uint1 (tuned
at its first call). Usage (GPU)::

    python benchmarks/timing_floor.py [--runs 50] [--out DIR]
"""

from __future__ import annotations

import pathlib
import statistics
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

#: torch reads of these many MiB (float16 ``sum``).
READ_MIB = (1, 4, 16, 64, 256)
#: quantized_matmul cases at M = 1: (weight type, N, K).
MATMUL_CASES = (("int4", 8192, 8192), ("uint1", 8192, 8192), ("int4", 57344, 8192))


def kernel_us(graph: torch.cuda.CUDAGraph, name_has: str, runs: int) -> float | None:
    """Median device µs of the kernels whose name contains ``name_has`` over ``runs`` replays, each after an
    L2 flush (summed per replay when a case launches several), from ``torch.profiler``."""
    from torch.profiler import ProfilerActivity, profile

    flusher = harness.L2Flusher()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(runs):
            flusher()
            graph.replay()
        torch.cuda.synchronize()
    durations = [
        event.device_time
        for event in prof.events()
        if event.device_type == torch.autograd.DeviceType.CUDA and name_has in event.name
    ]
    return per_replay_median(durations, runs)


def per_replay_median(durations: list[float], runs: int) -> float | None:
    """Median over ``runs`` replays of each replay's summed kernel µs (``durations`` in launch order); None
    when they are not the same count per replay (a name that matched other kernels too, or none)."""
    if not durations or len(durations) % runs:
        return None
    per_replay = len(durations) // runs
    sums = [sum(durations[i : i + per_replay]) for i in range(0, len(durations), per_replay)]
    return round(statistics.median(sums), 2)


def measure(label: str, fn, name_has: str, runs: int, bytes_read: int) -> dict:
    """One case: event µs as the suite times it, kernel µs from the profiler, on the same graph."""
    graph = harness.capture_graph(fn)
    events = harness.time_cuda(graph.replay, warmup=3, runs=runs, flush=True).median_us
    kernel = kernel_us(graph, name_has, runs)
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
    rows.append(
        measure("empty kernel (add_ on 1 element)", lambda: one.add_(1.0), "elementwise", options.runs, 0)
    )
    for mib in READ_MIB:
        data = torch.randn(mib << 19, device="cuda", dtype=torch.float16)
        sink = torch.empty((), device="cuda", dtype=torch.float16)
        rows.append(
            measure(
                f"torch sum of {mib} MiB",
                lambda d=data, s=sink: torch.sum(d, dim=0, out=s),
                "sum_functor",
                options.runs,
                mib << 20,
            )
        )
        del data
    for dtype, n, k in MATMUL_CASES:
        call, total = matmul_case(dtype, n, k)
        rows.append(measure(f"quantized_matmul {dtype} {n}x{k} M=1", call, "ab_", options.runs, total))
    harness.write_json(options.out, "timing_floor.json", {"gpu": harness.gpu_description(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
