"""Tensors in the three memory scopes and the instructions that move data between them, for kernel authors.

Tiles: a load or store of a tile of rank r from/to a tensor of rank R >= r takes R offsets; the tile covers
the last r dimensions starting at the offsets, and the leading R - r offsets index single positions (so a
[K/BK, N/BN, bytes] tensor yields a 1-D tile of bytes with offsets [bk, bn, 0]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from anybit.dtypes import DataType, int32
from anybit.dtypes import dtype as resolve_dtype
from anybit.ir.expr import Expr, PointerType, Var, as_expr
from anybit.ir.instructions import (
    AllocateGlobalInst,
    AllocateRegisterInst,
    AllocateSharedInst,
    AllowDependentGridsInst,
    AnnotateLayoutInst,
    ArriveInst,
    AtomicAddGlobalInst,
    ClusterSyncInst,
    CopyAsyncCommitGroupInst,
    CopyAsyncInst,
    CopyAsyncWaitAllInst,
    CopyAsyncWaitGroupInst,
    DeclareScalarInst,
    ExitInst,
    FreeSharedInst,
    GlobalViewInst,
    LoadGlobalInst,
    LoadScalarInst,
    LoadSharedInst,
    LockSemaphoreInst,
    PrintInst,
    ReleaseSemaphoreInst,
    SharedSliceInst,
    StoreGlobalInst,
    StoreSharedInst,
    SyncInst,
    WaitPriorGridsInst,
)
from anybit.ir.tensors import GlobalTensor, RegisterTensor, SharedTensor, Tensor
from anybit.lang.builder import Builder, current_builder
from anybit.lang.compute import check_register, new_register


def _dtype(builder: Builder, value, instruction: str) -> DataType:
    try:
        return resolve_dtype(value)
    except (TypeError, ValueError, KeyError) as error:
        raise builder.error(f"expected a data type, got {value!r} ({error})", instruction) from None


def _static_shape(builder: Builder, shape, instruction: str) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    for extent in shape:
        if isinstance(extent, bool) or not isinstance(extent, int) or extent < 1:
            raise builder.error(
                f"expected a shape of positive compile-time ints, got {list(shape)}", instruction
            )
    return shape


def _dynamic_shape(builder: Builder, shape, instruction: str) -> tuple:
    shape = (shape,) if isinstance(shape, (int, Expr)) else tuple(shape)
    for extent in shape:
        if (
            isinstance(extent, bool)
            or not isinstance(extent, (int, Expr))
            or (isinstance(extent, int) and extent < 1)
        ):
            raise builder.error(
                f"expected a shape of positive ints or run-time int scalars, got {list(shape)}", instruction
            )
    return shape


def _offsets(builder: Builder, offsets, tensor: Tensor, instruction: str) -> tuple:
    if offsets is None:
        return tuple(0 for _ in tensor.shape)
    offsets = (offsets,) if isinstance(offsets, (int, Expr)) else tuple(offsets)
    if len(offsets) != tensor.rank:
        raise builder.error(
            f"expected {tensor.rank} offsets for {tensor.name} of shape {list(tensor.shape)}, "
            f"got {len(offsets)}",
            instruction,
        )
    for offset in offsets:
        if isinstance(offset, bool) or not isinstance(offset, (int, Expr)):
            raise builder.error(f"expected int or run-time int offsets, got {offset!r}", instruction)
    return offsets


def _tile_fits(builder: Builder, tile_shape: Sequence[int], tensor: Tensor, instruction: str) -> None:
    if len(tile_shape) > tensor.rank:
        raise builder.error(
            f"expected a tile of rank at most {tensor.rank} (the rank of {tensor.name}), got "
            f"shape {list(tile_shape)}",
            instruction,
        )


def _mask(builder: Builder, mask, shape: Sequence[int], instruction: str) -> RegisterTensor | None:
    if mask is None:
        return None
    check_register(builder, mask, instruction, "mask")
    if mask.dtype.name != "boolean" or tuple(mask.shape) != tuple(shape):
        raise builder.error(
            f"expected a boolean{list(shape)} mask, got {mask.dtype.name}{list(mask.shape)}", instruction
        )
    return mask


# ------------------------------------------------------------------------------------------- creation
def global_view(pointer, dtype, shape, strides=None) -> GlobalTensor:
    """A global tensor over the memory at ``pointer`` (row-major unless ``strides`` are given)."""
    from anybit.layout import global_row_major, global_strided

    builder = current_builder()
    if not (isinstance(pointer, Expr) and isinstance(getattr(pointer, "type", None), PointerType)):
        raise builder.error(
            f"expected a pointer parameter (annotated anybit.ptr(dtype)), got {pointer!r}", "global_view"
        )
    dtype = pointer.type.dtype if dtype is None else _dtype(builder, dtype, "global_view")
    shape = _dynamic_shape(builder, shape, "global_view")
    if strides is not None and len(tuple(strides)) != len(shape):
        raise builder.error(f"expected {len(shape)} strides, got {len(tuple(strides))}", "global_view")
    layout = global_row_major(*shape) if strides is None else global_strided(shape, tuple(strides))
    tensor = GlobalTensor(builder.fresh_name("g"), dtype, shape, layout)
    builder.auto_named.add(id(tensor))
    builder.emit(GlobalViewInst(tensor, pointer, source=builder.location()))
    return tensor


def global_tensor(dtype, shape, requires_clean: bool = False, kept_clean: bool = False) -> GlobalTensor:
    """A row-major tensor in the run-time global workspace.

    ``requires_clean`` zero-fills it before every launch (a fill the launch waits for). ``kept_clean``
    zero-fills it once, when the workspace is first allocated, on the program's promise that every launch
    leaves it zero (the interpreter checks the promise): counters used with :func:`arrive` are such.
    """
    from anybit.layout import global_row_major

    builder = current_builder()
    dtype = _dtype(builder, dtype, "global_tensor")
    shape = _dynamic_shape(builder, shape, "global_tensor")
    tensor = GlobalTensor(builder.fresh_name("g"), dtype, shape, global_row_major(*shape))
    builder.auto_named.add(id(tensor))
    builder.emit(
        AllocateGlobalInst(tensor, bool(requires_clean), bool(kept_clean), source=builder.location())
    )
    return tensor


def shared_tensor(dtype, shape, layout=None) -> SharedTensor:
    """A tensor in shared memory (row-major unless ``layout`` is given); contents undefined until written."""
    from anybit.layout import shared_row_major

    builder = current_builder()
    dtype = _dtype(builder, dtype, "shared_tensor")
    shape = _static_shape(builder, shape, "shared_tensor")
    if layout is None:
        layout = shared_row_major(*shape)
    elif tuple(layout.shape) != shape:
        raise builder.error(f"expected a layout of shape {list(shape)}, got {layout!r}", "shared_tensor")
    tensor = SharedTensor(builder.fresh_name("s"), dtype, shape, layout)
    builder.auto_named.add(id(tensor))
    builder.emit(AllocateSharedInst(tensor, source=builder.location()))
    return tensor


def register_tensor(dtype, shape, layout=None, init=None) -> RegisterTensor:
    """A register tensor, filled with ``init`` when given; its layout is inferred when not given."""
    builder = current_builder()
    dtype = _dtype(builder, dtype, "register_tensor")
    shape = _static_shape(builder, shape, "register_tensor")
    if layout is not None and tuple(layout.shape) != shape:
        raise builder.error(
            f"expected a layout of shape {list(shape)}, got {layout!r} of shape {list(layout.shape)}",
            "register_tensor",
        )
    if init is not None and not isinstance(init, (int, float)):
        raise builder.error(f"expected a Python number as init, got {init!r}", "register_tensor")
    tensor = new_register(builder, dtype, shape, layout, hint="r")
    builder.emit(AllocateRegisterInst(tensor, init, source=builder.location()))
    return tensor


def scalar(value, dtype=int32) -> Var:
    """Declare a run-time scalar variable (it may be reassigned inside run-time loops and ifs)."""
    builder = current_builder()
    dtype = _dtype(builder, dtype, "scalar")
    if isinstance(value, Tensor) or not isinstance(value, (Expr, int, float, bool)):
        raise builder.error(f"expected a scalar initial value, got {value!r}", "scalar")
    var = Var(builder.fresh_name("v"), dtype)
    builder.auto_named.add(id(var))
    builder.declared_scalars.add(id(var))
    builder.emit(DeclareScalarInst(var, as_expr(value), source=builder.location()))
    return var


def assume_divisible(value: Var, divisor: int) -> None:
    """Declare that the run-time integer parameter ``value`` is always a multiple of ``divisor``.

    Code generation may then prove alignment (e.g. 16-byte vector loads of rows whose length is ``value``);
    every executor checks the fact against the arguments before running and refuses a launch that breaks it.
    Declaring it twice keeps the least common multiple.
    """
    builder = current_builder()
    params = builder.params
    if not isinstance(value, Var) or not any(value is p for p in params) or not value.dtype.is_integer:
        raise builder.error(
            f"expected a run-time integer parameter of the kernel (e.g. anybit.int32), got {value!r}",
            "assume_divisible",
        )
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise builder.error(f"expected a positive int divisor, got {divisor!r}", "assume_divisible")
    builder.divisibility[value] = math.lcm(builder.divisibility.get(value, 1), divisor)


def shared_slice(tensor: SharedTensor, index) -> SharedTensor:
    """``tensor[i, ...]``: the sub-tensor at fixed leading indices (a pipeline stage, say)."""
    from anybit.layout import SharedLayout, shared_row_major

    builder = current_builder()
    index = index if isinstance(index, tuple) else (index,)
    if not 1 <= len(index) < tensor.rank or any(isinstance(i, (slice, Tensor)) for i in index):
        raise builder.error(
            f"expected 1 to {tensor.rank - 1} leading int indices for {tensor.name} of shape "
            f"{list(tensor.shape)}, got {index!r}",
            "shared_slice",
        )
    fixed = len(index)
    sub_shape = tuple(tensor.shape[fixed:])
    layout = tensor.layout
    if layout.swizzles and any(s.dim < fixed or s.by_dim < fixed for s in layout.swizzles):
        raise builder.error(
            f"cannot slice {tensor.name}: its layout swizzles the indexed dimensions", "shared_slice"
        )
    from anybit.layout import XorSwizzle

    swizzles = tuple(
        XorSwizzle(s.dim - fixed, s.by_dim - fixed, s.shift, s.bits, s.base) for s in layout.swizzles
    )
    sub_layout = SharedLayout(sub_shape, tuple(layout.strides[fixed:]), swizzles)
    if sub_layout == shared_row_major(*sub_shape):
        sub_layout = shared_row_major(*sub_shape)
    output = SharedTensor(builder.fresh_name(f"{tensor.name}_slice"), tensor.dtype, sub_shape, sub_layout)
    builder.auto_named.add(id(output))
    offsets = (*index, *(0 for _ in sub_shape))
    builder.emit(SharedSliceInst(output, tensor, tuple(offsets), source=builder.location()))
    return output


def free_shared(tensor: SharedTensor) -> None:
    """End the lifetime of a shared tensor."""
    builder = current_builder()
    if not isinstance(tensor, SharedTensor):
        raise builder.error(f"expected a shared tensor, got {tensor!r}", "free_shared")
    builder.emit(FreeSharedInst(tensor, source=builder.location()))


# ------------------------------------------------------------------------------------------- transfer
def load_global(
    tensor: GlobalTensor,
    offsets,
    shape,
    layout=None,
    mask=None,
    other=0,
    in_bounds: bool | Sequence[int] = (),
) -> RegisterTensor:
    """Load the tile of ``shape`` at ``offsets``; out-of-bounds or masked-off elements read as ``other``.

    ``in_bounds`` (True for every dimension, or the dimensions of ``tensor`` by index) promises that the tile
    lies inside ``tensor`` along those dimensions, as :func:`copy_async`'s does: no bounds check is generated
    there (a compare and a select per vector saved in a hot loop). The interpreter verifies the promise and
    raises where it is broken; the GPU reads whatever lies there.
    """
    builder = current_builder()
    if not isinstance(tensor, GlobalTensor):
        raise builder.error(f"expected a global tensor, got {tensor!r}", "load_global")
    shape = _static_shape(builder, shape, "load_global")
    _tile_fits(builder, shape, tensor, "load_global")
    offsets = _offsets(builder, offsets, tensor, "load_global")
    if layout is not None and tuple(layout.shape) != shape:
        raise builder.error(f"expected a layout of shape {list(shape)}, got {layout!r}", "load_global")
    promised = _dimension_set(builder, in_bounds, tensor.rank, "in_bounds", "load_global")
    output = new_register(builder, tensor.dtype, shape, layout)
    builder.emit(
        LoadGlobalInst(
            output,
            tensor,
            offsets,
            _mask(builder, mask, shape, "load_global"),
            other,
            promised,
            source=builder.location(),
        )
    )
    return output


def _store(inst_class, name: str, tensor: GlobalTensor, value: RegisterTensor, offsets, mask) -> None:
    builder = current_builder()
    if not isinstance(tensor, GlobalTensor):
        raise builder.error(f"expected a global tensor, got {tensor!r}", name)
    check_register(builder, value, name, "the value")
    if value.dtype is not tensor.dtype:
        raise builder.error(
            f"expected a {tensor.dtype.name} value for {tensor.name}, got {value.dtype.name}; "
            "convert it with self.cast",
            name,
        )
    _tile_fits(builder, value.shape, tensor, name)
    offsets = _offsets(builder, offsets, tensor, name)
    builder.emit(
        inst_class(tensor, value, offsets, _mask(builder, mask, value.shape, name), source=builder.location())
    )


def load_scalar(tensor: GlobalTensor, index) -> Var:
    """The integer element ``tensor[index]`` as a run-time int32 scalar, the same in every thread.

    For values in device memory that steer the program (loop bounds, offsets, view shapes): a decode step's
    position, which a CUDA graph cannot pass as an argument because it changes every replay. Read it after
    :func:`wait_prior_grids` when a previous kernel writes it.
    """
    builder = current_builder()
    integer = isinstance(tensor, GlobalTensor) and tensor.dtype.is_integer
    if not integer or tensor.dtype.nbits not in (32, 64):
        raise builder.error(
            f"expected a global tensor of int32 or int64, got {tensor!r}; view the memory with "
            "global_view(pointer, anybit.int32 or anybit.int64, shape)",
            "load_scalar",
        )
    index = _offsets(builder, index, tensor, "load_scalar")
    var = Var(builder.fresh_name("loaded"), int32)
    builder.auto_named.add(id(var))
    builder.declared_scalars.add(id(var))
    builder.emit(LoadScalarInst(var, tensor, index, source=builder.location()))
    return var


def store_global(tensor: GlobalTensor, value: RegisterTensor, offsets, mask=None) -> None:
    """Store register tile ``value`` at ``offsets`` (out-of-bounds and masked-off elements are skipped)."""
    _store(StoreGlobalInst, "store_global", tensor, value, offsets, mask)


def atomic_add(tensor: GlobalTensor, value: RegisterTensor, offsets, mask=None) -> None:
    """Atomically add register tile ``value`` into ``tensor`` at ``offsets``."""
    _store(AtomicAddGlobalInst, "atomic_add_global", tensor, value, offsets, mask)


def load_shared(tensor: SharedTensor, offsets=None, shape=None, layout=None, rank=None) -> RegisterTensor:
    """Load the tile of ``shape`` (default: the whole tensor) at ``offsets`` of a shared tensor; with
    ``rank`` (an int expression), from the copy of the tensor that block of the thread-block cluster holds
    (distributed shared memory: after a ``cluster_sync`` that follows its writes, and before one that the
    owner passes before it exits or writes again)."""
    builder = current_builder()
    if not isinstance(tensor, SharedTensor):
        raise builder.error(f"expected a shared tensor, got {tensor!r}", "load_shared")
    shape = tuple(tensor.shape) if shape is None else _static_shape(builder, shape, "load_shared")
    _tile_fits(builder, shape, tensor, "load_shared")
    offsets = _offsets(builder, offsets, tensor, "load_shared")
    if layout is not None and tuple(layout.shape) != shape:
        raise builder.error(f"expected a layout of shape {list(shape)}, got {layout!r}", "load_shared")
    output = new_register(builder, tensor.dtype, shape, layout)
    remote = None if rank is None else as_expr(rank)
    if remote is not None and not remote.dtype.is_integer:
        raise builder.error(f"expected an integer block rank, got {rank!r}", "load_shared")
    builder.emit(LoadSharedInst(output, tensor, offsets, source=builder.location(), rank=remote))
    return output


def store_shared(tensor: SharedTensor, value: RegisterTensor, offsets=None) -> None:
    """Store register tile ``value`` into a shared tensor at ``offsets`` (default: the origin)."""
    builder = current_builder()
    if not isinstance(tensor, SharedTensor):
        raise builder.error(f"expected a shared tensor, got {tensor!r}", "store_shared")
    check_register(builder, value, "store_shared", "the value")
    if value.dtype is not tensor.dtype:
        raise builder.error(
            f"expected a {tensor.dtype.name} value for {tensor.name}, got {value.dtype.name}", "store_shared"
        )
    _tile_fits(builder, value.shape, tensor, "store_shared")
    offsets = _offsets(builder, offsets, tensor, "store_shared")
    builder.emit(StoreSharedInst(tensor, value, offsets, source=builder.location()))


def copy_async(
    source: GlobalTensor,
    destination: SharedTensor,
    offsets,
    evict: str | None = None,
    in_bounds: bool | Sequence[int] = (),
    clamp: bool | Sequence[int] = (),
) -> None:
    """Start copying the tile of ``destination.shape`` at ``offsets`` of ``source`` into shared memory.

    Elements outside ``source`` read as zero. ``in_bounds`` (True for every dimension, or the dimensions of
    ``source`` by index) promises that the tile lies inside ``source`` along those dimensions: the generated
    code then neither checks nor zero-fills there (a check per copy and dimension saved in a hot loop). The
    interpreter verifies the promise and raises where it is broken; the GPU does not. ``clamp`` (the same
    forms) makes an index past either end of those dimensions read the nearest element inside instead of
    zero: no zero-fill select either, for tiles whose extra rows are never used (a 16-row MMA tile of a
    matrix with fewer rows). A dimension cannot be both; clamped dimensions must not be empty.
    """
    builder = current_builder()
    if not isinstance(source, GlobalTensor) or not isinstance(destination, SharedTensor):
        raise builder.error(
            f"expected a global source and a shared destination, got {source!r} and {destination!r}",
            "copy_async",
        )
    if source.dtype is not destination.dtype:
        raise builder.error(
            f"expected the same dtype, got {source.dtype.name} and {destination.dtype.name}", "copy_async"
        )
    if evict not in (None, "evict_first", "evict_last"):
        raise builder.error(
            f"expected evict None, 'evict_first' or 'evict_last', got {evict!r}", "copy_async"
        )
    _tile_fits(builder, destination.shape, source, "copy_async")
    offsets = _offsets(builder, offsets, source, "copy_async")
    promised = _dimension_set(builder, in_bounds, source.rank, "in_bounds")
    clamped = _dimension_set(builder, clamp, source.rank, "clamp")
    if set(promised) & set(clamped):
        raise builder.error(
            f"dimensions {sorted(set(promised) & set(clamped))} are both promised in bounds and clamped; "
            "name each in one of in_bounds and clamp",
            "copy_async",
        )
    builder.emit(
        CopyAsyncInst(destination, source, offsets, evict, promised, clamped, source=builder.location())
    )


def _dimension_set(builder, value, rank: int, argument: str, where: str = "copy_async") -> tuple[int, ...]:
    """``value`` (True: every dimension; False or (): none; else dimension indices) as sorted indices."""
    if value is True:
        return tuple(range(rank))
    if value is False:
        return ()
    try:
        dims = tuple(sorted(set(value)))
    except TypeError:
        dims = None
    if dims is None or any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < rank for d in dims):
        raise builder.error(
            f"expected {argument} True or dimension indices in [0, {rank}), got {value!r}", where
        )
    return dims


def copy_async_commit_group() -> None:
    """Close the group of async copies issued since the last commit."""
    builder = current_builder()
    builder.emit(CopyAsyncCommitGroupInst(source=builder.location()))


def copy_async_wait_group(n: int) -> None:
    """Wait until at most ``n`` committed groups of async copies are in flight."""
    builder = current_builder()
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise builder.error(f"expected a non-negative compile-time int, got {n!r}", "copy_async_wait_group")
    builder.emit(CopyAsyncWaitGroupInst(n, source=builder.location()))


def copy_async_wait_all() -> None:
    """Wait until every issued async copy has completed."""
    builder = current_builder()
    builder.emit(CopyAsyncWaitAllInst(source=builder.location()))


def _semaphore(inst_class, name: str, tensor: GlobalTensor, index, value) -> None:
    builder = current_builder()
    if not isinstance(tensor, GlobalTensor) or tensor.dtype is not int32:
        raise builder.error(f"expected an int32 global tensor of semaphores, got {tensor!r}", name)
    index = _offsets(builder, index, tensor, name)
    if isinstance(value, Tensor) or not isinstance(value, (int, Expr)):
        raise builder.error(f"expected an int value, got {value!r}", name)
    builder.emit(inst_class(tensor, index, as_expr(value), source=builder.location()))


def lock_semaphore(tensor: GlobalTensor, index, value) -> None:
    """Wait until ``tensor[index] == value`` (acquire)."""
    _semaphore(LockSemaphoreInst, "lock_semaphore", tensor, index, value)


def release_semaphore(tensor: GlobalTensor, index, value) -> None:
    """Set ``tensor[index] = value`` once earlier writes are visible (release)."""
    _semaphore(ReleaseSemaphoreInst, "release_semaphore", tensor, index, value)


def arrive(tensor: GlobalTensor, index, count) -> Var:
    """Arrive at the int32 counter ``tensor[index]`` shared by ``count`` blocks; returns the arrival order.

    The result is the same for every thread of the block: 0 for the first block to arrive, ``count − 1`` for
    the last, which then sees every write the other blocks made before arriving (release/acquire at device
    scope). The ``count``-th arrival wraps the counter back to 0, so a counter every launch arrives at
    ``count`` times stays clean (allocate it with ``global_tensor(..., kept_clean=True)``). The usual use is
    a split reduction without waiting: each block writes its partial result, arrives, and only the last one
    (``arrival == count - 1``) combines them.
    """
    builder = current_builder()
    if not isinstance(tensor, GlobalTensor) or tensor.dtype is not int32:
        raise builder.error(f"expected an int32 global tensor of counters, got {tensor!r}", "arrive")
    index = _offsets(builder, index, tensor, "arrive")
    if isinstance(count, bool) or isinstance(count, Tensor) or not isinstance(count, (int, Expr)):
        raise builder.error(f"expected an int count of blocks, got {count!r}", "arrive")
    if isinstance(count, int) and count < 1:
        raise builder.error(f"expected at least 1 block to arrive, got {count}", "arrive")
    var = Var(builder.fresh_name("arrival"), int32)
    builder.auto_named.add(id(var))
    builder.declared_scalars.add(id(var))
    builder.emit(ArriveInst(var, tensor, index, as_expr(count), source=builder.location()))
    return var


# ------------------------------------------------------------------------------ programmatic dependent launch
def wait_prior_grids() -> None:
    """Wait until the kernels before this one in the stream have completed and their writes are visible.

    A kernel that calls this is launched as a *dependent* on sm_90+ (programmatic stream serialization): it
    may start while the previous kernel is still running, so the work before the wait (index math, async
    copies of weights) overlaps that kernel's tail. The contract: before the wait the kernel may only read
    global memory that the preceding kernels in the stream do not write (weights, not activations), and
    must not write global memory at all. The verifier rejects global writes and workspace accesses before
    the wait. Call it once, as a top-level statement of the kernel (not inside a run-time loop or if). On
    older architectures, and in the interpreter, which runs kernels one after another, it does nothing.
    """
    builder = current_builder()
    builder.emit(WaitPriorGridsInst(source=builder.location()))


def allow_dependent_grids() -> None:
    """Let the next kernel in the stream start now if it waits with :func:`wait_prior_grids`.

    A scheduling hint: the next kernel's blocks may start once every block of this one has called this or
    exited, and its wait still waits for this kernel to complete, so calling it anywhere is correct. Call it
    where the rest of this kernel is short (after a main loop), so the next kernel's prologue overlaps it.
    Does nothing before sm_90 and in the interpreter.
    """
    builder = current_builder()
    builder.emit(AllowDependentGridsInst(source=builder.location()))


# ---------------------------------------------------------------------------------------------- misc
def sync() -> None:
    """Barrier for the block's threads (makes shared-memory writes visible)."""
    builder = current_builder()
    builder.emit(SyncInst(source=builder.location()))


def cluster_sync() -> None:
    """Barrier for every thread of every block of the thread-block cluster (``self.attrs.cluster``):
    shared-memory writes before it are visible to the cluster's blocks after it."""
    builder = current_builder()
    builder.emit(ClusterSyncInst(source=builder.location()))


def exit_block() -> None:
    """End the thread block."""
    builder = current_builder()
    builder.emit(ExitInst(source=builder.location()))


def print_value(value, tensor=None) -> None:
    """Print a message and/or a register or shared tensor."""
    builder = current_builder()
    if isinstance(value, Tensor) and tensor is None:
        value, tensor = f"{value.name}:", value
    if not isinstance(value, str) or (
        tensor is not None and not isinstance(tensor, (RegisterTensor, SharedTensor))
    ):
        raise builder.error(
            f"expected a message and optionally a register or shared tensor, got {value!r}, {tensor!r}",
            "print",
        )
    builder.emit(PrintInst(value, tensor, source=builder.location()))


def annotate_layout(tensor: RegisterTensor, layout) -> None:
    """Require ``tensor`` to get ``layout`` from layout inference."""
    from anybit.layout import RegisterLayout

    builder = current_builder()
    check_register(builder, tensor, "annotate_layout", "the tensor")
    if not isinstance(layout, RegisterLayout) or tuple(layout.shape) != tuple(tensor.shape):
        raise builder.error(
            f"expected a register layout of shape {list(tensor.shape)}, got {layout!r}", "annotate_layout"
        )
    builder.emit(AnnotateLayoutInst(tensor, layout, source=builder.location()))
