"""Scalar VM expressions (``anybit.ir.expr``) printed as C expressions.

Floor division and modulo (the IR's ``//`` and ``%``) are plain C ``/`` and ``%`` only where both operands
are proven non-negative; otherwise the ``ab_floordiv``/``ab_floormod`` helpers give the floor semantics.
"""

from __future__ import annotations

import math

from anybit.dtypes import DataType
from anybit.ir.expr import Binary, BlockIndex, Const, PointerType, ScalarCast, Select, Unary, Var, int32

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

_INFIX = {
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
    """Prints expressions; knows the C names of variables and which variables are non-negative."""

    def __init__(self) -> None:
        self.names: dict[Var, str] = {THREAD: "tid"}
        self.nonnegative: set[Var] = {THREAD}
        self._used: set[str] = {"tid"}

    def bind(self, var: Var, *, nonnegative: bool = False, name: str | None = None) -> str:
        """Give ``var`` a unique C name (sanitised from its own) and return it."""
        base = name or "v_" + "".join(c if c.isalnum() or c == "_" else "_" for c in var.name)
        candidate, k = base, 1
        while candidate in self._used:
            candidate, k = f"{base}_{k}", k + 1
        self._used.add(candidate)
        self.names[var] = candidate
        if nonnegative:
            self.nonnegative.add(var)
        return candidate

    # ------------------------------------------------------------------------------------------ analysis
    def is_nonnegative(self, expr) -> bool:
        """Whether ``expr`` is proven ≥ 0 for every run-time value."""
        if isinstance(expr, (int, float)):
            return expr >= 0
        if isinstance(expr, Const):
            return expr.value >= 0
        if isinstance(expr, BlockIndex):
            return True
        if isinstance(expr, Var):
            return expr in self.nonnegative or expr.dtype.kind in ("uint", "bool")
        if isinstance(expr, Binary):
            lhs, rhs = self.is_nonnegative(expr.lhs), self.is_nonnegative(expr.rhs)
            if expr.op in ("add", "mul", "floordiv", "mod", "min", "max", "or", "xor", "shl", "shr"):
                return lhs and rhs
            if expr.op == "and":
                return lhs or rhs
            return expr.op in ("lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or")
        if isinstance(expr, Select):
            return self.is_nonnegative(expr.on_true) and self.is_nonnegative(expr.on_false)
        if isinstance(expr, Unary):
            return expr.op in ("abs", "logical_not")
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
        lhs, rhs = self.print(expr.lhs), self.print(expr.rhs)
        op = expr.op
        if isinstance(expr.lhs, Var) and isinstance(expr.lhs.type, PointerType) and op in ("add", "sub"):
            bits = expr.lhs.type.dtype.nbits
            return f"({lhs} {_INFIX[op]} ((long long)({rhs}) * {bits}) / 8)"
        if op in _INFIX:
            return f"({lhs} {_INFIX[op]} {rhs})"
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
        if self.is_nonnegative(expr.lhs) and self.is_nonnegative(expr.rhs):
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
