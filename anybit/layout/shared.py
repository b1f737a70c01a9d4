"""Shared-memory layouts: a logical index -> element offset, strided with optional XOR swizzles.

``offset(index) = sum(index'[d] * strides[d])`` where ``index'`` is ``index`` after each swizzle
``index[dim] ^= ((index[by_dim] >> shift) & (2**bits - 1)) << base``. With ``base = log2(16 / element_bytes)``
the swizzle permutes 16-byte chunks within a row, which is what ``ldmatrix`` and ``cp.async`` need to avoid
bank conflicts. It is the explicit form of CuTe's ``Swizzle<bits, base, s>`` applied per row.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

from .errors import LayoutError


@dataclass(frozen=True)
class XorSwizzle:
    """``index[dim] ^= ((index[by_dim] >> shift) & (2**bits - 1)) << base`` (a permutation along ``dim``)."""

    dim: int
    by_dim: int
    shift: int
    bits: int
    base: int

    def apply(self, index: Sequence[Any]) -> tuple[Any, ...]:
        """Return ``index`` with the swizzle applied (symbolic-capable: ``^ & >> <<`` only)."""
        mask = (1 << self.bits) - 1
        pattern = (index[self.by_dim] >> self.shift) & mask
        if self.base:
            pattern = pattern << self.base
        swizzled = list(index)
        swizzled[self.dim] = index[self.dim] ^ pattern
        return tuple(swizzled)


@dataclass(frozen=True)
class SharedLayout:
    """An immutable shared-memory layout: ``shape``, element ``strides`` and swizzles applied in order."""

    shape: tuple[int, ...]
    strides: tuple[int, ...]
    swizzles: tuple[XorSwizzle, ...] = ()

    def __post_init__(self) -> None:
        shape = _positive("shape", self.shape)
        strides = tuple(_int("strides", stride) for stride in self.strides)
        if len(strides) != len(shape):
            raise LayoutError(f"expected {len(shape)} strides for shape {shape}, got {strides}")
        if any(stride < 0 for stride in strides):
            raise LayoutError(f"strides must be non-negative, got {strides}")
        for swizzle in self.swizzles:
            for dim in (swizzle.dim, swizzle.by_dim):
                if not 0 <= dim < len(shape):
                    raise LayoutError(
                        f"swizzle {swizzle} refers to dimension {dim} of a rank-{len(shape)} layout"
                    )
            period = 1 << (swizzle.bits + swizzle.base)
            if shape[swizzle.dim] % period:
                raise LayoutError(
                    f"swizzle {swizzle} needs dimension {swizzle.dim} to be a multiple of {period}, "
                    f"got shape {shape}"
                )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "strides", strides)
        object.__setattr__(self, "swizzles", tuple(self.swizzles))

    @property
    def rank(self) -> int:
        """Number of tensor dimensions."""
        return len(self.shape)

    @property
    def num_elements(self) -> int:
        """Number of logical elements."""
        return prod(self.shape)

    @property
    def size(self) -> int:
        """Elements spanned in shared memory, padding included (largest offset + 1)."""
        return 1 + sum((extent - 1) * stride for extent, stride in zip(self.shape, self.strides, strict=True))

    def offset(self, index: Sequence[Any]) -> Any:
        """Element offset of logical ``index`` (symbolic-capable: ``+ * // %`` and ``^ & >> <<`` only)."""
        index = tuple(index)
        if len(index) != self.rank:
            raise LayoutError(f"expected an index of rank {self.rank} for shape {self.shape}, got {index}")
        for swizzle in self.swizzles:
            index = swizzle.apply(index)
        terms = [
            coordinate if stride == 1 else coordinate * stride
            for coordinate, stride in zip(index, self.strides, strict=False)
        ]
        terms = [term for term, stride in zip(terms, self.strides, strict=False) if stride != 0]
        if not terms:
            return 0
        result = terms[0]
        for term in terms[1:]:
            result = result + term
        return result

    def offsets_array(self) -> np.ndarray:
        """Offsets of every logical element, an int64 array of ``shape``."""
        grids = np.indices(self.shape, dtype=np.int64)
        return np.broadcast_to(np.asarray(self.offset(tuple(grids)), dtype=np.int64), self.shape).copy()

    def prepend_dim(self, extent: int) -> SharedLayout:
        """Stack ``extent`` copies (e.g. pipeline stages) along a new leading dimension, ``size`` apart."""
        extent = _positive("extent", (extent,))[0]
        swizzles = tuple(XorSwizzle(s.dim + 1, s.by_dim + 1, s.shift, s.bits, s.base) for s in self.swizzles)
        return SharedLayout((extent, *self.shape), (self.size, *self.strides), swizzles)

    def __repr__(self) -> str:
        text = f"SharedLayout(shape={self.shape}, strides={self.strides}"
        if self.swizzles:
            text += f", swizzles={self.swizzles}"
        return text + ")"


def shared_strided(
    shape: Sequence[int], strides: Sequence[int], swizzles: Sequence[XorSwizzle] = ()
) -> SharedLayout:
    """A shared layout with explicit element ``strides`` and optional swizzles."""
    return SharedLayout(tuple(shape), tuple(strides), tuple(swizzles))


def shared_core_matrices(k: int, n: int) -> SharedLayout:
    """The tensor cores' core-matrix form of a [K, N] operand read from shared memory by ``wgmma`` without
    swizzling, K-major: shape [K/8, 8, N], element (k // 8, k % 8, n) at ((k // 8) · N + n) · 8 + k % 8, so
    each 8 × 8 core matrix (8 values of k for each of 8 n) is 128 contiguous bytes of 16-bit values, core
    matrices 8·N elements apart along K and 64 apart along N."""
    if k % 8 or n % 8 or k <= 0 or n <= 0:
        raise LayoutError(f"expected K and N positive multiples of 8 for core matrices, got K={k}, N={n}")
    return SharedLayout((k // 8, 8, n), (8 * n, 1, 8))


def shared_row_major(*shape: int) -> SharedLayout:
    """Row-major (last dimension contiguous), no padding."""
    return SharedLayout(tuple(shape), _row_major_strides(_positive("shape", shape)))


def shared_column_major(*shape: int) -> SharedLayout:
    """Column-major (first dimension contiguous), no padding."""
    shape = _positive("shape", shape)
    return SharedLayout(shape, _row_major_strides(shape[::-1])[::-1])


def shared_padded(shape: Sequence[int], pad: int) -> SharedLayout:
    """Row-major with each row (last dimension) followed by ``pad`` unused elements."""
    shape = _positive("shape", shape)
    pad = _int("pad", pad)
    if pad < 0:
        raise LayoutError(f"pad must be non-negative, got {pad}")
    padded = shape[:-1] + (shape[-1] + pad,)
    strides = _row_major_strides(padded)
    return SharedLayout(shape, strides)


def shared_swizzled(shape: Sequence[int], element_bytes: int) -> SharedLayout:
    """Row-major with 16-byte chunks of each row XOR-swizzled by the row index, so that reading one chunk
    column of 8 consecutive rows (``ldmatrix``) or writing whole rows (``cp.async``) is bank-conflict free.

    With ``C`` chunks per row: ``C % 8 == 0`` -> chunk ^= row % 8; ``C % 4 == 0`` -> chunk ^= (row // 2) % 4;
    ``C % 2 == 0`` -> chunk ^= (row // 4) % 2; odd ``C`` needs no swizzle (rows already spread over banks).
    Post-condition: ``bank_conflicts`` of those access patterns is 0.
    """
    shape = _positive("shape", shape)
    if len(shape) < 2:
        raise LayoutError(f"shared_swizzled needs rank >= 2 (rows, columns), got shape {shape}")
    if element_bytes not in (1, 2, 4, 8, 16):
        raise LayoutError(f"element_bytes must be 1, 2, 4, 8 or 16, got {element_bytes}")
    row_bytes = shape[-1] * element_bytes
    if row_bytes % 16:
        raise LayoutError(
            f"shared_swizzled: rows of {shape[-1]} x {element_bytes}-byte elements = {row_bytes} bytes "
            "are not a whole number of 16-byte chunks; use shared_padded instead"
        )
    chunks = row_bytes // 16
    base = (16 // element_bytes).bit_length() - 1
    rank = len(shape)
    swizzles: tuple[XorSwizzle, ...] = ()
    for bits, shift in ((3, 0), (2, 1), (1, 2)):
        if chunks % (1 << bits) == 0:
            swizzles = (XorSwizzle(rank - 1, rank - 2, shift, bits, base),)
            break
    return SharedLayout(shape, _row_major_strides(shape), swizzles)


def _row_major_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides = []
    stride = 1
    for extent in reversed(shape):
        strides.append(stride)
        stride *= extent
    return tuple(strides[::-1])


def _int(what: str, value: object) -> int:
    if isinstance(value, bool):
        raise LayoutError(f"{what} must be ints, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise LayoutError(f"{what} must be ints, got {value!r}") from None


def _positive(what: str, values: Sequence[int]) -> tuple[int, ...]:
    result = tuple(_int(what, value) for value in values)
    if not result or any(value < 1 for value in result):
        raise LayoutError(f"{what} must be one or more positive ints, got {tuple(values)}")
    return result
