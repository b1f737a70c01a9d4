"""Interpreter handlers, one per instruction class; importing this package registers them all."""

from anybit.interp.handlers import async_copy, compute, control, tensors, transfer  # noqa: F401
from anybit.interp.handlers.registry import check_program, handler_for, missing_handlers, register

__all__ = ["check_program", "handler_for", "missing_handlers", "register"]
