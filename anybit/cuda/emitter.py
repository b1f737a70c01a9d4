"""The emitter registry and the per-kernel emission context.

Each instruction class has exactly one emitter, registered with :func:`register_emitter` (a second
registration for the same class raises). :func:`missing_emitters` is the pre-flight check: it lists every
instruction class of a program (or of the whole instruction set) that has no emitter, all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field

from anybit.cuda.expressions import ExprPrinter
from anybit.cuda.registers import word_count
from anybit.ir import INSTRUCTION_CLASSES, GlobalTensor, Instruction, RegisterTensor, SharedTensor

Emitter = Callable[["EmitContext", Instruction], None]
_EMITTERS: dict[type, Emitter] = {}


class CodegenError(Exception):
    """A program the CUDA backend cannot translate; the message names the instruction and its source."""


def register_emitter(cls: type) -> Callable[[Emitter], Emitter]:
    """Decorator registering the emitter of instruction class ``cls``; duplicates are rejected."""

    def wrap(function: Emitter) -> Emitter:
        if cls in _EMITTERS:
            raise ValueError(
                f"an emitter for {cls.__name__} is already registered ({_EMITTERS[cls].__name__})"
            )
        _EMITTERS[cls] = function
        return function

    return wrap


def emitter_for(cls: type) -> Emitter:
    """The emitter registered for ``cls``."""
    _load_emitters()
    if cls not in _EMITTERS:
        raise CodegenError(f"no CUDA emitter for instruction {cls.__name__}")
    return _EMITTERS[cls]


def missing_emitters(classes: Iterable[type] = INSTRUCTION_CLASSES) -> list[str]:
    """Names of the instruction classes in ``classes`` that have no emitter (empty when all are covered)."""
    _load_emitters()
    return sorted({cls.__name__ for cls in classes if cls not in _EMITTERS})


def _load_emitters() -> None:
    import anybit.cuda.emit  # noqa: F401  (importing registers every emitter)


@dataclass(frozen=True)
class SharedPlacement:
    """Where a shared tensor lives: a C expression of its byte offset from the dynamic shared base."""

    offset: str
    alignment: int  # proven alignment of that byte offset


@dataclass(frozen=True)
class GlobalPlacement:
    """A global tensor's base: a C byte-pointer expression and its proven byte alignment."""

    pointer: str
    alignment: int
    param: str | None = None  # the pointer parameter it is based on, for alignment requirements


@dataclass
class EmitContext:
    """Everything an emitter needs: the output lines, names of tensors and variables, and the plans."""

    arch: int
    printer: ExprPrinter = field(default_factory=ExprPrinter)
    lines: list[str] = field(default_factory=list)
    registers: dict[RegisterTensor, str] = field(default_factory=dict)
    shared: dict[SharedTensor, SharedPlacement] = field(default_factory=dict)
    globals: dict[GlobalTensor, GlobalPlacement] = field(default_factory=dict)
    shared_offsets: dict[int, int] = field(default_factory=dict)  # id(instruction) -> planned byte offset
    scratch_offsets: dict[int, int] = field(default_factory=dict)  # id(instruction) -> scratch byte offset
    workspace_offsets: dict[int, str] = field(default_factory=dict)
    alignment_requirements: dict[str, int] = field(default_factory=dict)
    num_threads: int = 128
    #: Lines run once at the kernel's start (after the register declarations): loop-invariant values that
    #: depend only on the thread index, such as per-lane ``ldmatrix`` address offsets.
    prologue: list[str] = field(default_factory=list)
    #: Names of hoisted values by a key of what they compute, so equal values are computed once.
    hoisted: dict[object, str] = field(default_factory=dict)
    #: Whether the code waits for the prior grids (``griddepcontrol.wait``): the runtime then launches it as
    #: a dependent (programmatic stream serialization).
    waits_for_prior_grids: bool = False
    _depth: int = 1
    _counter: int = 0

    def __post_init__(self) -> None:
        if self.printer.hoist is None:
            self.printer.hoist = self.hoist

    def emit(self, *lines: str) -> None:
        """Append C lines at the current indentation."""
        for line in lines:
            self.lines.append("  " * self._depth + line)

    @contextmanager
    def block(self, header: str):
        """``header {`` ... ``}`` with the body indented."""
        self.emit(header + " {")
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self.emit("}")

    def hoist(self, *lines: str) -> None:
        """Append C lines to the kernel's prologue (they may only use ``tid`` and kernel parameters)."""
        self.prologue.extend(lines)

    def fresh(self, prefix: str) -> str:
        """A new unique C identifier."""
        self._counter += 1
        return f"{prefix}{self._counter}"

    def register(self, tensor: RegisterTensor) -> str:
        """The C word array of a register tensor (declared at the top of the kernel)."""
        if tensor not in self.registers:
            self.declare_register(tensor)
        return self.registers[tensor]

    def declare_register(self, tensor: RegisterTensor) -> None:
        """Name a register tensor; the driver declares the arrays at the kernel's top."""
        if tensor.layout is None:
            raise CodegenError(f"register tensor {tensor.name} has no layout (run layout inference first)")
        base = "r_" + "".join(c if c.isalnum() else "_" for c in tensor.name)
        self.registers[tensor] = f"{base}_{len(self.registers)}"

    def declarations(self) -> list[str]:
        """Declarations of every register array used."""
        return [
            f"uint32_t {name}[{word_count(t.dtype, t.layout.local_size)}] = {{}};"
            for t, name in self.registers.items()
        ]

    def require_alignment(self, placement: GlobalPlacement, nbytes: int) -> None:
        """Record that the code relies on ``placement``'s parameter being ``nbytes``-aligned."""
        if placement.param is not None and nbytes > 1:
            current = self.alignment_requirements.get(placement.param, 1)
            self.alignment_requirements[placement.param] = max(current, nbytes)

    def expr(self, value) -> str:
        """C text of a scalar expression or number."""
        return self.printer.print(value)


def where(inst: Instruction) -> str:
    """`` at <file:line: text>`` for error messages, or nothing without a source location."""
    source = getattr(inst, "source", None)
    return f" at {source}" if source is not None else ""
