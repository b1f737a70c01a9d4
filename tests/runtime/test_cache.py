"""The compile cache: keys, atomic writes, damaged entries, the cache directory, concurrent writers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from anybit.runtime import cache
from anybit.runtime.cache import cache_key, compile_cached, entry_path, read_entry

from .helpers import AXPY


def test_key_changes_with_everything_that_decides_the_cubin():
    base = cache_key(AXPY, "axpy", "sm_90a", ("-O3",), (13, 5))
    assert base == cache_key(AXPY, "axpy", "sm_90a", ("-O3",), (13, 5))
    assert base != cache_key(AXPY + "\n", "axpy", "sm_90a", ("-O3",), (13, 5))
    assert base != cache_key(AXPY, "axpy", "sm_80", ("-O3",), (13, 5))
    assert base != cache_key(AXPY, "axpy", "sm_90a", (), (13, 5))
    assert base != cache_key(AXPY, "axpy", "sm_90a", ("-O3",), (13, 6))
    assert base != cache_key(AXPY, "other", "sm_90a", ("-O3",), (13, 5))


def test_cache_dir_is_honoured(private_cache, monkeypatch):
    assert cache.cache_dir() == private_cache
    compile_cached(AXPY, "axpy", "sm_80")
    assert len(list((private_cache / "kernels").glob("*.cubin-entry"))) == 1
    monkeypatch.delenv("ANYBIT_CACHE_DIR")
    assert cache.cache_dir() == Path.home() / ".cache" / "anybit"


def test_disk_round_trip_and_memory_cache(private_cache):
    first = compile_cached(AXPY, "axpy", "sm_80")
    assert not first.from_cache
    assert compile_cached(AXPY, "axpy", "sm_80") is first  # memory
    cache.clear_memory_cache()
    again = compile_cached(AXPY, "axpy", "sm_80")
    assert again.from_cache
    assert (again.cubin, again.ptx, again.log, again.resources) == (
        first.cubin,
        first.ptx,
        first.log,
        first.resources,
    )
    assert not [p for p in (private_cache / "kernels").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "header"])
def test_damaged_entry_is_rebuilt(damage, caplog):
    first = compile_cached(AXPY, "axpy", "sm_80")
    key = cache_key(AXPY, "axpy", "sm_80")
    path = entry_path(key)
    data = path.read_bytes()
    damaged = {
        "truncate": data[: len(data) - 100],
        "flip": data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:],
        "garbage": b"not a cache entry at all",
        "empty": b"",
        "header": data[:20] + b"{" + data[21:],
    }[damage]
    path.write_bytes(damaged)
    cache.clear_memory_cache()
    assert read_entry(key) is None
    assert "damaged" in caplog.text
    rebuilt = compile_cached(AXPY, "axpy", "sm_80")
    assert not rebuilt.from_cache and rebuilt.cubin == first.cubin
    assert read_entry(key).cubin == first.cubin  # the rewritten entry is whole again


def test_entry_of_another_key_is_not_trusted():
    compile_cached(AXPY, "axpy", "sm_80")
    key = cache_key(AXPY, "axpy", "sm_80")
    other = "0" * 64
    entry_path(other).write_bytes(entry_path(key).read_bytes())
    assert read_entry(other) is None


def _write_same_entry(directory: str, rounds: int) -> None:
    import os

    os.environ["ANYBIT_CACHE_DIR"] = directory
    from anybit.runtime.cache import cache_key, write_entry
    from anybit.runtime.nvrtc import compile_cubin

    result = compile_cubin(AXPY, "axpy", "sm_80")
    key = cache_key(AXPY, "axpy", "sm_80")
    for _ in range(rounds):
        write_entry(key, result)


def test_concurrent_writers_leave_a_valid_entry(private_cache):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_same_entry, args=(str(private_cache), 30)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    key = cache_key(AXPY, "axpy", "sm_80")
    entry = read_entry(key)
    assert entry is not None and entry.cubin[:4] == b"\x7fELF"
    assert not [p for p in (private_cache / "kernels").iterdir() if p.name.endswith(".tmp")]


def test_disabled_disk_cache_writes_nothing(private_cache, monkeypatch):
    monkeypatch.setenv("ANYBIT_CACHE", "0")
    compile_cached(AXPY, "axpy", "sm_80")
    assert not (private_cache / "kernels").exists()
