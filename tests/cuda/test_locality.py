"""``local_sources`` / ``layout_inverse``: which local register of another tensor holds the same element.

The vectorised lookup is checked against the per-thread, per-element definition on the layouts the code
generator meets (element-wise operands with broadcasting, reorders, MMA operand layouts) and on random
compositions of the layout primitives.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from anybit.cuda.emit.locality import append_coordinate, layout_inverse, local_sources, replace_coordinate
from anybit.layout import column_local, column_spatial, local, spatial
from anybit.layout import mma as mma_layouts


def reference_sources(
    target, source, num_threads: int, broadcast: bool = True, index_map=None
) -> list[int] | None:
    """The definition, element by element: every thread must hold the element at the same local index
    (``index_map``: a target index tuple to a source index tuple)."""
    data, held = target.map_array(), source.map_array()
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
            row = held[t % source.num_threads]
            hits = [j for j in range(row.shape[0]) if tuple(int(x) for x in row[j]) == index]
            if not hits or (chosen is not None and hits[0] != chosen):
                return None
            chosen = hits[0]
        result.append(chosen)
    return result


def random_layouts(rng: random.Random, shape: tuple[int, int]):
    """Two random compositions of local/spatial primitives covering ``shape``: unrelated ones (mostly no
    source), and one whose local part is row- instead of column-major (the same elements in each thread,
    another order: a source for every element)."""
    rows, cols = shape
    r0 = rng.choice([d for d in (1, 2, 4) if rows % d == 0])
    c0 = rng.choice([d for d in (1, 2, 4) if cols % d == 0])
    threads = rng.choice([spatial, column_spatial])(rows // r0, cols // c0)
    first = rng.choice([local, column_local])(r0, c0) * threads
    reordered = (column_local if rng.random() < 0.5 else local)(r0, c0) * threads
    unrelated = rng.choice([local, spatial, column_local, column_spatial])(r0, c0) * rng.choice(
        [local, spatial, column_local, column_spatial]
    )(rows // r0, cols // c0)
    return first, reordered, unrelated


@pytest.mark.parametrize(
    "layout",
    [local(2, 1) * spatial(4, 8), local(2, 2) * spatial(1, 4) * local(2, 1), spatial(4, 1) * local(1, 4)],
)
def test_layout_inverse_gives_the_first_local_index_or_minus_one(layout) -> None:
    """Every (thread, element) pair of the tensor: the first local index holding it, −1 where the thread
    holds nothing (here every thread holds only part of the tensor)."""
    inverse = layout_inverse(layout)
    data = layout.map_array()
    for t in range(data.shape[0]):
        held = [tuple(int(x) for x in data[t, j]) for j in range(data.shape[1])]
        for index in itertools.product(*(range(extent) for extent in layout.shape)):
            expected = held.index(index) if index in held else -1
            assert inverse.lookup(t, *index) == expected, (t, index)
    # Arrays broadcast like a dense table's fancy index.
    threads = np.arange(data.shape[0])[:, None]
    found = inverse.lookup(threads, *np.moveaxis(data, -1, 0))
    assert found.shape == data.shape[:2] and (found >= 0).all()
    with pytest.raises(IndexError, match="outside"):
        inverse.lookup(0, *(extent for extent in layout.shape))


@pytest.mark.parametrize("seed", range(40))
def test_local_sources_match_the_definition(seed: int) -> None:
    rng = random.Random(seed)
    shape = rng.choice([(8, 8), (16, 8), (4, 16), (16, 16)])
    target, reordered, unrelated = random_layouts(rng, shape)
    for source in (reordered, unrelated):
        threads = max(target.num_threads, source.num_threads)
        assert local_sources(target, source, threads) == reference_sources(target, source, threads)
    assert local_sources(target, reordered, target.num_threads) is not None
    assert local_sources(target, target, target.num_threads) == list(range(target.local_size))


def test_broadcast_rows_and_columns_match_the_definition() -> None:
    target = local(2, 2) * spatial(8, 4)
    for source in (local(1, 2) * spatial(1, 4), local(2, 1) * spatial(8, 1)):
        threads = target.num_threads
        assert local_sources(target, source, threads) == reference_sources(target, source, threads)


def test_mma_operand_layouts_match_the_definition() -> None:
    atom = mma_layouts.MMA_ATOMS["m16n8k16.f16"]
    for name in ("a", "b", "c"):
        layout = getattr(atom, name)
        tiled = local(2, 1) * layout
        assert local_sources(tiled, tiled, 32) == list(range(tiled.local_size))
        assert local_sources(layout, tiled, 32) == reference_sources(layout, tiled, 32, broadcast=False)


@pytest.mark.parametrize("seed", range(20))
def test_mapped_sources_match_the_definition(seed: int) -> None:
    """``index_map`` on whole index arrays against the per-element definition: a bit plane's trailing bit
    appended (the bit-plane cast) and one coordinate set to a constant (the SIMT dot's row or column at k),
    on random layouts, including maps to elements no thread holds there or outside the source."""
    rng = random.Random(seed)
    rows, cols = rng.choice([(8, 8), (16, 8), (4, 16)])
    target, reordered, unrelated = random_layouts(rng, (rows, cols))
    bits = rng.choice([2, 4])
    plane = rng.choice([local(1, 1, bits), local(1, 2, bits)]) * spatial(rows, cols // 2, 1)
    plane_target = local(1, 1) * spatial(rows, cols // 2)
    for bit in range(bits):
        mapped = local_sources(plane_target, plane, 32, index_map=append_coordinate(bit))
        assert mapped == reference_sources(
            plane_target, plane, 32, index_map=lambda index, b=bit: (*index, b)
        )
    for source in (target, reordered, unrelated):
        threads = max(target.num_threads, source.num_threads)
        for dim, value in ((0, 0), (1, cols - 1), (0, rows)):  # the last: outside the source
            mapped = local_sources(target, source, threads, index_map=replace_coordinate(dim, value))

            def by_element(index, dim=dim, value=value):
                return tuple(value if d == dim else x for d, x in enumerate(index))

            expected = reference_sources(target, source, threads, index_map=by_element)
            assert mapped == expected, (dim, value)
