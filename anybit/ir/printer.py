"""Readable text for VM programs, in the spirit of the paper's figures: one instruction a line, with types."""

from __future__ import annotations

from dataclasses import fields

from anybit.ir.expr import Expr
from anybit.ir.instructions import Instruction, defined_tensor
from anybit.ir.statements import BreakStmt, ForStmt, IfStmt, Program, WhileStmt
from anybit.ir.tensors import Tensor, type_string

INDENT = "    "


def format_value(value) -> str:
    """One operand as text: tensors and variables by name, tuples as lists, others by repr."""
    if isinstance(value, (Tensor, Expr)):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def format_instruction(inst: Instruction) -> str:
    """``out = name(arg=..., ...)  # type`` for one instruction."""
    output = defined_tensor(inst)
    # element-wise and reduction instructions print as their operation: ``t = add(lhs=a, rhs=b)``
    op = getattr(inst, "op", None)
    args = [
        f"{f.name}={format_value(getattr(inst, f.name))}"
        for f in fields(inst)
        if f.name not in ("output", "source", "op") and getattr(inst, f.name) is not None
    ]
    call = f"{op if isinstance(op, str) else inst.name}({', '.join(args)})"
    if output is None:
        return call
    return f"{output.name} = {call}  # {type_string(output)}"


def format_body(body: tuple, depth: int) -> list[str]:
    """The lines of a statement list at indentation ``depth``."""
    pad = INDENT * depth
    lines: list[str] = []
    for stmt in body:
        if isinstance(stmt, ForStmt):
            unroll = f"  # unroll={stmt.unroll}" if stmt.unroll is not None else ""
            lines.append(
                f"{pad}for {stmt.var!r} in range({stmt.start!r}, {stmt.stop!r}, {stmt.step!r}):{unroll}"
            )
            lines += format_body(stmt.body, depth + 1) or [pad + INDENT + "pass"]
        elif isinstance(stmt, IfStmt):
            lines.append(f"{pad}if {stmt.condition!r}:")
            lines += format_body(stmt.then_body, depth + 1) or [pad + INDENT + "pass"]
            if stmt.else_body:
                lines.append(f"{pad}else:")
                lines += format_body(stmt.else_body, depth + 1)
        elif isinstance(stmt, WhileStmt):
            lines.append(f"{pad}while {stmt.condition!r}:")
            lines += format_body(stmt.body, depth + 1) or [pad + INDENT + "pass"]
        elif isinstance(stmt, BreakStmt):
            lines.append(f"{pad}break")
        elif isinstance(stmt, Instruction):
            lines.append(pad + format_instruction(stmt))
        else:
            raise TypeError(f"cannot print statement of type {type(stmt).__name__}")
    return lines


def format_program(program: Program) -> str:
    """The whole program: signature with grid and warps, then the body."""
    params = ", ".join(
        f"{p.name}: {p.type!r}" if not hasattr(p.type, "name") else f"{p.name}: {p.type.name}"
        for p in program.params
    )
    grid = ", ".join(repr(g) for g in program.grid)
    header = f"def {program.name}({params})  # grid=[{grid}], warps={program.num_warps}"
    lines = [header]
    if program.divisibility:
        facts = ", ".join(f"{var.name} % {divisor} == 0" for var, divisor in program.divisibility)
        lines.append(INDENT + f"# assumes: {facts}")
    if program.constants:
        lines.append(INDENT + "# constants: " + ", ".join(f"{k}={v!r}" for k, v in program.constants))
    lines += format_body(program.body, 1) or [INDENT + "pass"]
    return "\n".join(lines)
