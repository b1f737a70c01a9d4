"""Scalar VM expressions (``anybit.ir.expr``) printed as C expressions.

Floor division and modulo (the IR's ``//`` and ``%``) by a positive power of two are an arithmetic shift and
a mask (exact for every two's-complement value); by another positive constant, unsigned ``/`` and ``%`` where
the dividend is proven non-negative (:meth:`ExprPrinter.lower_bound`); otherwise the
``ab_floordiv``/``ab_floormod`` helpers give the floor semantics.

Inside run-time loops (``loop_depth > 0``) an integer subexpression that depends only on kernel parameters,
the thread index and block indices is computed once in the kernel prologue (the ``hoist`` hook) and printed
as its name: loop-invariant index arithmetic is not left to the C compiler's register allocator to
recompute.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from anybit.dtypes import DataType
from anybit.ir.expr import (
    Binary,
    BlockIndex,
    Const,
    PointerType,
    ScalarCast,
    Select,
    Unary,
    Var,
    binary,
    int32,
    is_power_of_two,
)

#: The thread index ``t`` of the layouts (``threadIdx.x``), bound in the kernel prologue.
THREAD = Var("tid", int32)

_C_SCALAR = {
    "boolean": "bool",
    "int8": "int",
    "uint8": "unsigned",
    "int16": "int",
    "int32": "int",
    "uint32": "unsigned",
    "int64": "long long",
    "float16": "float",
    "bfloat16": "float",
    "float32": "float",
    "float64": "double",
}

#: C spelling of the VM binary operators that map to one C operator (division and modulo need care).
C_INFIX = {
    "add": "+",
    "sub": "-",
    "mul": "*",
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
    "logical_and": "&&",
    "logical_or": "||",
}


def scalar_ctype(dtype: DataType) -> str:
    """The C type of a run-time scalar of ``dtype``."""
    if dtype.name not in _C_SCALAR:
        raise NotImplementedError(f"run-time scalars of {dtype.name} are not supported by the CUDA backend")
    return _C_SCALAR[dtype.name]


class ExprPrinter:
    """Prints expressions; knows the C names of variables, their proven lower bounds and which variables are
    available in the kernel prologue (for hoisting loop-invariant subexpressions)."""

    def __init__(self, hoist: Callable[[str], None] | None = None) -> None:
        self.names: dict[Var, str] = {THREAD: "tid"}
        self.nonnegative: set[Var] = {THREAD}
        #: Proven lower bounds of variables (loop variables: their start), beyond ``nonnegative``.
        self.lower_bounds: dict[Var, int] = {}
        #: Variables whose value is known in the kernel prologue (the thread index, kernel parameters).
        self.invariant: set[Var] = {THREAD}
        #: Appends a C line to the kernel prologue; None disables hoisting.
        self.hoist = hoist
        #: How many run-time loops enclose the code being printed; hoisting happens only inside one.
        self.loop_depth = 0
        self._hoisted: dict[object, str] = {}
        self._used: set[str] = {"tid"}

    def bind(self, var: Var, *, nonnegative: bool = False, name: str | None = None) -> str:
        """Give ``var`` a unique C name (sanitised from its own) and return it."""
        base = name or "v_" + "".join(c if c.isalnum() or c == "_" else "_" for c in var.name)
        candidate = self._unique(base)
        self.names[var] = candidate
        if nonnegative:
            self.nonnegative.add(var)
        return candidate

    def _unique(self, base: str) -> str:
        candidate, k = base, 1
        while candidate in self._used:
            candidate, k = f"{base}_{k}", k + 1
        self._used.add(candidate)
        return candidate

    # ------------------------------------------------------------------------------------------ analysis
    def is_nonnegative(self, expr) -> bool:
        """Whether ``expr`` is proven ≥ 0 for every run-time value."""
        if isinstance(expr, float):
            return expr >= 0
        if isinstance(expr, Const) and isinstance(expr.value, float):
            return expr.value >= 0
        bound = self.lower_bound(expr)
        return bound is not None and bound >= 0

    def lower_bound(self, expr) -> int | None:
        """A proven lower bound of the integer ``expr`` (None when nothing is proven).

        Integer arithmetic is taken as exact (no wrap-around), as everywhere in the code generator.
        """
        if isinstance(expr, bool):
            return int(expr)
        if isinstance(expr, int):
            return expr
        if isinstance(expr, Const):
            return int(expr.value) if isinstance(expr.value, (int, bool)) else None
        if isinstance(expr, BlockIndex):
            return 0
        if isinstance(expr, Var):
            if expr in self.lower_bounds:
                return self.lower_bounds[expr]
            return 0 if expr in self.nonnegative or expr.dtype.kind in ("uint", "bool") else None
        if isinstance(expr, Binary):
            return self._binary_lower_bound(expr)
        if isinstance(expr, Select):
            a, b = self.lower_bound(expr.on_true), self.lower_bound(expr.on_false)
            return None if a is None or b is None else min(a, b)
        if isinstance(expr, Unary):
            return 0 if expr.op in ("abs", "logical_not") else None
        if isinstance(expr, ScalarCast):
            return 0 if expr.target.kind in ("uint", "bool") else None
        return None

    def _binary_lower_bound(self, expr: Binary) -> int | None:
        op = expr.op
        if expr.dtype.is_float:
            return None
        if op in ("lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or"):
            return 0
        lhs, rhs = self.lower_bound(expr.lhs), self.lower_bound(expr.rhs)
        divisor = _positive_constant(expr.rhs)
        if op == "add":
            return None if lhs is None or rhs is None else lhs + rhs
        if op == "sub":
            subtrahend = _integer_constant(expr.rhs)
            return None if lhs is None or subtrahend is None else lhs - subtrahend
        if op == "mul":
            if lhs is not None and rhs is not None and lhs >= 0 and rhs >= 0:
                return lhs * rhs
            factor = _positive_constant(expr.lhs)
            if factor is not None and rhs is not None:
                return factor * rhs
            return divisor * lhs if divisor is not None and lhs is not None else None
        if op == "floordiv":
            return lhs // divisor if divisor is not None and lhs is not None else None
        if op == "mod":
            return 0 if divisor is not None else None
        if op == "min":
            return None if lhs is None or rhs is None else min(lhs, rhs)
        if op == "max":
            known = [b for b in (lhs, rhs) if b is not None]
            return max(known) if known else None
        if op == "and":
            return 0 if (lhs is not None and lhs >= 0) or (rhs is not None and rhs >= 0) else None
        if op in ("or", "xor", "shl", "shr"):
            return 0 if lhs is not None and rhs is not None and lhs >= 0 and rhs >= 0 else None
        return None

    def is_invariant(self, expr) -> bool:
        """Whether ``expr`` is an integer or boolean value computable in the kernel prologue."""
        if isinstance(expr, (bool, int, Const, BlockIndex)):
            return True
        if isinstance(expr, Var):
            return expr in self.invariant and not isinstance(expr.type, PointerType)
        if isinstance(expr, (Binary, Unary, Select, ScalarCast)) and expr.dtype.is_float:
            return False
        if isinstance(expr, Binary):
            if expr.op == "div":
                return False
            # Division only by non-zero constants: the prologue may evaluate what a branch would have skipped.
            if expr.op in ("floordiv", "mod") and _integer_constant(expr.rhs) in (None, 0):
                return False
            return self.is_invariant(expr.lhs) and self.is_invariant(expr.rhs)
        if isinstance(expr, Unary):
            return self.is_invariant(expr.operand)
        if isinstance(expr, Select):
            return all(self.is_invariant(e) for e in (expr.condition, expr.on_true, expr.on_false))
        if isinstance(expr, ScalarCast):
            return expr.target.kind in ("int", "uint", "bool") and self.is_invariant(expr.operand)
        return False

    # ------------------------------------------------------------------------------------------ printing
    def __call__(self, expr) -> str:
        return self.print(expr)

    def print(self, expr) -> str:
        """C text of ``expr`` (a Python number is printed as a constant)."""
        if isinstance(expr, bool):
            return "true" if expr else "false"
        if isinstance(expr, int):
            return _int_literal(expr)
        if isinstance(expr, float):
            return _float_literal(expr, "float")
        if isinstance(expr, Const):
            return _const(expr)
        if isinstance(expr, Var):
            if expr not in self.names:
                raise KeyError(f"variable {expr.name} is used before it is defined")
            return self.names[expr]
        if isinstance(expr, BlockIndex):
            return f"(int)blockIdx.{'xyz'[expr.axis]}"
        if self.hoist is not None and self.loop_depth > 0 and self.is_invariant(expr):
            return self._hoisted_name(expr)
        return self._print_operation(expr)

    def _hoisted_name(self, expr) -> str:
        if expr not in self._hoisted:
            depth, self.loop_depth = self.loop_depth, 0  # the definition's own operands print in full
            try:
                text = self._print_operation(expr)
            finally:
                self.loop_depth = depth
            name = self._unique(f"h{len(self._hoisted)}")
            self.hoist(f"const {scalar_ctype(expr.dtype)} {name} = {text};")
            self._hoisted[expr] = name
        return self._hoisted[expr]

    def _print_operation(self, expr) -> str:
        if isinstance(expr, Binary):
            return self._binary(expr)
        if isinstance(expr, Unary):
            operand = self.print(expr.operand)
            c = {"neg": "-", "logical_not": "!", "bit_not": "~"}.get(expr.op)
            if c:
                return f"({c}{operand})"
            return f"({'fabs' if expr.operand.dtype.is_float else 'abs'}({operand}))"
        if isinstance(expr, ScalarCast):
            return self._cast(expr)
        if isinstance(expr, Select):
            return (
                f"({self.print(expr.condition)} ? {self.print(expr.on_true)} : {self.print(expr.on_false)})"
            )
        raise NotImplementedError(
            f"the CUDA backend cannot print expression {expr!r} ({type(expr).__name__})"
        )

    def _binary(self, expr: Binary) -> str:
        op = expr.op
        if op in ("floordiv", "mod") and not expr.dtype.is_float:
            simpler = _cancel_multiple(expr)
            if simpler is not expr:
                return self.print(simpler)
        lhs, rhs = self.print(expr.lhs), self.print(expr.rhs)
        if isinstance(expr.lhs, Var) and isinstance(expr.lhs.type, PointerType) and op in ("add", "sub"):
            bits = expr.lhs.type.dtype.nbits
            return f"({lhs} {C_INFIX[op]} ((long long)({rhs}) * {bits}) / 8)"
        if op in C_INFIX:
            return f"({lhs} {C_INFIX[op]} {rhs})"
        if op in ("min", "max"):
            return f"{op}({lhs}, {rhs})"
        if op == "div":
            ctype = scalar_ctype(expr.dtype)
            return f"(({ctype})({lhs}) / ({ctype})({rhs}))"
        if expr.dtype.is_float:
            fn = "floor" if op == "floordiv" else "ab_fmod_floor"
            if op == "floordiv":
                return f"{fn}({lhs} / {rhs})"
            return f"({lhs} - floor({lhs} / {rhs}) * {rhs})"
        divisor = _positive_constant(expr.rhs)
        if divisor is not None and is_power_of_two(divisor) and expr.dtype.kind == "int":
            # Floor division by 2^s is the arithmetic shift; the floor remainder is the low s bits (both
            # exact in two's complement), in the expression's C type as the helpers would compute them.
            if expr.lhs.dtype != expr.dtype:
                lhs = f"(({scalar_ctype(expr.dtype)})({lhs}))"
            if op == "floordiv":
                return f"({lhs} >> {divisor.bit_length() - 1})"
            return f"({lhs} & {_int_literal(divisor - 1)})"
        nonnegative = self.is_nonnegative(expr.lhs)
        if nonnegative and divisor is not None and expr.dtype.name == "int32":
            # Unsigned division by a constant needs no sign correction.
            return f"((int)((unsigned)({lhs}) {'/' if op == 'floordiv' else '%'} {divisor}u))"
        if nonnegative and self.is_nonnegative(expr.rhs):
            return f"({lhs} {'/' if op == 'floordiv' else '%'} {rhs})"
        ctype = scalar_ctype(expr.dtype)
        helper = "ab_floordiv" if op == "floordiv" else "ab_floormod"
        return f"{helper}<{ctype}>({lhs}, {rhs})"

    def _cast(self, expr: ScalarCast) -> str:
        from anybit.cuda.registers import encode_value

        target, source = expr.target, expr.operand.dtype
        operand = self.print(expr.operand)
        if target.name not in _C_SCALAR:
            raise NotImplementedError(f"scalar casts to {target.name} are not supported")
        if target.kind in ("int", "uint") and source.is_float:
            return (
                f"(({scalar_ctype(target)})ab_saturate_int((double)({operand}), "
                f"{target.min_value}LL, {target.max_value}LL))"
            )
        if target.kind in ("int", "uint") and target.nbits < 32:
            return (
                f"(({scalar_ctype(target)})ab_saturate_int((long long)({operand}), "
                f"{target.min_value}LL, {target.max_value}LL))"
            )
        if target.name == "float16":
            code = encode_value(operand, target, saturate=True)
            return f"__half2float(__ushort_as_half((unsigned short){code}))"
        if target.name == "bfloat16":
            return (
                f"__bfloat162float(__ushort_as_bfloat16((unsigned short)"
                f"{encode_value(operand, target, saturate=True)}))"
            )
        if target.name == "boolean":
            return f"(({operand}) != 0)"
        return f"(({scalar_ctype(target)})({operand}))"


def _integer_constant(expr) -> int | None:
    if isinstance(expr, bool):
        return None
    if isinstance(expr, int):
        return expr
    if isinstance(expr, Const) and isinstance(expr.value, int) and not isinstance(expr.value, bool):
        return expr.value
    return None


def _positive_constant(expr) -> int | None:
    value = _integer_constant(expr)
    return value if value is not None and value > 0 else None


def _cancel_multiple(expr: Binary):
    """``(x * c) // d`` → ``x * (c / d)`` and ``(x * c) % d`` → 0 when ``d`` divides ``c`` (exact for every
    integer ``x``); otherwise ``expr`` itself."""
    d = _positive_constant(expr.rhs)
    lhs = expr.lhs
    if d is None or not isinstance(lhs, Binary) or lhs.op != "mul":
        return expr
    for x, c in ((lhs.lhs, lhs.rhs), (lhs.rhs, lhs.lhs)):
        c = _integer_constant(c)
        if c is not None and c % d == 0:
            return binary("mul", x, c // d) if expr.op == "floordiv" else Const(0, expr.dtype)
    return expr


def _int_literal(value: int) -> str:
    if -(2**31) <= value < 2**31:
        return str(value) if value >= 0 else f"({value})"
    return f"({value}LL)"


def _float_literal(value: float, ctype: str) -> str:
    if math.isnan(value):
        return (
            "__int_as_float(0x7fc00000)" if ctype == "float" else "__longlong_as_double(0x7ff8000000000000LL)"
        )
    if math.isinf(value):
        sign = "-" if value < 0 else ""
        return f"({sign}__int_as_float(0x7f800000))"
    text = repr(float(value))
    return f"({text}f)" if ctype == "float" else f"({text})"


def _const(expr: Const) -> str:
    dtype = expr.dtype
    if dtype.name == "boolean":
        return "true" if expr.value else "false"
    if dtype.is_float:
        return _float_literal(float(expr.value), "double" if dtype.nbits == 64 else "float")
    value = int(expr.value)
    if dtype.name == "int64":
        return f"({value}LL)"
    if dtype.kind == "uint":
        return f"{value}u"
    return _int_literal(value)
