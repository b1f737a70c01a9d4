"""The VM's instruction set: one frozen dataclass per instruction kind, a closed set.

Every instruction records the Python source line it came from (``source``) so that every error can point at
the kernel author's code. Fields named in ``WRITES`` are the tensors an instruction writes; every other tensor
field is read. An instruction that produces a register tensor writes ``output``; with ``out=`` in the
front end
that tensor already exists (the in-place variant of the paper's Table 1), otherwise it is defined here.
Passes, the interpreter and the CUDA backend each handle every class below explicitly (see
``INSTRUCTION_CLASSES``) and raise on anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, ClassVar

from anybit.ir.expr import Expr, Var
from anybit.ir.tensors import GlobalTensor, RegisterTensor, SharedTensor, Tensor

if TYPE_CHECKING:
    from anybit.dtypes import DataType
    from anybit.layout import RegisterLayout

Offsets = tuple  # a tuple of Expr | int, one per tensor dimension
Operand = RegisterTensor | Expr  # element-wise operands: a register tensor or a broadcast scalar


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where in the kernel author's Python source an instruction was written."""

    filename: str
    line: int
    text: str = ""

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}"
        return f"{where}: {self.text.strip()}" if self.text else where


@dataclass(frozen=True, slots=True)
class Instruction:
    """Base of all instructions."""

    WRITES: ClassVar[tuple[str, ...]] = ()

    @property
    def name(self) -> str:
        """snake_case name of the instruction, e.g. ``load_global``."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__.removesuffix("Inst")).lower()


def _source_field():
    return field(default=None, kw_only=True, compare=False)


# ----------------------------------------------------------------------------------------------- tensors
@dataclass(frozen=True, slots=True)
class GlobalViewInst(Instruction):
    """Define ``output`` as a view of global memory starting at ``pointer`` (with the output's layout)."""

    output: GlobalTensor
    pointer: Expr
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class AllocateGlobalInst(Instruction):
    """Allocate ``output`` in the run-time global workspace.

    ``requires_clean``: zero-filled before every launch. ``kept_clean``: zero-filled once, when first
    allocated; the program promises to leave it zero when it ends (counters that :class:`ArriveInst` wraps
    back to 0), so no launch pays for a fill.
    """

    output: GlobalTensor
    requires_clean: bool = False
    kept_clean: bool = False
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class AllocateSharedInst(Instruction):
    """Allocate ``output`` in shared memory (contents undefined until written)."""

    output: SharedTensor
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class SharedSliceInst(Instruction):
    """Define ``output`` as ``tensor[offsets]``: fix the leading dimensions (e.g. one pipeline stage)."""

    output: SharedTensor
    tensor: SharedTensor
    offsets: Offsets
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class FreeSharedInst(Instruction):
    """End the lifetime of a shared tensor so the planner can reuse its bytes."""

    tensor: SharedTensor
    source: SourceLocation | None = _source_field()


@dataclass(frozen=True, slots=True)
class AllocateRegisterInst(Instruction):
    """Define register tensor ``output``, filled with ``init`` (undefined when None)."""

    output: RegisterTensor
    init: int | float | None = None
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class DeclareScalarInst(Instruction):
    """Declare a run-time scalar variable with an initial value (loop-carried scalars)."""

    var: Var
    init: Expr
    source: SourceLocation | None = _source_field()


@dataclass(frozen=True, slots=True)
class AssignScalarInst(Instruction):
    """``var = value`` for a declared scalar."""

    var: Var
    value: Expr
    source: SourceLocation | None = _source_field()


# ---------------------------------------------------------------------------------------------- transfer
@dataclass(frozen=True, slots=True)
class LoadGlobalInst(Instruction):
    """Load the tile of ``output.shape`` at ``offsets`` of ``tensor`` into registers.

    Elements outside the global tensor's shape, or where ``mask`` is false, read as ``other`` — except along
    the dimensions of ``tensor`` listed in ``in_bounds``: there the program promises the tile lies inside (no
    check is generated; the interpreter checks the promise).
    """

    output: RegisterTensor
    tensor: GlobalTensor
    offsets: Offsets
    mask: RegisterTensor | None = None
    other: int | float = 0
    in_bounds: tuple[int, ...] = ()
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class LoadScalarInst(Instruction):
    """``var`` = the integer element ``tensor[index]``, read by every thread (the same value block-wide).

    For values that steer the program but live in device memory: a decode step's position in a CUDA graph,
    read at run time instead of being baked into the launch as an argument. An int64 element is truncated to
    the int32 ``var``.
    """

    var: Var
    tensor: GlobalTensor
    index: Offsets
    source: SourceLocation | None = _source_field()


@dataclass(frozen=True, slots=True)
class StoreGlobalInst(Instruction):
    """Store register tile ``value`` at ``offsets`` of ``tensor``; skips out-of-bounds/masked."""

    tensor: GlobalTensor
    value: RegisterTensor
    offsets: Offsets
    mask: RegisterTensor | None = None
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("tensor",)


@dataclass(frozen=True, slots=True)
class AtomicAddGlobalInst(Instruction):
    """Atomically add register tile ``value`` into ``tensor`` at ``offsets`` (split-K reductions)."""

    tensor: GlobalTensor
    value: RegisterTensor
    offsets: Offsets
    mask: RegisterTensor | None = None
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("tensor",)


@dataclass(frozen=True, slots=True)
class LoadSharedInst(Instruction):
    """Load the tile of ``output.shape`` at ``offsets`` of shared ``tensor`` into registers; with ``rank``,
    from that block of the cluster's copy of ``tensor`` (distributed shared memory, sm_90)."""

    output: RegisterTensor
    tensor: SharedTensor
    offsets: Offsets
    source: SourceLocation | None = _source_field()
    rank: Expr | None = None
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class StoreSharedInst(Instruction):
    """Store register tile ``value`` at ``offsets`` of shared ``tensor``."""

    tensor: SharedTensor
    value: RegisterTensor
    offsets: Offsets
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("tensor",)


@dataclass(frozen=True, slots=True)
class CopyAsyncInst(Instruction):
    """Start copying the tile of ``destination.shape`` at ``offsets`` of ``tensor`` into ``destination``.

    Out-of-bounds elements are zero-filled, except along the dimensions of ``tensor`` listed in
    ``in_bounds``: there the program promises the tile lies inside (no check is generated; the interpreter
    checks the promise); and along those in ``clamp``, where an index past either end reads the nearest
    element inside (the edge row or column). The copy completes at a wait that covers its commit group.
    ``evict`` is a cache hint: None, "evict_first" or "evict_last".
    """

    destination: SharedTensor
    tensor: GlobalTensor
    offsets: Offsets
    evict: str | None = None
    in_bounds: tuple[int, ...] = ()
    clamp: tuple[int, ...] = ()
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("destination",)


@dataclass(frozen=True, slots=True)
class CopyAsyncCommitGroupInst(Instruction):
    """Close the group of copies issued since the last commit."""

    source: SourceLocation | None = _source_field()


@dataclass(frozen=True, slots=True)
class CopyAsyncWaitGroupInst(Instruction):
    """Wait until at most ``n`` committed groups are still in flight."""

    n: int
    source: SourceLocation | None = _source_field()


@dataclass(frozen=True, slots=True)
class CopyAsyncWaitAllInst(Instruction):
    """Wait until every issued copy has completed (committed or not)."""

    source: SourceLocation | None = _source_field()


@dataclass(frozen=True, slots=True)
class LockSemaphoreInst(Instruction):
    """Block until the int32 ``semaphore[index]`` in global memory equals ``value`` (acquire)."""

    semaphore: GlobalTensor
    index: Offsets
    value: Expr
    source: SourceLocation | None = _source_field()


@dataclass(frozen=True, slots=True)
class ReleaseSemaphoreInst(Instruction):
    """Set the int32 ``semaphore[index]`` to ``value`` after all earlier writes are visible (release)."""

    semaphore: GlobalTensor
    index: Offsets
    value: Expr
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("semaphore",)


@dataclass(frozen=True, slots=True)
class ArriveInst(Instruction):
    """``var`` = the arrival order of this block at the int32 ``counter[index]`` shared by ``count`` blocks.

    Block-wide: after a barrier, one thread increments the counter, wrapping to 0 on the ``count``-th
    arrival (so the counter is zero again for the next launch), and every thread gets the value before the
    increment: 0 for the first block to arrive, ``count − 1`` for the last. Release and acquire at device
    scope: every write a block made before arriving is visible to the blocks that arrive after it (the last
    one to arrive sees them all).
    """

    var: Var
    counter: GlobalTensor
    index: Offsets
    count: Expr
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("counter",)


@dataclass(frozen=True, slots=True)
class WaitPriorGridsInst(Instruction):
    """Wait until the grids launched before this one on the stream have completed and their writes are
    visible (``griddepcontrol.wait``; a no-op when the kernel was not launched as a dependent).

    Programmatic dependent launch: a kernel that contains this instruction may be launched while the kernel
    before it in the stream is still running. Before the wait it may only read global memory that the
    preceding kernels do not write, and must not write global memory at all (the verifier checks the
    writes). At most one per program, as a top-level statement of the body.
    """

    source: SourceLocation | None = _source_field()


@dataclass(frozen=True, slots=True)
class AllowDependentGridsInst(Instruction):
    """Let the next kernel in the stream, if launched as a dependent, start before this one ends
    (``griddepcontrol.launch_dependents``): once every block has executed this or exited, its blocks may be
    scheduled; its own wait still waits for this whole grid to complete. Only a hint about when."""

    source: SourceLocation | None = _source_field()


# ----------------------------------------------------------------------------------------------- compute
UNARY_TENSOR_OPS = frozenset(
    {
        "neg",
        "abs",
        "exp",
        "exp2",
        "log",
        "log2",
        "sqrt",
        "rsqrt",
        "sin",
        "cos",
        "tanh",
        "logical_not",
        "bit_not",
    }
)
BINARY_TENSOR_OPS = frozenset(
    {
        "add",
        "sub",
        "mul",
        "div",
        "mod",
        "maximum",
        "minimum",
        "lt",
        "le",
        "gt",
        "ge",
        "eq",
        "ne",
        "logical_and",
        "logical_or",
        "and",
        "or",
        "xor",
        "shl",
        "shr",
    }
)
REDUCE_OPS = frozenset({"sum", "prod", "max", "min"})


@dataclass(frozen=True, slots=True)
class UnaryInst(Instruction):
    """Element-wise ``output = op(operand)``."""

    output: RegisterTensor
    op: str
    operand: RegisterTensor
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class BinaryInst(Instruction):
    """Element-wise ``output = lhs op rhs`` with broadcasting (numpy rules); scalars broadcast everywhere."""

    output: RegisterTensor
    op: str
    lhs: Operand
    rhs: Operand
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class WhereInst(Instruction):
    """Element-wise ``output = on_true if condition else on_false`` with broadcasting."""

    output: RegisterTensor
    condition: Operand
    on_true: Operand
    on_false: Operand
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class CastInst(Instruction):
    """``output = operand`` converted to ``output.dtype`` element-wise (DESIGN §4.1 rounding), same layout.

    With ``subtract`` (unsigned integer operands only): ``output = cast(operand) − subtract`` (broadcast,
    rounded once), where ``subtract`` holds zero points as codes, integers in [0, 2^bits): the code
    generator may then fold the subtraction into the conversion's own (exact: both are small integers).

    With ``exponent`` e ≠ 0: ``output = value(operand) · 2^e``, exactly — every value of the operand's type
    times 2^e is a value of the output type (checked when the kernel is built). A float conversion that
    aligns bits and then re-biases the exponent by a power of two can then skip (part of) that multiply:
    a kernel folds 2^−e into a per-group scale it applies anyway.

    With ``high`` (bit planes): each code is split over two unsigned-integer tensors of the same shape, the
    operand holding its low ``operand.dtype.nbits`` bits and ``high`` the rest: the code is
    ``operand | high << operand.dtype.nbits``, a code of ``code_dtype`` (whose width is the two widths
    summed), and the cast converts that code. The planes' layouts hold the output's elements per thread.
    ``high`` may also be ``uint1`` of the operand's shape plus a trailing axis of h bits (bit b of the code's
    high part at ``high[..., b]``): its layout then places each code's high bits anywhere in the thread's
    registers, e.g. as far apart as the conversion puts them (:func:`high_plane_width`).

    With ``biased`` (integer codes of at most 8 bits to float16/bfloat16, none of the above): ``output =
    value + B``, B a per-element bias that depends only on the types and the element's place in the layouts
    (the same for every such cast) and keeps the result exact (see ``anybit.lang.compute.cast``).
    """

    output: RegisterTensor
    operand: RegisterTensor
    subtract: RegisterTensor | None = None
    exponent: int = 0
    high: RegisterTensor | None = None
    code_dtype: DataType | None = None
    biased: bool = False
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


def high_plane_width(operand: RegisterTensor, high: RegisterTensor) -> int | None:
    """The bits of each code a cast's ``high`` plane holds: its width where it has the operand's shape, h
    where it is ``uint1`` of the operand's shape plus a trailing axis of h bits; None for any other shape."""
    low_shape, shape = tuple(operand.shape), tuple(high.shape)
    if shape == low_shape:
        return high.dtype.nbits
    if shape[:-1] == low_shape and len(shape) == len(low_shape) + 1 and high.dtype.name == "uint1":
        return shape[-1]
    return None


def biased_cast_problem(
    source: DataType, target: DataType, subtracts: bool, exponent: int, planes: bool
) -> str | None:
    """Why a biased cast (:class:`CastInst`'s ``biased``) from ``source`` to ``target`` cannot be, or None."""
    from anybit.dtypes import bfloat16, float16

    if source.kind not in ("int", "uint") or source.nbits > 8:
        return f"takes integer codes of at most 8 bits, got {source.name}"
    if target not in (float16, bfloat16):
        return f"converts to float16 or bfloat16, got {target.name}"
    if subtracts or exponent or planes:
        return "takes no subtract=, exponent= or bit planes (subtract the zero tile's dot instead)"
    return None


@dataclass(frozen=True, slots=True)
class ViewInst(Instruction):
    """Reinterpret each thread's register bits of ``operand`` as ``output`` (same threads and bits)."""

    output: RegisterTensor
    operand: RegisterTensor
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class AssignInst(Instruction):
    """``output = operand`` (same shape; layouts may differ, then values move between threads)."""

    output: RegisterTensor
    operand: RegisterTensor
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class DotInst(Instruction):
    """``output = a @ b + c`` on tensor cores: a [M, K], b [K, N], c and output [M, N], in c's type."""

    output: RegisterTensor
    a: RegisterTensor
    b: RegisterTensor
    c: RegisterTensor
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class DotSharedInst(Instruction):
    """``output = a @ b + c`` with ``b`` read by the tensor cores straight from shared memory (sm_90a
    ``wgmma``, the A operand from registers): a [M, K] in registers, b [K/8, 8, N] in shared memory in the
    tensor cores' core-matrix form (:func:`~anybit.layout.shared_core_matrices`), c and output [M, N]."""

    output: RegisterTensor
    a: RegisterTensor
    b: SharedTensor
    c: RegisterTensor
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class ReduceInst(Instruction):
    """``output = op(operand, dim)`` (sum, prod, max or min), keeping ``dim`` with size 1 when ``keepdim``."""

    output: RegisterTensor
    op: str
    operand: RegisterTensor
    dim: int
    keepdim: bool
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class IndexInst(Instruction):
    """``output[i_0, ..., i_r] = i_dim``: every element holds its own index along ``dim`` (masks, iota)."""

    output: RegisterTensor
    dim: int
    source: SourceLocation | None = _source_field()
    WRITES: ClassVar[tuple[str, ...]] = ("output",)


@dataclass(frozen=True, slots=True)
class AnnotateLayoutInst(Instruction):
    """Require ``tensor`` to have ``layout`` (consumed by layout inference)."""

    tensor: RegisterTensor
    layout: RegisterLayout
    source: SourceLocation | None = _source_field()


# ------------------------------------------------------------------------------------------------ control
@dataclass(frozen=True, slots=True)
class SyncInst(Instruction):
    """Barrier for all threads of the block; makes earlier shared-memory writes visible."""

    source: SourceLocation | None = _source_field()


@dataclass(frozen=True, slots=True)
class ClusterSyncInst(Instruction):
    """Barrier for all threads of every block of the thread-block cluster (sm_90): shared-memory writes
    before it are visible to every block of the cluster after it (``load_shared(..., rank=...)``)."""

    source: SourceLocation | None = _source_field()


@dataclass(frozen=True, slots=True)
class ExitInst(Instruction):
    """End the thread block."""

    source: SourceLocation | None = _source_field()


@dataclass(frozen=True, slots=True)
class PrintInst(Instruction):
    """Print ``message`` and, when given, a register or shared tensor (debugging)."""

    message: str
    tensor: Tensor | None = None
    source: SourceLocation | None = _source_field()


INSTRUCTION_CLASSES: tuple[type[Instruction], ...] = (
    GlobalViewInst,
    AllocateGlobalInst,
    AllocateSharedInst,
    SharedSliceInst,
    FreeSharedInst,
    AllocateRegisterInst,
    DeclareScalarInst,
    AssignScalarInst,
    LoadGlobalInst,
    LoadScalarInst,
    StoreGlobalInst,
    AtomicAddGlobalInst,
    LoadSharedInst,
    StoreSharedInst,
    CopyAsyncInst,
    CopyAsyncCommitGroupInst,
    CopyAsyncWaitGroupInst,
    CopyAsyncWaitAllInst,
    LockSemaphoreInst,
    ReleaseSemaphoreInst,
    ArriveInst,
    WaitPriorGridsInst,
    AllowDependentGridsInst,
    UnaryInst,
    BinaryInst,
    WhereInst,
    CastInst,
    ViewInst,
    AssignInst,
    DotInst,
    DotSharedInst,
    ReduceInst,
    IndexInst,
    AnnotateLayoutInst,
    SyncInst,
    ExitInst,
    PrintInst,
)


def written_tensors(inst: Instruction) -> list[Tensor]:
    """The tensors ``inst`` writes."""
    return [getattr(inst, name) for name in inst.WRITES]


def read_tensors(inst: Instruction) -> list[Tensor]:
    """The tensors ``inst`` reads (every tensor field not in ``WRITES``)."""
    return [
        value
        for f in fields(inst)
        if f.name not in inst.WRITES and isinstance(value := getattr(inst, f.name), Tensor)
    ]


def defined_tensor(inst: Instruction) -> Tensor | None:
    """The tensor that ``inst`` may define (its ``output`` field), if it has one."""
    output = getattr(inst, "output", None)
    return output if isinstance(output, Tensor) else None


def register_operand_tensors(inst: Instruction) -> list[RegisterTensor]:
    """All register tensors mentioned by ``inst`` (read or written)."""
    return [value for f in fields(inst) if isinstance(value := getattr(inst, f.name), RegisterTensor)]


__all__ = [name for name in dir() if name.endswith("Inst")] + [
    "Instruction",
    "SourceLocation",
    "INSTRUCTION_CLASSES",
    "UNARY_TENSOR_OPS",
    "BINARY_TENSOR_OPS",
    "REDUCE_OPS",
    "written_tensors",
    "read_tensors",
    "defined_tensor",
    "register_operand_tensors",
    "Operand",
]
