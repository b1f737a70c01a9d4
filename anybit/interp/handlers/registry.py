"""The interpreter's handler registry: one handler per instruction class, duplicates rejected.

A handler is ``handler(block: BlockState, inst) -> None``, or a generator when the instruction may wait
(``lock_semaphore``): the executor runs it with ``yield from``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from anybit.interp.errors import InterpreterError
from anybit.ir.instructions import INSTRUCTION_CLASSES, Instruction
from anybit.ir.statements import instructions

Handler = Callable[..., object]

_HANDLERS: dict[type, Handler] = {}


def register(instruction_class: type[Instruction]) -> Callable[[Handler], Handler]:
    """Decorator: make the function the interpreter's handler of ``instruction_class``."""

    def decorate(handler: Handler) -> Handler:
        if instruction_class in _HANDLERS:
            raise ValueError(
                f"duplicate interpreter handler for {instruction_class.__name__}: "
                f"{_HANDLERS[instruction_class].__qualname__} and {handler.__qualname__}"
            )
        _HANDLERS[instruction_class] = handler
        return handler

    return decorate


def handler_for(instruction: Instruction) -> Handler:
    """The handler of ``instruction``'s class; raises :class:`InterpreterError` for an unknown class."""
    try:
        return _HANDLERS[type(instruction)]
    except KeyError:
        raise InterpreterError(
            f"the interpreter has no handler for instruction class {type(instruction).__name__}"
        ) from None


def missing_handlers(classes: Iterable[type] = INSTRUCTION_CLASSES) -> list[str]:
    """Names of the instruction classes among ``classes`` that have no handler."""
    return sorted({cls.__name__ for cls in classes if cls not in _HANDLERS})


def check_program(body: tuple) -> None:
    """Pre-flight: raise one error listing every instruction class in ``body`` without a handler."""
    missing = missing_handlers(type(inst) for inst in instructions(body))
    if missing:
        raise InterpreterError(
            "the interpreter cannot run this program: no handler for " + ", ".join(missing)
        )
