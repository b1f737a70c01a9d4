"""The VM's tensors: global (views over pointers or workspace), shared, and register tensors.

Tensors are variables: they compare and hash by identity (two tensors with equal shapes are still different
storage). Their types are (dtype, shape, layout); a register tensor's layout may be ``None`` until layout
inference (anybit.passes) assigns one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

from anybit.dtypes import DataType
from anybit.ir.expr import Expr

if TYPE_CHECKING:
    from anybit.layout import GlobalLayout, RegisterLayout, SharedLayout

Dim = Union[int, Expr]


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


@dataclass(frozen=True, eq=False, slots=True)
class GlobalTensor(Tensor):
    """A tensor in global memory; ``layout`` maps an index to an element offset (strides may be run-time)."""

    layout: GlobalLayout


@dataclass(frozen=True, eq=False, slots=True)
class SharedTensor(Tensor):
    """A tensor in the block's shared memory with a constant shape; ``layout`` maps an index to an offset."""

    layout: SharedLayout


@dataclass(frozen=True, eq=False, slots=True)
class RegisterTensor(Tensor):
    """A tensor distributed over the block's threads by a register layout (``None`` until inferred)."""

    layout: Optional[RegisterLayout]


def type_string(tensor: Tensor) -> str:
    """``dtype[shape]`` plus the memory scope and layout, the way the printer writes tensor types."""
    dims = ", ".join(str(d) for d in tensor.shape)
    scope = {GlobalTensor: "global", SharedTensor: "shared", RegisterTensor: "register"}[type(tensor)]
    layout = getattr(tensor, "layout", None)
    layout_text = "?" if layout is None else str(layout)
    return f"{scope} {tensor.dtype.name}[{dims}] layout={layout_text}"
