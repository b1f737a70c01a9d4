"""Compile CUDA C source with NVRTC straight to a cubin for one architecture, with its resource report.

NVRTC comes from the ``nvidia-cuda-nvrtc`` wheel through ``cuda.bindings``; the CUDA headers
(``cuda_fp16.h``, ...) from the ``nvidia-cuda-runtime`` wheel, found through the installed ``nvidia`` package.
No system CUDA toolkit is needed. The kernel's :class:`ResourceUsage` is read from the cubin itself
(:mod:`anybit.runtime.cubin`); ``--ptxas-options=-v`` asks ptxas for its report in the log too, the only
source of the spill counts, but NVRTC builds differ in whether it reaches the log, so nothing else depends on
it.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from anybit.runtime.cubin import CubinFormatError, cubin_resources
from anybit.runtime.errors import CompilationError
from anybit.runtime.resources import ResourceUsage, merge_resources, parse_resource_report

logger = logging.getLogger("anybit")

#: Options every compile gets (before the caller's): C++17, the ptxas resource report, line info.
BASE_OPTIONS = ("-std=c++17", "--ptxas-options=-v", "-lineinfo")

_ARCH_PATTERN = re.compile(r"^sm_(\d+)([af]?)$")


@dataclass(frozen=True)
class CompileResult:
    """One NVRTC compilation: the cubin, its PTX, the log, and the kernel's resource report."""

    name: str  # the kernel's name in the source
    lowered_name: str  # the symbol to look up in the loaded module (mangled unless extern "C")
    arch: str
    options: tuple[str, ...]
    cubin: bytes
    ptx: str
    log: str
    resources: ResourceUsage
    nvrtc_version: tuple[int, int]
    compile_seconds: float = 0.0
    from_cache: bool = field(default=False, compare=False)


def check_arch(arch: str) -> int:
    """Validate an architecture string (``sm_80``, ``sm_90a``, ...) and return its number (80, 90, ...)."""
    match = _ARCH_PATTERN.match(arch) if isinstance(arch, str) else None
    if match is None or int(match.group(1)) < 80:
        raise ValueError(
            f"expected an architecture like 'sm_80', 'sm_86', 'sm_89', 'sm_90' or 'sm_90a' (compute "
            f"capability 8.0 or newer), got {arch!r}"
        )
    return int(match.group(1))


@functools.cache
def nvrtc_version() -> tuple[int, int]:
    """The (major, minor) version of the NVRTC library in use."""
    from cuda.bindings import nvrtc

    result, major, minor = nvrtc.nvrtcVersion()
    _check(result, "nvrtcVersion")
    return int(major), int(minor)


@functools.cache
def cuda_include_dirs() -> tuple[str, ...]:
    """Directories of the CUDA runtime headers, found in the installed ``nvidia`` wheels (or CUDA_HOME)."""
    found: list[str] = []
    try:
        import nvidia

        roots = [Path(p) for p in nvidia.__path__]
    except ImportError:
        roots = []
    for root in roots:
        # cu13 wheels: nvidia/cu13/include; cu12 wheels: nvidia/cuda_runtime/include.
        for header in sorted(root.glob("*/include/cuda_runtime.h")):
            found.append(str(header.parent))
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home and (Path(cuda_home) / "include" / "cuda_runtime.h").exists():
        found.append(str(Path(cuda_home) / "include"))
    if not found:
        logger.warning(
            "no CUDA headers found (install the nvidia-cuda-runtime wheel); kernels that include "
            "cuda_fp16.h or cuda_bf16.h will not compile"
        )
    return tuple(dict.fromkeys(found))


def compile_cubin(
    source: str, name: str, arch: str, options: tuple[str, ...] | list[str] = ()
) -> CompileResult:
    """Compile ``source`` with NVRTC to a cubin for ``arch`` and report the resources of kernel ``name``.

    Parameters
    ----------
    source:
        CUDA C++ source holding the ``__global__`` function ``name``.
    name:
        The kernel's name in the source (``extern "C"`` or not; the lowered symbol is recorded).
    arch:
        The exact target, e.g. ``"sm_80"`` or ``"sm_90a"`` (the ``a`` variant enables wgmma/setmaxnreg).
    options:
        Extra NVRTC options, appended after :data:`BASE_OPTIONS`, the ``-arch`` and the include path.

    Returns
    -------
    CompileResult
        The cubin, the PTX (for inspection), the NVRTC/ptxas log and the parsed :class:`ResourceUsage`.

    Raises
    ------
    CompilationError
        With the compiler log and the numbered source lines around each error.
    """
    from cuda.bindings import nvrtc

    check_arch(arch)
    all_options = (*BASE_OPTIONS, f"-arch={arch}", *(f"-I{d}" for d in cuda_include_dirs()), *options)
    started = time.perf_counter()
    program = _create_program(source, name)
    try:
        _check(nvrtc.nvrtcAddNameExpression(program, name.encode())[0], "nvrtcAddNameExpression")
        encoded = [option.encode() for option in all_options]
        (result,) = nvrtc.nvrtcCompileProgram(program, len(encoded), encoded)
        log = _program_log(program)
        if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise CompilationError(format_compile_error(source, name, arch, log), log=log, source=source)
        lowered = _lowered_name(program, name)
        cubin = _read_blob(program, nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN, "CUBIN")
        ptx = _read_blob(program, nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX, "PTX")
    finally:
        nvrtc.nvrtcDestroyProgram(program)
    if len(ptx) <= 1:  # older NVRTCs give no PTX when asked for SASS: ask again for the virtual arch
        ptx = _compile_ptx(source, name, arch, all_options)
    seconds = time.perf_counter() - started
    resources = kernel_resources(cubin, log, lowered)
    logger.debug("compiled %s for %s in %.3f s: %s", name, arch, seconds, resources)
    return CompileResult(
        name=name,
        lowered_name=lowered,
        arch=arch,
        options=tuple(options),
        cubin=cubin,
        ptx=ptx.rstrip(b"\0").decode(),
        log=log,
        resources=resources,
        nvrtc_version=nvrtc_version(),
        compile_seconds=seconds,
    )


def kernel_resources(cubin: bytes, log: str, function: str) -> ResourceUsage:
    """The resources of kernel ``function``: from the cubin, with the spill counts of the ptxas log if any."""
    try:
        from_cubin = cubin_resources(cubin, function)
    except CubinFormatError as error:  # never fatal: the report is informative, the cubin still loads
        logger.warning("could not read the resources of %s from its cubin: %s", function, error)
        from_cubin = None
    return merge_resources(from_cubin, parse_resource_report(log, function))


def _compile_ptx(source: str, name: str, arch: str, options: tuple[str, ...]) -> bytes:
    """A second compile to the virtual architecture (``compute_XX``) to get PTX."""
    from cuda.bindings import nvrtc

    virtual = [o.replace(f"-arch={arch}", "-arch=" + arch.replace("sm_", "compute_")) for o in options]
    virtual = [o for o in virtual if not o.startswith("--ptxas-options")]
    program = _create_program(source, name)
    try:
        encoded = [option.encode() for option in virtual]
        (result,) = nvrtc.nvrtcCompileProgram(program, len(encoded), encoded)
        if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            return b""
        return _read_blob(program, nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX, "PTX")
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def _create_program(source: str, name: str):
    from cuda.bindings import nvrtc

    result, program = nvrtc.nvrtcCreateProgram(source.encode(), f"{name}.cu".encode(), 0, [], [])
    _check(result, "nvrtcCreateProgram")
    return program


def _program_log(program) -> str:
    from cuda.bindings import nvrtc

    result, size = nvrtc.nvrtcGetProgramLogSize(program)
    _check(result, "nvrtcGetProgramLogSize")
    buffer = bytearray(size)  # NVRTC writes into it: a mutable buffer, not an (immutable) bytes object
    _check(nvrtc.nvrtcGetProgramLog(program, buffer)[0], "nvrtcGetProgramLog")
    return bytes(buffer).rstrip(b"\0").decode(errors="replace")


def _lowered_name(program, name: str) -> str:
    from cuda.bindings import nvrtc

    result, lowered = nvrtc.nvrtcGetLoweredName(program, name.encode())
    if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        return name
    return lowered.decode() if isinstance(lowered, bytes) else str(lowered)


def _read_blob(program, size_call, read_call, what: str) -> bytes:
    result, size = size_call(program)
    _check(result, f"nvrtcGet{what}Size")
    if size == 0:
        return b""
    buffer = bytearray(size)
    _check(read_call(program, buffer)[0], f"nvrtcGet{what}")
    return bytes(buffer)


def _check(result, call: str) -> None:
    from cuda.bindings import nvrtc

    if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, text = nvrtc.nvrtcGetErrorString(result)
        raise CompilationError(f"{call} failed: {text.decode() if isinstance(text, bytes) else text}")


# -- error messages --------------------------------------------------------------------------------------

_ERROR_LINE = re.compile(r"\((\d+)\): (?:catastrophic )?error")


def format_compile_error(source: str, name: str, arch: str, log: str, *, context: int = 3) -> str:
    """The message of a :class:`CompilationError`: the log, then numbered source lines around each error."""
    lines = source.splitlines()
    error_lines = sorted({int(m.group(1)) for m in _ERROR_LINE.finditer(log)})[:5]
    parts = [f"NVRTC failed to compile kernel '{name}' for {arch}:", log.strip()]
    for number in error_lines:
        first, last = max(1, number - context), min(len(lines), number + context)
        parts.append(f"--- {name}.cu, lines {first}-{last} ---")
        for index in range(first, last + 1):
            marker = ">>" if index == number else "  "
            parts.append(f"{marker}{index:5d} | {lines[index - 1]}")
    return "\n".join(parts)
