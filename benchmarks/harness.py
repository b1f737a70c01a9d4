"""Timing on the GPU the way METHOD.md asks: CUDA events, warm-up, L2 flushed before every run, median.

Every figure this project publishes comes from here, with the ceilings measured in the same run.
"""

from __future__ import annotations

import json
import pathlib
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch

from anybit.runtime.timing import flush_l2_cache, host_enqueue_us, l2_flush_buffer, spin, spin_us_for


@dataclass(frozen=True)
class Timing:
    """Median and spread of one measured region, in microseconds."""

    median_us: float
    p10_us: float
    p90_us: float
    runs: int


class L2Flusher:
    """Evicts the L2 before a timed run so that no input stays cached between runs.

    ``mode="read"`` (the default) reads a buffer four times the L2 size, leaving clean lines behind
    (:func:`anybit.runtime.timing.flush_l2_cache`); ``mode="write"`` writes one instead, as the anchors in
    measured.md were timed: the timed kernel then also pays for writing the dirty lines back.
    """

    def __init__(self, device: torch.device | None = None, mode: str = "read"):
        if mode not in ("read", "write"):
            raise ValueError(f"expected flush mode 'read' or 'write', got {mode!r}")
        self.device = torch.device(device or "cuda")
        self.index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.mode = mode

    def __call__(self) -> None:
        if self.mode == "read":
            flush_l2_cache(self.index)
        else:
            l2_flush_buffer(self.index).fill_(0x5A)


#: How benchmarks flush the L2 unless told otherwise ("read" or "write"; see :class:`L2Flusher`).
FLUSH_MODE = {"mode": "read"}


def time_cuda(fn: Callable[[], object], *, warmup: int = 10, runs: int = 100, flush: bool = True) -> Timing:
    """Median time of ``fn`` over ``runs`` launches, each after an L2 flush, timed by CUDA events.

    Before each start event the GPU spins long enough for the host to enqueue ``fn`` (as
    :func:`anybit.runtime.timing.time_cuda` does), so a slow host's launch time is not timed.
    """
    flusher = L2Flusher(mode=FLUSH_MODE["mode"]) if flush else None
    device = torch.cuda.current_device()
    spin_us = spin_us_for(host_enqueue_us(fn, warmup))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    for start, end in zip(starts, ends, strict=True):
        if flusher is not None:
            flusher()
        spin(device, spin_us)
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


def write_json(out: pathlib.Path | None, name: str, data: object) -> None:
    """Write ``data`` as ``out/name`` (indented JSON), making ``out``; nothing when ``out`` is None."""
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(data, indent=1))
