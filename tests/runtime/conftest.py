"""Shared fixtures of the runtime tests: a private cache directory per test and hand-written kernels."""

from __future__ import annotations

import pytest

from anybit.runtime import cache


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own ANYBIT_CACHE_DIR and an empty memory cache."""
    directory = tmp_path / "anybit-cache"
    monkeypatch.setenv("ANYBIT_CACHE_DIR", str(directory))
    monkeypatch.delenv("ANYBIT_AUTOTUNE", raising=False)
    cache.clear_memory_cache()
    yield directory
    cache.clear_memory_cache()
