"""Errors about a kernel author's program, each pointing at the Python source line it concerns."""

from __future__ import annotations

from anybit.ir.instructions import SourceLocation


class ProgramError(Exception):
    """Base of errors about a VM program: the message names the instruction and its source line."""

    def __init__(
        self, message: str, *, instruction: str | None = None, source: SourceLocation | None = None
    ) -> None:
        self.instruction = instruction
        self.source = source
        self.reason = message
        super().__init__(format_error(message, instruction=instruction, source=source))


class KernelDefinitionError(ProgramError):
    """The front end could not turn a Script's ``__call__`` into a program."""


class VerificationError(ProgramError):
    """The verifier rejected an ill-formed program."""


class LayoutInferenceError(ProgramError):
    """Layout inference found a conflict or could not decide a register tensor's layout."""


def format_error(
    message: str, *, instruction: str | None = None, source: SourceLocation | None = None
) -> str:
    """``file:line: in `instruction`: message`` followed by the source text, when known."""
    head = ""
    if source is not None:
        head = f"{source.filename}:{source.line}: "
    if instruction:
        head += f"in `{instruction}`: "
    text = head + message
    if source is not None and source.text:
        text += f"\n    {source.text.strip()}"
    return text


def where(source: SourceLocation | None) -> str:
    """``file:line`` of a source location, or ``<unknown>``."""
    return f"{source.filename}:{source.line}" if source is not None else "<unknown location>"


__all__ = [
    "ProgramError",
    "KernelDefinitionError",
    "VerificationError",
    "LayoutInferenceError",
    "format_error",
    "where",
]
