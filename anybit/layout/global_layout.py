"""Global-memory layouts: strided views whose shapes and strides may be symbolic (e.g. a runtime ``n``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import LayoutError


@dataclass(frozen=True)
class GlobalLayout:
    """A strided view: ``offset(index) = sum(index[d] * strides[d])``; entries are ints or expressions."""

    shape: tuple[Any, ...]
    strides: tuple[Any, ...]

    def __post_init__(self) -> None:
        shape, strides = tuple(self.shape), tuple(self.strides)
        if len(shape) != len(strides):
            raise LayoutError(f"expected {len(shape)} strides for shape {shape}, got {strides}")
        for extent in shape:
            if isinstance(extent, int) and extent < 1:
                raise LayoutError(f"shape must hold positive sizes, got {shape}")
        for stride in strides:
            if isinstance(stride, int) and stride < 0:
                raise LayoutError(f"strides must be non-negative, got {strides}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "strides", strides)

    @property
    def rank(self) -> int:
        """Number of tensor dimensions."""
        return len(self.shape)

    def offset(self, index: Sequence[Any]) -> Any:
        """Element offset of ``index`` (symbolic-capable: ``+`` and ``*`` only; unit strides skipped)."""
        index = tuple(index)
        if len(index) != self.rank:
            raise LayoutError(f"expected an index of rank {self.rank} for shape {self.shape}, got {index}")
        terms = []
        for coordinate, stride in zip(index, self.strides, strict=False):
            if isinstance(stride, int) and stride == 0:
                continue
            terms.append(coordinate if isinstance(stride, int) and stride == 1 else coordinate * stride)
        if not terms:
            return 0
        result = terms[0]
        for term in terms[1:]:
            result = result + term
        return result


def global_strided(shape: Sequence[Any], strides: Sequence[Any]) -> GlobalLayout:
    """A view with explicit element strides."""
    return GlobalLayout(tuple(shape), tuple(strides))


def global_row_major(*shape: Any) -> GlobalLayout:
    """Row-major (last dimension contiguous); strides are products of the later extents."""
    strides: list[Any] = []
    stride: Any = 1
    for extent in reversed(shape):
        strides.append(stride)
        stride = extent if isinstance(stride, int) and stride == 1 else stride * extent
    return GlobalLayout(tuple(shape), tuple(strides[::-1]))


def global_column_major(*shape: Any) -> GlobalLayout:
    """Column-major (first dimension contiguous)."""
    reversed_layout = global_row_major(*reversed(shape))
    return GlobalLayout(tuple(shape), reversed_layout.strides[::-1])
