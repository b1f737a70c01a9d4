"""Device queries: whether a GPU is there, its architecture string, and its limits.

Without a GPU the architecture defaults to ``sm_90a`` (the Hopper target anybit is tuned for), and limits come
from a small table per architecture so compile-time checks (registers, shared memory) still work.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from anybit.runtime.errors import UnsupportedDeviceError
from anybit.runtime.nvrtc import check_arch

#: Architecture used when no GPU is present.
DEFAULT_ARCH = "sm_90a"
#: Compute capabilities whose arch-specific ("a") target enables extra instructions (wgmma, setmaxnreg).
_ARCH_SPECIFIC = {(9, 0), (10, 0), (10, 3), (12, 0), (12, 1)}


@dataclass(frozen=True)
class DeviceLimits:
    """What one thread block may use on a device."""

    name: str
    arch: str
    multiprocessors: int
    max_threads_per_block: int
    registers_per_block: int
    max_registers_per_thread: int
    max_shared_memory_per_block: int  # with the opt-in (cuFuncSetAttribute) above 48 KB
    l2_cache_bytes: int


# Opt-in shared memory per block by architecture number (CUDA programming guide, compute capabilities table).
_SHARED_OPTIN = {80: 163 * 1024, 86: 99 * 1024, 87: 163 * 1024, 89: 99 * 1024, 90: 227 * 1024}


def has_gpu() -> bool:
    """Whether torch sees a CUDA GPU."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def arch_of_capability(major: int, minor: int) -> str:
    """``sm_XY`` for compute capability X.Y, with the ``a`` suffix where the arch-specific target exists."""
    suffix = "a" if (major, minor) in _ARCH_SPECIFIC else ""
    return f"sm_{major}{minor}{suffix}"


def device_arch(device: int | None = None) -> str:
    """The exact architecture of a CUDA device (``sm_90a`` on H100/H200)."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return arch_of_capability(major, minor)


def default_arch() -> str:
    """The current device's architecture, or :data:`DEFAULT_ARCH` without a GPU."""
    return device_arch() if has_gpu() else DEFAULT_ARCH


def current_arch() -> str:
    """:func:`default_arch`, cached per current device (cheap enough for every launch)."""
    from anybit.runtime.launch import current_device

    return _arch_of_device(current_device())


@functools.cache
def _arch_of_device(device: int) -> str:
    return DEFAULT_ARCH if device < 0 else device_arch(device)


def check_supported(device: int) -> None:
    """Raise :class:`UnsupportedDeviceError` unless the device has compute capability 8.0 or newer."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        name = torch.cuda.get_device_name(device)
        raise UnsupportedDeviceError(
            "anybit needs a GPU of compute capability 8.0 or newer (Ampere, Ada, Hopper, ...); "
            f"cuda:{device} "
            f"is {name} with compute capability {major}.{minor}"
        )


def check_arch_runs_on(arch: str, device: int) -> None:
    """Raise :class:`UnsupportedDeviceError` unless a cubin for ``arch`` can run on ``device``.

    A cubin runs on devices of the same major version and an equal or newer minor one; an arch-specific
    (``sm_90a``) cubin only on exactly that compute capability.
    """
    import torch

    number = check_arch(arch)
    major, minor = torch.cuda.get_device_capability(device)
    cubin_major, cubin_minor = divmod(number, 10)
    specific = arch[-1] in "af"
    runs = major == cubin_major and (minor == cubin_minor if specific else minor >= cubin_minor)
    if not runs:
        raise UnsupportedDeviceError(
            f"the kernel was compiled for {arch} but cuda:{device} is {arch_of_capability(major, minor)}; "
            "compile with arch=None (the current device's architecture)"
        )


@functools.cache
def device_limits(device: int) -> DeviceLimits:
    """Limits of a CUDA device, read from the driver."""
    import torch

    from anybit.runtime.module import device_attribute

    properties = torch.cuda.get_device_properties(device)
    from cuda.bindings import driver

    attribute = driver.CUdevice_attribute
    return DeviceLimits(
        name=properties.name,
        arch=device_arch(device),
        multiprocessors=properties.multi_processor_count,
        max_threads_per_block=device_attribute(device, attribute.CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK),
        registers_per_block=device_attribute(device, attribute.CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK),
        max_registers_per_thread=255,
        max_shared_memory_per_block=device_attribute(
            device, attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        ),
        l2_cache_bytes=device_attribute(device, attribute.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE),
    )


def arch_limits(arch: str) -> DeviceLimits:
    """Limits of a block on ``arch`` from the architecture table (used when no GPU is present)."""
    number = check_arch(arch)
    shared = _SHARED_OPTIN.get(number, 99 * 1024 if number < 90 else 227 * 1024)
    return DeviceLimits(
        name=f"(no GPU; {arch} table)",
        arch=arch,
        multiprocessors=0,
        max_threads_per_block=1024,
        registers_per_block=65536,
        max_registers_per_thread=255,
        max_shared_memory_per_block=shared,
        l2_cache_bytes=0,
    )


def limits_for(arch: str) -> DeviceLimits:
    """The current device's limits when it has ``arch``, else the table's."""
    if has_gpu():
        import torch

        device = torch.cuda.current_device()
        if device_arch(device) == arch:
            return device_limits(device)
    return arch_limits(arch)


def gpu_identity(device: int | None = None) -> str:
    """``"<GPU name>|<arch>"``: what tuning results are keyed by."""
    import torch

    index = torch.cuda.current_device() if device is None else device
    return f"{torch.cuda.get_device_name(index)}|{device_arch(index)}"
