"""Errors the interpreter raises, each naming the instruction and the kernel author's source line."""

from __future__ import annotations


class InterpreterError(RuntimeError):
    """A VM program did something the VM semantics forbid, or got bad arguments.

    ``instruction`` is the offending instruction (None for argument errors); ``block`` the grid index of the
    thread block that ran it. The message reads ``<instruction> at <file:line: text> in block (x, y, z):
    <what went wrong>``.
    """

    def __init__(self, message: str, instruction: object = None, block: tuple | None = None) -> None:
        self.message = message
        self.instruction = instruction
        self.block = block
        super().__init__(self._format())

    def _format(self) -> str:
        if self.instruction is None:
            return self.message
        name = getattr(self.instruction, "name", type(self.instruction).__name__)
        source = getattr(self.instruction, "source", None)
        where = f" at {source}" if source is not None else " (no source location)"
        block = f" in block {self.block}" if self.block is not None else ""
        return f"{name}{where}{block}: {self.message}"

    def located(self, instruction: object, block: tuple | None) -> InterpreterError:
        """This error with the instruction and block filled in where they were missing."""
        if self.instruction is not None:
            return self
        return type(self)(self.message, instruction, block)


class DeadlockError(InterpreterError):
    """Every thread block still running waits on a semaphore that no running block will release."""
