"""Which local element of another register tensor the same thread holds for a given logical index."""

from __future__ import annotations

import functools
import math

import numpy as np


@functools.lru_cache(maxsize=256)
def _inverse(layout) -> dict:
    """``{(thread, logical index): local index}`` of a layout (thread counted modulo its thread count)."""
    table = {}
    data = layout.map_array()
    for t in range(data.shape[0]):
        for i in range(data.shape[1]):
            table.setdefault((t, tuple(int(x) for x in data[t, i])), i)
    return table


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


@functools.lru_cache(maxsize=1024)
def _broadcast_sources(target, source, num_threads: int, broadcast: bool) -> tuple[int, ...] | None:
    """:func:`local_sources` without ``index_map``, vectorised over threads and elements (it runs for
    every element-wise instruction: the per-element loop took most of a decode kernel's code generation)."""
    data = target.map_array()  # [target threads, local, rank]
    threads = np.arange(num_threads)
    index = data[threads % target.num_threads]  # [threads, local, rank]
    if broadcast:
        offset = target.rank - source.rank
        index = index[..., offset:].copy()
        for d in range(source.rank):
            if source.shape[d] == 1:
                index[..., d] = 0
    elif target.rank != source.rank:
        return None
    if np.any(index < 0) or np.any(index >= np.asarray(source.shape)):
        return None
    j = layout_inverse(source).lookup((threads % source.num_threads)[:, None], *np.moveaxis(index, -1, 0))
    if j.size == 0:
        return ()
    if np.any(j < 0) or np.any(j != j[0]):
        return None
    return tuple(int(value) for value in j[0])


def local_sources(
    target, source, num_threads: int, *, broadcast: bool = True, index_map=None
) -> list[int] | None:
    """For each local element ``i`` of ``target``, the local index ``j`` of ``source`` that every thread
    holds for the same logical index (numpy broadcasting from the trailing dimensions when ``broadcast``;
    ``index_map`` maps a target index to a source index instead). None when some thread does not hold it or
    the position differs between threads (register indices must be compile-time constants)."""
    if index_map is None:
        found = _broadcast_sources(target, source, num_threads, broadcast)
        return None if found is None else list(found)
    inverse = _inverse(source)
    data = target.map_array()
    offset = target.rank - source.rank
    result = []
    for i in range(target.local_size):
        chosen = None
        for t in range(num_threads):
            index = tuple(int(x) for x in data[t % target.num_threads, i])
            if index_map is not None:
                index = index_map(index)
            elif broadcast:
                index = tuple(0 if source.shape[d] == 1 else index[d + offset] for d in range(source.rank))
            j = inverse.get((t % source.num_threads, index))
            if j is None or (chosen is not None and j != chosen):
                return None
            chosen = j
        result.append(chosen)
    return result


def same_map(first, second) -> bool:
    """Whether two layouts place every element at the same (thread, local) positions."""
    return first == second or (
        first.shape == second.shape
        and first.num_threads == second.num_threads
        and np.array_equal(first.map_array(), second.map_array())
    )
