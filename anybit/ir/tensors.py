"""The VM's tensors: global (views over pointers or workspace), shared, and register tensors.

Tensors are variables: they compare and hash by identity (two tensors with equal shapes are still different
storage). Their types are (dtype, shape, layout); a register tensor's layout may be ``None`` until layout
inference (anybit.passes) assigns one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from anybit.dtypes import DataType
from anybit.ir.expr import Expr

if TYPE_CHECKING:
    from anybit.layout import GlobalLayout, RegisterLayout, SharedLayout

Dim = int | Expr

# The front end (anybit.lang) installs the function that turns ``tensor + x`` into an instruction of the
# kernel being built; the IR itself stays free of any builder state.
_operator_handler: Callable | None = None


def set_operator_handler(handler: Callable | None) -> None:
    """Install ``handler(op, *operands)``, called by register-tensor operators (``+``, ``<``, ``-x``, ...)."""
    global _operator_handler
    _operator_handler = handler


def _apply(op: str, *operands):
    if _operator_handler is None:
        raise TypeError(
            f"operator {op!r} on register tensors is only available while a kernel is being built"
        )
    return _operator_handler(op, *operands)


class _RegisterOperators:
    """Operators of register tensors: each emits an element-wise instruction through the active builder."""

    __slots__ = ()

    def __add__(self, other):
        return _apply("add", self, other)

    def __radd__(self, other):
        return _apply("add", other, self)

    def __sub__(self, other):
        return _apply("sub", self, other)

    def __rsub__(self, other):
        return _apply("sub", other, self)

    def __mul__(self, other):
        return _apply("mul", self, other)

    def __rmul__(self, other):
        return _apply("mul", other, self)

    def __truediv__(self, other):
        return _apply("div", self, other)

    def __rtruediv__(self, other):
        return _apply("div", other, self)

    def __mod__(self, other):
        return _apply("mod", self, other)

    def __rmod__(self, other):
        return _apply("mod", other, self)

    def __and__(self, other):
        return _apply("and", self, other)

    def __rand__(self, other):
        return _apply("and", other, self)

    def __or__(self, other):
        return _apply("or", self, other)

    def __ror__(self, other):
        return _apply("or", other, self)

    def __xor__(self, other):
        return _apply("xor", self, other)

    def __rxor__(self, other):
        return _apply("xor", other, self)

    def __lshift__(self, other):
        return _apply("shl", self, other)

    def __rlshift__(self, other):
        return _apply("shl", other, self)

    def __rshift__(self, other):
        return _apply("shr", self, other)

    def __rrshift__(self, other):
        return _apply("shr", other, self)

    def __lt__(self, other):
        return _apply("lt", self, other)

    def __le__(self, other):
        return _apply("le", self, other)

    def __gt__(self, other):
        return _apply("gt", self, other)

    def __ge__(self, other):
        return _apply("ge", self, other)

    def __neg__(self):
        return _apply("neg", self)

    def __invert__(self):
        return _apply("bit_not", self)

    def __abs__(self):
        return _apply("abs", self)

    def __bool__(self):
        raise TypeError(
            f"register tensor {self!r} was used where Python needs a bool; use self.where(...) for "
            "element-wise "
            "choices (an `if` needs a run-time scalar condition)"
        )


@dataclass(frozen=True, eq=False, slots=True)
class Tensor:
    """Common fields of every tensor kind."""

    name: str
    dtype: DataType
    shape: tuple

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class GlobalTensor(Tensor):
    """A tensor in global memory; ``layout`` maps an index to an element offset (strides may be run-time)."""

    layout: GlobalLayout


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class SharedTensor(Tensor):
    """A tensor in the block's shared memory with a constant shape; ``layout`` maps an index to an offset.

    ``tensor[stage]`` inside a kernel fixes leading dimensions (a ``SharedSliceInst``).
    """

    layout: SharedLayout

    def __getitem__(self, index):
        return _apply("shared_slice", self, index)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class RegisterTensor(_RegisterOperators, Tensor):
    """A tensor distributed over the block's threads by a register layout (``None`` until inferred)."""

    layout: RegisterLayout | None


def type_string(tensor: Tensor) -> str:
    """``dtype[shape]`` plus the memory scope and layout, the way the printer writes tensor types."""
    dims = ", ".join(str(d) for d in tensor.shape)
    scope = {GlobalTensor: "global", SharedTensor: "shared", RegisterTensor: "register"}[type(tensor)]
    layout = getattr(tensor, "layout", None)
    layout_text = "?" if layout is None else str(layout)
    return f"{scope} {tensor.dtype.name}[{dims}] layout={layout_text}"
