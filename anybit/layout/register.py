"""The register layout value: a map from (thread ``t``, local index ``i``) to a logical tensor index.

A layout is stored in the unified form of the paper (digest §3.5): each tensor dimension is split into
*modes* (``mode_shape`` lists them, dimension by dimension, most significant first); ``spatial_modes`` lists
the modes that the thread index enumerates and ``local_modes`` those the local index enumerates, most
significant first. A negative entry ``-k`` in ``spatial_modes`` is a *replicated* mode: ``k`` threads that
hold the same elements. Layouts are canonical (size-1 modes dropped, mergeable neighbours merged), so two
layouts compare equal exactly when they encode the same map.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from math import prod
from typing import Any

import numpy as np

from . import _arith
from ._modes import canonical_tuples
from .errors import LayoutError

Index = tuple[Any, ...]


class RegisterLayout:
    """An immutable, canonical register layout ``f(t, i) -> logical index`` of a tensor of ``shape``."""

    __slots__ = (
        "_shape",
        "_mode_shape",
        "_spatial_modes",
        "_local_modes",
        "_dim_modes",
        "_thread_digits",
        "_local_digits",
        "_replicated_digits",
        "_num_threads",
        "_local_size",
    )

    def __init__(
        self,
        shape: Sequence[int],
        mode_shape: Sequence[int],
        spatial_modes: Sequence[int],
        local_modes: Sequence[int],
    ) -> None:
        """Build a layout from the unified representation; it is validated and brought to canonical form.

        Post-conditions: size-1 modes are dropped, modes adjacent both in their dimension and in the
        thread (or local) list are merged, adjacent replicated modes are merged; the map is unchanged.
        """
        shape, mode_shape, spatial, local = canonical_tuples(shape, mode_shape, spatial_modes, local_modes)
        setter = object.__setattr__
        setter(self, "_shape", shape)
        setter(self, "_mode_shape", mode_shape)
        setter(self, "_spatial_modes", spatial)
        setter(self, "_local_modes", local)
        dim_modes: list[tuple[int, ...]] = []
        position = 0
        for extent in shape:
            modes = []
            product = 1
            while product < extent:
                product *= mode_shape[position]
                modes.append(position)
                position += 1
            dim_modes.append(tuple(modes))
        setter(self, "_dim_modes", tuple(dim_modes))
        # Asked hundreds of thousands of times while a kernel's code is generated: computed once.
        setter(self, "_num_threads", prod(_entry_size(entry, mode_shape) for entry in spatial))
        setter(self, "_local_size", prod(mode_shape[mode] for mode in local))
        setter(self, "_thread_digits", _digit_plan(spatial, mode_shape, keep_replicated=False))
        setter(self, "_local_digits", _digit_plan(local, mode_shape, keep_replicated=False))
        replicated = _digit_plan(spatial, mode_shape, keep_replicated=True)
        setter(
            self,
            "_replicated_digits",
            tuple((stride, size) for entry, stride, size in replicated if entry < 0),
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("RegisterLayout is immutable")

    def holds_same_elements(self, other: RegisterLayout) -> bool:
        """Whether ``other`` gives every thread the same elements as this layout (in any local order)."""
        if self.shape != other.shape or self.num_threads != other.num_threads:
            return False
        if self.local_size != other.local_size:
            return False
        return self == other or _same_elements_per_thread(self, other)

    # -------------------------------------------------------------------------------------- attributes
    @property
    def shape(self) -> tuple[int, ...]:
        """The logical tensor shape."""
        return self._shape

    @property
    def mode_shape(self) -> tuple[int, ...]:
        """Sizes of the modes, dimension by dimension, most significant first."""
        return self._mode_shape

    @property
    def spatial_modes(self) -> tuple[int, ...]:
        """Modes enumerated by the thread index (``-k``: k replicating threads), most significant first."""
        return self._spatial_modes

    @property
    def local_modes(self) -> tuple[int, ...]:
        """Modes enumerated by the local index, most significant first."""
        return self._local_modes

    @property
    def dim_modes(self) -> tuple[tuple[int, ...], ...]:
        """For each dimension, the indices (into ``mode_shape``) of its modes, most significant first."""
        return self._dim_modes

    @property
    def rank(self) -> int:
        """Number of tensor dimensions."""
        return len(self._shape)

    @property
    def num_threads(self) -> int:
        """Number of threads ``T`` the layout spans (replicating threads included)."""
        return self._num_threads

    @property
    def local_size(self) -> int:
        """Number of elements ``N`` each thread holds."""
        return self._local_size

    @property
    def num_elements(self) -> int:
        """Number of logical elements (the product of ``shape``)."""
        return prod(self._shape)

    @property
    def replication(self) -> int:
        """How many threads hold each element (1 unless the layout has replicated modes)."""
        return prod(-entry for entry in self._spatial_modes if entry < 0)

    @property
    def is_replicated(self) -> bool:
        """Whether some element is held by more than one thread."""
        return self.replication > 1

    def dim_of_mode(self, mode: int) -> int:
        """The tensor dimension that mode ``mode`` (an index into ``mode_shape``) belongs to."""
        for dim, modes in enumerate(self._dim_modes):
            if mode in modes:
                return dim
        raise LayoutError(f"mode {mode} is out of range for mode_shape {self._mode_shape}")

    # ------------------------------------------------------------------------------------------ the map
    def logical(self, t: Any, i: Any) -> Index:
        """Return the logical index held by thread ``t`` as its local element ``i``.

        Symbolic-capable: only ``+``, ``*``, ``//`` and ``%`` are applied to ``t`` and ``i`` (the variable is
        always the left operand), so ints, numpy arrays and expression objects all work. ``t`` is taken
        modulo ``num_threads`` and ``i`` modulo ``local_size`` (the map repeats).
        """
        digits: dict[int, Any] = {}
        for mode, stride, size in self._thread_digits:
            digits[mode] = _arith.digit(t, stride, size)
        for mode, stride, size in self._local_digits:
            digits[mode] = _arith.digit(i, stride, size)
        return tuple(self._ravel_dim(modes, digits) for modes in self._dim_modes)

    def _ravel_dim(self, modes: tuple[int, ...], digits: dict[int, Any]) -> Any:
        terms = []
        stride = 1
        for mode in reversed(modes):
            terms.append(_arith.scaled(digits[mode], stride))
            stride *= self._mode_shape[mode]
        return _arith.total(terms[::-1])

    def _mode_digits(self, index: Sequence[Any]) -> dict[int, Any]:
        digits: dict[int, Any] = {}
        for coordinate, modes in zip(index, self._dim_modes, strict=False):
            stride = 1
            for mode in reversed(modes):
                digits[mode] = _arith.digit(coordinate, stride, self._mode_shape[mode])
                stride *= self._mode_shape[mode]
        return digits

    def local_index(self, index: Sequence[Any]) -> Any:
        """The local index under which every holder of logical ``index`` keeps it (symbolic-capable)."""
        digits = self._mode_digits(self._check_rank(index))
        return _arith.total([_arith.scaled(digits[mode], stride) for mode, stride, _ in self._local_digits])

    def thread_of(self, index: Sequence[Any]) -> Any:
        """The lowest thread holding logical ``index`` (symbolic-capable; see ``owners`` for all of them)."""
        digits = self._mode_digits(self._check_rank(index))
        return _arith.total([_arith.scaled(digits[mode], stride) for mode, stride, _ in self._thread_digits])

    def owners(self, index: Sequence[int]) -> list[tuple[int, int]]:
        """All ``(t, i)`` with ``logical(t, i) == index``, sorted; more than one when replicated.

        Post-condition: ``logical(t, i) == tuple(index)`` for each pair, and there are ``replication`` pairs.
        """
        index = self._check_rank(index)
        for coordinate, extent in zip(index, self._shape, strict=False):
            if isinstance(coordinate, bool) or not isinstance(coordinate, (int, np.integer)):
                raise LayoutError(f"owners() needs an int index, got {tuple(index)}")
            if not 0 <= coordinate < extent:
                raise LayoutError(f"index {tuple(index)} is out of range for shape {self._shape}")
        base = self.thread_of(index)
        local = self.local_index(index)
        ranges = [range(0, size * stride, stride) for stride, size in self._replicated_digits]
        return sorted((base + sum(offsets), local) for offsets in itertools.product(*ranges))

    def map_array(self) -> np.ndarray:
        """The whole map as an int64 array of shape ``(num_threads, local_size, rank)``."""
        threads = np.arange(self.num_threads, dtype=np.int64).reshape(-1, 1)
        locals_ = np.arange(self.local_size, dtype=np.int64).reshape(1, -1)
        coordinates = self.logical(threads, locals_)
        grid = (self.num_threads, self.local_size)
        planes = [np.broadcast_to(np.asarray(c, dtype=np.int64), grid) for c in coordinates]
        if not planes:
            return np.zeros(grid + (0,), dtype=np.int64)
        return np.stack(planes, axis=-1)

    def contiguous_local_run(self, dim: int) -> int:
        """Largest ``r`` such that each thread's local elements ``i .. i+r-1`` with ``i % r == 0`` are
        consecutive along dimension ``dim`` (other coordinates equal) and start at a coordinate that is a
        multiple of ``r``: the width of a vector access along ``dim``. It is 1 when nothing better holds.

        Post-condition: equals the largest such ``r`` (dividing ``local_size``) found by brute force on
        ``map_array()``. In canonical form that is the size of the last local mode when it is the least
        significant mode of ``dim``.
        """
        dim = _normalize_dim(dim, self.rank)
        if not self._local_modes:
            return 1
        last = self._local_modes[-1]
        modes = self._dim_modes[dim]
        return self._mode_shape[last] if modes and modes[-1] == last else 1

    def _check_rank(self, index: Sequence[Any]) -> tuple[Any, ...]:
        index = tuple(index)
        if len(index) != self.rank:
            raise LayoutError(f"expected an index of rank {self.rank} for shape {self._shape}, got {index}")
        return index

    # --------------------------------------------------------------------------- algebra (delegates only)
    def __mul__(self, other: RegisterLayout) -> RegisterLayout:
        from .algebra import product

        if not isinstance(other, RegisterLayout):
            return NotImplemented
        return product(self, other)

    def __truediv__(self, other: RegisterLayout) -> RegisterLayout:
        from .algebra import divide

        if not isinstance(other, RegisterLayout):
            return NotImplemented
        return divide(self, other)

    def local(self, *dims: int, order: Sequence[int] | None = None) -> RegisterLayout:
        """``self * local(*dims, order=order)``."""
        from . import primitives

        return self * primitives.local(*dims, order=order)

    def spatial(self, *dims: int, order: Sequence[int] | None = None) -> RegisterLayout:
        """``self * spatial(*dims, order=order)``."""
        from . import primitives

        return self * primitives.spatial(*dims, order=order)

    def column_local(self, *dims: int) -> RegisterLayout:
        """``self * column_local(*dims)``."""
        from . import primitives

        return self * primitives.column_local(*dims)

    def column_spatial(self, *dims: int) -> RegisterLayout:
        """``self * column_spatial(*dims)``."""
        from . import primitives

        return self * primitives.column_spatial(*dims)

    def reduce(self, dims: Sequence[int], *, keepdims: bool = False) -> RegisterLayout:
        """``reduce(self, dims, keepdims=keepdims)``."""
        from .algebra import reduce

        return reduce(self, dims, keepdims=keepdims)

    # ------------------------------------------------------------------------------ identity and display
    def _key(self) -> tuple[tuple[int, ...], ...]:
        return (self._shape, self._mode_shape, self._spatial_modes, self._local_modes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegisterLayout):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(("RegisterLayout",) + self._key())

    def __reduce__(self) -> tuple[Any, ...]:
        return (RegisterLayout, self._key())

    def mode_form(self) -> str:
        """The constructor call that rebuilds this layout (always parseable by ``parse_layout``)."""
        return (
            f"RegisterLayout(shape={list(self._shape)}, mode_shape={list(self._mode_shape)}, "
            f"spatial_modes={list(self._spatial_modes)}, local_modes={list(self._local_modes)})"
        )

    def __repr__(self) -> str:
        from .expression import to_expression

        expression = to_expression(self)
        return expression if expression is not None else self.mode_form()

    __str__ = __repr__

    def table(self) -> str:
        """The ``t:i`` grid of a rank-1 or rank-2 layout (see ``anybit.layout.render.table``)."""
        from .render import table

        return table(self)

    def draw(self, path: str, *, title: str | None = None) -> None:
        """Write a PNG picture of the layout to ``path`` (see ``anybit.layout.render.draw``)."""
        from .render import draw

        draw(self, path, title=title)


def _entry_size(entry: int, mode_shape: tuple[int, ...]) -> int:
    return -entry if entry < 0 else mode_shape[entry]


def _digit_plan(
    entries: tuple[int, ...], mode_shape: tuple[int, ...], *, keep_replicated: bool
) -> tuple[tuple[int, int, int], ...]:
    """``(mode, stride, size)`` for each real mode of a thread or local list (row-major strides)."""
    plan = []
    stride = 1
    for entry in reversed(entries):
        size = _entry_size(entry, mode_shape)
        if entry >= 0 or keep_replicated:
            plan.append((entry, stride, size))
        stride *= size
    return tuple(plan[::-1])


def _normalize_dim(dim: int, rank: int) -> int:
    if not -rank <= dim < rank:
        raise LayoutError(f"dimension {dim} is out of range for rank {rank}")
    return dim % rank


@functools.lru_cache(maxsize=4096)
def _same_elements_per_thread(a: RegisterLayout, b: RegisterLayout) -> bool:
    """Whether every thread holds the same set of elements under ``a`` and ``b`` (equal shapes, thread
    counts and local sizes): each thread's elements as row-major offsets, sorted, compared at once. Cached:
    layout inference and the verifier ask it of the same pairs for every configuration a tuner builds."""

    def sorted_offsets(layout: RegisterLayout) -> np.ndarray:
        coordinates = layout.map_array()
        strides = np.array([prod(layout.shape[d + 1 :]) for d in range(layout.rank)], dtype=np.int64)
        return np.sort(coordinates @ strides, axis=1)

    return bool(np.array_equal(sorted_offsets(a), sorted_offsets(b)))
