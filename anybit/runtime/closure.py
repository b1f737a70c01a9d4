"""Turn scalar IR expressions (grid extents, workspace sizes) into Python closures, once per kernel.

The closure takes the tuple of launch arguments and returns the values, so a launch evaluates the grid with a
single Python call instead of walking the expression tree. Semantics follow the IR's constant folding
(``floordiv``/``mod`` are Python's floor division and remainder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from anybit.ir.expr import (
    BINARY_SYMBOLS,
    Binary,
    BlockIndex,
    Const,
    Expr,
    ScalarCast,
    Select,
    Unary,
    Var,
    as_expr,
)

_INFIX = BINARY_SYMBOLS  # Python spells every VM binary operator the way the IR prints it


def python_source(expr: Expr, positions: dict[str, int]) -> str:
    """Python source of ``expr`` where parameter ``name`` reads ``args[positions[name]]``."""
    if isinstance(expr, Const):
        return repr(expr.value)
    if isinstance(expr, Var):
        if expr.name not in positions:
            raise ValueError(
                f"launch expression uses '{expr.name}', which is not a scalar parameter of the kernel "
                f"(scalar parameters: {', '.join(positions) or 'none'})"
            )
        return f"args[{positions[expr.name]}]"
    if isinstance(expr, Binary):
        lhs, rhs = python_source(expr.lhs, positions), python_source(expr.rhs, positions)
        if expr.op in ("min", "max"):
            return f"{expr.op}({lhs}, {rhs})"
        return f"({lhs} {_INFIX[expr.op]} {rhs})"
    if isinstance(expr, Unary):
        operand = python_source(expr.operand, positions)
        return {
            "neg": f"(-{operand})",
            "logical_not": f"(not {operand})",
            "bit_not": f"(~{operand})",
            "abs": f"abs({operand})",
        }[expr.op]
    if isinstance(expr, ScalarCast):
        converter = "float" if expr.target.is_float else ("bool" if expr.target.kind == "bool" else "int")
        return f"{converter}({python_source(expr.operand, positions)})"
    if isinstance(expr, Select):
        return (
            f"({python_source(expr.on_true, positions)} if {python_source(expr.condition, positions)} "
            f"else {python_source(expr.on_false, positions)})"
        )
    if isinstance(expr, BlockIndex):
        raise ValueError("a launch expression (grid or workspace size) cannot use the block index")
    raise TypeError(f"cannot evaluate {type(expr).__name__} `{expr!r}` on the host")


def compile_exprs(exprs: Sequence[Expr | int], positions: dict[str, int]) -> Callable[[tuple], tuple]:
    """A function ``f(args) -> tuple`` evaluating every expression of ``exprs`` over the launch arguments."""
    parts = [python_source(as_expr(e), positions) for e in exprs]
    text = f"lambda args: ({', '.join(parts)},)"
    return eval(
        compile(text, "<anybit launch expression>", "eval"),
        {
            "__builtins__": {},
            "min": min,  # noqa: S307
            "max": max,
            "abs": abs,
            "int": int,
            "float": float,
            "bool": bool,
        },
    )
