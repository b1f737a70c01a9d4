"""Which local element of another register tensor the same thread holds for a given logical index."""

from __future__ import annotations

import functools
import math

import numpy as np


class LayoutInverse:
    """``(thread, logical index) → local index`` of a layout: the first local index holding the element, −1
    where the thread holds nothing. Kept as the sorted keys of the elements the threads hold (thread ·
    elements + row-major offset), so it costs the layout's size, not threads × the tensor's elements (a
    dense table of a decode kernel's weight tile took milliseconds to allocate, per configuration)."""

    def __init__(self, layout) -> None:
        data = layout.map_array()  # [threads, local, rank]
        threads, local = data.shape[:2]
        self.shape = tuple(layout.shape)
        self._strides = np.array(
            [math.prod(self.shape[d + 1 :]) for d in range(len(self.shape))], dtype=np.int64
        )
        self._elements = math.prod(self.shape)
        keys = (np.arange(threads, dtype=np.int64)[:, None] * self._elements + data @ self._strides).ravel()
        locals_ = np.tile(np.arange(local, dtype=np.int64), threads)
        order = np.lexsort((locals_, keys))  # by key, then the smallest local first
        self._keys, self._locals = keys[order], locals_[order]

    @property
    def ndim(self) -> int:
        """As a dense ``[thread, *shape]`` table would have."""
        return 1 + len(self.shape)

    def lookup(self, threads, *index) -> np.ndarray:
        """Local indices for broadcastable arrays of ``threads`` and of each coordinate (all in range)."""
        keys = np.asarray(threads, dtype=np.int64) * self._elements
        for dim, (coordinate, stride) in enumerate(zip(index, self._strides, strict=True)):
            coordinate = np.asarray(coordinate, dtype=np.int64)
            if coordinate.size and (coordinate.min() < 0 or coordinate.max() >= self.shape[dim]):
                # an out-of-range coordinate would alias another element's key
                raise IndexError(f"coordinate of dimension {dim} outside 0..{self.shape[dim] - 1}")
            keys = keys + coordinate * stride
        if self._keys.size == 0:
            return np.full(keys.shape, -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._keys, keys), self._keys.size - 1)
        return np.where(self._keys[at] == keys, self._locals[at], -1)


@functools.lru_cache(maxsize=256)
def layout_inverse(layout) -> LayoutInverse:
    """The :class:`LayoutInverse` of a layout (cached)."""
    return LayoutInverse(layout)


def _held_sources(index: np.ndarray, source, num_threads: int) -> tuple[int, ...] | None:
    """For ``index`` (``[threads, target locals, source rank]``: the source element each thread's target
    local reads), the source local every thread holds it at, per target local; None where a thread does not
    hold its element or the locals differ between threads."""
    if np.any(index < 0) or np.any(index >= np.asarray(source.shape, dtype=np.int64)):
        return None
    threads = np.arange(num_threads) % source.num_threads
    j = layout_inverse(source).lookup(threads[:, None], *np.moveaxis(index, -1, 0))
    if j.size == 0:
        return ()
    if np.any(j < 0) or np.any(j != j[0]):
        return None
    return tuple(int(value) for value in j[0])


def _target_indices(target, num_threads: int) -> np.ndarray:
    """Every thread's logical index of each target local: ``[threads, locals, rank]`` (threads past the
    layout's own count wrap around)."""
    return target.map_array()[np.arange(num_threads) % target.num_threads].astype(np.int64)


@functools.lru_cache(maxsize=1024)
def _broadcast_sources(target, source, num_threads: int, broadcast: bool) -> tuple[int, ...] | None:
    """:func:`local_sources` without ``index_map`` (cached: it runs for every element-wise instruction)."""
    index = _target_indices(target, num_threads)
    if broadcast:
        index = index[..., target.rank - source.rank :].copy()
        for d in range(source.rank):
            if source.shape[d] == 1:
                index[..., d] = 0
    elif target.rank != source.rank:
        return None
    return _held_sources(index, source, num_threads)


def local_sources(
    target, source, num_threads: int, *, broadcast: bool = True, index_map=None
) -> list[int] | None:
    """For each local element ``i`` of ``target``, the local index ``j`` of ``source`` that every thread
    holds for the same logical index (numpy broadcasting from the trailing dimensions when ``broadcast``;
    ``index_map`` maps target indices to source indices instead: an array ``[..., target rank]`` to one
    ``[..., source rank]``, e.g. :func:`append_coordinate`). None when some thread does not hold it or the
    position differs between threads (register indices must be compile-time constants). Vectorised over
    threads and elements: a loop over them took most of a bit-plane decode kernel's code generation."""
    if index_map is None:
        found = _broadcast_sources(target, source, num_threads, broadcast)
    else:
        index = np.asarray(index_map(_target_indices(target, num_threads)))
        found = _held_sources(index, source, num_threads)
    return None if found is None else list(found)


def append_coordinate(value: int):
    """An ``index_map`` for :func:`local_sources`: each target index with ``value`` appended (a bit plane's
    bit, a new trailing dimension)."""

    def mapped(index: np.ndarray) -> np.ndarray:
        return np.concatenate([index, np.full((*index.shape[:-1], 1), value, dtype=index.dtype)], axis=-1)

    return mapped


def replace_coordinate(dim: int, value: int):
    """An ``index_map`` for :func:`local_sources`: each target index with dimension ``dim`` set to
    ``value`` (a dot's operand row or column at one k)."""

    def mapped(index: np.ndarray) -> np.ndarray:
        index = index.copy()
        index[..., dim] = value
        return index

    return mapped


def same_map(first, second) -> bool:
    """Whether two layouts place every element at the same (thread, local) positions."""
    return first == second or (
        first.shape == second.shape
        and first.num_threads == second.num_threads
        and np.array_equal(first.map_array(), second.map_array())
    )
