"""Kernel timing (anybit.runtime.timing): the spin that keeps a slow host's launch time out of the events."""

from __future__ import annotations

import time

import pytest

from anybit.runtime import timing

from .helpers import requires_gpu


def test_spin_covers_twice_the_host_time_within_bounds() -> None:
    assert timing.spin_us_for(0.0) == timing.MIN_SPIN_US
    assert timing.spin_us_for(50.0) == pytest.approx(2 * 50.0 + timing.HOST_COVER_MARGIN_US)
    assert timing.spin_us_for(1e6) == timing.MAX_SPIN_US
    assert timing.spin_us_for(-5.0) == timing.MIN_SPIN_US


@pytest.mark.gpu
@requires_gpu
def test_a_slow_host_launch_is_not_timed() -> None:
    """A run that spends 300 µs on the host before launching a ~µs kernel times as the kernel, not 300 µs."""
    import torch

    data = torch.randn(1 << 16, device="cuda")
    sink: list = []

    def slow_host_launch() -> None:
        deadline = time.perf_counter() + 300e-6
        while time.perf_counter() < deadline:  # busy-wait: time.sleep may oversleep by far more
            pass
        sink[:] = [data.amax()]

    milliseconds = timing.time_cuda(slow_host_launch, repetitions=10)
    fast = timing.time_cuda(lambda: sink.__setitem__(slice(None), [data.amax()]), repetitions=10)
    assert milliseconds < 0.1, f"timed {milliseconds * 1000:.1f} µs: the host's 300 µs leaked into the events"
    assert milliseconds == pytest.approx(fast, abs=0.02)
    assert timing.gpu_cycles_per_us(torch.cuda.current_device()) > 100  # an SM clock of some hundred MHz+
