"""Timing on the GPU the way METHOD.md asks: CUDA events, warm-up, L2 flushed before every run, median.

Every figure this project publishes comes from here, with the ceilings measured in the same run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """Median and spread of one measured region, in microseconds."""

    median_us: float
    p10_us: float
    p90_us: float
    runs: int


class L2Flusher:
    """Writes a buffer several times the L2 size so that no input stays cached between runs."""

    def __init__(self, device: torch.device | None = None):
        properties = torch.cuda.get_device_properties(device or torch.cuda.current_device())
        l2_bytes = getattr(properties, "L2_cache_size", 64 << 20) or (64 << 20)
        self.buffer = torch.empty(max(4 * l2_bytes, 256 << 20), dtype=torch.uint8, device=device or "cuda")

    def __call__(self) -> None:
        self.buffer.fill_(0x5A)


def time_cuda(fn: Callable[[], object], *, warmup: int = 10, runs: int = 100, flush: bool = True) -> Timing:
    """Median time of ``fn`` over ``runs`` launches, each after an L2 flush, timed by CUDA events."""
    flusher = L2Flusher() if flush else None
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    for start, end in zip(starts, ends, strict=True):
        if flusher is not None:
            flusher()
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    samples = sorted(start.elapsed_time(end) * 1000.0 for start, end in zip(starts, ends, strict=True))
    return Timing(
        median_us=statistics.median(samples),
        p10_us=samples[len(samples) // 10],
        p90_us=samples[(9 * len(samples)) // 10],
        runs=runs,
    )


def time_cuda_graph(
    fn: Callable[[], object], *, warmup: int = 3, runs: int = 100, flush: bool = True
) -> Timing:
    """Like :func:`time_cuda`, but ``fn`` is captured once in a CUDA graph and the replays are timed."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return time_cuda(graph.replay, warmup=warmup, runs=runs, flush=flush)


def gpu_description() -> str:
    """The GPU's name, SM count and the torch/CUDA versions, for report headers."""
    properties = torch.cuda.get_device_properties(torch.cuda.current_device())
    return (
        f"{properties.name} ({properties.multi_processor_count} SMs, "
        f"sm_{properties.major}{properties.minor}), "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}"
    )
