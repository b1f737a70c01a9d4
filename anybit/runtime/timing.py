"""Timing device work with CUDA events, the L2 cache flushed before every timed run (median of N)."""

from __future__ import annotations

import statistics
from collections.abc import Callable

_flush_buffers: dict[int, object] = {}
_flush_sinks: dict[int, object] = {}


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
    (:func:`flush_l2_cache`), so every run starts with a cold cache, as it would in a model between layers.
    """
    import torch

    device = torch.cuda.current_device()
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
        if flush_l2:
            flush_l2_cache(device)
        start.record()
        run()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends, strict=True))
