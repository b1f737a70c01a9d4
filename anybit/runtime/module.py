"""Loading cubins with the CUDA driver, in the primary context torch uses, and driver-call checking.

Every driver call's result is checked; a failure raises :class:`CudaDriverError` naming the call and the
driver's error name. Modules are loaded once per (cubin, device) and kept for the life of the process.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from dataclasses import dataclass

from anybit.runtime.errors import CudaDriverError

logger = logging.getLogger("anybit")

#: Shared memory (static and dynamic together) a block may use without opting in.
DEFAULT_DYNAMIC_SHARED_LIMIT = 48 * 1024


def needs_shared_opt_in(static_shared_bytes: int, dynamic_shared_bytes: int) -> bool:
    """Whether a block's shared memory passes the 48 KiB a kernel gets without
    ``cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)``: the default covers static *and* dynamic bytes
    together, so 128 B static beside exactly 48 KiB dynamic already needs the opt-in."""
    return static_shared_bytes + dynamic_shared_bytes > DEFAULT_DYNAMIC_SHARED_LIMIT


_lock = threading.Lock()
_contexts: dict[int, object] = {}


def driver_call(function, *args, what: str | None = None):
    """Call a ``cuda.bindings.driver`` function; raise on an error result, return the remaining values."""
    from cuda.bindings import driver

    result = function(*args)
    status, values = result[0], result[1:]
    if status != driver.CUresult.CUDA_SUCCESS:
        raise CudaDriverError(
            f"{what or function.__name__} failed: {error_name(int(status))}", code=int(status)
        )
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def error_name(code: int) -> str:
    """``CUDA_ERROR_...: description`` for a driver error code."""
    from cuda.bindings import driver

    try:
        status = driver.CUresult(code)
    except ValueError:
        return f"CUresult {code}"
    _, name = driver.cuGetErrorName(status)
    _, text = driver.cuGetErrorString(status)
    decode = lambda value: value.decode() if isinstance(value, bytes) else str(value)  # noqa: E731
    return f"{decode(name)} ({decode(text)})"


@functools.cache
def _init_driver() -> None:
    from cuda.bindings import driver

    driver_call(driver.cuInit, 0)


def ensure_context(device: int) -> None:
    """Make the primary context of ``device`` (the one torch uses) current on this thread."""
    import torch
    from cuda.bindings import driver

    torch.cuda.init()
    _init_driver()
    with _lock:
        context = _contexts.get(device)
        if context is None:
            handle = driver_call(driver.cuDeviceGet, device)
            context = driver_call(driver.cuDevicePrimaryCtxRetain, handle)
            _contexts[device] = context
    current = driver_call(driver.cuCtxGetCurrent)
    if current is None or int(current) != int(context):
        driver_call(driver.cuCtxSetCurrent, context)


def device_attribute(device: int, attribute) -> int:
    """One ``CU_DEVICE_ATTRIBUTE_*`` value of ``device``."""
    from cuda.bindings import driver

    _init_driver()
    handle = driver_call(driver.cuDeviceGet, device)
    return int(driver_call(driver.cuDeviceGetAttribute, attribute, handle))


@dataclass(frozen=True)
class LoadedFunction:
    """A kernel loaded on one device: the driver handles and the function's own limits."""

    device: int
    module: object
    function: object
    handle: int  # the CUfunction as an integer, for the launch call
    max_threads_per_block: int
    static_shared_bytes: int
    registers: int


def load_function(
    cubin: bytes, name: str, *, device: int, dynamic_shared_bytes: int, cluster_blocks: int = 1
) -> LoadedFunction:
    """Load ``cubin`` on ``device``, find kernel ``name`` and allow it ``dynamic_shared_bytes`` (and, for a
    thread-block cluster of ``cluster_blocks`` past the portable 8, the non-portable cluster size).

    Raises
    ------
    CudaDriverError
        When loading fails, or the kernel needs more shared memory than the device allows a block.
    """
    from cuda.bindings import driver

    from anybit.lang.script import MAX_PORTABLE_CLUSTER_BLOCKS

    ensure_context(device)
    image = ctypes.create_string_buffer(cubin, len(cubin))  # an address suits every cuda-bindings version
    module = driver_call(driver.cuModuleLoadData, ctypes.addressof(image), what="cuModuleLoadData")
    function = driver_call(
        driver.cuModuleGetFunction, module, name.encode(), what=f"cuModuleGetFunction({name})"
    )
    attribute = driver.CUfunction_attribute

    def function_attribute(which) -> int:
        return int(driver_call(driver.cuFuncGetAttribute, which, function, what="cuFuncGetAttribute"))

    static_shared = function_attribute(attribute.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)
    if needs_shared_opt_in(static_shared, dynamic_shared_bytes):
        limit = device_attribute(
            device, driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        )
        if static_shared + dynamic_shared_bytes > limit:
            raise CudaDriverError(
                f"kernel '{name}' needs {static_shared} B static + {dynamic_shared_bytes} B dynamic shared "
                f"memory per block, but cuda:{device} allows {limit} B; use smaller tiles or fewer stages"
            )
        driver_call(
            driver.cuFuncSetAttribute,
            function,
            attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            dynamic_shared_bytes,
            what="cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)",
        )
    if cluster_blocks > MAX_PORTABLE_CLUSTER_BLOCKS:  # compiled in, but launched only with the opt-in
        driver_call(
            driver.cuFuncSetAttribute,
            function,
            attribute.CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED,
            1,
            what=f"cuFuncSetAttribute(NON_PORTABLE_CLUSTER_SIZE_ALLOWED) for a cluster of {cluster_blocks} "
            f"blocks (more than {MAX_PORTABLE_CLUSTER_BLOCKS} need an H100/H200-class GPU)",
        )
    loaded = LoadedFunction(
        device=device,
        module=module,
        function=function,
        handle=int(function),
        max_threads_per_block=function_attribute(attribute.CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK),
        static_shared_bytes=static_shared,
        registers=function_attribute(attribute.CU_FUNC_ATTRIBUTE_NUM_REGS),
    )
    logger.debug("loaded %s on cuda:%d (%d registers)", name, device, loaded.registers)
    return loaded
