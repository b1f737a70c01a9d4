"""Launching a compiled kernel: argument packing into a preallocated parameter buffer, and ``cuLaunchKernel``.

Everything that does not depend on the arguments is done once, when the :class:`Launcher` is built: a ctypes
slot per kernel parameter and the ``void*`` array pointing at them, a setter per parameter (checks + fill),
the grid and workspace-size expressions compiled into Python closures. A launch then reads the current device
and stream, runs the setters, evaluates the grid and calls ``cuLaunchKernel`` through ctypes on libcuda
(``ANYBIT_LAUNCH_BACKEND=bindings`` switches to ``cuda.bindings``). It never synchronises and, once warm,
never allocates, so launches can be captured in CUDA graphs.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from collections.abc import Callable

from anybit.runtime.arguments import pointer_setter, scalar_setter, scalar_slot
from anybit.runtime.closure import compile_exprs
from anybit.runtime.errors import CudaDriverError
from anybit.runtime.module import LoadedFunction
from anybit.runtime.workspace import Workspace

logger = logging.getLogger("anybit")

WORKSPACE_PARAM = "__workspace"
_MAX_GRID = (2**31 - 1, 65535, 65535)
_CUDA_ERROR_INVALID_CONTEXT = 201


class _Packing:
    """One thread's parameter buffer: ctypes slots, the ``void*`` array over them, and the setters."""

    def __init__(self, params, alignments: dict[str, int], divisors: dict[str, int]) -> None:
        self.slots = []
        self.setters = []
        position = 0
        for param in params:
            if param.kind == "pointer":
                slot = ctypes.c_void_p(0)
                if param.name != WORKSPACE_PARAM:
                    alignment = max(1, alignments.get(param.name, 1))
                    self.setters.append(pointer_setter(param.name, position, param.dtype, alignment, slot))
            elif param.kind == "scalar":
                slot = scalar_slot(param.dtype)
                divisor = divisors.get(param.name, 1)
                self.setters.append(scalar_setter(param.name, position, param.dtype, slot, divisor))
            else:
                raise ValueError(
                    f"kernel parameter '{param.name}': expected kind 'pointer' or 'scalar', "
                    f"got {param.kind!r}"
                )
            if param.name != WORKSPACE_PARAM:
                position += 1
            self.slots.append(slot)
        self.array = (ctypes.c_void_p * max(1, len(self.slots)))(*(ctypes.addressof(s) for s in self.slots))
        self.address = ctypes.addressof(self.array)
        self.workspace_slot = self.slots[-1] if params and params[-1].name == WORKSPACE_PARAM else None


class Launcher:
    """Checks, packs and launches one kernel; build it once per compiled kernel and call :meth:`launch`."""

    def __init__(self, kernel_source, *, load: Callable[[int], LoadedFunction]) -> None:
        self.name = kernel_source.name
        self._params = tuple(kernel_source.params)
        for param in self._params[:-1]:
            if param.name == WORKSPACE_PARAM:
                raise ValueError(f"kernel '{self.name}': '{WORKSPACE_PARAM}' must be the last parameter")
        self.user_params = tuple(p for p in self._params if p.name != WORKSPACE_PARAM)
        self._count = len(self.user_params)
        self._alignments = dict(kernel_source.alignment_requirements)
        self._divisors = dict(getattr(kernel_source, "divisibility_requirements", ()))
        unknown = set(self._alignments) - {p.name for p in self.user_params if p.kind == "pointer"}
        if unknown:
            raise ValueError(
                f"kernel '{self.name}': alignment requirements name {sorted(unknown)}, "
                "which are "
                "not pointer parameters"
            )
        self._block = int(kernel_source.block_threads)
        if not 0 < self._block <= 1024:
            raise ValueError(f"kernel '{self.name}': expected 1 to 1024 threads per block, got {self._block}")
        self.dynamic_shared_bytes = int(kernel_source.dynamic_shared_bytes)
        positions = {p.name: i for i, p in enumerate(self.user_params) if p.kind == "scalar"}
        for extent in kernel_source.grid:
            dtype = getattr(extent, "dtype", None)
            if dtype is not None and not (dtype.is_integer or dtype.kind == "bool"):
                raise TypeError(
                    f"kernel '{self.name}': grid extent `{extent!r}` has dtype {dtype.name}, "
                    "expected an integer"
                )
        if len(kernel_source.grid) != 3:
            raise ValueError(f"kernel '{self.name}': expected 3 grid extents, got {len(kernel_source.grid)}")
        self._grid = compile_exprs(kernel_source.grid, positions)
        self.grid_source = kernel_source.grid
        has_workspace = bool(self._params) and self._params[-1].name == WORKSPACE_PARAM
        clean = bool(kernel_source.workspace_clean)
        self._workspace = Workspace(self.name, clean=clean) if has_workspace else None
        self._workspace_size = compile_exprs([kernel_source.workspace_bytes or 0], positions)
        self._load = load
        self._call: Callable[..., int] | None = None  # cuLaunchKernel, bound at the first load
        self._functions: dict[int, int] = {}
        self._packings: dict[int, _Packing] = {}
        self._packing_lock = threading.Lock()
        self._packing(threading.get_ident())  # build the first one now: parameter errors surface at compile

    def _packing(self, thread: int) -> _Packing:
        packing = self._packings.get(thread)
        if packing is None:
            with self._packing_lock:
                packing = self._packings.setdefault(
                    thread, _Packing(self._params, self._alignments, self._divisors)
                )
        return packing

    def check(self, args: tuple, device: int = -1) -> None:
        """Run every argument check (and fill this thread's buffer) without launching."""
        self._check_count(args)
        packing = self._packing(threading.get_ident())
        for setter, argument in zip(packing.setters, args, strict=True):
            setter(argument, device)

    def grid(self, args: tuple) -> tuple[int, int, int]:
        """The grid the arguments launch."""
        return self._grid(args)

    def workspace_bytes(self, args: tuple) -> int:
        """Workspace bytes the arguments need (0 without workspace)."""
        return int(self._workspace_size(args)[0]) if self._workspace is not None else 0

    def launch(self, args: tuple) -> None:
        """Check and pack ``args`` and launch the kernel on the current device's current stream."""
        if len(args) != self._count:
            self._check_count(args)
        device = current_device()
        packing = self._packings.get(threading.get_ident()) or self._packing(threading.get_ident())
        for setter, argument in zip(packing.setters, args, strict=True):
            setter(argument, device)
        gx, gy, gz = self._grid(args)
        if not (0 < gx <= _MAX_GRID[0] and 0 < gy <= _MAX_GRID[1] and 0 < gz <= _MAX_GRID[2]):
            if self._check_grid((gx, gy, gz)):
                return  # an empty grid: nothing to do
        handle = self._functions.get(device)
        if handle is None:
            handle = self._load_on(device)
        if self._workspace is not None:
            packing.workspace_slot.value = self._workspace.pointer(device, int(self._workspace_size(args)[0]))
        stream = current_stream(device)
        status = self._call(
            handle, gx, gy, gz, self._block, 1, 1, self.dynamic_shared_bytes, stream, packing.address, None
        )
        if status:
            self._launch_failed(status, device, (gx, gy, gz), stream, packing)

    def reserve_workspace(self, args: tuple) -> None:
        """Allocate the workspace these arguments need now (call before capturing a CUDA graph)."""
        if self._workspace is not None:
            self._workspace.reserve(current_device(), self.workspace_bytes(args))

    # -- slow paths ----------------------------------------------------------------------------------------
    def _check_count(self, args: tuple) -> None:
        if len(args) != self._count:
            names = ", ".join(
                f"{p.name}: {'ptr ' if p.kind == 'pointer' else ''}{p.dtype.name}" for p in self.user_params
            )
            raise TypeError(f"kernel '{self.name}' takes {self._count} arguments ({names}), got {len(args)}")

    def _check_grid(self, grid: tuple) -> bool:
        """True for an empty grid (some extent 0); raise for a negative or too large one."""
        for axis, (extent, limit) in enumerate(zip(grid, _MAX_GRID, strict=True)):
            if not isinstance(extent, int):
                raise TypeError(f"kernel '{self.name}': grid extent {'xyz'[axis]} = {extent!r} is not an int")
            if extent < 0 or extent > limit:
                raise ValueError(
                    f"kernel '{self.name}': grid extent {'xyz'[axis]} = {extent} (from "
                    f"`{self.grid_source[axis]!r}`)"
                    f" is outside [0, {limit}]; check the size arguments"
                )
        logger.debug("kernel %s: empty grid %s, nothing launched", self.name, grid)
        return True

    def _load_on(self, device: int) -> int:
        if device < 0:
            raise RuntimeError(
                "no CUDA GPU is available: anybit compiles without a GPU, but launching needs one"
            )
        loaded = self._load(device)
        if self._block > loaded.max_threads_per_block:
            raise CudaDriverError(
                f"kernel '{self.name}' launches {self._block} threads per block but, with {loaded.registers} "
                f"registers per thread, cuda:{device} allows at most "
                f"{loaded.max_threads_per_block}; use fewer "
                "warps or a schedule that needs fewer registers"
            )
        self._call = cu_launch_kernel()
        self._functions[device] = loaded.handle
        return loaded.handle

    def _launch_failed(self, status: int, device: int, grid: tuple, stream: int, packing: _Packing) -> None:
        from anybit.runtime.module import ensure_context, error_name

        if status == _CUDA_ERROR_INVALID_CONTEXT:  # a thread where torch never made the context current
            ensure_context(device)
            status = self._call(
                self._functions[device],
                *grid,
                self._block,
                1,
                1,
                self.dynamic_shared_bytes,
                stream,
                packing.address,
                None,
            )
            if not status:
                return
        raise CudaDriverError(
            f"cuLaunchKernel of '{self.name}' (grid {grid}, {self._block} threads, "
            f"{self.dynamic_shared_bytes} B dynamic shared memory) on cuda:{device} failed: "
            f"{error_name(status)}",
            code=status,
        )


# -- device, stream and the launch call --------------------------------------------------------------------

_state = {"device": None}


def current_device() -> int:
    """The current CUDA device index, or -1 without a GPU."""
    getter = _state["device"]
    if getter is None:
        getter = _state["device"] = _device_getter()
    return getter()


def _device_getter() -> Callable[[], int]:
    import torch

    if not torch.cuda.is_available():
        return lambda: -1
    torch.cuda.init()
    raw = getattr(torch._C, "_cuda_getDevice", None)
    return raw if raw is not None else torch.cuda.current_device


def current_stream(device: int) -> int:
    """The raw ``cudaStream_t`` of torch's current stream on ``device``."""
    return _stream_getter()(device)


@functools.cache
def _stream_getter() -> Callable[[int], int]:
    import torch

    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return raw
    return lambda device: torch.cuda.current_stream(device).cuda_stream


def cu_launch_kernel() -> Callable[..., int]:
    """``cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shared, stream, params, extra) -> CUresult`` as an int.

    Through ctypes on libcuda by default; ``ANYBIT_LAUNCH_BACKEND=bindings`` (or no loadable libcuda) uses
    ``cuda.bindings``.
    """
    backend = os.environ.get("ANYBIT_LAUNCH_BACKEND", "ctypes")
    if backend not in ("ctypes", "bindings"):
        raise ValueError(f"ANYBIT_LAUNCH_BACKEND: expected 'ctypes' or 'bindings', got {backend!r}")
    if backend == "ctypes":
        try:
            return launch_function("ctypes")
        except OSError as error:
            logger.info("libcuda.so.1 is not loadable through ctypes (%s); using cuda.bindings", error)
    return launch_function("bindings")


@functools.cache
def launch_function(backend: str) -> Callable[..., int]:
    """The ``cuLaunchKernel`` caller of a backend: ``"ctypes"`` (libcuda) or ``"bindings"``."""
    if backend == "ctypes":
        function = ctypes.CDLL("libcuda.so.1").cuLaunchKernel
        function.restype = ctypes.c_int
        function.argtypes = [
            ctypes.c_void_p,
            *[ctypes.c_uint] * 7,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        return function
    from cuda.bindings import driver

    def launch_with_bindings(f, gx, gy, gz, bx, by, bz, shared, stream, params, extra) -> int:
        return int(driver.cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shared, stream, params, 0)[0])

    return launch_with_bindings
