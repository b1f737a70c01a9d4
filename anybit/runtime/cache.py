"""The compile cache: in memory, and on disk under ``~/.cache/anybit`` (or ``$ANYBIT_CACHE_DIR``).

An entry is keyed by a SHA-256 of everything that decides the cubin: the generated source, the kernel name,
the NVRTC version, the architecture and the options (plus this file's format version). Each entry is one file,
``kernels/<key>.cubin-entry``::

    ANYBITK1\\n | header length (8 bytes, little-endian) | header JSON | cubin | ptx | log

The header holds the key, the blob sizes, the metadata and a SHA-256 of the blobs, so a truncated or
corrupted file is detected and rebuilt, never trusted. Writes go to a temporary file in the same directory
and are moved into place with ``os.replace`` (atomic on POSIX), so concurrent processes writing the same
entry each leave a complete file and readers never see half of one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from anybit.runtime.nvrtc import CompileResult, ResourceUsage, compile_cubin, nvrtc_version

logger = logging.getLogger("anybit")

CACHE_FORMAT = 2  # 2: resources read from the cubin, spills None when unknown
_MAGIC = b"ANYBITK1\n"
_memory: dict[str, CompileResult] = {}
_memory_lock = threading.Lock()


def cache_dir() -> Path:
    """The cache root: ``$ANYBIT_CACHE_DIR`` if set, else ``~/.cache/anybit``."""
    override = os.environ.get("ANYBIT_CACHE_DIR")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "anybit"


def cache_key(
    source: str, name: str, arch: str, options: tuple[str, ...] = (), version: tuple[int, int] | None = None
) -> str:
    """SHA-256 (hex) of the source, kernel name, NVRTC version, architecture, options and cache format."""
    version = nvrtc_version() if version is None else version
    record = json.dumps(
        {
            "format": CACHE_FORMAT,
            "source": source,
            "name": name,
            "arch": arch,
            "options": list(options),
            "nvrtc": list(version),
        },
        sort_keys=True,
    )
    return hashlib.sha256(record.encode()).hexdigest()


def entry_path(key: str) -> Path:
    """Where the disk entry of ``key`` lives."""
    return cache_dir() / "kernels" / f"{key}.cubin-entry"


def compile_cached(source: str, name: str, arch: str, options: tuple[str, ...] = ()) -> CompileResult:
    """:func:`~anybit.runtime.nvrtc.compile_cubin` through the memory cache, then the disk cache.

    ``ANYBIT_CACHE=0`` skips the disk cache (the memory cache stays).
    """
    options = tuple(options)
    key = cache_key(source, name, arch, options)
    with _memory_lock:
        found = _memory.get(key)
    if found is not None:
        return found
    use_disk = os.environ.get("ANYBIT_CACHE", "1") != "0"
    result = read_entry(key) if use_disk else None
    if result is None:
        result = compile_cubin(source, name, arch, options)
        if use_disk:
            try:
                write_entry(key, result)
            except OSError as error:  # a read-only or full disk must not stop compilation
                logger.warning("could not write the compile cache entry %s: %s", entry_path(key), error)
    with _memory_lock:
        _memory.setdefault(key, result)
        return _memory[key]


def remember(source: str, result: CompileResult) -> None:
    """Put a compile ``result`` of ``source`` made elsewhere (a build worker) in the memory cache, so this
    process neither compiles it again nor reads its disk entry."""
    key = cache_key(source, result.name, result.arch, tuple(result.options))
    with _memory_lock:
        _memory.setdefault(key, result)


def clear_memory_cache() -> None:
    """Forget the in-memory entries (the disk cache stays)."""
    with _memory_lock:
        _memory.clear()


def write_entry(key: str, result: CompileResult) -> Path:
    """Write ``result`` as the entry of ``key`` atomically (temporary file, fsync, ``os.replace``)."""
    ptx, log = result.ptx.encode(), result.log.encode()
    blobs = result.cubin + ptx + log
    header = {
        "format": CACHE_FORMAT,
        "key": key,
        "sizes": [len(result.cubin), len(ptx), len(log)],
        "sha256": hashlib.sha256(blobs).hexdigest(),
        "name": result.name,
        "lowered_name": result.lowered_name,
        "arch": result.arch,
        "options": list(result.options),
        "nvrtc_version": list(result.nvrtc_version),
        "compile_seconds": result.compile_seconds,
        "resources": dataclasses.asdict(result.resources),
    }
    header_bytes = json.dumps(header, sort_keys=True).encode()
    path = entry_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, _MAGIC + len(header_bytes).to_bytes(8, "little") + header_bytes + blobs)
    return path


def read_entry(key: str) -> CompileResult | None:
    """The entry of ``key``, or None when it is missing; a damaged entry is logged, removed and None."""
    path = entry_path(key)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        logger.warning("could not read the compile cache entry %s: %s", path, error)
        return None
    try:
        return _decode_entry(key, data)
    except (ValueError, KeyError, TypeError) as error:
        logger.warning("compile cache entry %s is damaged (%s); rebuilding it", path, error)
        try:
            path.unlink()
        except OSError:
            pass
        return None


def _decode_entry(key: str, data: bytes) -> CompileResult:
    if not data.startswith(_MAGIC):
        raise ValueError("bad magic bytes")
    start = len(_MAGIC) + 8
    header_size = int.from_bytes(data[len(_MAGIC) : start], "little")
    if header_size <= 0 or start + header_size > len(data):
        raise ValueError("truncated header")
    header = json.loads(data[start : start + header_size].decode())
    if header["format"] != CACHE_FORMAT or header["key"] != key:
        raise ValueError("entry belongs to another key or format")
    blobs = data[start + header_size :]
    cubin_size, ptx_size, log_size = header["sizes"]
    if len(blobs) != cubin_size + ptx_size + log_size:
        raise ValueError(f"expected {cubin_size + ptx_size + log_size} bytes of payload, found {len(blobs)}")
    if hashlib.sha256(blobs).hexdigest() != header["sha256"]:
        raise ValueError("payload checksum mismatch")
    return CompileResult(
        name=header["name"],
        lowered_name=header["lowered_name"],
        arch=header["arch"],
        options=tuple(header["options"]),
        cubin=blobs[:cubin_size],
        ptx=blobs[cubin_size : cubin_size + ptx_size].decode(),
        log=blobs[cubin_size + ptx_size :].decode(),
        resources=ResourceUsage(**header["resources"]),
        nvrtc_version=tuple(header["nvrtc_version"]),
        compile_seconds=header["compile_seconds"],
        from_cache=True,
    )


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; cache entries are plain readable files
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
