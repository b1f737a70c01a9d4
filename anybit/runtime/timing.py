"""Timing device work with CUDA events, the L2 cache flushed before every timed run (median of N).

Events time what the GPU does between them, gaps included: if the host is slower to enqueue the timed launch
than the GPU is to reach the start event, the wait for the launch is timed too. On a slow host (13.6 µs per
launch on the H200 hosts of 2026-11-28) or one slowed by a profiler session (CUPTI callbacks on every
launch), that gap can exceed a small kernel's own time and rank tuning candidates by host cost. So before
each start event the GPU runs a spin kernel (``torch.cuda._sleep``) long enough for the host to enqueue the
event and the launch behind it: the events then see only the kernel.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

_flush_buffers: dict[int, object] = {}
_flush_sinks: dict[int, object] = {}
_cycles_per_us: dict[int, float] = {}

#: The spin before each timed run covers this many times the host's measured enqueue time, plus a margin.
HOST_COVER_FACTOR = 2.0
HOST_COVER_MARGIN_US = 20.0
#: Bounds of the spin (µs): long enough for any sane launch, short enough to keep timing cheap.
MIN_SPIN_US, MAX_SPIN_US = 20.0, 2000.0


def l2_flush_buffer(device: int):
    """A buffer of at least four times the device's L2 size (min 256 MiB), written once when made."""
    buffer = _flush_buffers.get(device)
    if buffer is None:
        import torch

        from anybit.runtime.device import device_limits

        size = max(4 * device_limits(device).l2_cache_bytes, 256 << 20)
        buffer = torch.ones(size // 4, dtype=torch.int32, device=f"cuda:{device}")
        _flush_buffers[device] = buffer
    return buffer


def flush_l2_cache(device: int) -> None:
    """Evict the L2 by reading a buffer four times its size (enqueued on the current stream).

    Reading, not writing: a written flush buffer leaves the L2 full of dirty lines, and the timed kernel
    then pays for their write-back while it reads its own inputs (up to the L2's size of extra DRAM
    traffic: a large share of a small kernel's time). After a read the cache holds clean lines, as it holds
    the previous layer's weights in a model.
    """
    _flush_sinks[device] = l2_flush_buffer(device).amax()


def host_enqueue_us(run: Callable[[], object], runs: int) -> float:
    """Run ``run`` ``runs`` times (the warm-up) and return the most host µs one call took, with an event
    record, after the first (which may load or compile); ends synchronized."""
    import torch

    slowest = 0.0
    for index in range(max(2, runs)):
        event = torch.cuda.Event(enable_timing=True)
        began = time.perf_counter()
        event.record()
        run()
        if index:
            slowest = max(slowest, (time.perf_counter() - began) * 1e6)
    torch.cuda.synchronize()
    return slowest


def spin_us_for(host_enqueue_us: float) -> float:
    """µs the GPU should spin before a timed run whose start event and launch take ``host_enqueue_us`` to
    enqueue on the host: that time ×2 plus a margin, within [MIN_SPIN_US, MAX_SPIN_US]."""
    wanted = HOST_COVER_FACTOR * max(host_enqueue_us, 0.0) + HOST_COVER_MARGIN_US
    return min(MAX_SPIN_US, max(MIN_SPIN_US, wanted))


def gpu_cycles_per_us(device: int) -> float:
    """The SM clock as ``torch.cuda._sleep`` counts it (cycles per µs), measured once per device."""
    found = _cycles_per_us.get(device)
    if found is None:
        import torch

        cycles = 2_000_000
        torch.cuda._sleep(cycles)  # warm-up: the first spin also loads the kernel
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.cuda._sleep(cycles)
        end.record()
        end.synchronize()
        found = cycles / max(start.elapsed_time(end) * 1000.0, 1e-3)
        _cycles_per_us[device] = found
    return found


def spin(device: int, microseconds: float) -> None:
    """Keep the current stream's GPU busy for about ``microseconds`` (a spin kernel; returns at once)."""
    import torch

    torch.cuda._sleep(int(microseconds * gpu_cycles_per_us(device)))


def time_cuda(
    run: Callable[[], None],
    *,
    repetitions: int = 0,
    warmup: int = 3,
    budget_ms: float = 40.0,
    flush_l2: bool = True,
) -> float:
    """Median milliseconds of ``run()`` on the current stream, timed with CUDA events.

    ``warmup`` untimed runs come first. With ``repetitions=0`` the count is chosen so the timed runs take
    about ``budget_ms`` (between 5 and 100). Before each timed run the L2 is flushed
    (:func:`flush_l2_cache`), so every run starts with a cold cache, as it would in a model between layers,
    and the GPU spins long enough for the host to enqueue the run (see the module docstring), so a slow
    host's launch time is not counted as the kernel's.
    """
    import torch

    device = torch.cuda.current_device()
    spin_us = spin_us_for(host_enqueue_us(run, max(2, warmup)))
    if repetitions <= 0:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        spin(device, spin_us)
        start.record()
        run()
        end.record()
        end.synchronize()
        estimate = max(start.elapsed_time(end), 1e-3)
        repetitions = int(min(100, max(5, budget_ms / estimate)))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repetitions)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repetitions)]
    for start, end in zip(starts, ends, strict=True):
        if flush_l2:
            flush_l2_cache(device)
        spin(device, spin_us)
        start.record()
        run()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends, strict=True))
