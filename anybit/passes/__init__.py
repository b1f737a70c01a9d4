"""Passes over VM programs: layout inference and the verifier, run by :func:`compile_program`.

Set ``ANYBIT_VALIDATE=1`` to re-verify the program after every pass (and before the first).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from anybit.ir.statements import Program
from anybit.passes.layout_inference import infer_layouts, inferred_layouts
from anybit.passes.layout_rules import default_layout, mma_layouts
from anybit.passes.verifier import verify

Pass = Callable[[Program], Program]

#: The passes ``kernel.program(...)`` runs, in order.
DEFAULT_PASSES: tuple[Pass, ...] = (infer_layouts,)


def validating() -> bool:
    """Whether ``ANYBIT_VALIDATE`` asks for verification after every pass."""
    return os.environ.get("ANYBIT_VALIDATE", "") not in ("", "0")


def run_passes(program: Program, passes: Sequence[Pass]) -> Program:
    """Apply ``passes`` in order, verifying after each one when ``ANYBIT_VALIDATE=1``."""
    if validating():
        verify(program)
    for apply in passes:
        program = apply(program)
        if validating():
            verify(program)
    return program


def compile_program(program: Program) -> Program:
    """The final program: the default passes, then the full verifier (every tensor must have a layout)."""
    return verify(run_passes(program, DEFAULT_PASSES), require_layouts=True)


__all__ = [
    "compile_program",
    "run_passes",
    "verify",
    "infer_layouts",
    "inferred_layouts",
    "mma_layouts",
    "default_layout",
    "validating",
    "DEFAULT_PASSES",
    "Pass",
]
