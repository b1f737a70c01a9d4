"""Evaluation of scalar expressions (parameters, block indices, loop variables) for one thread block.

Integers follow C on their type's width (int32 arithmetic wraps around); ``floordiv`` and ``mod`` are floor
division and its remainder, as the IR's constant folding does; ``div`` of integers is true division.
Float results are rounded to their type (float32 by default). Pointers advance by elements with ``+``/``-``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from anybit.dtypes import DataType, decode, encode
from anybit.interp.errors import InterpreterError
from anybit.interp.memory import Pointer
from anybit.ir.expr import Binary, BlockIndex, Const, Expr, ScalarCast, Select, Unary, Var, apply_binary

Scalar = object  # int | float | bool | Pointer


def round_to(value: Scalar, dtype: DataType) -> Scalar:
    """``value`` as held by a scalar of ``dtype``: ints wrap to the width, floats round to the type."""
    if isinstance(value, Pointer):
        return value
    if dtype.kind == "bool":
        return bool(value)
    if dtype.is_integer:
        if isinstance(value, float):
            value = int(value)  # C conversion of a float result to an int scalar truncates
        value = int(value)
        modulus = 1 << dtype.nbits
        value %= modulus
        if dtype.kind == "int" and value >= modulus // 2:
            value -= modulus
        return value
    if dtype.name == "float64":
        return float(value)
    return float(decode(encode(np.asarray(float(value)), dtype), dtype))


def evaluate(expr: Expr | int | float | bool, env: Mapping[Var, Scalar], block_index: tuple) -> Scalar:
    """The value of ``expr`` given variable values ``env`` and the block's grid index."""
    if isinstance(expr, (bool, int, float, np.integer, np.floating)):
        return expr
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, Var):
        try:
            return env[expr]
        except KeyError:
            raise InterpreterError(f"scalar variable {expr.name} is used before it has a value") from None
    if isinstance(expr, BlockIndex):
        return block_index[expr.axis]
    if isinstance(expr, Binary):
        lhs = evaluate(expr.lhs, env, block_index)
        rhs = evaluate(expr.rhs, env, block_index)
        if isinstance(lhs, Pointer) or isinstance(rhs, Pointer):
            return _pointer_arithmetic(expr.op, lhs, rhs)
        return round_to(_binary(expr.op, lhs, rhs), expr.dtype)
    if isinstance(expr, Unary):
        operand = evaluate(expr.operand, env, block_index)
        return round_to(_unary(expr.op, operand), expr.dtype)
    if isinstance(expr, ScalarCast):
        value = evaluate(expr.operand, env, block_index)
        target = expr.target
        if target.is_integer and isinstance(value, float):
            value = (
                int(np.rint(np.clip(value, target.min_value, target.max_value)))
                if math.isfinite(value)
                else 0
            )
        elif target.is_integer:
            value = min(max(int(value), target.min_value), target.max_value)
        return round_to(value, target)
    if isinstance(expr, Select):
        condition = evaluate(expr.condition, env, block_index)
        chosen = expr.on_true if condition else expr.on_false
        return round_to(evaluate(chosen, env, block_index), expr.dtype)
    raise InterpreterError(f"unknown scalar expression {type(expr).__name__}: {expr!r}")


def _pointer_arithmetic(op: str, lhs: Scalar, rhs: Scalar) -> Pointer:
    if op == "add" and isinstance(lhs, Pointer) and not isinstance(rhs, Pointer):
        return lhs.advanced(rhs)
    if op == "add" and isinstance(rhs, Pointer) and not isinstance(lhs, Pointer):
        return rhs.advanced(lhs)
    if op == "sub" and isinstance(lhs, Pointer) and not isinstance(rhs, Pointer):
        return lhs.advanced(-rhs)
    raise InterpreterError(f"unsupported pointer arithmetic: {lhs!r} {op} {rhs!r}")


def _binary(op: str, a: Scalar, b: Scalar) -> Scalar:
    try:
        return apply_binary(op, a, b)
    except ZeroDivisionError as error:
        raise InterpreterError(f"{error} in a scalar expression") from None
    except KeyError:
        raise InterpreterError(f"unknown scalar operator {op!r}") from None


def _unary(op: str, a: Scalar) -> Scalar:
    if op == "neg":
        return -a
    if op == "logical_not":
        return not a
    if op == "bit_not":
        return ~a
    if op == "abs":
        return abs(a)
    raise InterpreterError(f"unknown scalar operator {op!r}")
