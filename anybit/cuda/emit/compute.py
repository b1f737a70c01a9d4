"""Element-wise instructions, casts, views and register-to-register assignment."""

from __future__ import annotations

import numpy as np

from anybit.cuda import conversions
from anybit.cuda.emit.locality import append_coordinate, local_sources, same_map
from anybit.cuda.emit.scratch import register_scratch
from anybit.cuda.emitter import CodegenError, EmitContext, register_emitter, where
from anybit.cuda.expressions import C_INFIX
from anybit.cuda.registers import (
    compute_ctype,
    constant_code,
    get_value,
    read_bits,
    set_value,
    word_count,
    write_bits,
)
from anybit.dtypes import decode, encode, float32
from anybit.ir import AssignInst, BinaryInst, CastInst, RegisterTensor, UnaryInst, ViewInst, WhereInst
from anybit.ir.expr import Const

_UNARY = {
    "neg": "(-{x})",
    "abs": "({x} < 0 ? -{x} : {x})",
    "logical_not": "(!{x})",
    "bit_not": "(~{x})",
}
_MATH = {
    "exp": "exp",
    "exp2": "exp2",
    "log": "log",
    "log2": "log2",
    "sqrt": "sqrt",
    "sin": "sin",
    "cos": "cos",
    "tanh": "tanh",
}


def _operand(ctx: EmitContext, inst, output: RegisterTensor, operand, sources, i: int, ctype: str) -> str:
    """C expression of ``operand`` at output element ``i`` (a register element or a broadcast scalar)."""
    if isinstance(operand, RegisterTensor):
        return f"(({ctype}){get_value(ctx.register(operand), operand.dtype, sources[id(operand)][i])})"
    return f"(({ctype}){ctx.expr(operand)})"


def _sources(ctx: EmitContext, inst, output: RegisterTensor, operands) -> dict[int, list[int]]:
    sources = {}
    for operand in operands:
        if not isinstance(operand, RegisterTensor):
            continue
        mapping = local_sources(output.layout, operand.layout, ctx.num_threads)
        if mapping is None:
            raise CodegenError(
                f"{inst.name}{where(inst)}: operand {operand.name} with layout {operand.layout} does not "
                f"hold, in each thread, the elements that output {output.name} (layout {output.layout}) "
                "needs; expected "
                "layouts where broadcasting stays within a thread (use an assign to re-lay it out)"
            )
        sources[id(operand)] = mapping
    return sources


def _math(name: str, x: str, ctype: str) -> str:
    suffix = "f" if ctype == "float" else ""
    if name == "rsqrt":
        return f"rsqrt{suffix}({x})"
    return f"{_MATH[name]}{suffix}({x})"


@register_emitter(UnaryInst)
def emit_unary(ctx: EmitContext, inst: UnaryInst) -> None:
    """``output[i] = op(operand[i])`` per local element, computed in the output's compute type."""
    out = inst.output
    sources = _sources(ctx, inst, out, [inst.operand])
    ctype = compute_ctype(inst.operand.dtype)
    array = ctx.register(out)
    for i in range(out.layout.local_size):
        x = _operand(ctx, inst, out, inst.operand, sources, i, ctype)
        if inst.op in _UNARY:
            value = _UNARY[inst.op].format(x=x)
        else:
            value = _math(
                inst.op,
                f"({'double' if ctype == 'double' else 'float'}){x}",
                "double" if ctype == "double" else "float",
            )
        ctx.emit(*set_value(array, out.dtype, i, value))


def _binary_value(op: str, a: str, b: str, ctype: str, is_float: bool) -> str:
    if op in C_INFIX:
        return f"({a} {C_INFIX[op]} {b})"
    if op == "div":
        return f"({a} / {b})"
    if op == "mod":
        return f"({a} - floor({a} / {b}) * {b})" if is_float else f"ab_floormod<{ctype}>({a}, {b})"
    if op == "maximum":
        return f"(({a} > {b} || {a} != {a}) ? {a} : {b})"
    if op == "minimum":
        return f"(({a} < {b} || {a} != {a}) ? {a} : {b})"
    raise NotImplementedError(op)


_PAIRED = {"add", "sub", "mul"}


def _pair_word(ctx: EmitContext, operand, sources, i: int, dtype) -> str:
    """C expression (``uint32_t``) of the operand elements of output elements ``i``, ``i + 1`` as one pair
    (a constant as a ``dtype`` pair)."""
    if not isinstance(operand, RegisterTensor):  # a constant (checked by the caller)
        code = constant_code(operand.value, dtype)
        return f"{hex(code | code << 16)}u"
    array = ctx.register(operand)
    lo, hi = sources[id(operand)][i], sources[id(operand)][i + 1]
    if lo % 2 == 0 and hi == lo + 1:
        return f"{array}[{lo // 2}]"
    selector = (lo % 2) * 0x22 + (hi % 2) * 0x2200 + 0x1010  # bytes of the lo element, then the hi one
    if lo // 2 == hi // 2:
        return f"__byte_perm({array}[{lo // 2}], 0u, {hex(selector)})"
    return f"__byte_perm({array}[{lo // 2}], {array}[{hi // 2}], {hex(selector + 0x4400)})"


def _in_output_type(operand, dtype):
    """``operand``, or for a constant its value rounded to ``dtype`` (a 16-bit float or narrower): the
    interpreter converts a scalar operand to the operation's type before computing, so the code does too."""
    if not isinstance(operand, Const) or not dtype.is_float or dtype.nbits >= 32:
        return operand
    value = float(decode(encode(np.asarray(float(operand.value)), dtype), dtype))
    return Const(value, float32)


def _emit_paired(ctx: EmitContext, inst: BinaryInst, sources) -> bool:
    """``add``/``sub``/``mul`` of float16 or bfloat16 two elements per instruction (``add.f16x2``, …).

    One rounding of the exact result, the same as the per-element path (float, then rounded once to the
    16-bit type: float's 24 bits ≥ 2·11 + 2, so the double rounding is innocuous). False where it does
    not apply (other ops or types, an odd local size, a non-constant scalar operand).
    """
    out = inst.output
    operands = (inst.lhs, inst.rhs)
    if inst.op not in _PAIRED or out.dtype.name not in ("float16", "bfloat16") or out.layout.local_size % 2:
        return False
    for operand in operands:
        if isinstance(operand, RegisterTensor):
            if operand.dtype != out.dtype:
                return False
        elif not isinstance(operand, Const):  # a constant: in the output type, as the interpreter has it
            return False
    array = ctx.register(out)
    for i in range(0, out.layout.local_size, 2):
        a, b = (_pair_word(ctx, operand, sources, i, out.dtype) for operand in operands)
        if out.dtype.name == "float16":
            value = f"ab_{inst.op}_rn_f16x2({a}, {b})"
        elif inst.op == "sub":  # sm_80 has only fma for bf16x2: a - b = b·(−1) + a, rounded once
            value = f"ab_fma_bf16x2({b}, 0xbf80bf80u, {a})"
        elif inst.op == "add":
            value = f"ab_fma_bf16x2({a}, 0x3f803f80u, {b})"
        else:  # a·b + (−0) keeps the sign of a zero product
            value = f"ab_fma_bf16x2({a}, {b}, 0x80008000u)"
        ctx.emit(f"{array}[{i // 2}] = {value};")
    return True


@register_emitter(BinaryInst)
def emit_binary(ctx: EmitContext, inst: BinaryInst) -> None:
    """``output = lhs op rhs`` with broadcasting; the compute type is that of the operands' dtype.

    float16/bfloat16 ``add``/``sub``/``mul`` run two elements per instruction (:func:`_emit_paired`).
    """
    out = inst.output
    sources = _sources(ctx, inst, out, [inst.lhs, inst.rhs])
    if _emit_paired(ctx, inst, sources):
        return
    operand_dtype = next((o.dtype for o in (inst.lhs, inst.rhs) if isinstance(o, RegisterTensor)), out.dtype)
    ctype = compute_ctype(operand_dtype)
    lhs, rhs = inst.lhs, inst.rhs
    if inst.op in _PAIRED | {"div", "maximum", "minimum"} and operand_dtype == out.dtype:
        lhs, rhs = (_in_output_type(operand, out.dtype) for operand in (lhs, rhs))
    array = ctx.register(out)
    for i in range(out.layout.local_size):
        a = _operand(ctx, inst, out, lhs, sources, i, ctype)
        b = _operand(ctx, inst, out, rhs, sources, i, ctype)
        value = _binary_value(inst.op, a, b, ctype, operand_dtype.is_float)
        ctx.emit(*set_value(array, out.dtype, i, value))


@register_emitter(WhereInst)
def emit_where(ctx: EmitContext, inst: WhereInst) -> None:
    """``output = condition ? on_true : on_false`` with broadcasting."""
    out = inst.output
    sources = _sources(ctx, inst, out, [inst.condition, inst.on_true, inst.on_false])
    ctype = compute_ctype(out.dtype)
    array = ctx.register(out)
    for i in range(out.layout.local_size):
        c = _operand(ctx, inst, out, inst.condition, sources, i, "bool")
        a = _operand(ctx, inst, out, inst.on_true, sources, i, ctype)
        b = _operand(ctx, inst, out, inst.on_false, sources, i, ctype)
        ctx.emit(*set_value(array, out.dtype, i, f"({c} ? {a} : {b})"))


@register_emitter(CastInst)
def emit_cast(ctx: EmitContext, inst: CastInst) -> None:
    """Fast in-register conversion when one applies (``anybit.cuda.conversions``), else per element."""
    out, src = inst.output, inst.operand
    order = _cast_order(ctx, inst, src)
    run = conversions.contiguous_pairs(src.layout)
    zero_pair = zero_element = None
    if inst.subtract is not None:
        zeros = inst.subtract
        sources = _sources(ctx, inst, out, [zeros])
        ctype = compute_ctype(out.dtype)

        def zero_pair(p: int) -> str:
            return _pair_word(ctx, zeros, sources, 2 * p, out.dtype)

        def zero_element(i: int) -> str:
            return _operand(ctx, inst, out, zeros, sources, i, ctype)

    if inst.high is not None:  # bit planes: each output pair gathers its code bits from both
        planes = []
        for plane in (src, inst.high):
            if plane.rank > out.rank:  # uint1 [..., h]: each high bit a plane of its own, in one array
                for bit in range(plane.shape[-1]):
                    planes.append((ctx.register(plane), plane.dtype, _bit_order(ctx, inst, plane, bit)))
                continue
            plane_order = _cast_order(ctx, inst, plane)
            local = list(range(plane.layout.local_size)) if plane_order is None else plane_order
            planes.append((ctx.register(plane), plane.dtype, local))
        conversions.emit_planar_cast(
            ctx,
            planes,
            inst.code_dtype,
            ctx.register(out),
            out.dtype,
            out.layout.local_size,
            zero_pair=zero_pair,
            zero_element=zero_element,
            exponent=inst.exponent,
        )
        return
    conversions.emit_cast(
        ctx,
        ctx.register(src),
        src.dtype,
        ctx.register(out),
        out.dtype,
        src.layout.local_size,
        fast=run >= 2,
        order=order,
        zero_pair=zero_pair,
        zero_element=zero_element,
        exponent=inst.exponent,
        biased=inst.biased,
    )


def _bit_order(ctx: EmitContext, inst: CastInst, plane: RegisterTensor, bit: int) -> list[int]:
    """The local of a uint1 plane [..., h] holding bit ``bit`` of each output local's code."""
    order = local_sources(inst.output.layout, plane.layout, ctx.num_threads, index_map=append_coordinate(bit))
    if order is None:
        raise CodegenError(
            f"cast{where(inst)}: expected the high bits' layout {plane.layout} to hold bit {bit} of every "
            f"element of the output layout {inst.output.layout} in the same thread"
        )
    return order


def _cast_order(ctx: EmitContext, inst: CastInst, plane: RegisterTensor) -> list[int] | None:
    """The plane local of each output local of a reordering cast (None: the same order)."""
    out = inst.output
    if same_map(out.layout, plane.layout):
        return None
    order = local_sources(out.layout, plane.layout, ctx.num_threads, broadcast=False)
    if order is None:
        raise CodegenError(
            f"cast{where(inst)}: expected the output layout to hold the operand's elements in each "
            f"thread, got {out.layout} and {plane.layout}"
        )
    return order


@register_emitter(ViewInst)
def emit_view(ctx: EmitContext, inst: ViewInst) -> None:
    """Same bits per thread: a word copy that nvcc's register allocation removes (zero instructions)."""
    out, src = inst.output, inst.operand
    out_bits = out.layout.local_size * out.dtype.nbits
    src_bits = src.layout.local_size * src.dtype.nbits
    if out_bits != src_bits or out.layout.num_threads != src.layout.num_threads:
        raise CodegenError(
            f"view{where(inst)}: expected the same threads and bits per thread, got "
            f"{src_bits} bits over {src.layout.num_threads} threads -> {out_bits} bits over "
            f"{out.layout.num_threads}"
        )
    target, source = ctx.register(out), ctx.register(src)
    for w in range(word_count(out.dtype, out.layout.local_size)):
        ctx.emit(f"{target}[{w}] = {source}[{w}];")


def _assign_scratch(inst: AssignInst) -> int:
    return 0 if _local_assign(inst) is not None else _scratch_size(inst.operand)


def _scratch_size(tensor: RegisterTensor) -> int:
    return -(-tensor.layout.num_elements * max(8, tensor.dtype.nbits) // 8)


def _local_assign(inst: AssignInst):
    out, src = inst.output, inst.operand
    if same_map(out.layout, src.layout):
        return list(range(out.layout.local_size))
    return local_sources(
        out.layout, src.layout, max(out.layout.num_threads, src.layout.num_threads), broadcast=False
    )


register_scratch(AssignInst)(_assign_scratch)


@register_emitter(AssignInst)
def emit_assign(ctx: EmitContext, inst: AssignInst) -> None:
    """Copy when each thread already holds what it needs; otherwise exchange through shared scratch."""
    out, src = inst.output, inst.operand
    target, source = ctx.register(out), ctx.register(src)
    mapping = _local_assign(inst)
    n = out.dtype.nbits
    if mapping is not None:
        if mapping == list(range(out.layout.local_size)) and n * out.layout.local_size % 32 == 0:
            for w in range(word_count(out.dtype, out.layout.local_size)):
                ctx.emit(f"{target}[{w}] = {source}[{w}];")
            return
        for i, j in enumerate(mapping):
            ctx.emit(
                *write_bits(target, i * n, n, read_bits(source, j * n, n))
                if n <= 32
                else [
                    f"{target}[{2 * i}] = {source}[{2 * j}]; {target}[{2 * i + 1}] = {source}[{2 * j + 1}];"
                ]
            )
        return
    exchange_through_shared(ctx, inst, src, out, lambda index: index)


def exchange_through_shared(
    ctx: EmitContext, inst, src: RegisterTensor, out: RegisterTensor, index_map
) -> None:
    """Write every element of ``src`` to a row-major scratch tile, then read ``out``'s elements back.

    Elements are stored one per byte-multiple slot so no two threads share a byte.
    """
    from anybit.cuda.emit.access import tile_index

    slot = max(8, src.dtype.nbits) // 8
    base = f"(smem + {ctx.scratch_offsets[id(inst)]})"
    source, target = ctx.register(src), ctx.register(out)
    n = src.dtype.nbits
    strides = [1] * src.rank
    for d in range(src.rank - 2, -1, -1):
        strides[d] = strides[d + 1] * src.shape[d + 1]
    ctx.emit("__syncthreads();")
    for i in range(src.layout.local_size):
        index = tile_index(src.layout, (0,) * src.rank, i)
        flat = sum((c * s for c, s in zip(index, strides, strict=True)), 0)
        bits = read_bits(source, i * n, n) if n <= 32 else None
        address = f"{base} + ({ctx.expr(flat)}) * {slot}"
        if n <= 32:
            ctype = {1: "unsigned char", 2: "unsigned short", 4: "uint32_t"}[slot]
            ctx.emit(f"*({ctype}*)({address}) = ({ctype}){bits};")
        else:
            ctx.emit(f"*(uint2*)({address}) = make_uint2({source}[{2 * i}], {source}[{2 * i + 1}]);")
    ctx.emit("__syncthreads();")
    for i in range(out.layout.local_size):
        index = index_map(tile_index(out.layout, (0,) * out.rank, i))
        flat = sum((c * s for c, s in zip(index, strides, strict=True)), 0)
        address = f"{base} + ({ctx.expr(flat)}) * {slot}"
        if n <= 32:
            ctype = {1: "unsigned char", 2: "unsigned short", 4: "uint32_t"}[slot]
            ctx.emit(*write_bits(target, i * n, n, f"*({ctype}*)({address})"))
        else:
            ctx.emit(
                f"{{ uint2 q_ = *(uint2*)({address}); "
                f"{target}[{2 * i}] = q_.x; {target}[{2 * i + 1}] = q_.y; }}"
            )
    ctx.emit("__syncthreads();")
