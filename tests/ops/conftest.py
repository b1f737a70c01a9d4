"""Shared fixtures of the ops tests: a private cache, the default dispatch threshold, fresh plans."""

from __future__ import annotations

import pytest

import anybit.ops as ops
from anybit.runtime import cache
from anybit.runtime.autotune import clear_pinned


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    """Every test gets its own ANYBIT_CACHE_DIR, the default threshold and no kept plans or pins."""
    monkeypatch.setenv("ANYBIT_CACHE_DIR", str(tmp_path / "anybit-cache"))
    monkeypatch.delenv("ANYBIT_AUTOTUNE", raising=False)
    cache.clear_memory_cache()
    previous = ops.set_decode_max_m(ops.DEFAULT_DECODE_MAX_M)
    ops.clear_plans()
    clear_pinned()
    yield
    ops.set_decode_max_m(previous)
    ops.clear_plans()
    clear_pinned()
