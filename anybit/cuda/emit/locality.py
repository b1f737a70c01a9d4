"""Which local element of another register tensor the same thread holds for a given logical index."""

from __future__ import annotations

import functools

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


def local_sources(
    target, source, num_threads: int, *, broadcast: bool = True, index_map=None
) -> list[int] | None:
    """For each local element ``i`` of ``target``, the local index ``j`` of ``source`` that every thread
    holds for the same logical index (numpy broadcasting from the trailing dimensions when ``broadcast``;
    ``index_map`` maps a target index to a source index instead). None when some thread does not hold it or
    the position differs between threads (register indices must be compile-time constants)."""
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
