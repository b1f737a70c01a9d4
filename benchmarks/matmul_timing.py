"""Timing for the quantized-matmul benchmark, on top of :mod:`benchmarks.harness`.

* ``graph_us``: the call captured once in a CUDA graph, replays timed with CUDA events, L2 flushed before each
  replay (``harness.time_cuda_graph``): the kernels plus the graph's launch and the event pair.
* ``kernel_us``: the same graph's kernels alone (first start to last end of each replay, from the profiler,
  L2 flushed before each replay; ``harness.time_graph_kernels``): what each call costs inside a model's
  graph of many kernels, which pays the launch once. The suite's % of the read ceiling and speedups use it.
* ``paired``: a prefill row's call and cuBLAS's at the same shape, their graphs replayed in turns
  (:func:`interleaved_us`): the prefill speedups. A prefill GEMM runs milliseconds at full power into the
  GPU's power cap, and the clocks it meets change through a run (the twenty-ninth session's suite: the same
  cuBLAS shape 2588 µs on one GPU and 2766 on the other, 2443 by events on the second); timed in turns, both
  sides meet the same clocks.
* ``eager_us``: wall clock per eager call over many back-to-back calls (host + device: whichever is longer
  sets the pace), rotating through several weight copies so that small weights do not stay in L2.
* ``host_us``: host time per eager call alone, in batches short enough that the launch queue never fills.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from anybit.runtime.overhead import host_microseconds
from benchmarks.harness import (
    capture_graph,
    time_cuda,
    time_cuda_graph,
    time_cuda_interleaved,
    time_graph_kernels,
    time_graphs_kernels_interleaved,
)


def graph_us(fn: Callable[[], object], *, runs: int = 100) -> float:
    """Median µs of ``fn`` replayed from a CUDA graph with the L2 flushed before every replay."""
    return time_cuda_graph(fn, runs=runs, flush=True).median_us


def graph_and_kernel_us(fn: Callable[[], object], *, runs: int = 100) -> tuple[float, float | None]:
    """``fn`` captured once: the median µs of its replays by CUDA events (as :func:`graph_us`) and of its
    kernels alone by the profiler (None where the profiler gave no clean record), L2 flushed before each."""
    graph = capture_graph(fn)
    events = time_cuda(graph.replay, warmup=3, runs=runs, flush=True).median_us
    kernels = time_graph_kernels(graph, runs=max(20, runs // 2))
    return events, None if kernels is None else kernels.median_us


def interleaved_us(fns: Sequence[Callable[[], object]], *, runs: int = 20) -> tuple[list[float], str]:
    """Each of ``fns`` captured once and the graphs replayed in turns, L2 flushed before each: the median µs
    of each by its kernels' device time, or by CUDA events where the profiler gave no clean record, and
    which basis ("kernel" or "events")."""
    graphs = [capture_graph(fn) for fn in fns]
    kernels = time_graphs_kernels_interleaved(graphs, runs=runs)
    if kernels is not None:
        return [timing.median_us for timing in kernels], "kernel"
    events = time_cuda_interleaved([graph.replay for graph in graphs], warmup=3, runs=runs)
    return [timing.median_us for timing in events], "events"


def rotation_count(weight_bytes: int, *, limit: int = 32) -> int:
    """How many weight copies make one rotation at least 3× the L2 (1 when a weight already is)."""
    properties = torch.cuda.get_device_properties(torch.cuda.current_device())
    l2_bytes = getattr(properties, "L2_cache_size", 64 << 20) or (64 << 20)
    return max(1, min(limit, -(-3 * l2_bytes // max(1, weight_bytes))))


def eager_us(calls: Sequence[Callable[[], object]], *, repeats: int = 200) -> float:
    """Wall-clock µs per call of ``calls`` run round-robin ``repeats`` times (after a warm-up round)."""
    for call in calls:
        call()
    torch.cuda.synchronize()
    count = len(calls)
    started = time.perf_counter()
    for index in range(repeats):
        calls[index % count]()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats * 1e6


def host_us(call: Callable[[], object], *, launches: int = 2000, batch: int = 50) -> float:
    """Host µs per call, timed in batches of ``batch`` with an uncounted synchronisation between them."""
    return host_microseconds(call, launches=launches, batch=batch)
