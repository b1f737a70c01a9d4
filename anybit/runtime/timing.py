"""Timing device work with CUDA events, the L2 cache flushed before every timed run (median of N)."""

from __future__ import annotations

import statistics
from collections.abc import Callable

_flush_buffers: dict[int, object] = {}


def l2_flush_buffer(device: int):
    """A buffer of at least twice the device's L2 size (min 64 MiB); writing it evicts the L2."""
    buffer = _flush_buffers.get(device)
    if buffer is None:
        import torch

        from anybit.runtime.device import device_limits

        size = max(2 * device_limits(device).l2_cache_bytes, 64 << 20)
        buffer = _flush_buffers[device] = torch.empty(size, dtype=torch.uint8, device=f"cuda:{device}")
    return buffer


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
    about ``budget_ms`` (between 5 and 100). Before each timed run a buffer of twice the L2 size is written,
    so every run starts with a cold cache, as it would in a model between layers.
    """
    import torch

    device = torch.cuda.current_device()
    flush = l2_flush_buffer(device) if flush_l2 else None
    for _ in range(max(1, warmup)):
        run()
    torch.cuda.synchronize()
    if repetitions <= 0:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        estimate = max(start.elapsed_time(end), 1e-3)
        repetitions = int(min(100, max(5, budget_ms / estimate)))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repetitions)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repetitions)]
    for start, end in zip(starts, ends, strict=True):
        if flush is not None:
            flush.fill_(1)
        start.record()
        run()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends, strict=True))
