"""Shared-memory scratch needs of the instructions that exchange values between threads."""

from __future__ import annotations

from collections.abc import Callable

from anybit.ir import Instruction

_SCRATCH: dict[type, Callable[[Instruction], int]] = {}


def register_scratch(cls: type) -> Callable:
    """Decorator registering the scratch-size function of instruction class ``cls``."""

    def wrap(function: Callable[[Instruction], int]) -> Callable[[Instruction], int]:
        if cls in _SCRATCH:
            raise ValueError(f"a scratch function for {cls.__name__} is already registered")
        _SCRATCH[cls] = function
        return function

    return wrap


def scratch_bytes(inst: Instruction) -> int:
    """Bytes of shared scratch ``inst`` needs (0 for most instructions)."""
    function = _SCRATCH.get(type(inst))
    return function(inst) if function else 0
