"""Timing on the GPU the way METHOD.md asks: CUDA events, warm-up, L2 flushed before every run, median.

Every figure this project publishes comes from here, with the ceilings measured in the same run.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import time
from collections.abc import Callable, Sequence
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
    return time_cuda_interleaved([fn], warmup=warmup, runs=runs, flush=flush)[0]


def interleaved_order(count: int, runs: int) -> list[int]:
    """Which of ``count`` timed regions each slot runs: ``runs`` rounds of each once, the order rotated
    round to round (A B, B A, ...) so that none always runs first after the flush or after another."""
    if count < 1 or runs < 1:
        raise ValueError(f"timing in turns needs at least one region and one run, got {count} and {runs}")
    return [(round_ + slot) % count for round_ in range(runs) for slot in range(count)]


def timings_by_region(order: Sequence[int], samples_us: Sequence[float]) -> list[Timing]:
    """The :func:`timing_of` each region, from samples taken in ``order`` (a region index per sample)."""
    if len(order) != len(samples_us):
        raise ValueError(f"{len(samples_us)} samples for {len(order)} timed slots")
    regions: list[list[float]] = [[] for _ in range(max(order) + 1)]
    for index, sample in zip(order, samples_us, strict=True):
        regions[index].append(sample)
    return [timing_of(each) for each in regions]


def time_cuda_interleaved(
    fns: Sequence[Callable[[], object]], *, warmup: int = 10, runs: int = 100, flush: bool = True
) -> list[Timing]:
    """:func:`time_cuda` of several functions at once, their launches interleaved (:func:`interleaved_order`).

    Long compute-bound calls (a prefill GEMM: milliseconds at full power) run into the GPU's power cap and
    lower clocks for a while; two of them timed one after the other can each meet a different clock. Timed
    in turns, both meet the same ones: their ratio is what the comparison is after.
    """
    flusher = L2Flusher(mode=FLUSH_MODE["mode"]) if flush else None
    device = torch.cuda.current_device()
    spin_us = max(spin_us_for(host_enqueue_us(fn, warmup)) for fn in fns)
    order = interleaved_order(len(fns), runs)
    starts = [torch.cuda.Event(enable_timing=True) for _ in order]
    ends = [torch.cuda.Event(enable_timing=True) for _ in order]
    for index, start, end in zip(order, starts, ends, strict=True):
        if flusher is not None:
            flusher()
        spin(device, spin_us)
        start.record()
        fns[index]()
        end.record()
    torch.cuda.synchronize()
    samples = [start.elapsed_time(end) * 1000.0 for start, end in zip(starts, ends, strict=True)]
    return timings_by_region(order, samples)


def capture_graph(fn: Callable[[], object], *, warmup: int = 3) -> torch.cuda.CUDAGraph:
    """``fn`` captured once in a CUDA graph, after ``warmup`` calls on a side stream (compiles, allocates)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def time_cuda_graph(
    fn: Callable[[], object], *, warmup: int = 3, runs: int = 100, flush: bool = True
) -> Timing:
    """Like :func:`time_cuda`, but ``fn`` is captured once in a CUDA graph and the replays are timed."""
    return time_cuda(capture_graph(fn, warmup=warmup).replay, warmup=warmup, runs=runs, flush=flush)


def timing_of(samples_us: list[float]) -> Timing:
    """Median, 10th and 90th percentile of ``samples_us``."""
    samples = sorted(samples_us)
    return Timing(
        median_us=statistics.median(samples),
        p10_us=samples[len(samples) // 10],
        p90_us=samples[(9 * len(samples)) // 10],
        runs=len(samples),
    )


def spans_between_markers(events: list[tuple[float, float, str]], marker: str) -> list[float] | None:
    """Each timed region's device span (µs) from a profile's kernels on one stream.

    ``events`` are (start µs, end µs, name) of every device activity; each timed region sits between two
    ``marker`` kernels (the 2k-th and the (2k+1)-th), and whatever runs outside those pairs (the L2 flush)
    is ignored. The span is the region's last end less its first start: gaps between the region's own
    kernels count, as they do in a model. None when the markers do not pair up or a region is empty.
    """
    ordered = sorted(events)
    spans: list[float] = []
    inside: list[tuple[float, float, str]] | None = None
    for event in ordered:
        if event[2] == marker:
            if inside is None:
                inside = []
                continue
            if not inside:
                return None
            spans.append(max(end for _, end, _ in inside) - min(start for start, _, _ in inside))
            inside = None
        elif inside is not None:
            inside.append(event)
    return spans if spans and inside is None else None


def time_graph_kernels(graph: torch.cuda.CUDAGraph, *, runs: int = 50, flush: bool = True) -> Timing | None:
    """Device time of a CUDA graph's own kernels, from the profiler (CUPTI), L2 flushed before each replay.

    CUDA events around a replay (:func:`time_cuda`) also time the graph's launch on the GPU and the event
    pair: ~3.4–4.8 µs on the H200 (``benchmarks/timing_floor.py``, 2026-11-29), a quarter of a 15 µs kernel.
    A model replaying one graph of many kernels pays that once per graph, not per kernel; this is the
    kernels' time alone. Each replay is bracketed by two spin kernels (``torch.cuda._sleep``) that mark
    where it starts and ends in the profile. None where the profiler is unavailable or its record does not
    pair up (the figure is then left out, never guessed).
    """
    timings = time_graphs_kernels_interleaved([graph], runs=runs, flush=flush)
    return None if timings is None else timings[0]


def time_graphs_kernels_interleaved(
    graphs: Sequence[torch.cuda.CUDAGraph], *, runs: int = 50, flush: bool = True
) -> list[Timing] | None:
    """:func:`time_graph_kernels` of several graphs at once, their replays interleaved
    (:func:`interleaved_order`, see :func:`time_cuda_interleaved` for why); None as there."""
    from torch.profiler import ProfilerActivity, profile

    flusher = L2Flusher(mode=FLUSH_MODE["mode"]) if flush else None
    device = torch.cuda.current_device()
    spin_us = max(spin_us_for(host_enqueue_us(graph.replay, 3)) for graph in graphs)
    order = interleaved_order(len(graphs), runs)
    try:
        marker = _spin_kernel_name(device)
        with profile(activities=[ProfilerActivity.CUDA]) as profiler:
            for index in order:
                if flusher is not None:
                    flusher()
                spin(device, spin_us)
                graphs[index].replay()
                spin(device, 1.0)
            torch.cuda.synchronize()
        events = [
            (event.time_range.start, event.time_range.end, event.name)
            for event in profiler.events()
            if event.device_type == torch.autograd.DeviceType.CUDA
        ]
    except RuntimeError:  # a profiler already running (nested use) or CUPTI unavailable
        return None
    if marker is None:
        return None
    spans = spans_between_markers(events, marker)
    if spans is None or len(spans) != len(order):
        return None
    return timings_by_region(order, spans)


_spin_names: dict[int, str | None] = {}


def _spin_kernel_name(device: int) -> str | None:
    """The name the profiler gives the spin kernel (learnt once per device by profiling one spin)."""
    if device not in _spin_names:
        from torch.profiler import ProfilerActivity, profile

        spin(device, 1.0)  # loads the kernel outside the profile
        with profile(activities=[ProfilerActivity.CUDA]) as profiler:
            spin(device, 1.0)
            torch.cuda.synchronize()
        names = {
            event.name for event in profiler.events() if event.device_type == torch.autograd.DeviceType.CUDA
        }
        spins = {name for name in names if "sleep" in name.lower() or "spin" in name.lower()} or names
        _spin_names[device] = spins.pop() if len(spins) == 1 else None
    return _spin_names[device]


def gpu_options(description: str, argv: list[str] | None, script: str, extra: Callable | None = None):
    """A GPU benchmark's options: ``--out DIR`` and whatever ``extra(parser)`` adds; None (after saying so)
    without a GPU, for the caller to exit with status 2."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(parser)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    options = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"{script}: no CUDA GPU (torch.cuda.is_available() is False)")
        return None
    return options


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


#: The suite's pinned tuning (benchmarks/tunings): the route probes' quantized_matmul without tuning.
SUITE_TUNING = pathlib.Path(__file__).resolve().parent / "tunings" / "nvidia-h200-suite.json"


def kernel_us(call: Callable[[], object], graph: bool = True) -> float | None:
    """The kernels' own device time of ``call`` captured in a graph (median of 30, L2 flushed); with
    ``graph`` False (torch ops that allocate), CUDA events around eager calls."""
    if not graph:
        return time_cuda(call, runs=30).median_us
    timing = time_graph_kernels(capture_graph(call), runs=30)
    return None if timing is None else timing.median_us


def pin_tuning(path: pathlib.Path, what: str = "") -> int:
    """Pin the tuning file at ``path`` (nothing when it is missing) and say how many configurations."""
    import anybit

    pinned = anybit.runtime.load_tuning(path) if path.exists() else 0
    print(f"{what}{pinned} tuned configurations pinned from {path}")
    return pinned


def start_route_probe(tuning: pathlib.Path, what: str = "") -> tuple[float, int, dict]:
    """A route probe's start: (its start time, the configurations pinned from ``tuning`` (:func:`pin_tuning`),
    the read ceilings measured now), the GPU and its read ceiling printed."""
    from benchmarks.matmul_anchors import read_ceilings

    started = time.perf_counter()
    pinned = pin_tuning(tuning, what)
    ceilings = read_ceilings()
    print(f"{gpu_description()}; read ceiling {ceilings['best_tb_s']:.2f} TB/s", flush=True)
    return started, pinned, ceilings


def route_probe_options(description: str, argv: list[str] | None, script: str, types: str, ms: str):
    """A route probe's options (:func:`gpu_options`): ``--tuning`` (default the suite's, so that nothing
    tunes; a missing file pins nothing), ``--types``, ``--shapes`` (the issue's target shapes) and ``--ms``;
    None without a GPU."""

    def extra(parser) -> None:
        parser.add_argument(
            "--tuning",
            type=pathlib.Path,
            default=SUITE_TUNING,
            help="a tuning file pinned for quantized_matmul (default: the suite's, so that nothing tunes; "
            "a missing file pins nothing)",
        )
        parser.add_argument("--types", default=types)
        parser.add_argument("--shapes", default="57344x8192,8192x28672,8192x8192")
        parser.add_argument("--ms", default=ms)

    return gpu_options(description, argv, script, extra)
