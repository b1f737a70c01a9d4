"""The verifier: rejects ill-formed programs with errors naming the instruction and its source line.

Checks, per instruction: shapes, dtypes, offsets counts and tile ranks; element-wise broadcasting; ``cast``
keeps the layout; ``view`` keeps the thread count and the bits per thread; ``dot`` operands have the
tensor-core shapes, dtypes and layouts; layouts fit the block's threads. Across instructions: every tensor
and scalar is defined before use on every path (run-time bodies do not leak definitions), and no shared
tensor is read after a write (``store_shared``, or ``copy_async`` not yet waited for) without a ``sync`` in
between, on straight-line paths where that is provable; nothing before ``wait_prior_grids`` touches memory
the previous kernels may still be using (:mod:`anybit.passes.dependent_launch`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from anybit.dtypes import scaling_is_exact
from anybit.ir.errors import VerificationError, where
from anybit.ir.expr import Expr, Var
from anybit.ir.instructions import (
    INSTRUCTION_CLASSES,
    AllocateGlobalInst,
    AllocateRegisterInst,
    AllocateSharedInst,
    AllowDependentGridsInst,
    AnnotateLayoutInst,
    ArriveInst,
    AssignInst,
    AssignScalarInst,
    AtomicAddGlobalInst,
    BinaryInst,
    CastInst,
    ClusterSyncInst,
    CopyAsyncCommitGroupInst,
    CopyAsyncInst,
    CopyAsyncWaitAllInst,
    CopyAsyncWaitGroupInst,
    DeclareScalarInst,
    DotInst,
    DotSharedInst,
    ExitInst,
    FreeSharedInst,
    GlobalViewInst,
    IndexInst,
    Instruction,
    LoadGlobalInst,
    LoadScalarInst,
    LoadSharedInst,
    LockSemaphoreInst,
    PrintInst,
    ReduceInst,
    ReleaseSemaphoreInst,
    SharedSliceInst,
    StoreGlobalInst,
    StoreSharedInst,
    SyncInst,
    UnaryInst,
    ViewInst,
    WaitPriorGridsInst,
    WhereInst,
    biased_cast_problem,
    defined_tensor,
    high_plane_width,
    register_operand_tensors,
)
from anybit.ir.statements import BreakStmt, ForStmt, IfStmt, Program, WhileStmt, instructions
from anybit.ir.tensors import SharedTensor, Tensor
from anybit.layout import reduce
from anybit.passes.dependent_launch import check_dependent_launch

_CHECKS: dict[type, Callable] = {}


def _check(*classes):
    def register(function):
        for cls in classes:
            assert cls not in _CHECKS, f"duplicate verifier check for {cls.__name__}"
            _CHECKS[cls] = function
        return function

    return register


def _fail(inst: Instruction, message: str) -> VerificationError:
    return VerificationError(message, instruction=inst.name, source=inst.source)


def _type(t: Tensor) -> str:
    return f"{t.dtype.name}{list(t.shape)}"


# ------------------------------------------------------------------------------------ per instruction
def _tile(inst, tensor: Tensor, tile_shape, offsets) -> None:
    if len(offsets) != tensor.rank:
        raise _fail(
            inst, f"expected {tensor.rank} offsets for {tensor.name} {_type(tensor)}, got {len(offsets)}"
        )
    if len(tile_shape) > tensor.rank:
        raise _fail(
            inst, f"expected a tile of rank at most {tensor.rank} for {tensor.name}, got {list(tile_shape)}"
        )
    if isinstance(tensor, SharedTensor):  # shared shapes are static: out-of-range tiles are provable
        lead = tensor.rank - len(tile_shape)
        for dim, offset in enumerate(offsets):
            extent = 1 if dim < lead else tile_shape[dim - lead]
            if isinstance(offset, int) and offset + extent > tensor.shape[dim]:
                raise _fail(
                    inst,
                    f"tile {list(tile_shape)} at offsets {list(offsets)} runs past {tensor.name} "
                    f"{_type(tensor)} along dimension {dim}",
                )


def _same_dtype(inst, a: Tensor, b: Tensor) -> None:
    if a.dtype is not b.dtype:
        raise _fail(
            inst, f"expected {a.name} and {b.name} to have one dtype, got {a.dtype.name} and {b.dtype.name}"
        )


def _mask(inst, mask, tile: Tensor) -> None:
    if mask is not None and (mask.dtype.name != "boolean" or tuple(mask.shape) != tuple(tile.shape)):
        raise _fail(inst, f"expected a boolean{list(tile.shape)} mask, got {_type(mask)}")


@_check(GlobalViewInst)
def _global_view(inst: GlobalViewInst, program) -> None:
    pointer_type = getattr(inst.pointer, "type", None)
    if (
        not isinstance(inst.pointer, Var)
        or not hasattr(pointer_type, "dtype")
        or hasattr(pointer_type, "nbits")
    ):
        raise _fail(inst, f"expected a pointer variable, got {inst.pointer!r}")


@_check(
    AllocateGlobalInst,
    AllocateRegisterInst,
    AllocateSharedInst,
    DeclareScalarInst,
    AssignScalarInst,
    CopyAsyncCommitGroupInst,
    CopyAsyncWaitAllInst,
    FreeSharedInst,
    SyncInst,
    ClusterSyncInst,
    ExitInst,
    PrintInst,
    WaitPriorGridsInst,
    AllowDependentGridsInst,
)
def _nothing(inst, program) -> None:
    return None


@_check(IndexInst)
def _index(inst: IndexInst, program) -> None:
    output = inst.output
    if not 0 <= inst.dim < output.rank:
        raise _fail(inst, f"expected a dimension in [0, {output.rank}) of {_type(output)}, got {inst.dim}")
    if not output.dtype.is_integer or output.shape[inst.dim] - 1 > output.dtype.max_value:
        raise _fail(
            inst,
            f"expected an integer tile that holds indices up to {output.shape[inst.dim] - 1}, "
            f"got {_type(output)}",
        )


@_check(SharedSliceInst)
def _shared_slice(inst: SharedSliceInst, program) -> None:
    _tile(inst, inst.tensor, inst.output.shape, inst.offsets)
    if tuple(inst.output.shape) != tuple(inst.tensor.shape[inst.tensor.rank - inst.output.rank :]):
        raise _fail(
            inst,
            f"expected the slice shape to be trailing dimensions of {list(inst.tensor.shape)}, got "
            f"{list(inst.output.shape)}",
        )
    _same_dtype(inst, inst.output, inst.tensor)


@_check(LoadGlobalInst, LoadSharedInst)
def _load(inst, program) -> None:
    if getattr(inst, "rank", None) is not None and program.cluster == (1, 1, 1):
        raise _fail(
            inst,
            f"reads shared tensor {inst.tensor.name} of another block (rank=...) in a kernel without "
            "clusters; set self.attrs.cluster",
        )
    _tile(inst, inst.tensor, inst.output.shape, inst.offsets)
    _same_dtype(inst, inst.output, inst.tensor)
    _mask(inst, getattr(inst, "mask", None), inst.output)
    _dimensions(inst, "in_bounds", getattr(inst, "in_bounds", ()))


def _dimensions(inst, name: str, dims) -> None:
    """``dims`` (an instruction's ``in_bounds`` or ``clamp``) are dimensions of its global tensor."""
    if any(not 0 <= d < inst.tensor.rank for d in dims):
        raise _fail(inst, f"{name} names dimensions {dims} of a rank-{inst.tensor.rank} tensor")


@_check(StoreGlobalInst, AtomicAddGlobalInst, StoreSharedInst)
def _store(inst, program) -> None:
    _tile(inst, inst.tensor, inst.value.shape, inst.offsets)
    _same_dtype(inst, inst.value, inst.tensor)
    _mask(inst, getattr(inst, "mask", None), inst.value)


@_check(CopyAsyncInst)
def _copy_async(inst: CopyAsyncInst, program) -> None:
    _tile(inst, inst.tensor, inst.destination.shape, inst.offsets)
    _same_dtype(inst, inst.destination, inst.tensor)
    for name, dims in (("in_bounds", inst.in_bounds), ("clamp", inst.clamp)):
        _dimensions(inst, name, dims)
    if set(inst.in_bounds) & set(inst.clamp):
        both = sorted(set(inst.in_bounds) & set(inst.clamp))
        raise _fail(inst, f"dimensions {both} are both in_bounds and clamp")


@_check(CopyAsyncWaitGroupInst)
def _wait_group(inst: CopyAsyncWaitGroupInst, program) -> None:
    if not isinstance(inst.n, int) or inst.n < 0:
        raise _fail(inst, f"expected a non-negative int, got {inst.n!r}")


@_check(LockSemaphoreInst, ReleaseSemaphoreInst, ArriveInst)
def _semaphore(inst, program) -> None:
    tensor = inst.counter if isinstance(inst, ArriveInst) else inst.semaphore
    if tensor.dtype.name != "int32" or len(inst.index) != tensor.rank:
        raise _fail(
            inst,
            f"expected an int32 counter tensor indexed by {tensor.rank} ints, got "
            f"{_type(tensor)} indexed by {len(inst.index)}",
        )


@_check(LoadScalarInst)
def _load_scalar(inst: LoadScalarInst, program) -> None:
    tensor = inst.tensor
    if not tensor.dtype.is_integer or tensor.dtype.nbits not in (32, 64) or len(inst.index) != tensor.rank:
        raise _fail(
            inst,
            f"expected an int32 or int64 tensor indexed by {tensor.rank} ints, got {_type(tensor)} "
            f"indexed by {len(inst.index)}",
        )


@_check(UnaryInst)
def _unary(inst: UnaryInst, program) -> None:
    if tuple(inst.output.shape) != tuple(inst.operand.shape):
        raise _fail(
            inst, f"expected the result shape {list(inst.operand.shape)}, got {list(inst.output.shape)}"
        )
    if inst.op != "logical_not":
        _same_dtype(inst, inst.output, inst.operand)


@_check(BinaryInst, WhereInst)
def _elementwise(inst, program) -> None:
    output = inst.output
    for operand in register_operand_tensors(inst):
        if operand is output:
            continue
        pairs = zip(operand.shape, output.shape, strict=False)
        if operand.rank != output.rank or any(a not in (1, b) for a, b in pairs):
            raise _fail(
                inst,
                f"expected operand {operand.name} {_type(operand)} to broadcast to the result "
                f"{_type(output)}",
            )


@_check(CastInst)
def _cast(inst: CastInst, program) -> None:
    if tuple(inst.output.shape) != tuple(inst.operand.shape):
        raise _fail(
            inst, f"expected the result shape {list(inst.operand.shape)}, got {list(inst.output.shape)}"
        )
    planes = [inst.operand] if inst.high is None else [inst.operand, inst.high]
    for plane in planes:
        a, b = plane.layout, inst.output.layout
        if a is not None and plane.rank > inst.output.rank:  # a uint1 plane [..., h]: its bits per element
            a = reduce(a, [plane.rank - 1])
        if a is not None and b is not None and a != b and not a.holds_same_elements(b):
            raise _fail(
                inst, f"expected cast to keep the layout {a} (or to reorder each thread's elements), got {b}"
            )
    source = inst.operand.dtype
    if inst.high is not None:
        source = inst.code_dtype
        high_bits = high_plane_width(inst.operand, inst.high)
        if (
            source is None
            or inst.operand.dtype.kind != "uint"
            or inst.high.dtype.kind != "uint"
            or high_bits is None
            or inst.operand.dtype.nbits + high_bits != source.nbits
        ):
            raise _fail(
                inst,
                f"expected two unsigned bit planes of one shape (or the high one uint1 [..., its bits]) "
                f"whose widths sum to the code type's, got "
                f"{_type(inst.operand)} and {_type(inst.high)} for "
                f"{source.name if source is not None else 'no code type'}",
            )
    if inst.exponent and (
        inst.subtract is not None or not scaling_is_exact(source, inst.output.dtype, inst.exponent)
    ):
        raise _fail(
            inst,
            f"expected exponent={inst.exponent} without subtract and exact for every "
            f"{source.name} value in {inst.output.dtype.name}",
        )
    if inst.biased:
        problem = biased_cast_problem(
            source, inst.output.dtype, inst.subtract is not None, inst.exponent, inst.high is not None
        )
        if problem:
            raise _fail(inst, f"biased=True {problem}")
    subtract = inst.subtract
    if subtract is not None:
        if source.kind != "uint" or subtract.dtype != inst.output.dtype:
            raise _fail(
                inst,
                f"expected unsigned integer codes and subtract in the result type, got "
                f"{source.name} codes and {subtract.dtype.name} zero points",
            )
        if subtract.rank != inst.output.rank or any(
            s not in (1, o) for s, o in zip(subtract.shape, inst.output.shape, strict=True)
        ):
            raise _fail(
                inst,
                f"expected subtract to broadcast to {list(inst.output.shape)}, got {list(subtract.shape)}",
            )


@_check(AssignInst)
def _assign(inst: AssignInst, program) -> None:
    if tuple(inst.output.shape) != tuple(inst.operand.shape):
        raise _fail(
            inst,
            f"expected {inst.output.name} and {inst.operand.name} to have one shape, got "
            f"{list(inst.output.shape)} and {list(inst.operand.shape)}",
        )
    _same_dtype(inst, inst.output, inst.operand)


@_check(ViewInst)
def _view(inst: ViewInst, program) -> None:
    a, b = inst.operand, inst.output
    if a.layout is None or b.layout is None:
        bits_a, bits_b = _numel(a) * a.dtype.nbits, _numel(b) * b.dtype.nbits
        if bits_a != bits_b:
            raise _fail(
                inst,
                f"expected a view to keep the total bits, got {_type(a)} ({bits_a} bits) viewed as "
                f"{_type(b)} ({bits_b} bits)",
            )
        return
    if a.layout.num_threads != b.layout.num_threads:
        raise _fail(
            inst,
            f"expected a view over the same threads, got {a.layout.num_threads} threads for "
            f"{a.name} ({a.layout}) and {b.layout.num_threads} for {b.name} ({b.layout})",
        )
    bits_a, bits_b = a.layout.local_size * a.dtype.nbits, b.layout.local_size * b.dtype.nbits
    if bits_a != bits_b:
        raise _fail(
            inst,
            f"expected the same bits per thread, got {bits_a} for {a.name} ({a.dtype.name} x "
            f"{a.layout.local_size}) and {bits_b} for {b.name} ({b.dtype.name} x "
            f"{b.layout.local_size})",
        )


@_check(DotInst)
def _dot(inst: DotInst, program) -> None:
    from anybit.passes.layout_rules import mma_layouts

    a, b, c, d = inst.a, inst.b, inst.c, inst.output
    batch = tuple(a.shape[:-2])
    if (
        a.rank not in (2, 3)
        or {b.rank, c.rank, d.rank} != {a.rank}
        or tuple(b.shape[:-2]) != batch
        or a.shape[-1] != b.shape[-2]
        or tuple(c.shape) != (*batch, a.shape[-2], b.shape[-1])
        or tuple(d.shape) != tuple(c.shape)
    ):
        raise _fail(
            inst,
            f"expected a [(B,) M, K], b [(B,) K, N], c [(B,) M, N], got a {list(a.shape)}, b "
            f"{list(b.shape)}, c {list(c.shape)}, result {list(d.shape)}",
        )
    _same_dtype(inst, a, b)
    _same_dtype(inst, c, d)
    if a.dtype.is_integer and c.dtype.name != "int32":
        raise _fail(
            inst,
            f"expected an int32 accumulator for {a.dtype.name} operands (the tensor cores sum integer "
            f"products in s32), got {c.dtype.name}; cast the result afterwards",
        )
    layouts = mma_layouts(
        a.shape[-2], b.shape[-1], a.shape[-1], a.dtype, program.num_warps, batch[0] if batch else None
    )
    if isinstance(layouts, str):
        raise _fail(inst, layouts)
    roles = zip((a, b, c, d), (*layouts, layouts[2]), ("A", "B", "C", "C"), strict=True)
    for tensor, expected, role in roles:
        if tensor.layout is not None and tensor.layout != expected:
            raise _fail(
                inst,
                f"operand {tensor.name} has layout {tensor.layout}, incompatible with the "
                f"tensor-core {role} layout {expected} for this tile over {program.num_warps} warps",
            )


@_check(DotSharedInst)
def _dot_shared(inst: DotSharedInst, program) -> None:
    from anybit.layout import shared_core_matrices
    from anybit.passes.layout_rules import mma_atom, mma_layouts, warp_grid

    a, b, c, d = inst.a, inst.b, inst.c, inst.output
    if a.rank != 2 or b.rank != 3 or b.shape[1] != 8 or b.shape[0] * 8 != a.shape[1]:
        raise _fail(inst, f"expected a [M, K] and b [K/8, 8, N], got a {list(a.shape)}, b {list(b.shape)}")
    m, k, n = a.shape[0], a.shape[1], b.shape[2]
    if tuple(c.shape) != (m, n) or tuple(d.shape) != (m, n):
        raise _fail(inst, f"expected c and the result [M={m}, N={n}], got {list(c.shape)}, {list(d.shape)}")
    if a.dtype.name not in ("float16", "bfloat16") or b.dtype is not a.dtype or c.dtype.name != "float32":
        raise _fail(
            inst,
            f"expected float16 or bfloat16 a and b into a float32 c (wgmma), got {a.dtype.name}, "
            f"{b.dtype.name}, {c.dtype.name}",
        )
    _same_dtype(inst, c, d)
    if not 8 <= n <= 256 or n % 8:
        raise _fail(inst, f"expected N of 8 to 256 (a multiple of 8: wgmma's n), got {n}")
    expected = shared_core_matrices(k, n)
    if tuple(b.layout.shape) != expected.shape or b.layout.strides != expected.strides or b.layout.swizzles:
        raise _fail(
            inst,
            f"expected b in core-matrix form {expected} (anybit.layout.shared_core_matrices), got {b.layout}",
        )
    warps = program.num_warps
    grid = warp_grid(m, n, warps, mma_atom(a.dtype))
    if warps % 4 or grid is None or grid[1] != 1:
        raise _fail(
            inst,
            f"expected the block's warps a multiple of 4 (warpgroups), all along M (each warp its own rows "
            f"of a, every warp the whole of b), got {warps} warps over a [{m}, {n}] accumulator",
        )
    layouts = mma_layouts(m, n, k, a.dtype, warps)
    if isinstance(layouts, str):
        raise _fail(inst, layouts)
    for tensor, expected_layout, role in ((a, layouts[0], "A"), (c, layouts[2], "C"), (d, layouts[2], "C")):
        if tensor.layout is not None and tensor.layout != expected_layout:
            raise _fail(
                inst,
                f"operand {tensor.name} has layout {tensor.layout}, incompatible with the tensor-core {role} "
                f"layout {expected_layout} for this tile over {warps} warps",
            )


@_check(ReduceInst)
def _reduce(inst: ReduceInst, program) -> None:
    shape = list(inst.operand.shape)
    if not 0 <= inst.dim < len(shape):
        raise _fail(inst, f"expected a dimension in [0, {len(shape)}), got {inst.dim}")
    if inst.keepdim:
        shape[inst.dim] = 1
    else:
        del shape[inst.dim]
    if list(inst.output.shape) != shape:
        raise _fail(inst, f"expected the result shape {shape}, got {list(inst.output.shape)}")
    _same_dtype(inst, inst.output, inst.operand)


@_check(AnnotateLayoutInst)
def _annotate(inst: AnnotateLayoutInst, program) -> None:
    if tuple(inst.layout.shape) != tuple(inst.tensor.shape):
        raise _fail(inst, f"expected a layout of shape {list(inst.tensor.shape)}, got {inst.layout}")


def _numel(tensor: Tensor) -> int:
    count = 1
    for extent in tensor.shape:
        count *= extent
    return count


missing = [cls.__name__ for cls in INSTRUCTION_CLASSES if cls not in _CHECKS]
assert not missing, f"verifier checks missing for {missing}"


# --------------------------------------------------------------------------------------- def before use
def _expr_vars(value):
    """Variables inside ``value`` (an expression, a tuple of them, or anything else)."""
    if isinstance(value, Var):
        yield value
    elif isinstance(value, tuple):
        for item in value:
            yield from _expr_vars(item)
    elif isinstance(value, Expr) and dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _expr_vars(getattr(value, f.name))


def _check_defined(body: tuple, defined: set, program: Program) -> None:
    defined = set(defined)
    for stmt in body:
        if isinstance(stmt, Instruction):
            output = defined_tensor(stmt)
            declared = stmt.var if isinstance(stmt, (DeclareScalarInst, ArriveInst, LoadScalarInst)) else None
            for f in dataclasses.fields(stmt):
                value = getattr(stmt, f.name)
                if value is declared or (value is output and id(value) not in defined):
                    continue
                used = [value] if isinstance(value, Tensor) else list(_expr_vars(value))
                for item in used:
                    if id(item) not in defined:
                        kind = "tensor" if isinstance(item, Tensor) else "scalar"
                        raise _fail(
                            stmt,
                            f"the {kind} {item.name} is used where it is not defined on every path "
                            "(a value created inside a run-time loop or if does not exist after it; "
                            "create it before, e.g. with self.register_tensor or self.scalar)",
                        )
            if output is not None:
                defined.add(id(output))
            if declared is not None:
                defined.add(id(declared))
            continue
        for value in (getattr(stmt, name, None) for name in ("start", "stop", "step", "condition")):
            for var in _expr_vars(value):
                if id(var) not in defined:
                    raise VerificationError(
                        f"the scalar {var.name} is used where it is not defined on every path",
                        instruction=type(stmt).__name__,
                        source=stmt.source,
                    )
        inner = defined | ({id(stmt.var)} if isinstance(stmt, ForStmt) else set())
        for child in (
            [stmt.body]
            if isinstance(stmt, (ForStmt, WhileStmt))
            else [stmt.then_body, stmt.else_body]
            if isinstance(stmt, IfStmt)
            else []
        ):
            _check_defined(child, inner, program)


# -------------------------------------------------------------------------------------- shared hazards
class _SharedState:
    """Where each shared tensor lives: its root allocation and the slice offsets that lead to it.

    A hazard is reported only where it is provable: a read and an unsynchronised write of the same root whose
    regions are the same (structurally equal slice offsets) or where one of them is the whole tensor. Slices
    with different run-time offsets (pipeline stages ``s[step % 3]`` vs ``s[(step + 2) % 3]``) are not
    provably the same memory, so they are not reported.
    """

    def __init__(self) -> None:
        self.regions: dict[int, tuple[SharedTensor, tuple]] = {}

    def add_slice(self, inst: SharedSliceInst) -> None:
        root, offsets = self.region(inst.tensor)
        self.regions[id(inst.output)] = (root, offsets + tuple(inst.offsets))

    def region(self, tensor: SharedTensor) -> tuple[SharedTensor, tuple]:
        return self.regions.get(id(tensor), (tensor, ()))

    def key(self, tensor: SharedTensor) -> tuple[int, tuple]:
        root, offsets = self.region(tensor)
        return id(root), offsets


def _overlaps(read_key: tuple[int, tuple], write_key: tuple[int, tuple]) -> bool:
    """True when two regions provably share memory (same root; one contains the other by offsets)."""
    (read_root, read_offsets), (write_root, write_offsets) = read_key, write_key
    if read_root != write_root:
        return False
    common = min(len(read_offsets), len(write_offsets))
    return read_offsets[:common] == write_offsets[:common]


def _merge(a: dict | None, b: dict | None) -> dict | None:
    if a is None:
        return b
    if b is None:
        return a
    return {key: value for key, value in a.items() if key in b}


def _hazards(body: tuple, pending: dict | None, shared: _SharedState) -> dict | None:
    """Walk ``body`` from state ``pending``; return the state at its end (None when it cannot be reached)."""
    if pending is None:
        return None
    pending = dict(pending)
    for stmt in body:
        if isinstance(stmt, SharedSliceInst):
            shared.add_slice(stmt)
        elif isinstance(stmt, StoreSharedInst):
            pending[shared.key(stmt.tensor)] = ("written", stmt)
        elif isinstance(stmt, CopyAsyncInst):
            pending[shared.key(stmt.destination)] = ("async", stmt)
        elif isinstance(stmt, (CopyAsyncWaitGroupInst, CopyAsyncWaitAllInst)):
            pending = {key: ("written", inst) for key, (_, inst) in pending.items()}
        elif isinstance(stmt, (SyncInst, ClusterSyncInst)):
            pending = {key: value for key, value in pending.items() if value[0] == "async"}
        elif isinstance(stmt, LoadSharedInst) and (
            conflicts := [value for key, value in pending.items() if _overlaps(shared.key(stmt.tensor), key)]
        ):
            kind, writer = conflicts[0]
            if kind == "written":
                barrier = "cluster_sync" if stmt.rank is not None else "sync"
                fix = f"add self.{barrier}() between them"
            else:
                fix = "wait for it (self.copy_async_wait_group / copy_async_wait_all) and then self.sync()"
            raise _fail(
                stmt,
                f"reads shared tensor {stmt.tensor.name} after `{writer.name}` at {where(writer.source)} "
                f"wrote it with no sync between them; {fix}",
            )
        elif isinstance(stmt, (BreakStmt, ExitInst)):
            return None
        elif isinstance(stmt, IfStmt):
            pending = _merge(
                _hazards(stmt.then_body, pending, shared), _hazards(stmt.else_body, pending, shared)
            )
        elif isinstance(stmt, (ForStmt, WhileStmt)):
            pending = _merge(pending, _hazards(stmt.body, pending, shared))
        if pending is None:
            return None
    return pending


# ------------------------------------------------------------------------------------------------ entry
def verify(program: Program, *, require_layouts: bool = False) -> Program:
    """Check ``program``; raise :class:`VerificationError` on the first problem; return it unchanged.

    With ``require_layouts`` every register tensor must have a layout (true after layout inference).
    """
    for inst in instructions(program.body):
        check = _CHECKS.get(type(inst))
        if check is None:
            raise VerificationError(f"unknown instruction class {type(inst).__name__}", source=inst.source)
        check(inst, program)
        for tensor in register_operand_tensors(inst):
            if tensor.layout is None:
                if require_layouts:
                    raise _fail(inst, f"register tensor {tensor.name} has no layout after layout inference")
                continue
            if tensor.layout.num_threads != program.num_threads:
                raise _fail(
                    inst,
                    f"register tensor {tensor.name} has layout {tensor.layout} over "
                    f"{tensor.layout.num_threads} threads, expected the block's "
                    f"{program.num_threads} threads ({program.num_warps} warps)",
                )
            if tuple(tensor.layout.shape) != tuple(tensor.shape):
                raise _fail(
                    inst,
                    f"register tensor {tensor.name} {_type(tensor)} has layout {tensor.layout} "
                    f"of shape {list(tensor.layout.shape)}",
                )
    for var, divisor in program.divisibility:
        if not any(var is param for param in program.params) or not var.dtype.is_integer or divisor < 1:
            raise VerificationError(
                f"divisibility fact {var!r} % {divisor} == 0: expected a positive divisor of a run-time "
                "integer parameter of the program"
            )
    _check_defined(program.body, {id(p) for p in program.params}, program)
    _hazards(program.body, {}, _SharedState())
    check_dependent_launch(program)
    return program
