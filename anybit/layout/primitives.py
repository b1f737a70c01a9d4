"""The primitive register layouts: ``local``, ``spatial`` and their column-major forms (digest §3.2)."""

from __future__ import annotations

import operator
from collections.abc import Sequence

from .errors import LayoutError
from .register import RegisterLayout


def local(*dims: int, order: Sequence[int] | None = None) -> RegisterLayout:
    """One thread holds all ``prod(dims)`` elements; the local index walks them row-major.

    ``local(n1, n2)(t, i) == (i // n2, i % n2)``. ``order`` lists the dimensions from the slowest- to the
    fastest-varying (default ``0, 1, ..., rank-1``; reversed is ``column_local``).
    """
    return _primitive("local", dims, order, spatial=False)


def spatial(*dims: int, order: Sequence[int] | None = None) -> RegisterLayout:
    """``prod(dims)`` threads hold one element each; the thread index walks them row-major.

    ``spatial(n1, n2)(t, i) == (t // n2, t % n2)``. ``order`` is as for :func:`local`.
    """
    return _primitive("spatial", dims, order, spatial=True)


def column_local(*dims: int) -> RegisterLayout:
    """Like :func:`local` but the local index walks the elements column-major (first dimension fastest)."""
    return _primitive("column_local", dims, tuple(range(len(dims)))[::-1], spatial=False)


def column_spatial(*dims: int) -> RegisterLayout:
    """Like :func:`spatial` but the thread index walks the elements column-major (first dimension fastest)."""
    return _primitive("column_spatial", dims, tuple(range(len(dims)))[::-1], spatial=True)


def _primitive(
    name: str, dims: Sequence[int], order: Sequence[int] | None, *, spatial: bool
) -> RegisterLayout:
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    if not dims:
        raise LayoutError(f"{name}() needs at least one dimension, e.g. {name}(2, 4)")
    sizes = []
    for size in dims:
        if isinstance(size, bool):
            raise LayoutError(f"{name}{tuple(dims)}: dimensions must be ints, got {size!r}")
        try:
            size = operator.index(size)
        except TypeError:
            raise LayoutError(f"{name}{tuple(dims)}: dimensions must be ints, got {size!r}") from None
        if size < 1:
            raise LayoutError(f"{name}{tuple(dims)}: dimensions must be positive, got {size}")
        sizes.append(size)
    rank = len(sizes)
    order = tuple(range(rank)) if order is None else tuple(order)
    if sorted(order) != list(range(rank)):
        raise LayoutError(f"{name}{tuple(sizes)}: order must be a permutation of 0..{rank - 1}, got {order}")
    modes = order
    empty: tuple[int, ...] = ()
    return RegisterLayout(sizes, sizes, modes if spatial else empty, empty if spatial else modes)
