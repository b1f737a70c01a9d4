"""The program builder: the statement lists being recorded, fresh names, and source locations.

The front end executes a Script's transpiled ``__call__`` once; every instruction the kernel author's code
asks for is appended to the innermost open statement list (a *frame*). Run-time ``for``/``if``/``while``
open nested frames and close them into ``ForStmt``/``IfStmt``/``WhileStmt``. The active builder lives in a
context variable so that register-tensor operators (``a + b``) can reach it.
"""

from __future__ import annotations

import contextvars
import linecache
import os
import sys
from dataclasses import dataclass, field

from anybit.ir.errors import KernelDefinitionError
from anybit.ir.instructions import Instruction, SourceLocation

_CURRENT: contextvars.ContextVar[Builder | None] = contextvars.ContextVar("anybit_builder", default=None)

# Frames of these directories are front-end machinery, never the kernel author's line.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MACHINERY = tuple(
    os.path.join(_PACKAGE_ROOT, name) + os.sep for name in ("lang", "ir", "layout", "dtypes", "passes")
)
_STDLIB_HELPERS = ("contextlib.py", "functools.py")


@dataclass(eq=False)
class Frame:
    """One statement list being recorded; ``kind`` is root, for, while, then or else."""

    kind: str
    parent: Frame | None
    body: list = field(default_factory=list)
    source: SourceLocation | None = None

    def ancestors(self):
        """This frame and its enclosing frames, innermost first."""
        frame = self
        while frame is not None:
            yield frame
            frame = frame.parent


class Builder:
    """Records one program: frames of statements, unique names, declared scalars, source locations."""

    def __init__(self, script_name: str) -> None:
        self.script_name = script_name
        self.root = Frame("root", None)
        self.frame = self.root
        self._names: dict[str, int] = {}
        self._used: set[str] = set()
        self.declared_scalars: set[int] = set()  # ids of Vars made by self.scalar(...)
        self.auto_named: set[int] = set()  # ids of tensors/Vars named by the builder, renamed when bound
        self.created_in: dict[int, Frame] = {}  # id of tensor/Var -> frame where it was created
        self.bound_in: dict[str, Frame] = {}  # kernel variable name -> frame of its last binding
        self.loops: list[
            str
        ] = []  # "python"/"runtime" per enclosing loop, "if" per run-time if; innermost last
        self.frozen_instructions = 0
        self.on_first_instruction = None  # callback run before the first instruction is emitted
        self.params: tuple = ()  # the program's run-time parameters (Vars)
        self.divisibility: dict = {}  # run-time int parameter (Var) -> declared divisor (assume_divisible)

    # ------------------------------------------------------------------------------------------ context
    def __enter__(self) -> Builder:
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _CURRENT.reset(self._token)

    # ------------------------------------------------------------------------------------------- names
    def fresh_name(self, hint: str) -> str:
        """A program-unique name: ``hint``, then ``hint_1``, ``hint_2``, ..."""
        count = self._names.get(hint, 0)
        name = hint if count == 0 else f"{hint}_{count}"
        while name in self._used:
            count += 1
            name = f"{hint}_{count}"
        self._names[hint] = count + 1
        self._used.add(name)
        return name

    # ---------------------------------------------------------------------------------------- emitting
    def emit(self, stmt) -> None:
        """Append ``stmt`` to the innermost open frame, recording where its outputs were created."""
        if isinstance(stmt, Instruction) and self.on_first_instruction is not None:
            callback, self.on_first_instruction = self.on_first_instruction, None
            callback(stmt)
        self.frame.body.append(stmt)
        output = getattr(stmt, "output", None) if isinstance(stmt, Instruction) else None
        for value in (output, getattr(stmt, "var", None)):
            if value is not None and id(value) not in self.created_in:
                self.created_in[id(value)] = self.frame

    def note_created(self, value) -> None:
        """Record that ``value`` (a loop variable, say) belongs to the innermost open frame."""
        self.created_in.setdefault(id(value), self.frame)

    def open_frame(self, kind: str, source: SourceLocation | None) -> Frame:
        """Start recording a nested statement list."""
        self.frame = Frame(kind, self.frame, source=source)
        return self.frame

    def close_frame(self, frame: Frame) -> tuple:
        """Stop recording ``frame`` (the innermost one) and return its statements."""
        assert self.frame is frame, "frames closed out of order"
        self.frame = frame.parent
        return tuple(frame.body)

    def in_runtime_body(self) -> bool:
        """Whether a run-time control-flow body is being recorded."""
        return self.frame is not self.root

    # ---------------------------------------------------------------------------------------- locations
    def location(self) -> SourceLocation | None:
        """The kernel author's line executing now: the innermost frame outside the front-end machinery."""
        frame = sys._getframe(1)
        while frame is not None:
            filename = frame.f_code.co_filename
            if not filename.startswith(_MACHINERY) and not filename.endswith(_STDLIB_HELPERS):
                line = frame.f_lineno
                return SourceLocation(filename, line, linecache.getline(filename, line).strip())
            frame = frame.f_back
        return None

    def temp_name(self, value_hint: str) -> str:
        """A fresh name for a value the author has not named yet (renamed when assigned to a variable)."""
        return self.fresh_name(value_hint)

    def error(self, message: str, instruction: str | None = None) -> KernelDefinitionError:
        """A :class:`KernelDefinitionError` at the author's current line."""
        return KernelDefinitionError(message, instruction=instruction, source=self.location())


def current_builder() -> Builder:
    """The builder of the kernel being built; raises outside a kernel build."""
    builder = _CURRENT.get()
    if builder is None:
        raise RuntimeError("no kernel is being built: this call is only valid inside a Script's __call__")
    return builder


def active_builder() -> Builder | None:
    """The builder of the kernel being built, or None."""
    return _CURRENT.get()
