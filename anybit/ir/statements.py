"""Structured control flow (the VM keeps for/if/while instead of jumps) and the program itself."""

from __future__ import annotations

from dataclasses import dataclass, field

from anybit.ir.expr import Expr, Var
from anybit.ir.instructions import Instruction, SourceLocation


@dataclass(frozen=True, slots=True)
class ForStmt:
    """``for var in range(start, stop, step): body``; ``unroll`` is a hint (None, True or a factor)."""

    var: Var
    start: Expr
    stop: Expr
    step: Expr
    body: tuple
    unroll: int | bool | None = None
    source: SourceLocation | None = field(default=None, kw_only=True, compare=False)


@dataclass(frozen=True, slots=True)
class IfStmt:
    """``if condition: then_body else: else_body`` on a run-time condition, uniform across the block."""

    condition: Expr
    then_body: tuple
    else_body: tuple = ()
    source: SourceLocation | None = field(default=None, kw_only=True, compare=False)


@dataclass(frozen=True, slots=True)
class WhileStmt:
    """``while condition: body``; the condition is re-evaluated before every iteration."""

    condition: Expr
    body: tuple
    source: SourceLocation | None = field(default=None, kw_only=True, compare=False)


@dataclass(frozen=True, slots=True)
class BreakStmt:
    """Leave the innermost run-time loop."""

    source: SourceLocation | None = field(default=None, kw_only=True, compare=False)


Statement = Instruction | ForStmt | IfStmt | WhileStmt | BreakStmt
STATEMENT_CLASSES = (ForStmt, IfStmt, WhileStmt, BreakStmt)


@dataclass(frozen=True, slots=True)
class Program:
    """A VM program: run-time parameters, a grid of thread blocks, the block's warps, and the body.

    ``constants`` records the compile-time parameters the program was specialised for (for printing and
    cache keys); ``grid`` has three extents, expressions of the parameters. ``divisibility`` lists
    ``(param, divisor)`` facts the author declared (``self.assume_divisible``): code generation relies on
    them and every executor checks them against the arguments before running.
    """

    name: str
    params: tuple[Var, ...]
    grid: tuple[Expr, Expr, Expr]
    num_warps: int
    body: tuple
    constants: tuple[tuple[str, object], ...] = ()
    divisibility: tuple[tuple[Var, int], ...] = ()
    #: Blocks per SM the compiled code leaves room for (``__launch_bounds__``'s second argument; 0: none).
    min_blocks: int = 0
    #: Blocks of a thread-block cluster along each grid axis (sm_90; (1, 1, 1): no clusters).
    cluster: tuple[int, int, int] = (1, 1, 1)

    @property
    def num_threads(self) -> int:
        return self.num_warps * 32

    def __str__(self) -> str:
        from anybit.ir.printer import format_program

        return format_program(self)


def child_bodies(stmt) -> list[tuple]:
    """The nested statement lists of a control-flow statement (empty for instructions)."""
    if isinstance(stmt, (ForStmt, WhileStmt)):
        return [stmt.body]
    if isinstance(stmt, IfStmt):
        return [stmt.then_body, stmt.else_body]
    return []


def walk(body: tuple):
    """Yield every statement and instruction of ``body`` in program order, depth first."""
    for stmt in body:
        yield stmt
        for child in child_bodies(stmt):
            yield from walk(child)


def instructions(body: tuple):
    """Yield every instruction of ``body`` in program order."""
    return (stmt for stmt in walk(body) if isinstance(stmt, Instruction))
