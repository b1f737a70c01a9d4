"""Automatic vectorization of memory accesses, decided from the layouts and proven alignment.

A register tile is accessed in *groups*: runs of ``count`` local elements of one thread that are also
consecutive in memory along a unit-stride dimension (the register layout's ``contiguous_local_run``). Each
group is split into *pieces* of 1/2/4/8/16 bytes, the widest size that divides the group's bytes and the
proven alignment of its start address. Sub-byte groups whose bit size is not a whole number of bytes are not
grouped (``count == 1`` with no pieces): those elements use bit-level accesses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from anybit.dtypes import DataType
from anybit.ir.expr import as_expr, constant_value, gcd_divisor

MAX_VECTOR_BYTES = 16


@dataclass(frozen=True)
class Piece:
    """One access of ``nbytes`` at ``byte_delta`` from its group's start, into register bit ``local_bit``."""

    local_bit: int
    nbytes: int
    byte_delta: int


@dataclass(frozen=True)
class Group:
    """``count`` consecutive local elements from ``first_local``, consecutive in memory too."""

    first_local: int
    count: int
    pieces: tuple[Piece, ...]


@dataclass(frozen=True)
class AccessPlan:
    """How a tile access is split: ``dim`` is the vectorized dimension (or None), groups in local order."""

    dim: int | None
    count: int
    piece_bytes: int
    groups: tuple[Group, ...]

    @property
    def is_bitwise(self) -> bool:
        """Whether elements are accessed one by one at bit granularity (no whole-byte pieces)."""
        return not self.groups[0].pieces


def _pow2(value: int) -> int:
    return value & -value if value else 1 << 30


def make_plan(local_size: int, dtype: DataType, dim: int | None, count: int, align_bytes: int) -> AccessPlan:
    """Split ``local_size`` elements into groups of ``count`` and each group into aligned pieces."""
    n = dtype.nbits
    if count * n % 8:
        count = 1
    if n % 8 and count == 1:
        groups = tuple(Group(i, 1, ()) for i in range(local_size))
        return AccessPlan(None, 1, 0, groups)
    group_bytes = count * n // 8
    piece = min(MAX_VECTOR_BYTES, _pow2(group_bytes), _pow2(align_bytes))
    groups = []
    for first in range(0, local_size, count):
        pieces = tuple(
            Piece(first * n + 8 * piece * k, piece, piece * k) for k in range(group_bytes // piece)
        )
        groups.append(Group(first, count, pieces))
    return AccessPlan(dim if count > 1 else None, count, piece, tuple(groups))


def _divisors_descending(value: int) -> list[int]:
    return [d for d in range(value, 0, -1) if value % d == 0]


def affine_plan(
    layout, dtype: DataType, strides, offsets, base_alignment: int, *, max_count: int | None = None
) -> AccessPlan:
    """Plan an access to a strided memory tensor (global, or unswizzled shared with run-time offsets).

    The group start's element offset is ``sum_k (offsets[k] + index[k]) * strides[k]`` with ``index[dim]`` a
    multiple of the group size, so its proven power-of-two divisor is the gcd of
    ``gcd_divisor(offsets[dim])``, the group size and ``gcd_divisor(strides[k])`` for the other dimensions.
    """
    n = dtype.nbits
    lead = len(strides) - layout.rank  # a lower-rank tile covers the trailing dimensions
    extents = (1,) * lead + tuple(layout.shape)
    best = make_plan(layout.local_size, dtype, None, 1, _element_alignment(dtype, base_alignment))
    for dim, stride in enumerate(strides):
        if constant_value(stride) != 1 or extents[dim] == 1:
            continue
        run = layout.contiguous_local_run(dim - lead)
        for count in _divisors_descending(run):
            if max_count and count > max_count:
                continue
            if count * n % 8:
                continue
            element_align = math.gcd(gcd_divisor(offsets[dim]), _pow2(count))
            for k, other in enumerate(strides):
                if k == dim:
                    continue
                if extents[k] > 1:
                    element_align = math.gcd(element_align, gcd_divisor(other))
                else:
                    element_align = math.gcd(element_align, gcd_divisor(as_expr(offsets[k]) * other))
            bits = element_align * n
            if bits % 8:
                continue
            align = math.gcd(_pow2(bits // 8), base_alignment)
            plan = make_plan(layout.local_size, dtype, dim, count, align)
            if plan.count * n > best.count * n or (
                plan.piece_bytes > best.piece_bytes and plan.count == best.count
            ):
                best = plan
            break
    return best


def exhaustive_plan(
    layout, dtype: DataType, shared_layout, offsets: tuple[int, ...], base_alignment: int
) -> AccessPlan:
    """Plan an access to a shared tensor at constant offsets by checking every thread's addresses.

    Works for any shared layout (swizzles included): a group is valid when, for every thread, its elements'
    offsets are consecutive; the alignment is the gcd of every group start's byte offset and the base's.
    """
    n = dtype.nbits
    coords = layout.map_array()  # (T, N, rank)
    lead = len(offsets) - layout.rank
    index = tuple(offsets[:lead]) + tuple(coords[..., d] + offsets[lead + d] for d in range(layout.rank))
    elem = np.asarray(shared_layout.offset(index), dtype=np.int64)
    elem = np.broadcast_to(elem, coords.shape[:2])
    best = make_plan(layout.local_size, dtype, None, 1, _element_alignment(dtype, base_alignment))
    for dim in range(layout.rank):  # a dimension of the tile
        run = layout.contiguous_local_run(dim)
        for count in _divisors_descending(run):
            if count == 1 or count * n % 8:
                continue
            grouped = elem.reshape(elem.shape[0], -1, count)
            if not (np.diff(grouped, axis=-1) == 1).all():
                continue
            starts_bits = grouped[..., 0] * n
            if (starts_bits % 8).any():
                continue
            align = base_alignment
            for value in np.unique(starts_bits // 8):
                align = math.gcd(align, int(value)) if value else align
            plan = make_plan(layout.local_size, dtype, dim, count, _pow2(align) if align else base_alignment)
            if plan.count > best.count or (plan.count == best.count and plan.piece_bytes > best.piece_bytes):
                best = plan
            break
    return best


def _element_alignment(dtype: DataType, base_alignment: int) -> int:
    """Alignment of single-element accesses: the element's own size (bounded by the base alignment)."""
    if dtype.nbits % 8:
        return 1
    return math.gcd(_pow2(dtype.nbits // 8), base_alignment)
