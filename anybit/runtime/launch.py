"""Launching a compiled kernel: argument packing into a preallocated parameter buffer, and ``cuLaunchKernel``.

Everything that does not depend on the arguments is done once, when the :class:`Launcher` is built: a ctypes
slot per kernel parameter and the ``void*`` array pointing at them, a setter per parameter (checks + fill)
called from one generated function, the grid and workspace-size expressions compiled into Python closures (a
constant grid is checked once). A launch then reads the current device and stream through torch's raw getters
(bound once), runs the setters, evaluates the grid and calls ``cuLaunchKernel`` through a launch backend:
``ANYBIT_LAUNCH_BACKEND`` = ``compiled`` (the default: a small C module built on first use with the system
compiler, :mod:`anybit.runtime.compiled_launch`, that takes plain ints; ~1.2 µs a launch faster than the
bindings on an H200 host), ``bindings`` (``cuda.bindings``, where no compiler is found; faster than ctypes)
or ``ctypes`` (libcuda through ctypes). It never synchronises and,
once warm, never allocates, so launches can be captured in CUDA graphs.

A kernel whose code waits for the prior grids (``wait_prior_grids``; ``waits_for_prior_grids`` in its
``CudaKernelSource``) is launched as a *dependent*: ``cuLaunchKernelEx`` with the
programmatic-stream-serialization attribute, so it may start while the previous kernel in the stream runs.
Its launch config is built once per thread; a launch sets only the grid and the stream. The decode kernels
let the next kernel launch right after their own wait, so a model's consecutive projections each load their
first weight chunks under the previous one's main loop: on the H200 (2026-11-29) Llama-3-8B's int4 decode
step took 2.382 ms against 2.428 launched plainly. ``ANYBIT_PDL=0`` launches plainly (the fourth session's
kernels, which let the next one launch only after their main loop, were 3–5% slower as dependents). A
backend without ``cuLaunchKernelEx`` (ctypes) launches plainly too: correct, since the kernel then starts
after the previous one has completed and its wait returns at once.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

from anybit.ir.expr import Const, as_expr
from anybit.runtime.arguments import pointer_setter, scalar_setter, scalar_slot
from anybit.runtime.closure import compile_exprs
from anybit.runtime.errors import CudaDriverError
from anybit.runtime.module import LoadedFunction
from anybit.runtime.workspace import Workspace

logger = logging.getLogger("anybit")

WORKSPACE_PARAM = "__workspace"
_MAX_GRID = (2**31 - 1, 65535, 65535)
_CUDA_ERROR_INVALID_CONTEXT = 201
_SUCCESS = (0,)


class _Packing:
    """One thread's parameter buffer: ctypes slots, the ``void*`` array over them, and the setters.

    ``pack(args, device)`` runs every setter (one generated function, no loop); ``raw_stream`` and ``stream``
    cache the backend's handle of the last stream this thread launched on; ``dependent_config`` is this
    thread's launch config for dependent launches (made at the first one).
    """

    def __init__(self, params, alignments: dict[str, int], divisors: dict[str, int]) -> None:
        self.slots = []
        self.setters = []
        self.raw_stream: int | None = None
        self.stream: object = None
        self.dependent_config: object = None
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
        self.pack = _unrolled(self.setters)


def _unrolled(setters: list) -> Callable[[tuple, int], None]:
    """``pack(args, device)`` calling ``setters[i](args[i], device)`` for each i, unrolled (no loop)."""
    names = [f"set{i}" for i in range(len(setters))]
    calls = (
        "".join(f"        {name}(args[{i}], device)\n" for i, name in enumerate(names)) or "        pass\n"
    )
    text = f"def bind({', '.join(names)}):\n    def pack(args, device):\n{calls}    return pack\n"
    namespace: dict = {}
    exec(compile(text, "<anybit argument packing>", "exec"), namespace)  # noqa: S102 - our own text
    return namespace["bind"](*setters)


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
        # A grid of constants is checked here once; the launch then skips evaluating and checking it.
        constant = all(isinstance(as_expr(extent), Const) for extent in kernel_source.grid)
        self._constant_grid = self._grid(()) if constant else None
        if constant and self._check_grid(self._constant_grid, strict=True):
            self._constant_grid = None  # an empty constant grid: take the general path, which skips it
        has_workspace = bool(self._params) and self._params[-1].name == WORKSPACE_PARAM
        clean = bool(kernel_source.workspace_clean)
        clean_bytes = _or_zero(getattr(kernel_source, "workspace_clean_bytes", 0))
        keeps_clean = not (isinstance(clean_bytes, int) and clean_bytes == 0)
        self._workspace = (
            Workspace(self.name, clean=clean, keeps_clean=keeps_clean) if has_workspace else None
        )
        self._workspace_size = compile_exprs(
            [_or_zero(kernel_source.workspace_bytes), clean_bytes], positions
        )
        self._load = load
        self.backend: LaunchBackend | None = None  # chosen at the first load
        self._call: Callable[..., object] | None = None  # the backend's cuLaunchKernel
        self._functions: dict[int, object] = {}  # device -> the backend's function handle
        self.waits_for_prior_grids = bool(getattr(kernel_source, "waits_for_prior_grids", False))
        cluster = tuple(getattr(kernel_source, "cluster", (1, 1, 1)))
        self._cluster = None if cluster == (1, 1, 1) else cluster
        if self._constant_grid is not None:
            self._check_cluster(self._constant_grid)
        # Devices it is launched on as a dependent, decided at the first load on each.
        self._dependent_devices: set[int] = set()
        self._local = threading.local()
        self.packing()  # build this thread's buffer now: parameter errors surface at compile time

    def packing(self) -> _Packing:
        """This thread's parameter buffer (made at its first use on the thread)."""
        try:
            return self._local.packing
        except AttributeError:
            packing = self._local.packing = _Packing(self._params, self._alignments, self._divisors)
            return packing

    def use_backend(self, name: str) -> None:
        """Launch through backend ``name`` (``"bindings"`` or ``"ctypes"``) from now on."""
        self.backend = launch_backend(name)
        self._call = self.backend.call
        # Function and stream handles are the backend's own types: fetch them again, in fresh buffers.
        self._functions.clear()
        self._dependent_devices.clear()
        self._local = threading.local()
        self.packing()

    def check(self, args: tuple, device: int = -1) -> None:
        """Run every argument check (and fill this thread's buffer) without launching."""
        self._check_count(args)
        self.packing().pack(args, device)

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
        device = _device_now()
        try:
            packing = self._local.packing
        except AttributeError:  # the first launch on this thread
            packing = self.packing()
        packing.pack(args, device)
        grid = self._constant_grid
        if grid is None:
            grid = self._grid(args)
            gx, gy, gz = grid
            if not (0 < gx <= _MAX_GRID[0] and 0 < gy <= _MAX_GRID[1] and 0 < gz <= _MAX_GRID[2]):
                if self._check_grid(grid):
                    return  # an empty grid: nothing to do
        else:
            gx, gy, gz = grid
        if self._cluster is not None:
            self._check_cluster(grid)
        handle = self._functions.get(device)
        if handle is None:
            handle = self._load_on(device)
        if self._workspace is not None:
            nbytes, clean_bytes = self._workspace_size(args)
            packing.workspace_slot.value = self._workspace.pointer(device, int(nbytes), int(clean_bytes))
        raw_stream = _stream_now(device)
        if raw_stream != packing.raw_stream:  # the backend's stream handle, made once per stream change
            packing.stream = self.backend.stream(raw_stream)
            packing.raw_stream = raw_stream
        if self._dependent_devices and device in self._dependent_devices:
            status = self._launch_dependent(handle, gx, gy, gz, packing)
        else:
            status = self._call(
                handle,
                gx,
                gy,
                gz,
                self._block,
                1,
                1,
                self.dynamic_shared_bytes,
                packing.stream,
                packing.address,
                0,
            )
        # ctypes returns the CUresult (0 on success), cuda.bindings a 1-tuple of it; both compare to (0,).
        if status and status != _SUCCESS:
            self._launch_failed(status, device, (gx, gy, gz), packing)

    def bind(self, args: tuple, positions: tuple[int, ...] | None = None) -> Callable[[tuple], None] | None:
        """A launch of this kernel with the scalars, grid and workspace size of ``args`` fixed and its pointer
        arguments read without checks, for a caller that has checked them itself.

        ``args`` are checked now as :meth:`launch` checks them. The returned ``bound(call_args)`` reads only
        the tensors of ``call_args`` — at ``positions[i]`` for the kernel's i-th parameter (default: the
        kernel's order) — and takes each one's ``data_ptr()``: the caller vouches that each is a contiguous
        tensor of the dtype :meth:`launch` accepts there, on the current device, aligned as the kernel needs,
        and that the scalars are those of ``args``. A call made on another current device than the binding's
        goes through :meth:`launch` and its checks; a launch the driver refuses is retried there too (which
        makes a thread's context current, or raises saying what failed). Parameters are packed on the C
        module's stack, so threads may share a bound launch. ~1–2 µs of host time less than :meth:`launch`
        with six tensors, most of it the per-tensor checks.

        Returns None where no bound launch can be made: a backend other than ``compiled``, the kernel not
        yet launched on the current device, an empty grid.
        """
        order = tuple(range(self._count)) if positions is None else tuple(positions)
        if len(order) != self._count or not all(0 <= i < len(args) for i in order):
            raise ValueError(
                f"kernel '{self.name}': positions {list(order)} for {self._count} parameters must name "
                f"one of the {len(args)} arguments each"
            )
        call_args = tuple(args[i] for i in order)
        device = _device_now()
        self.check(call_args, device)
        handle = self._functions.get(device)
        if handle is None or self.backend is None or self.backend.name != "compiled":
            return None
        grid = self._grid(call_args)
        if self._check_grid(grid, strict=True):
            return None
        self._check_cluster(grid)
        frame, offsets, slots = _frame(self.packing(), self._params)
        kinds = [param.kind for param in self.user_params]
        pointers = [f"args[{order[i]}].data_ptr()" for i, kind in enumerate(kinds) if kind == "pointer"]
        in_order = "".join(f"args[{i}], " for i in order)  # the arguments in the kernel's order, for launch()
        workspace: tuple = ()
        if self._workspace is not None:
            nbytes, clean_bytes = (int(size) for size in self._workspace_size(call_args))
            if nbytes > 0:
                workspace = (self._workspace.pointer, nbytes, clean_bytes)
                pointers.append("workspace(device, workspace_bytes, clean_bytes)")
            else:
                slots = slots[:-4]  # the last parameter's slot: no workspace at these sizes, its pointer 0
        names = {
            "launch_frame": compiled_launch_module().launch_frame,
            "checked": self.launch,
            "handle": handle,
            "grid": grid,
            "block": self._block,
            "shared": self.dynamic_shared_bytes,
            "dependent": int(device in self._dependent_devices),
            "frame": frame,
            "offsets": offsets,
            "slots": slots,
            "device": device,
            "workspace": workspace[0] if workspace else None,
            "workspace_bytes": workspace[1] if workspace else 0,
            "clean_bytes": workspace[2] if workspace else 0,
        }
        text = (
            f"def make({', '.join(names)}):\n"
            "    gx, gy, gz = grid\n"
            "    def bound(args):\n"
            "        if _device_now() != device:\n"
            f"            return checked(({in_order}))\n"
            "        status = launch_frame(handle, gx, gy, gz, block, shared, _stream_now(device), "
            f"dependent, frame, offsets, slots, {', '.join(pointers)})\n"
            "        if status:\n"
            f"            checked(({in_order}))\n"
            "    return bound\n"
        )
        namespace: dict = {}
        # This module's globals: the launch reads the device and stream through the getters bound there now.
        exec(compile(text, f"<anybit bound launch of {self.name}>", "exec"), globals(), namespace)  # noqa: S102
        return namespace["make"](**names)

    def launches_as_dependent(self, device: int) -> bool:
        """Whether launches on ``device`` (once loaded there) are dependent launches (see the module doc)."""
        return device in self._dependent_devices

    def _launch_dependent(self, handle, gx: int, gy: int, gz: int, packing: _Packing) -> object:
        """``cuLaunchKernelEx`` with this thread's dependent-launch config, its grid and stream updated."""
        config = packing.dependent_config
        if config is None:
            config = self.backend.dependent_config(self._block, self.dynamic_shared_bytes)
            packing.dependent_config = config
        config.gridDimX = gx
        config.gridDimY = gy
        config.gridDimZ = gz
        config.hStream = packing.stream
        return self.backend.call_dependent(config, handle, packing.address, 0)

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

    @property
    def cluster_blocks(self) -> int:
        """Blocks of the kernel's thread-block cluster (1 without clusters)."""
        return 1 if self._cluster is None else math.prod(self._cluster)

    def _check_cluster(self, grid: tuple) -> None:
        """Raise unless ``grid`` is whole thread-block clusters (the launch would fail in the driver)."""
        cluster = self._cluster
        if cluster is not None and any(extent % c for extent, c in zip(grid, cluster, strict=True)):
            raise ValueError(
                f"kernel '{self.name}': grid {list(grid)} is not whole clusters of {list(cluster)} "
                "blocks; launch a grid whose extents are multiples of the cluster's"
            )

    def _check_grid(self, grid: tuple, *, strict: bool = False) -> bool:
        """True for an empty grid (some extent 0); raise for a negative or too large one.

        With ``strict``, a valid non-empty grid returns False instead of being assumed empty.
        """
        for axis, (extent, limit) in enumerate(zip(grid, _MAX_GRID, strict=True)):
            if not isinstance(extent, int):
                raise TypeError(f"kernel '{self.name}': grid extent {'xyz'[axis]} = {extent!r} is not an int")
            if extent < 0 or extent > limit:
                raise ValueError(
                    f"kernel '{self.name}': grid extent {'xyz'[axis]} = {extent} (from "
                    f"`{self.grid_source[axis]!r}`)"
                    f" is outside [0, {limit}]; check the size arguments"
                )
        if strict and all(extent > 0 for extent in grid):
            return False
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
        if self.backend is None:  # the first load: no buffer holds a stream handle yet
            self.backend = launch_backend(default_backend())
            self._call = self.backend.call
        handle = self.backend.function(loaded)
        # The code has griddepcontrol.wait only when built for sm_90+, and such a cubin only loads on a
        # device of the same major version (checked at load): the attribute never reaches an older GPU.
        if (
            self.waits_for_prior_grids
            and self.backend.call_dependent is not None
            and dependent_launch_enabled()
        ):
            self._dependent_devices.add(device)
        self._functions[device] = handle
        return handle

    def _launch_failed(self, status, device: int, grid: tuple, packing: _Packing) -> None:
        from anybit.runtime.module import ensure_context, error_name

        status = int(status[0]) if isinstance(status, tuple) else int(status)
        dependent = device in self._dependent_devices
        if status == _CUDA_ERROR_INVALID_CONTEXT:  # a thread where torch never made the context current
            ensure_context(device)
            if dependent:
                status = self._launch_dependent(self._functions[device], *grid, packing)
            else:
                status = self._call(
                    self._functions[device],
                    *grid,
                    self._block,
                    1,
                    1,
                    self.dynamic_shared_bytes,
                    packing.stream,
                    packing.address,
                    0,
                )
            status = int(status[0]) if isinstance(status, tuple) else int(status)
            if not status:
                return
        call = (
            "cuLaunchKernelEx (a dependent launch; ANYBIT_PDL=0 launches plainly)"
            if dependent
            else "cuLaunchKernel"
        )
        raise CudaDriverError(
            f"{call} of '{self.name}' (grid {grid}, {self._block} threads, "
            f"{self.dynamic_shared_bytes} B dynamic shared memory) on cuda:{device} failed: "
            f"{error_name(status)}",
            code=status,
        )


def _frame(packing: _Packing, params: tuple) -> tuple[bytes, bytes, bytes]:
    """A bound launch's parameter bytes (the checked scalars of ``packing`` in place, pointers zero), every
    parameter's offset in them and every pointer's (uint32 each), each parameter at its size's alignment."""
    frame = bytearray()
    offsets, slots = [], []
    for param, slot in zip(params, packing.slots, strict=True):
        size = ctypes.sizeof(slot)
        frame.extend(bytes(-len(frame) % size))
        offsets.append(len(frame))
        if param.kind == "pointer":
            slots.append(len(frame))
            frame.extend(bytes(size))
        else:
            frame.extend(ctypes.string_at(ctypes.addressof(slot), size))
    return bytes(frame), struct.pack(f"<{len(offsets)}I", *offsets), struct.pack(f"<{len(slots)}I", *slots)


def compiled_launch_module():
    """The compiled launch module (:mod:`anybit.runtime.compiled_launch`), built on first use."""
    from anybit.runtime import compiled_launch

    return compiled_launch.load()


# -- device, stream and the launch call --------------------------------------------------------------------


def _resolve_device_getter() -> int:
    """Bind :func:`_device_now` to torch's raw getter (or ``-1`` without a GPU) and return the device."""
    global _device_now
    import torch

    if not torch.cuda.is_available():
        _device_now = _no_device
    else:
        torch.cuda.init()
        _device_now = getattr(torch._C, "_cuda_getDevice", None) or torch.cuda.current_device
    return _device_now()


def _no_device() -> int:
    return -1


def _resolve_stream_getter(device: int) -> int:
    """Bind :func:`_stream_now` to torch's raw ``cudaStream_t`` getter and return the stream of ``device``."""
    global _stream_now
    import torch

    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    _stream_now = raw if raw is not None else lambda index: torch.cuda.current_stream(index).cuda_stream
    return _stream_now(device)


# Rebound to torch's own getters at their first call: a launch pays one global lookup and one C call each.
_device_now: Callable[[], int] = _resolve_device_getter
_stream_now: Callable[[int], int] = _resolve_stream_getter


def current_device() -> int:
    """The current CUDA device index, or -1 without a GPU."""
    return _device_now()


def current_stream(device: int) -> int:
    """The raw ``cudaStream_t`` of torch's current stream on ``device``."""
    return _stream_now(device)


@dataclass(frozen=True)
class LaunchBackend:
    """One way to call ``cuLaunchKernel``, with the handle types it takes fastest.

    ``call(function, gx, gy, gz, bx, by, bz, shared, stream, params, extra)`` returns the CUresult (ctypes) or
    a 1-tuple of it (cuda.bindings); ``function(loaded)`` and ``stream(raw)`` make the handles it takes.
    Dependent launches, where the backend has them: ``dependent_config(block_threads, shared_bytes)`` makes a
    launch config with the programmatic-stream-serialization attribute, whose ``gridDimX/Y/Z`` and
    ``hStream`` the launcher sets; ``call_dependent(config, function, params, extra)`` launches it.
    """

    name: str
    call: Callable[..., object]
    function: Callable[[LoadedFunction], object]
    stream: Callable[[int], object]
    dependent_config: Callable[[int, int], object] | None = None
    call_dependent: Callable[..., object] | None = None


BACKENDS = ("bindings", "ctypes", "compiled")


def dependent_launch_enabled() -> bool:
    """False when ``ANYBIT_PDL=0``; else kernels that wait for the prior grids are launched as dependents
    (see the module docstring)."""
    return os.environ.get("ANYBIT_PDL", "1") != "0"


def dependent_launch_config(block_threads: int, shared_bytes: int):
    """A ``cuda.bindings`` ``CUlaunchConfig`` for a dependent launch of ``block_threads`` threads a block.

    One attribute, ``CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 1``: the kernel may start before
    the previous kernel in the stream completes (stream capture records the same as a programmatic edge).
    The grid is 1×1×1 and the stream the null stream until the caller sets ``gridDimX/Y/Z`` and ``hStream``.
    """
    from cuda.bindings import driver

    attribute = driver.CUlaunchAttribute()
    attribute.id = driver.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
    attribute.value.programmaticStreamSerializationAllowed = 1
    config = driver.CUlaunchConfig()
    config.gridDimX, config.gridDimY, config.gridDimZ = 1, 1, 1
    config.blockDimX, config.blockDimY, config.blockDimZ = block_threads, 1, 1
    config.sharedMemBytes = shared_bytes
    config.hStream = driver.CUstream(0)
    config.attrs = [attribute]  # copied into the config's own array
    config.numAttrs = 1
    return config


def default_backend() -> str:
    """``$ANYBIT_LAUNCH_BACKEND`` if set, else ``"compiled"``; where that cannot be loaded (no C compiler or
    Python headers to build it), ``"bindings"``, and ``"ctypes"`` where the bindings cannot be either.

    The compiled backend saves ~1.1–1.3 µs a launch over the bindings on the H200 hosts (2026-11-29:
    cuLaunchKernel 4.99 against 6.12 µs, an anybit launch 7.80 against 9.07, a dependent one 7.34 against
    8.63)."""
    chosen, unavailable = backend_choice()
    for reason in unavailable:
        logger.info("launch backend %s", reason)
    return chosen


def backend_choice() -> tuple[str, list[str]]:
    """The backend :func:`default_backend` takes, and why each one tried before it could not be loaded."""
    name = os.environ.get("ANYBIT_LAUNCH_BACKEND", "compiled")
    if name not in BACKENDS:
        raise ValueError(f"ANYBIT_LAUNCH_BACKEND: expected one of {', '.join(BACKENDS)}, got {name!r}")
    unavailable = []
    for candidate in dict.fromkeys((name, "bindings", "ctypes")):
        try:
            launch_backend(candidate)
        except (OSError, ImportError, AttributeError, RuntimeError) as error:
            unavailable.append(f"{candidate} is not available: {error}")
            continue
        return candidate, unavailable
    raise RuntimeError(
        "no launch backend can be loaded: install cuda-python (the [cuda] extra) or a C compiler"
    )


@functools.cache
def launch_backend(name: str) -> LaunchBackend:
    """The :class:`LaunchBackend` ``name``: ``"bindings"`` (cuda.bindings), ``"ctypes"`` (libcuda) or
    ``"compiled"`` (:mod:`anybit.runtime.compiled_launch`; raises ``CompiledLaunchUnavailable`` where it
    cannot be built, ``OSError`` without a CUDA driver)."""
    if name == "compiled":
        from anybit.runtime import compiled_launch

        module = compiled_launch.load()
        dependent = module.driver()  # opens libcuda now (OSError without a driver: another backend is taken)
        return LaunchBackend(
            "compiled",
            module.launch,
            lambda loaded: loaded.handle,
            lambda raw: raw,
            dependent_config=compiled_launch.DependentConfig if dependent else None,
            call_dependent=compiled_launch.dependent_caller(module) if dependent else None,
        )
    if name == "ctypes":
        function = ctypes.CDLL("libcuda.so.1").cuLaunchKernel
        function.restype = ctypes.c_int
        function.argtypes = [
            ctypes.c_void_p,
            *[ctypes.c_uint] * 7,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        return LaunchBackend("ctypes", function, lambda loaded: loaded.handle, lambda raw: raw)
    if name == "bindings":
        from cuda.bindings import driver

        # CUfunction/CUstream objects, not ints: the bindings would wrap an int in a new object every call.
        return LaunchBackend(
            "bindings",
            driver.cuLaunchKernel,
            lambda loaded: loaded.function,
            driver.CUstream,
            dependent_config=dependent_launch_config,
            call_dependent=driver.cuLaunchKernelEx,
        )
    raise ValueError(f"unknown launch backend {name!r}: expected one of {', '.join(BACKENDS)}")


def _or_zero(size):
    """A workspace size (int or run-time expression), 0 for None; never asks an expression for truth."""
    return 0 if size is None else size
