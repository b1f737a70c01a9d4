"""A mutable working form of a register layout's modes, used to build and canonicalise layouts.

A :class:`ModeTable` names every mode by an id. ``dims[d]`` lists the modes of tensor dimension ``d`` from
the most to the least significant; ``spatial`` and ``local`` list the modes that index the thread and the
local index, most significant first. A replicated mode (threads that do not index the tensor) has
``dim_of[id] is None`` and appears in ``spatial`` only. Splitting a mode never changes the map it encodes,
which is what division and reshape rely on.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from math import prod

from .errors import LayoutError

Tuples = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


class ModeTable:
    """Modes with ids, their order in each dimension and in the thread and local lists."""

    def __init__(self, rank: int) -> None:
        self.size: dict[int, int] = {}
        self.dim_of: dict[int, int | None] = {}
        self.dims: list[list[int]] = [[] for _ in range(rank)]
        self.spatial: list[int] = []
        self.local: list[int] = []
        self._next_id = 0

    # ----------------------------------------------------------------------------------------- building
    def new_mode(self, size: int, dim: int | None) -> int:
        """Create a mode (``dim=None``: replicated) and return its id; lists are left to the caller."""
        mode = self._next_id
        self._next_id += 1
        self.size[mode] = size
        self.dim_of[mode] = dim
        return mode

    @classmethod
    def from_tuples(
        cls,
        shape: Sequence[int],
        mode_shape: Sequence[int],
        spatial_modes: Sequence[int],
        local_modes: Sequence[int],
    ) -> ModeTable:
        """Validate the unified representation and return its table (ids are the mode indices)."""
        shape = _positive_ints(shape, "shape")
        mode_shape = _positive_ints(mode_shape, "mode_shape")
        table = cls(len(shape))
        for size in mode_shape:
            table.new_mode(size, None)
        position = 0
        for dim, extent in enumerate(shape):
            product = 1
            while position < len(mode_shape) and product * mode_shape[position] <= extent:
                if product == extent and mode_shape[position] != 1:
                    break
                product *= mode_shape[position]
                table.dim_of[position] = dim
                table.dims[dim].append(position)
                position += 1
            if product != extent:
                raise LayoutError(
                    f"mode_shape {tuple(mode_shape)} does not split shape {tuple(shape)}: "
                    f"expected modes of dimension {dim} to multiply to {extent}, got {product}"
                )
        if position != len(mode_shape):
            raise LayoutError(
                f"mode_shape {tuple(mode_shape)} has more modes than shape {tuple(shape)} accounts for"
            )
        seen: set[int] = set()
        for entry in spatial_modes:
            entry = _int(entry, "spatial_modes")
            if entry < 0:
                table.spatial.append(table.new_mode(-entry, None))
                continue
            table.spatial.append(_claim(entry, len(mode_shape), seen, "spatial_modes"))
        for entry in local_modes:
            entry = _int(entry, "local_modes")
            if entry < 0:
                raise LayoutError(f"local_modes cannot hold a replicated (negative) entry, got {entry}")
            table.local.append(_claim(entry, len(mode_shape), seen, "local_modes"))
        missing = sorted(set(range(len(mode_shape))) - seen)
        if missing:
            raise LayoutError(f"modes {missing} are in neither spatial_modes nor local_modes")
        return table

    @classmethod
    def from_layout(cls, layout) -> ModeTable:  # noqa: ANN001 - RegisterLayout, imported lazily
        """Return the table of a :class:`RegisterLayout` (already canonical)."""
        return cls.from_tuples(layout.shape, layout.mode_shape, layout.spatial_modes, layout.local_modes)

    def copy_into(self, other: ModeTable) -> dict[int, int]:
        """Add all modes of ``self`` to ``other`` under fresh ids; return the id map (lists not copied)."""
        mapping = {}
        for mode in self.size:
            mapping[mode] = other.new_mode(self.size[mode], self.dim_of[mode])
        return mapping

    # ---------------------------------------------------------------------------------------- rewriting
    def split(self, mode: int, outer: int, inner: int) -> tuple[int, int]:
        """Split ``mode`` into an outer and an inner mode (adjacent everywhere it appears); same map."""
        assert outer * inner == self.size[mode]
        dim = self.dim_of[mode]
        major = self.new_mode(outer, dim)
        minor = self.new_mode(inner, dim)
        sequences = [self.spatial, self.local] + ([self.dims[dim]] if dim is not None else [])
        for sequence in sequences:
            if mode in sequence:
                at = sequence.index(mode)
                sequence[at : at + 1] = [major, minor]
        del self.size[mode]
        del self.dim_of[mode]
        return major, minor

    def set_dims(self, dims: list[list[int]]) -> None:
        """Replace the per-dimension mode lists (for permute/reshape/squeeze), updating ``dim_of``."""
        self.dims = dims
        for dim, modes in enumerate(dims):
            for mode in modes:
                self.dim_of[mode] = dim

    def make_replicated(self, mode: int) -> None:
        """Turn a spatial mode into a replicated one (its dimension is being reduced away)."""
        dim = self.dim_of[mode]
        assert dim is not None and mode in self.spatial
        self.dims[dim].remove(mode)
        self.dim_of[mode] = None

    def remove(self, mode: int) -> None:
        """Drop a mode from every list (for size-1 modes and reduced local modes)."""
        dim = self.dim_of.pop(mode)
        del self.size[mode]
        for sequence in [self.spatial, self.local] + ([self.dims[dim]] if dim is not None else []):
            if mode in sequence:
                sequence.remove(mode)

    def canonicalize(self) -> None:
        """Drop size-1 modes and merge every pair of modes adjacent both in their dimension and in a list."""
        for mode in [mode for mode, size in self.size.items() if size == 1]:
            self.remove(mode)
        merged = True
        while merged:
            merged = False
            for sequence in (self.spatial, self.local):
                for at in range(len(sequence) - 1):
                    major, minor = sequence[at], sequence[at + 1]
                    if self._mergeable(major, minor):
                        self.size[major] *= self.size[minor]
                        self.remove(minor)
                        merged = True
                        break

    def _mergeable(self, major: int, minor: int) -> bool:
        dim = self.dim_of[major]
        if dim is None or self.dim_of[minor] is None:
            return dim is None and self.dim_of[minor] is None
        if dim != self.dim_of[minor]:
            return False
        modes = self.dims[dim]
        at = modes.index(major)
        return at + 1 < len(modes) and modes[at + 1] == minor

    # ------------------------------------------------------------------------------------------ output
    def to_tuples(self) -> Tuples:
        """Return ``(shape, mode_shape, spatial_modes, local_modes)`` numbering modes in dimension order."""
        index: dict[int, int] = {}
        mode_shape: list[int] = []
        for modes in self.dims:
            for mode in modes:
                index[mode] = len(mode_shape)
                mode_shape.append(self.size[mode])
        shape = tuple(prod(self.size[mode] for mode in modes) for modes in self.dims)
        spatial = tuple(index[m] if self.dim_of[m] is not None else -self.size[m] for m in self.spatial)
        local = tuple(index[mode] for mode in self.local)
        return shape, tuple(mode_shape), spatial, local


def canonical_tuples(
    shape: Sequence[int], mode_shape: Sequence[int], spatial_modes: Sequence[int], local_modes: Sequence[int]
) -> Tuples:
    """Validate and return the canonical unified representation of a register layout."""
    table = ModeTable.from_tuples(shape, mode_shape, spatial_modes, local_modes)
    table.canonicalize()
    return table.to_tuples()


def _int(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise LayoutError(f"{what} must hold ints, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise LayoutError(f"{what} must hold ints, got {value!r}") from None


def _positive_ints(values: Sequence[int], what: str) -> tuple[int, ...]:
    result = tuple(_int(value, what) for value in values)
    for value in result:
        if value < 1:
            raise LayoutError(f"{what} must hold positive sizes, got {tuple(values)}")
    return result


def _claim(entry: int, count: int, seen: set[int], what: str) -> int:
    if entry >= count:
        raise LayoutError(f"{what} refers to mode {entry}, but there are only {count} modes")
    if entry in seen:
        raise LayoutError(f"mode {entry} appears more than once in spatial_modes/local_modes")
    seen.add(entry)
    return entry
