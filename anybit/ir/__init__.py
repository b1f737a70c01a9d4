"""The VM program: scalar expressions, tensors, instructions, structured statements, and their printer."""

from anybit.ir.errors import (
    KernelDefinitionError,
    LayoutInferenceError,
    ProgramError,
    VerificationError,
    format_error,
)
from anybit.ir.expr import *  # noqa: F403
from anybit.ir.expr import __all__ as _expr_all
from anybit.ir.instructions import *  # noqa: F403
from anybit.ir.instructions import __all__ as _inst_all
from anybit.ir.printer import format_instruction, format_program
from anybit.ir.rewrite import substitute, transform
from anybit.ir.statements import (
    STATEMENT_CLASSES,
    BreakStmt,
    ForStmt,
    IfStmt,
    Program,
    Statement,
    WhileStmt,
    child_bodies,
    instructions,
    walk,
)
from anybit.ir.tensors import GlobalTensor, RegisterTensor, SharedTensor, Tensor, type_string

__all__ = [
    *_expr_all,
    *_inst_all,
    "format_instruction",
    "format_program",
    "STATEMENT_CLASSES",
    "BreakStmt",
    "ForStmt",
    "IfStmt",
    "Program",
    "Statement",
    "WhileStmt",
    "child_bodies",
    "instructions",
    "walk",
    "GlobalTensor",
    "RegisterTensor",
    "SharedTensor",
    "Tensor",
    "type_string",
    "KernelDefinitionError",
    "LayoutInferenceError",
    "ProgramError",
    "VerificationError",
    "format_error",
    "substitute",
    "transform",
]
