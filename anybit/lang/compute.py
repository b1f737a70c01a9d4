"""Register-tensor computation for kernel authors: element-wise ops, casts, views, dot, reductions.

Every function emits one instruction through the active builder and returns the result tensor (a new one, or
``out`` when given: the in-place variant of the paper's Table 1). Layouts of new tensors are left to layout
inference unless they follow directly (a cast keeps its operand's layout).
"""

from __future__ import annotations

from collections.abc import Sequence

from anybit.dtypes import DataType, boolean, scaling_is_exact
from anybit.dtypes import dtype as resolve_dtype
from anybit.ir.expr import BINARY_OPS, UNARY_OPS, Expr, ScalarCast, as_expr, binary, unary
from anybit.ir.instructions import (
    BINARY_TENSOR_OPS,
    UNARY_TENSOR_OPS,
    AssignInst,
    BinaryInst,
    CastInst,
    DotInst,
    DotSharedInst,
    IndexInst,
    ReduceInst,
    UnaryInst,
    ViewInst,
    WhereInst,
    biased_cast_problem,
    high_plane_width,
)
from anybit.ir.tensors import RegisterTensor, SharedTensor, Tensor
from anybit.lang.builder import Builder, current_builder

COMPARISONS = frozenset({"lt", "le", "gt", "ge", "eq", "ne"})
LOGICAL = frozenset({"logical_and", "logical_or", "logical_not"})
FLOAT_ONLY = frozenset({"exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos", "tanh"})
INTEGER_ONLY = frozenset({"and", "or", "xor", "shl", "shr", "bit_not"})
# Element-wise ops whose scalar-only form is an expression.
_SCALAR_BINARY = {"maximum": "max", "minimum": "min"}


def new_register(
    builder: Builder, dtype: DataType, shape: Sequence[int], layout=None, hint: str = "t"
) -> RegisterTensor:
    """A fresh register tensor, auto-named (it takes the kernel variable's name when assigned)."""
    tensor = RegisterTensor(builder.fresh_name(hint), dtype, tuple(int(d) for d in shape), layout)
    builder.auto_named.add(id(tensor))
    return tensor


def check_register(builder: Builder, value, instruction: str, what: str) -> RegisterTensor:
    """``value`` if it is a register tensor, else an "expected X, got Y" error."""
    if not isinstance(value, RegisterTensor):
        got = (
            type(value).__name__ if not isinstance(value, Tensor) else f"the {type(value).__name__} {value!r}"
        )
        raise builder.error(f"expected a register tensor as {what}, got {got}", instruction)
    return value


def broadcast_shape(builder: Builder, instruction: str, tensors: Sequence[RegisterTensor]) -> tuple:
    """The numpy broadcast of equal-rank shapes (size-1 dimensions stretch)."""
    shapes = [tuple(t.shape) for t in tensors]
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise builder.error(
            f"expected operands of the same rank (keep reduced dimensions with keepdim=True), "
            f"got shapes {', '.join(str(list(s)) for s in shapes)}",
            instruction,
        )
    result = []
    for sizes in zip(*shapes, strict=False):
        stretched = {s for s in sizes if s != 1}
        if len(stretched) > 1:
            raise builder.error(
                f"expected broadcastable shapes, got {', '.join(str(list(s)) for s in shapes)}", instruction
            )
        result.append(stretched.pop() if stretched else 1)
    return tuple(result)


def _scalar_operand(value, dtype: DataType, builder: Builder, instruction: str) -> Expr:
    if isinstance(value, Tensor):
        raise builder.error(
            f"expected a register tensor or a scalar, got the {type(value).__name__} {value!r}", instruction
        )
    if isinstance(value, (bool, int, float)):
        return as_expr(value)
    if not isinstance(value, Expr):
        raise builder.error(
            f"expected a register tensor or a scalar, got {type(value).__name__}", instruction
        )
    return value if value.dtype is dtype or dtype is boolean else ScalarCast(value, dtype)


def _check_out(builder: Builder, out, dtype: DataType, shape: tuple, instruction: str) -> None:
    check_register(builder, out, instruction, "out")
    if out.dtype is not dtype or tuple(out.shape) != shape:
        raise builder.error(
            f"expected out= to be a {dtype.name}{list(shape)} register tensor, got "
            f"{out.dtype.name}{list(out.shape)}",
            instruction,
        )


def elementwise(op: str, operands: Sequence, out: RegisterTensor | None = None):
    """Emit ``op`` over register tensors and broadcast scalars (``where``: condition, on_true, on_false)."""
    builder = current_builder()
    instruction = "where" if op == "where" else ("unary" if len(operands) == 1 else "binary") + f" `{op}`"
    tensors = [v for v in operands if isinstance(v, RegisterTensor)]
    if op == "where" and isinstance(operands[0], bool) and tensors:
        raise builder.error(
            f"expected a boolean register tensor or run-time scalar as the condition, got the Python bool "
            f"{operands[0]}: outside a transpiled __call__, == and != compare Python objects; use "
            "self.eq(a, b) / self.ne(a, b)",
            instruction,
        )
    if not tensors:
        return _scalar_elementwise(builder, op, operands, instruction)
    if op not in UNARY_TENSOR_OPS | BINARY_TENSOR_OPS | {"where"}:
        raise builder.error(f"expected an element-wise operation, got {op!r}", instruction)
    value_tensors = tensors if op != "where" else [v for v in operands[1:] if isinstance(v, RegisterTensor)]
    dtypes = {t.dtype for t in value_tensors}
    if len(dtypes) > 1:
        raise builder.error(
            f"expected operands of one dtype, got {', '.join(sorted(d.name for d in dtypes))}; "
            "convert one with self.cast(x, dtype)",
            instruction,
        )
    dtype = (
        value_tensors[0].dtype
        if value_tensors
        else _scalar_operand(operands[1], boolean, builder, instruction).dtype
    )
    if op in FLOAT_ONLY and not dtype.is_float:
        raise builder.error(f"expected a float tensor, got {dtype.name}", instruction)
    if op in INTEGER_ONLY and not dtype.is_integer:
        raise builder.error(f"expected an integer tensor, got {dtype.name}", instruction)
    shape = broadcast_shape(builder, instruction, tensors)
    result_dtype = boolean if op in COMPARISONS | LOGICAL else dtype
    if out is not None:
        _check_out(builder, out, result_dtype, shape, instruction)
    output = out if out is not None else new_register(builder, result_dtype, shape)
    converted = [
        v
        if isinstance(v, RegisterTensor)
        else _scalar_operand(
            v, boolean if (op == "where" and k == 0) or op in LOGICAL else dtype, builder, instruction
        )
        for k, v in enumerate(operands)
    ]
    source = builder.location()
    if op == "where":
        if isinstance(converted[0], RegisterTensor) and converted[0].dtype is not boolean:
            raise builder.error(f"expected a boolean condition, got {converted[0].dtype.name}", instruction)
        builder.emit(WhereInst(output, *converted, source=source))
    elif len(converted) == 1:
        builder.emit(UnaryInst(output, op, converted[0], source=source))
    else:
        builder.emit(BinaryInst(output, op, converted[0], converted[1], source=source))
    return output


def _scalar_elementwise(builder: Builder, op: str, operands: Sequence, instruction: str):
    """The expression form of an element-wise op on scalars only."""
    if op == "where":
        from anybit.lang.control import select

        return select(operands[0], lambda: operands[1], lambda: operands[2])
    if len(operands) == 1:
        if op in UNARY_OPS:
            return unary(op, operands[0])
    else:
        name = _SCALAR_BINARY.get(op, op)
        if name in BINARY_OPS:
            return binary(name, operands[0], operands[1])
    raise builder.error(
        f"expected at least one register tensor operand, got {', '.join(map(repr, operands))}", instruction
    )


def operator_handler(op: str, *operands):
    """Installed into ``anybit.ir.tensors``: register-tensor operators and shared-tensor indexing."""
    from anybit.lang.builder import active_builder

    if active_builder() is None:
        raise TypeError(f"operator {op!r} on tensors is only available while a kernel is being built")
    if op == "shared_slice":
        from anybit.lang.memory import shared_slice

        return shared_slice(*operands)
    return elementwise(op, operands)


def cast(
    tensor: RegisterTensor,
    dtype,
    out: RegisterTensor | None = None,
    subtract: RegisterTensor | None = None,
    layout=None,
    exponent: int = 0,
    high: RegisterTensor | None = None,
    code_dtype=None,
    biased: bool = False,
) -> RegisterTensor:
    """Convert element-wise to ``dtype`` (DESIGN §4.1 rounding), keeping the layout.

    ``layout``: the result's layout, when it is to hold each thread's elements in another local order than
    the operand (same elements per thread): the conversion reorders for free, e.g. codes stored
    pair-interleaved into the tensor-core operand order.

    ``subtract``: zero points of unsigned integer codes, ``cast(tensor) − subtract`` in one instruction
    (broadcast like a binary operand, in ``dtype``). Its values must be integers in [0, 2^bits) of the codes'
    type (as GPTQ/AWQ zero points are; the interpreter checks): the subtraction is then exact and the code
    generator folds it into the conversion's own subtraction of the magic number.

    ``exponent``: the result is the value times 2^exponent, exactly: every value of the operand's type times
    2^exponent must be a value of ``dtype`` (checked). Bit-aligning float conversions end with a multiply by
    a power of two that re-biases the exponent; an ``exponent`` that cancels it removes that multiply (one
    instruction per pair), and the kernel multiplies a per-group scale by 2^−exponent instead.

    ``high`` and ``code_dtype`` (bit planes): codes stored split in two unsigned planes of the same shape —
    ``tensor`` the low bits, ``high`` the high bits — are the codes ``tensor | high << tensor.dtype.nbits``
    of ``code_dtype`` (its width the two summed); the cast converts those. Each plane's layout must hold the
    result's elements per thread (``layout``). A plane pair whose two codes of every result pair sit 16 bits
    apart in one word converts with a shift and a ``lop3`` per plane: no code straddles a word. ``high`` may
    instead be ``uint1`` with a trailing axis of the high bits ([..., h], bit b of each code's high part at
    [..., b]): a layout of that view may store a code's high bits apart, where the conversion puts them, so
    that one shift places them all (:attr:`anybit.kernels.PackedLayout.top_plane_stride`).

    ``biased`` (integer codes of at most 8 bits to float16/bfloat16, without ``subtract``, ``exponent`` or
    planes): each result is its value plus a bias B that depends only on the element's place — the same for
    every biased cast between the same types and layouts — and keeps it exact. The code generator leaves the
    magic number of its in-register conversion in (one subtraction a pair less); the interpreter adds
    2^bits (0 for 8-bit codes to bfloat16). Correct for it with the biased cast of a tile of zero codes:
    ``dot(x, cast(w, biased=True)) − dot(x, cast(zeros, biased=True))`` is ``dot(x, cast(w))`` whatever B is.
    """
    builder = current_builder()
    check_register(builder, tensor, "cast", "the operand")
    dtype = resolve_dtype(dtype)
    if (high is None) != (code_dtype is None):
        raise builder.error("high= and code_dtype= go together (bit planes: both, else neither)", "cast")
    source_dtype = tensor.dtype
    if high is not None:
        check_register(builder, high, "cast", "high")
        code_dtype = resolve_dtype(code_dtype)
        for name, plane in (("the operand", tensor), ("high", high)):
            if plane.dtype.kind != "uint":
                raise builder.error(
                    f"expected {name} of bit planes in an unsigned integer type, got {plane.dtype.name}",
                    "cast",
                )
        high_bits = high_plane_width(tensor, high)
        if high_bits is None:
            raise builder.error(
                f"expected high of the operand's shape {list(tensor.shape)}, or uint1 of that shape plus a "
                f"trailing axis of the high bits, got {high.dtype.name}{list(high.shape)}",
                "cast",
            )
        if tensor.dtype.nbits + high_bits != code_dtype.nbits:
            raise builder.error(
                f"expected the planes' widths ({tensor.dtype.nbits} + {high_bits}) to sum to "
                f"{code_dtype.name}'s {code_dtype.nbits} bits",
                "cast",
            )
        source_dtype = code_dtype
    if out is not None:
        _check_out(builder, out, dtype, tuple(tensor.shape), "cast")
    if subtract is not None:
        check_register(builder, subtract, "cast", "subtract")
        if source_dtype.kind != "uint":
            raise builder.error(
                f"subtract= takes zero points of unsigned integer codes, got a {source_dtype.name} operand "
                "(subtract after the cast instead)",
                "cast",
            )
        if subtract.dtype is not dtype:
            raise builder.error(
                f"expected subtract in the result type {dtype.name}, got {subtract.dtype.name}", "cast"
            )
        if tuple(broadcast_shape(builder, "cast", [tensor, subtract])) != tuple(tensor.shape):
            raise builder.error(
                f"expected subtract to broadcast to {list(tensor.shape)}, got {list(subtract.shape)}", "cast"
            )
    if layout is not None and tuple(layout.shape) != tuple(tensor.shape):
        raise builder.error(f"expected a layout of shape {list(tensor.shape)}, got {layout!r}", "cast")
    if not isinstance(exponent, int) or isinstance(exponent, bool):
        raise builder.error(f"expected exponent a Python int, got {exponent!r}", "cast")
    if exponent:
        if subtract is not None:
            raise builder.error("exponent= and subtract= together are not supported: scale after", "cast")
        if source_dtype.nbits > 16:
            raise builder.error(
                f"exponent= takes operands of at most 16 bits (every value is checked), got "
                f"{source_dtype.name}: multiply after the cast instead",
                "cast",
            )
        if not scaling_is_exact(source_dtype, dtype, exponent):
            raise builder.error(
                f"exponent={exponent}: not every {source_dtype.name} value times 2^{exponent} is a "
                f"{dtype.name} value (it would round or overflow); pick an exponent that keeps them exact, "
                "or scale after the cast",
                "cast",
            )
    if biased:
        problem = biased_cast_problem(source_dtype, dtype, subtract is not None, exponent, high is not None)
        if problem:
            raise builder.error(f"biased=True {problem}", "cast")
    if out is not None:
        output = out
    else:
        output = new_register(builder, dtype, tensor.shape, layout if layout is not None else tensor.layout)
    builder.emit(
        CastInst(
            output,
            tensor,
            subtract,
            exponent,
            high,
            code_dtype if high is not None else None,
            biased=bool(biased),
            source=builder.location(),
        )
    )
    return output


def view(tensor: RegisterTensor, dtype=None, layout=None, *, shape=None) -> RegisterTensor:
    """Reinterpret each thread's register bits as ``dtype`` with ``layout`` (no data movement).

    Without ``layout``, give ``shape`` (or keep the bit width) and layout inference decides the layout.
    """
    builder = current_builder()
    check_register(builder, tensor, "view", "the operand")
    dtype = tensor.dtype if dtype is None else resolve_dtype(dtype)
    if layout is not None:
        shape = tuple(layout.shape)
    elif shape is not None:
        shape = tuple(int(d) for d in shape)
        if _count(shape) * dtype.nbits != _count(tensor.shape) * tensor.dtype.nbits:
            raise builder.error(
                f"expected {dtype.name}{list(shape)} to hold the {tensor.dtype.name}"
                f"{list(tensor.shape)} operand's bits exactly",
                "view",
            )
    elif dtype.nbits == tensor.dtype.nbits:
        shape, layout = tuple(tensor.shape), tensor.layout
    else:
        last_bits = tensor.shape[-1] * tensor.dtype.nbits
        if last_bits % dtype.nbits:
            raise builder.error(
                f"expected the last dimension ({tensor.shape[-1]} x {tensor.dtype.nbits} bits) to "
                f"hold a whole number of {dtype.name} values; pass layout= to choose the shape",
                "view",
            )
        shape = (*tensor.shape[:-1], last_bits // dtype.nbits)
    output = new_register(builder, dtype, shape, layout)
    builder.emit(ViewInst(output, tensor, source=builder.location()))
    return output


def _count(shape) -> int:
    count = 1
    for extent in shape:
        count *= extent
    return count


def dot(a: RegisterTensor, b: RegisterTensor, c: RegisterTensor, out: RegisterTensor | None = None):
    """``a @ b + c`` on tensor cores; ``a`` is [M, K], ``b`` [K, N], ``c`` [M, N].

    Batched: ``a`` [B, M, K], ``b`` [B, K, N], ``c`` [B, M, N], one product a batch; layout inference spreads
    the batch over warps first (each warp group multiplies its own batch's operands), so a block's warps can
    split K among them (docs/programming-guide.md).

    ``b`` may be a shared tensor [K/8, 8, N] in the tensor cores' core-matrix form
    (:func:`~anybit.layout.shared_core_matrices`): the tensor cores then read it from shared memory (sm_90a
    ``wgmma``, each group of 4 warps multiplying its own rows of ``a`` by the same ``b``), float16 or bfloat16
    into float32, with the block's warps a multiple of 4, all along M.
    """
    builder = current_builder()
    if isinstance(b, SharedTensor):
        return _dot_shared(builder, a, b, c, out)
    rank = a.rank if isinstance(a, RegisterTensor) else 2
    for name, value in (("a", a), ("b", b), ("c", c)):
        check_register(builder, value, "dot", f"operand {name}")
        if value.rank not in (2, 3) or value.rank != rank:
            raise builder.error(
                f"expected operands of rank 2 (or all of rank 3: batched), got {name} of shape "
                f"{list(value.shape)} with a of rank {rank}",
                "dot",
            )
    batch = tuple(a.shape[:-2])
    (m, k), (k2, n) = a.shape[-2:], b.shape[-2:]
    if k != k2 or tuple(c.shape) != (*batch, m, n) or tuple(b.shape[:-2]) != batch:
        raise builder.error(
            f"expected shapes a [{'B, ' if batch else ''}M, K], b [{'B, ' if batch else ''}K, N], "
            f"c [{'B, ' if batch else ''}M, N], got a {list(a.shape)}, b {list(b.shape)}, c {list(c.shape)}",
            "dot",
        )
    if out is not None:
        _check_out(builder, out, c.dtype, (*batch, m, n), "dot")
    output = out if out is not None else new_register(builder, c.dtype, (*batch, m, n), c.layout)
    builder.emit(DotInst(output, a, b, c, source=builder.location()))
    return output


def _dot_shared(builder: Builder, a, b: SharedTensor, c, out) -> RegisterTensor:
    """``a @ b + c`` with ``b`` [K/8, 8, N] in shared memory in core-matrix form (``wgmma``; see
    :func:`dot`)."""
    for name, value in (("a", a), ("c", c)):
        check_register(builder, value, "dot", f"operand {name}")
    if a.rank != 2 or c.rank != 2 or b.rank != 3 or b.shape[1] != 8:
        raise builder.error(
            f"expected a [M, K] and c [M, N] in registers and b [K/8, 8, N] in shared memory (core-matrix "
            f"form), got a {list(a.shape)}, b {list(b.shape)}, c {list(c.shape)}",
            "dot",
        )
    (m, k), n = a.shape, b.shape[2]
    if b.shape[0] * 8 != k or tuple(c.shape) != (m, n):
        raise builder.error(
            f"expected a [M, K], b [K/8, 8, N], c [M, N], got a {list(a.shape)}, b {list(b.shape)}, "
            f"c {list(c.shape)}",
            "dot",
        )
    if out is not None:
        _check_out(builder, out, c.dtype, (m, n), "dot")
    output = out if out is not None else new_register(builder, c.dtype, (m, n), c.layout)
    builder.emit(DotSharedInst(output, a, b, c, source=builder.location()))
    return output


def reduce(op: str, tensor: RegisterTensor, dim: int, keepdim: bool = False) -> RegisterTensor:
    """``op`` (sum, prod, max, min) over dimension ``dim``."""
    builder = current_builder()
    check_register(builder, tensor, op, "the operand")
    if not -tensor.rank <= dim < tensor.rank:
        raise builder.error(f"expected a dimension in [{-tensor.rank}, {tensor.rank}), got {dim}", op)
    dim %= tensor.rank
    shape = list(tensor.shape)
    if keepdim:
        shape[dim] = 1
    else:
        del shape[dim]
    output = new_register(builder, tensor.dtype, shape)
    builder.emit(ReduceInst(output, op, tensor, dim, keepdim, source=builder.location()))
    return output


def assign(destination: RegisterTensor, value: RegisterTensor) -> RegisterTensor:
    """Copy ``value`` into ``destination`` (same shape and dtype; layouts may differ)."""
    builder = current_builder()
    check_register(builder, destination, "assign", "the destination")
    check_register(builder, value, "assign", "the value")
    if destination.dtype is not value.dtype or tuple(destination.shape) != tuple(value.shape):
        raise builder.error(
            f"expected a value of {destination.dtype.name}{list(destination.shape)}, got "
            f"{value.dtype.name}{list(value.shape)}",
            "assign",
        )
    builder.emit(AssignInst(destination, value, source=builder.location()))
    return destination


def index(shape, dim: int, dtype=None, layout=None) -> RegisterTensor:
    """A register tile of ``shape`` whose every element holds its own index along ``dim``.

    Parameters
    ----------
    shape
        Compile-time tile shape.
    dim
        The dimension whose index each element holds (negative counts from the end).
    dtype
        An integer dtype wide enough for the indices (default int32).
    layout
        Register layout; inferred from the consumers when omitted.

    Compare it with run-time bounds to build masks: ``self.index([64], 0) + start < n``.
    """
    from anybit.dtypes import int32
    from anybit.lang.memory import _static_shape

    builder = current_builder()
    shape = _static_shape(builder, shape, "index")
    dtype = int32 if dtype is None else resolve_dtype(dtype)
    rank = len(shape)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -rank <= dim < rank:
        raise builder.error(
            f"expected a dimension in [{-rank}, {rank}) for shape {list(shape)}, got {dim!r}", "index"
        )
    dim %= rank
    if not dtype.is_integer or shape[dim] - 1 > dtype.max_value:
        raise builder.error(
            f"expected an integer dtype that holds indices up to {shape[dim] - 1}, got {dtype.name}", "index"
        )
    if layout is not None and tuple(layout.shape) != tuple(shape):
        raise builder.error(
            f"expected a layout of shape {list(shape)}, got {layout!r} of shape {list(layout.shape)}", "index"
        )
    output = new_register(builder, dtype, shape, layout, hint="index")
    builder.emit(IndexInst(output, dim, source=builder.location()))
    return output


def arange(extent: int, dtype=None, layout=None) -> RegisterTensor:
    """``[0, 1, ..., extent - 1]`` as a 1-D register tile (``index([extent], 0)``)."""
    return index([extent], 0, dtype=dtype, layout=layout)
