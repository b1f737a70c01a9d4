"""anybit.interp: the CPU interpreter, the VM's executable specification (numpy, exact semantics)."""

from anybit.interp.errors import DeadlockError, InterpreterError
from anybit.interp.handlers import missing_handlers
from anybit.interp.interpret import interpret

__all__ = ["DeadlockError", "InterpreterError", "interpret", "missing_handlers"]
