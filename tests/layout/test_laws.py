"""Algebraic laws of register layouts, checked by hypothesis on random chains of primitives."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from anybit.layout import (
    LayoutError,
    divide,
    flatten,
    left_divide,
    parse_layout,
    permute,
    product,
    reduce,
    reshape,
)

from .layout_helpers import any_layouts, chains, layouts, ranks

FAST = settings(max_examples=60, deadline=None)


def same_rank_triples():
    return ranks.flatmap(lambda rank: st.tuples(chains(rank, 2), chains(rank, 2), chains(rank, 2)))


def same_rank_pairs():
    return ranks.flatmap(lambda rank: st.tuples(chains(rank), chains(rank)))


@FAST
@given(same_rank_triples())
def test_product_is_associative(triple):
    f, g, h = triple
    assert (f * g) * h == f * (g * h)
    np.testing.assert_array_equal(((f * g) * h).map_array(), (f * (g * h)).map_array())


@FAST
@given(same_rank_pairs())
def test_product_follows_the_kronecker_formula(pair):
    f, g = pair
    h = f * g
    assert h.shape == tuple(a * b for a, b in zip(f.shape, g.shape, strict=True))
    assert (h.num_threads, h.local_size) == (f.num_threads * g.num_threads, f.local_size * g.local_size)
    threads = np.arange(h.num_threads)[:, None]
    locals_ = np.arange(h.local_size)[None, :]
    outer = f.map_array()[threads // g.num_threads, locals_ // g.local_size]
    inner = g.map_array()[threads % g.num_threads, locals_ % g.local_size]
    np.testing.assert_array_equal(h.map_array(), outer * np.array(g.shape) + inner)


@FAST
@given(same_rank_pairs())
def test_division_inverts_product(pair):
    f, g = pair
    assert divide(f * g, g) == f
    assert left_divide(f * g, f) == g


@FAST
@given(same_rank_pairs())
def test_division_result_reproduces_the_dividend(pair):
    h, g = pair
    try:
        f = divide(h, g)
    except LayoutError:
        return
    assert product(f, g) == h


@FAST
@given(layouts)
def test_non_replicated_layouts_are_bijections(layout):
    coordinates = layout.map_array().reshape(-1, layout.rank)
    linear = np.ravel_multi_index(tuple(coordinates.T), layout.shape) if layout.rank else np.zeros(1)
    assert sorted(linear.tolist()) == list(range(layout.num_elements))


@FAST
@given(any_layouts)
def test_owners_and_logical_are_inverse(layout):
    array = layout.map_array()
    seen = 0
    for index in itertools.product(*(range(extent) for extent in layout.shape)):
        owners = layout.owners(index)
        assert len(owners) == layout.replication
        for t, i in owners:
            assert layout.logical(t, i) == index
            assert tuple(array[t, i]) == index
        seen += len(owners)
    assert seen == layout.num_threads * layout.local_size


@FAST
@given(any_layouts)
def test_map_array_is_logical_everywhere(layout):
    array = layout.map_array()
    for t in range(layout.num_threads):
        for i in range(layout.local_size):
            assert tuple(array[t, i]) == layout.logical(t, i)


@FAST
@given(any_layouts)
def test_canonical_equality_and_hash_agree(layout):
    rebuilt = parse_layout(repr(layout))
    assert rebuilt == layout and hash(rebuilt) == hash(layout)
    again = reshape(flatten(layout), layout.shape) if layout.rank else layout
    assert again == layout and hash(again) == hash(layout)


@FAST
@given(same_rank_pairs())
def test_equal_iff_same_map(pair):
    f, g = pair
    same_map = (f.shape, f.num_threads, f.local_size) == (g.shape, g.num_threads, g.local_size) and (
        np.array_equal(f.map_array(), g.map_array())
    )
    assert (f == g) == same_map


@FAST
@given(any_layouts)
def test_contiguous_local_run_matches_brute_force(layout):
    array = layout.map_array()
    for dim in range(layout.rank):
        expected = 1
        for run in range(1, layout.local_size + 1):
            if layout.local_size % run:
                continue
            groups = array.reshape(layout.num_threads, layout.local_size // run, run, layout.rank)
            steps = np.zeros(layout.rank, dtype=np.int64)
            steps[dim] = 1
            consecutive = np.all(groups == groups[:, :, :1, :] + np.arange(run)[:, None] * steps)
            aligned = np.all(groups[:, :, 0, dim] % run == 0)
            if consecutive and aligned:
                expected = run
        assert layout.contiguous_local_run(dim) == expected


@FAST
@given(ranks.filter(lambda r: r >= 2).flatmap(chains), st.data())
def test_reduce_keeps_what_each_thread_holds(layout, data):
    dims = data.draw(st.lists(st.integers(0, layout.rank - 1), min_size=1, unique=True))
    reduced = reduce(layout, dims)
    kept = [d for d in range(layout.rank) if d not in dims]
    assert reduced.num_threads == layout.num_threads
    assert reduced.shape == tuple(layout.shape[d] for d in kept)
    before = {(t, tuple(row[kept])) for t, rows in enumerate(layout.map_array()) for row in rows}
    after = {(t, tuple(row)) for t, rows in enumerate(reduced.map_array()) for row in rows}
    assert before == after


@FAST
@given(ranks.flatmap(chains), st.randoms(use_true_random=False))
def test_permute_moves_coordinates(layout, random):
    order = list(range(layout.rank))
    random.shuffle(order)
    permuted = permute(layout, order)
    np.testing.assert_array_equal(permuted.map_array(), layout.map_array()[..., order])
