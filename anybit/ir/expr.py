"""Scalar expressions of the VM: run-time integers and floats (block indices, parameters, loop variables).

Expressions are frozen dataclasses; ``==`` on them is structural equality (they hash and compare
as values).
Arithmetic and ordering operators build new expressions; run-time equality is written ``eq(a, b)`` (the front
end rewrites ``a == b`` in a kernel into it). Variables compare by identity: two loop variables named ``i``
are different variables.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from anybit.dtypes import DataType, boolean, float32, int32, int64

BINARY_OPS = frozenset(
    {
        "add",
        "sub",
        "mul",
        "div",
        "floordiv",
        "mod",
        "min",
        "max",
        "and",
        "or",
        "xor",
        "shl",
        "shr",
        "lt",
        "le",
        "gt",
        "ge",
        "eq",
        "ne",
        "logical_and",
        "logical_or",
    }
)
COMPARISON_OPS = frozenset({"lt", "le", "gt", "ge", "eq", "ne"})
LOGICAL_OPS = frozenset({"logical_and", "logical_or"})
UNARY_OPS = frozenset({"neg", "logical_not", "bit_not", "abs"})

#: How each binary op prints (infix symbol or function name).
BINARY_SYMBOLS = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "div": "/",
    "floordiv": "//",
    "mod": "%",
    "and": "&",
    "or": "|",
    "xor": "^",
    "shl": "<<",
    "shr": ">>",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "eq": "==",
    "ne": "!=",
    "logical_and": "and",
    "logical_or": "or",
}


def _operator(op: str, lhs, rhs):
    """``binary(op, lhs, rhs)`` for an operator, or NotImplemented so that e.g. a register tensor's reflected
    operator handles ``expr + tensor``."""
    for value in (lhs, rhs):
        if not isinstance(value, (Expr, int, float, bool)):
            return NotImplemented
    return binary(op, lhs, rhs)


class Expr:
    """Base of scalar expressions; operators build :class:`Binary` / :class:`Unary` nodes."""

    __slots__ = ()

    @property
    def dtype(self) -> DataType:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __add__(self, other):
        return _operator("add", self, other)

    def __radd__(self, other):
        return _operator("add", other, self)

    def __sub__(self, other):
        return _operator("sub", self, other)

    def __rsub__(self, other):
        return _operator("sub", other, self)

    def __mul__(self, other):
        return _operator("mul", self, other)

    def __rmul__(self, other):
        return _operator("mul", other, self)

    def __truediv__(self, other):
        return _operator("div", self, other)

    def __rtruediv__(self, other):
        return _operator("div", other, self)

    def __floordiv__(self, other):
        return _operator("floordiv", self, other)

    def __rfloordiv__(self, other):
        return _operator("floordiv", other, self)

    def __mod__(self, other):
        return _operator("mod", self, other)

    def __rmod__(self, other):
        return _operator("mod", other, self)

    def __and__(self, other):
        return _operator("and", self, other)

    def __rand__(self, other):
        return _operator("and", other, self)

    def __or__(self, other):
        return _operator("or", self, other)

    def __ror__(self, other):
        return _operator("or", other, self)

    def __xor__(self, other):
        return _operator("xor", self, other)

    def __rxor__(self, other):
        return _operator("xor", other, self)

    def __lshift__(self, other):
        return _operator("shl", self, other)

    def __rlshift__(self, other):
        return _operator("shl", other, self)

    def __rshift__(self, other):
        return _operator("shr", self, other)

    def __rrshift__(self, other):
        return _operator("shr", other, self)

    def __lt__(self, other):
        return _operator("lt", self, other)

    def __le__(self, other):
        return _operator("le", self, other)

    def __gt__(self, other):
        return _operator("gt", self, other)

    def __ge__(self, other):
        return _operator("ge", self, other)

    def __neg__(self):
        return unary("neg", self)

    def __invert__(self):
        return unary("bit_not", self)

    def __abs__(self):
        return unary("abs", self)

    def __bool__(self):
        raise TypeError(
            f"the run-time value `{self}` was used where Python needs a bool; inside a kernel write the "
            "condition "
            "in an `if`/`while` of the kernel body (the front end turns it into VM control flow), or use "
            "self.where(...) for values"
        )

    def __index__(self):
        raise TypeError(
            f"the run-time value `{self}` was used where Python needs a compile-time int (a shape, a range() "
            "bound, an index); use self.range(...) for run-time loops and pass sizes known at build time as "
            "compile-time parameters"
        )


@dataclass(frozen=True, eq=False, slots=True)
class Var(Expr):
    """A run-time scalar variable (parameter, loop variable, declared scalar); compares by identity."""

    name: str
    type: DataType | PointerType

    @property
    def dtype(self) -> DataType:
        return self.type if isinstance(self.type, DataType) else int64

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class PointerType:
    """The type of a pointer parameter: the address of packed elements of ``dtype`` in global memory."""

    dtype: DataType

    def __repr__(self) -> str:
        return f"ptr({self.dtype.name})"


@dataclass(frozen=True, slots=True)
class Const(Expr):
    """A compile-time constant of a scalar type."""

    value: int | float | bool
    const_dtype: DataType = field(default=int32)

    @property
    def dtype(self) -> DataType:
        return self.const_dtype

    def __repr__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True, slots=True)
class BlockIndex(Expr):
    """The index of the current thread block along grid axis ``axis`` (0 = x, 1 = y, 2 = z)."""

    axis: int

    @property
    def dtype(self) -> DataType:
        return int32

    def __repr__(self) -> str:
        return f"blockIdx.{'xyz'[self.axis]}"


@dataclass(frozen=True, slots=True)
class Binary(Expr):
    """``lhs op rhs`` with C-like typing (see :func:`binary_result_dtype`)."""

    op: str
    lhs: Expr
    rhs: Expr
    # The result dtype, worked out once: computed on each access, a deep expression's dtype walked its
    # whole tree every time (a quarter of a decode kernel's code generation).
    _dtype: DataType = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_dtype", binary_result_dtype(self.op, self.lhs.dtype, self.rhs.dtype))

    @property
    def dtype(self) -> DataType:
        return self._dtype

    def __repr__(self) -> str:
        if self.op in ("min", "max"):
            return f"{self.op}({self.lhs!r}, {self.rhs!r})"
        return f"({self.lhs!r} {BINARY_SYMBOLS[self.op]} {self.rhs!r})"


@dataclass(frozen=True, slots=True)
class Unary(Expr):
    """``op operand`` for neg, logical_not, bit_not, abs."""

    op: str
    operand: Expr

    @property
    def dtype(self) -> DataType:
        return boolean if self.op == "logical_not" else self.operand.dtype

    def __repr__(self) -> str:
        symbol = {"neg": "-", "logical_not": "not ", "bit_not": "~"}.get(self.op)
        return f"{symbol}{self.operand!r}" if symbol else f"{self.op}({self.operand!r})"


@dataclass(frozen=True, slots=True)
class ScalarCast(Expr):
    """``operand`` converted to ``target`` (round to nearest even, saturating, as DESIGN §4.1)."""

    operand: Expr
    target: DataType

    @property
    def dtype(self) -> DataType:
        return self.target

    def __repr__(self) -> str:
        return f"{self.target.name}({self.operand!r})"


@dataclass(frozen=True, slots=True)
class Select(Expr):
    """``on_true if condition else on_false`` evaluated at run time."""

    condition: Expr
    on_true: Expr
    on_false: Expr
    _dtype: DataType = field(init=False, repr=False, compare=False)  # worked out once, as Binary's

    def __post_init__(self) -> None:
        dtype = binary_result_dtype("add", self.on_true.dtype, self.on_false.dtype)
        object.__setattr__(self, "_dtype", dtype)

    @property
    def dtype(self) -> DataType:
        return self._dtype

    def __repr__(self) -> str:
        return f"({self.on_true!r} if {self.condition!r} else {self.on_false!r})"


ExprLike = Expr | int | float | bool


def as_expr(value: ExprLike) -> Expr:
    """Wrap a Python number as a :class:`Const` (ints as int32, or int64 when they do not fit)."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool):
        return Const(value, boolean)
    if isinstance(value, int):
        return Const(value, int32 if -(2**31) <= value < 2**31 else int64)
    if isinstance(value, float):
        return Const(value, float32)
    raise TypeError(f"expected a run-time scalar expression or a Python number, got {type(value).__name__}")


def binary_result_dtype(op: str, lhs: DataType, rhs: DataType) -> DataType:
    """The dtype of ``lhs op rhs``: bool for comparisons and logic, else the wider of the operands."""
    if op in COMPARISON_OPS or op in LOGICAL_OPS:
        return boolean
    if lhs.is_float or rhs.is_float:
        if not lhs.is_float:
            return rhs
        if not rhs.is_float:
            return lhs
        return lhs if lhs.nbits >= rhs.nbits else rhs
    if op == "div":
        return float32
    return int64 if int64 in (lhs, rhs) else int32


def apply_binary(op: str, a, b):
    """The value of ``a op b`` on Python numbers, as every executor defines it.

    ``floordiv``/``mod`` are floor division and its remainder (as in Python); integer division by zero
    raises ZeroDivisionError; float division by zero gives ±inf (or NaN for 0/0, floordiv and mod).
    """
    if op in ("div", "floordiv", "mod") and b == 0:
        if not (isinstance(a, float) or isinstance(b, float)):
            raise ZeroDivisionError(f"integer {op} by zero ({a} {BINARY_SYMBOLS[op]} {b})")
        if op == "div" and a != 0:
            return math.copysign(math.inf, a)
        return math.nan
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "div":
        return a / b
    if op == "floordiv":
        return a // b
    if op == "mod":
        return a % b
    if op == "min":
        return min(a, b)
    if op == "max":
        return max(a, b)
    if op == "and":
        return a & b
    if op == "or":
        return a | b
    if op == "xor":
        return a ^ b
    if op == "shl":
        return a << b
    if op == "shr":
        return a >> b
    if op == "logical_and":
        return bool(a) and bool(b)
    if op == "logical_or":
        return bool(a) or bool(b)
    return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b, "eq": a == b, "ne": a != b}[op]


def binary(op: str, lhs: ExprLike, rhs: ExprLike) -> Expr:
    """Build ``lhs op rhs``, folding constants and the identities x+0, x*1, x*0, x//1, x%1."""
    assert op in BINARY_OPS, op
    lhs, rhs = as_expr(lhs), as_expr(rhs)
    if isinstance(lhs, Const) and isinstance(rhs, Const):
        if op in ("floordiv", "mod") and rhs.value == 0:
            raise ZeroDivisionError(f"constant {op} by zero in {lhs!r} {BINARY_SYMBOLS[op]} {rhs!r}")
        value = apply_binary(op, lhs.value, rhs.value)
        return Const(value, binary_result_dtype(op, lhs.dtype, rhs.dtype))
    if isinstance(rhs, Const) and not lhs.dtype.is_float:
        if op in ("add", "sub", "or", "xor", "shl", "shr") and rhs.value == 0:
            return lhs
        if op in ("mul", "floordiv") and rhs.value == 1:
            return lhs
        if op == "mul" and rhs.value == 0:
            return Const(0, binary_result_dtype(op, lhs.dtype, rhs.dtype))
        if op == "mod" and rhs.value == 1:
            return Const(0, binary_result_dtype(op, lhs.dtype, rhs.dtype))
    if isinstance(lhs, Const) and not rhs.dtype.is_float:
        if op in ("add", "or", "xor") and lhs.value == 0:
            return rhs
        if op == "mul" and lhs.value == 1:
            return rhs
        if op == "mul" and lhs.value == 0:
            return Const(0, binary_result_dtype(op, lhs.dtype, rhs.dtype))
    return Binary(op, lhs, rhs)


def unary(op: str, operand: ExprLike) -> Expr:
    """Build ``op operand``, folding constants."""
    assert op in UNARY_OPS, op
    operand = as_expr(operand)
    if isinstance(operand, Const):
        value = operand.value
        folded = {
            "neg": lambda: -value,
            "logical_not": lambda: not value,
            "bit_not": lambda: ~value,
            "abs": lambda: abs(value),
        }[op]()
        return Const(folded, boolean if op == "logical_not" else operand.dtype)
    return Unary(op, operand)


def eq(lhs: ExprLike, rhs: ExprLike) -> Expr:
    """Run-time ``lhs == rhs``."""
    return binary("eq", lhs, rhs)


def ne(lhs: ExprLike, rhs: ExprLike) -> Expr:
    """Run-time ``lhs != rhs``."""
    return binary("ne", lhs, rhs)


def minimum(lhs: ExprLike, rhs: ExprLike) -> Expr:
    """Run-time ``min(lhs, rhs)``."""
    return binary("min", lhs, rhs)


def maximum(lhs: ExprLike, rhs: ExprLike) -> Expr:
    """Run-time ``max(lhs, rhs)``."""
    return binary("max", lhs, rhs)


def cdiv(lhs: ExprLike, rhs: ExprLike) -> Expr | int:
    """Ceiling division; stays a Python int when both operands are ints."""
    if isinstance(lhs, int) and isinstance(rhs, int):
        return -(-lhs // rhs)
    return (as_expr(lhs) + (as_expr(rhs) - 1)) // rhs


def constant_value(value: ExprLike):
    """The Python value of a constant expression or number, or None when it is only known at run time."""
    if isinstance(value, (int, float, bool)):
        return value
    if isinstance(value, Const):
        return value.value
    return None


def is_power_of_two(value: int) -> bool:
    """True for 1, 2, 4, 8, ..."""
    return value > 0 and (value & (value - 1)) == 0


_NO_ASSUMPTIONS: Mapping = MappingProxyType({})
_ASSUMED_DIVISORS: contextvars.ContextVar[Mapping] = contextvars.ContextVar("anybit_assumed_divisors")


@contextlib.contextmanager
def assumed_divisibility(divisibility):
    """Within the block, :func:`gcd_divisor` knows that each ``(var, divisor)`` of ``divisibility`` holds.

    Code generation runs inside it with a program's ``divisibility`` facts (declared by the kernel author
    with ``self.assume_divisible`` and checked at launch), so vector widths can rely on them.
    """
    token = _ASSUMED_DIVISORS.set({var: divisor for var, divisor in divisibility})
    try:
        yield
    finally:
        _ASSUMED_DIVISORS.reset(token)


def gcd_divisor(value: ExprLike) -> int:
    """The largest power of two proven to divide ``value`` (0 divides by everything).

    A run-time variable divides by what :func:`assumed_divisibility` says of it (1 by default).
    """
    known = constant_value(value)
    if isinstance(known, int):
        return 1 << 30 if known == 0 else known & -known
    if isinstance(value, Var):
        divisor = _ASSUMED_DIVISORS.get(_NO_ASSUMPTIONS).get(value, 1)
        return divisor & -divisor
    return 1 if not isinstance(value, Binary) else _binary_divisor(value)


def _binary_divisor(expr: Binary) -> int:
    if expr.op == "mul":
        return min(1 << 30, gcd_divisor(expr.lhs) * gcd_divisor(expr.rhs))
    if expr.op in ("add", "sub"):
        return math.gcd(gcd_divisor(expr.lhs), gcd_divisor(expr.rhs))
    if expr.op == "shl" and isinstance(constant_value(expr.rhs), int):
        return min(1 << 30, gcd_divisor(expr.lhs) << constant_value(expr.rhs))
    return 1


__all__ = [
    "Expr",
    "Var",
    "apply_binary",
    "assumed_divisibility",
    "PointerType",
    "Const",
    "BlockIndex",
    "Binary",
    "Unary",
    "ScalarCast",
    "Select",
    "ExprLike",
    "as_expr",
    "binary",
    "unary",
    "eq",
    "ne",
    "minimum",
    "maximum",
    "cdiv",
    "constant_value",
    "gcd_divisor",
    "binary_result_dtype",
    "is_power_of_two",
    "BINARY_OPS",
    "UNARY_OPS",
    "COMPARISON_OPS",
]
