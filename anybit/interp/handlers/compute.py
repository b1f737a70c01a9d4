"""Handlers of register computation: element-wise unary/binary/where, cast, view, assign, dot, reduce.

Element-wise work is done per (thread, local) register of the output, so replicated copies and the bits
a ``view`` produced are used exactly as each thread holds them. An operand with the output's shape and
layout is read register for register; any other operand (broadcast or another layout) through its logical
values. Semantics of the arithmetic: see :mod:`anybit.interp.values`; integer ``div``/``mod`` are floor
division and its remainder (the IR's scalar semantics), and an integer division by zero is an error.
Transcendental functions (exp, log, …) use numpy's correctly rounded results, which the GPU's fast
approximations may differ from in the last bits.
"""

from __future__ import annotations

import numpy as np

from anybit import ir
from anybit.dtypes import boolean, float32, float64, int32
from anybit.interp import bits, shared
from anybit.interp.errors import InterpreterError
from anybit.interp.handlers.registry import register
from anybit.interp.registers import gather_from_dense, layout_map
from anybit.interp.state import BlockState
from anybit.interp.values import (
    codes_from_values,
    compute_type,
    convert_codes,
    to_compute,
    values_from_codes,
)
from anybit.ir.expr import binary_result_dtype
from anybit.ir.tensors import RegisterTensor


def _operand(block: BlockState, operand, output: RegisterTensor, dtype) -> np.ndarray:
    """Per-thread values of ``operand`` at the output's registers, in ``compute_type(dtype)``."""
    if isinstance(operand, RegisterTensor):
        if operand.layout == output.layout and tuple(operand.shape) == tuple(output.shape):
            values = block.registers.values(operand)
        else:
            values = gather_from_dense(block.registers.dense_values(operand), output)
    else:
        values = np.full(layout_map(output).shape[:2], block.scalar(operand))
    return to_compute(values, dtype)


_COMPARISONS = frozenset({"lt", "le", "gt", "ge", "eq", "ne"})


_UNARY = {
    "neg": np.negative,
    "abs": np.abs,
    "exp": np.exp,
    "exp2": np.exp2,
    "log": np.log,
    "log2": np.log2,
    "sqrt": np.sqrt,
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "logical_not": np.logical_not,
    "bit_not": np.invert,
}


@register(ir.UnaryInst)
def unary(block: BlockState, inst: ir.UnaryInst) -> None:
    dtype = inst.output.dtype
    values = _operand(block, inst.operand, inst.output, dtype)
    with np.errstate(all="ignore"):
        if inst.op == "rsqrt":
            result = (1 / np.sqrt(values.astype(np.float64))).astype(values.dtype)
        elif inst.op in _UNARY:
            result = _UNARY[inst.op](values)
        else:
            raise InterpreterError(f"unknown unary operator {inst.op!r}")
    block.registers.set_codes(inst.output, codes_from_values(result, dtype))


def _integer_division(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if (b == 0).any():
        raise InterpreterError(f"integer {op} by zero")
    return np.floor_divide(a, b) if op == "div" else np.mod(a, b)


def binary_values(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a op b`` element-wise on arrays of one compute type (comparisons give bool)."""
    is_int = a.dtype.kind in "iu"
    with np.errstate(all="ignore"):
        if op in ("div", "mod") and is_int:
            return _integer_division(op, a, b)
        functions = {
            "add": np.add,
            "sub": np.subtract,
            "mul": np.multiply,
            "div": np.divide,
            "mod": np.mod,
            "maximum": np.maximum,
            "minimum": np.minimum,
            "lt": np.less,
            "le": np.less_equal,
            "gt": np.greater,
            "ge": np.greater_equal,
            "eq": np.equal,
            "ne": np.not_equal,
            "logical_and": np.logical_and,
            "logical_or": np.logical_or,
            "and": np.bitwise_and,
            "or": np.bitwise_or,
            "xor": np.bitwise_xor,
            "shl": np.left_shift,
            "shr": np.right_shift,
        }
        if op not in functions:
            raise InterpreterError(f"unknown binary operator {op!r}")
        return functions[op](a, b)


@register(ir.BinaryInst)
def binary(block: BlockState, inst: ir.BinaryInst) -> None:
    output = inst.output
    if inst.op in _COMPARISONS:
        dtype = binary_result_dtype("add", inst.lhs.dtype, inst.rhs.dtype)
    elif inst.op in ("logical_and", "logical_or"):
        dtype = boolean
    else:
        dtype = output.dtype
    lhs = _operand(block, inst.lhs, output, dtype)
    rhs = _operand(block, inst.rhs, output, dtype)
    result = binary_values(inst.op, lhs, rhs)
    block.registers.set_codes(output, codes_from_values(result, output.dtype))


@register(ir.WhereInst)
def where(block: BlockState, inst: ir.WhereInst) -> None:
    output = inst.output
    condition = _operand(block, inst.condition, output, boolean)
    on_true = _operand(block, inst.on_true, output, output.dtype)
    on_false = _operand(block, inst.on_false, output, output.dtype)
    block.registers.set_codes(output, codes_from_values(np.where(condition, on_true, on_false), output.dtype))


def _codes_in_output_layout(block: BlockState, tensor: ir.RegisterTensor, output: ir.RegisterTensor):
    if tensor.layout == output.layout:
        return block.registers.codes(tensor)
    return gather_from_dense(block.registers.dense_codes(tensor), output)


def interpreter_cast_bias(source, target) -> float:
    """The bias the interpreter's biased casts add: 2^bits, or 0 where value + 2^bits could round (8-bit codes
    to bfloat16, whose 8 significant bits stop at 256)."""
    bias = float(2**source.nbits)
    return 0.0 if target.name == "bfloat16" and source.nbits >= 8 else bias


@register(ir.CastInst)
def cast(block: BlockState, inst: ir.CastInst) -> None:
    operand, output = inst.operand, inst.output
    codes = _codes_in_output_layout(block, operand, output)
    source = operand.dtype
    if inst.high is not None:  # bit planes: the code is low | high << (the low plane's width)
        if inst.high.rank > output.rank:  # uint1 [..., h]: bit b of the high part at [..., b]
            bits = block.registers.dense_codes(inst.high).astype(np.uint64)
            dense = sum(bits[..., b] << np.uint64(b) for b in range(bits.shape[-1]))
            high = gather_from_dense(dense, output)
        else:
            high = _codes_in_output_layout(block, inst.high, output).astype(np.uint64)
        source = inst.code_dtype
        codes = (codes.astype(np.uint64) | (high << np.uint64(operand.dtype.nbits))).astype(source.code_dtype)
    if inst.exponent:  # exact by the builder's check: the source value times 2^exponent, encoded
        scaled = values_from_codes(codes, source).astype(np.float64) * 2.0**inst.exponent
        block.registers.set_codes(output, codes_from_values(to_compute(scaled, output.dtype), output.dtype))
        return
    converted = convert_codes(codes, source, output.dtype)
    if inst.biased:  # value + 2^bits, exact (a bias the code generator chooses otherwise: see CastInst)
        bias = interpreter_cast_bias(source, output.dtype)
        if bias:
            values = to_compute(values_from_codes(converted, output.dtype), output.dtype)
            converted = codes_from_values(values + bias, output.dtype)
    if inst.subtract is not None:
        zeros = _operand(block, inst.subtract, output, output.dtype)
        top = 2**source.nbits
        if not np.all((zeros == np.floor(zeros)) & (zeros >= 0) & (zeros < top)):
            bad = zeros[(zeros != np.floor(zeros)) | (zeros < 0) | (zeros >= top)].ravel()[:3]
            raise InterpreterError(
                f"cast(subtract={inst.subtract.name}): zero points must be integers in [0, {top}) (codes of "
                f"{source.name}), got {bad.tolist()}; subtract after the cast for other values"
            )
        values = to_compute(values_from_codes(converted, output.dtype), output.dtype)
        converted = codes_from_values(binary_values("sub", values, zeros), output.dtype)
    block.registers.set_codes(output, converted)


@register(ir.ViewInst)
def view(block: BlockState, inst: ir.ViewInst) -> None:
    operand, output = inst.operand, inst.output
    source_threads, source_locals = layout_map(operand).shape[:2]
    target_threads, target_locals = layout_map(output).shape[:2]
    source_bits = source_locals * operand.dtype.nbits
    target_bits = target_locals * output.dtype.nbits
    if source_threads != target_threads or source_bits != target_bits:
        raise InterpreterError(
            f"view of {operand.name} ({operand.dtype.name}, layout {operand.layout}: "
            f"{source_threads} threads × "
            f"{source_bits} bits) as {output.name} ({output.dtype.name}, layout {output.layout}: "
            f"{target_threads} threads × {target_bits} bits): expected the same threads and bits per thread"
        )
    codes = bits.reslice(block.registers.codes(operand), operand.dtype.nbits, output.dtype.nbits)
    block.registers.set_codes(output, codes)


@register(ir.AssignInst)
def assign(block: BlockState, inst: ir.AssignInst) -> None:
    operand, output = inst.operand, inst.output
    if tuple(operand.shape) != tuple(output.shape):
        raise InterpreterError(
            f"assign needs equal shapes, got {list(operand.shape)} and {list(output.shape)}"
        )
    if operand.layout == output.layout:
        codes = block.registers.codes(operand)
    else:
        codes = gather_from_dense(block.registers.dense_codes(operand), output)
    block.registers.set_codes(output, convert_codes(codes, operand.dtype, output.dtype))


def _accumulation(a_dtype, b_dtype, c_dtype):
    """(numpy type of the products and sums, dtype whose compute type receives the result)."""
    if a_dtype.is_float or b_dtype.is_float or c_dtype.is_float:
        if max(a_dtype.nbits, b_dtype.nbits) <= 16 and c_dtype.nbits <= 32:
            return np.float32, float32  # f16/bf16/sub-byte float products are exact in f32: the tensor core
        return np.float64, float64
    return np.int64, int32


@register(ir.DotInst)
def dot(block: BlockState, inst: ir.DotInst) -> None:
    """``output = a @ b + c``: products exact, sums in float32 (int32 for integer inputs), as tensor cores do;
    the summation order is numpy's, which the hardware's may differ from in the last bits."""
    a, b, c = inst.a, inst.b, inst.c
    batch = tuple(a.shape[:-2])
    if (
        a.shape[-1] != b.shape[-2]
        or tuple(b.shape[:-2]) != batch
        or tuple(c.shape) != (*batch, a.shape[-2], b.shape[-1])
    ):
        raise InterpreterError(
            f"dot needs a [(B,) M, K], b [(B,) K, N], c [(B,) M, N]; got a {list(a.shape)}, b "
            f"{list(b.shape)}, c {list(c.shape)}"
        )
    _dot_values(block, a, block.registers.dense_values(b), b.dtype, c, inst.output)


@register(ir.DotSharedInst)
def dot_shared(block: BlockState, inst: ir.DotSharedInst) -> None:
    """``output = a @ b + c`` with b [K/8, 8, N] read from shared memory by every thread of the block (the
    tensor cores read it for the whole warpgroup: a write no barrier ordered before is a race), as
    :func:`dot` computes it."""
    b = inst.b
    binding = block.shared_binding(b)
    indices = np.indices(tuple(b.shape), dtype=np.int64).reshape(b.rank, -1).T  # [elements, rank]
    threads = block.num_threads
    positions = np.broadcast_to(binding.bit_positions(indices)[None], (threads, len(indices)))
    readers = np.broadcast_to(np.arange(threads)[:, None], positions.shape)
    codes = shared.read(binding, positions, readers, block.epoch)[0]
    values = values_from_codes(codes.astype(b.dtype.code_dtype), b.dtype)
    _dot_values(block, inst.a, values.reshape(b.shape[0] * 8, b.shape[2]), b.dtype, inst.c, inst.output)


def _dot_values(block: BlockState, a, b_values: np.ndarray, b_dtype, c, output) -> None:
    """``output = a @ b + c`` of register tensors a and c and b's dense values."""
    accumulate, result_dtype = _accumulation(a.dtype, b_dtype, c.dtype)
    registers = block.registers
    a_values = registers.dense_values(a).astype(accumulate)
    b_values = b_values.astype(accumulate)
    c_values = registers.dense_values(c).astype(accumulate)
    with np.errstate(all="ignore"):
        result = a_values @ b_values + c_values
    if accumulate is np.int64:
        result = codes_from_values(result, result_dtype)
        codes = convert_codes(result, result_dtype, output.dtype)
    else:
        codes = convert_codes(
            codes_from_values(result, float32 if accumulate is np.float32 else float64),
            float32 if accumulate is np.float32 else float64,
            output.dtype,
        )
    registers.set_codes(output, gather_from_dense(codes, output))


@register(ir.ReduceInst)
def reduce(block: BlockState, inst: ir.ReduceInst) -> None:
    """Sums and products accumulate in float32 (float64 for float64, int64 wrapped for integers); max/min
    are exact."""
    operand, output = inst.operand, inst.output
    values = block.registers.dense_values(operand)
    dtype = operand.dtype
    if inst.op in ("sum", "prod"):
        wide = np.float64 if dtype is float64 else np.float32 if dtype.is_float else np.int64
        combine = np.sum if inst.op == "sum" else np.prod
        with np.errstate(all="ignore"):
            result = combine(values.astype(wide), axis=inst.dim, keepdims=inst.keepdim)
        result_dtype = float64 if wide is np.float64 else float32 if wide is np.float32 else None
    elif inst.op in ("max", "min"):
        function = np.max if inst.op == "max" else np.min
        result = function(values, axis=inst.dim, keepdims=inst.keepdim)
        result_dtype = dtype
    else:
        raise InterpreterError(f"unknown reduction {inst.op!r}")
    if result_dtype is None:
        codes = (
            codes_from_values(result, output.dtype)
            if output.dtype.is_integer
            else convert_codes(codes_from_values(result, dtype), dtype, output.dtype)
        )
    else:
        codes = convert_codes(
            codes_from_values(np.asarray(result).astype(compute_type(result_dtype)), result_dtype),
            result_dtype,
            output.dtype,
        )
    block.registers.set_codes(output, gather_from_dense(np.asarray(codes), output))
