"""The RegisterLayout value: primitives (digest §3.2), queries, canonical form and symbolic evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anybit.layout import (
    LayoutError,
    RegisterLayout,
    column_local,
    column_spatial,
    local,
    reduce,
    spatial,
)

from .layout_helpers import any_layouts, value, var


def test_local_worked_example():
    layout = local(2, 3)
    assert (layout.num_threads, layout.local_size, layout.shape) == (1, 6, (2, 3))
    for i in range(6):
        assert layout.logical(0, i) == (i // 3, i % 3)


def test_spatial_worked_example():
    layout = spatial(2, 3)
    assert (layout.num_threads, layout.local_size, layout.shape) == (6, 1, (2, 3))
    for t in range(6):
        assert layout.logical(t, 0) == (t // 3, t % 3)


def test_column_primitives_walk_the_first_dimension_fastest():
    for t in range(6):
        assert column_spatial(2, 3).logical(t, 0) == (t % 2, t // 2)
        assert column_local(2, 3).logical(0, t) == (t % 2, t // 2)


def test_primitives_of_any_rank_and_explicit_order():
    layout = local(2, 3, 4)
    assert [layout.logical(0, i) for i in range(24)] == [
        (a, b, c) for a in range(2) for b in range(3) for c in range(4)
    ]
    ordered = spatial(2, 3, 4, order=[1, 2, 0])  # dimension 1 slowest, dimension 0 fastest
    expected = [(a, b, c) for b in range(3) for c in range(4) for a in range(2)]
    assert [ordered.logical(t, 0) for t in range(24)] == expected
    assert spatial(2, 3, 4, order=[2, 1, 0]) == column_spatial(2, 3, 4)


def test_fig3_mma_m16n8k8_a_formula():
    layout = local(2, 1).spatial(8, 4).local(1, 2)
    for t in range(32):
        for i in range(4):
            assert layout.logical(t, i) == (t // 4 + i // 2 * 8, t % 4 * 2 + i % 2)


def test_unified_form_worked_example():
    # shape [4,6], mode_shape [2,2,3,2], spatial [0,2], local [3,1]:
    # thread = (i//2)*3 + j//2, local = (j%2)*2 + i%2.
    layout = RegisterLayout([4, 6], [2, 2, 3, 2], [0, 2], [3, 1])
    for i in range(4):
        for j in range(6):
            assert layout.owners((i, j)) == [((i // 2) * 3 + j // 2, (j % 2) * 2 + i % 2)]


@pytest.mark.parametrize(
    ("layout", "mode_shape", "spatial_modes", "local_modes"),
    [
        (local(3, 4).spatial(2, 3), (3, 2, 4, 3), (1, 3), (0, 2)),
        (spatial(2, 3).local(3, 4), (2, 3, 3, 4), (0, 2), (1, 3)),
        (local(2, 1).spatial(8, 4).local(1, 2), (2, 8, 4, 2), (1, 2), (0, 3)),
    ],
)
def test_unified_form_of_products(layout, mode_shape, spatial_modes, local_modes):
    assert (layout.mode_shape, layout.spatial_modes, layout.local_modes) == (
        mode_shape,
        spatial_modes,
        local_modes,
    )


def test_canonical_form_makes_equal_maps_equal():
    assert local(2).local(3) == local(6)
    assert hash(local(2).local(3)) == hash(local(6))
    assert spatial(2, 1) * spatial(1, 4) == spatial(2, 4)
    assert spatial(1, 4) * spatial(2, 1) == column_spatial(2, 4)
    assert spatial(1, 4) * spatial(2, 1) != spatial(2, 4)
    assert local(2, 1).local(1, 2) == local(2, 2)
    assert local(1, 1) == local(1, 1, order=[1, 0]) == spatial(1, 1)
    assert RegisterLayout([6], [2, 1, 3], [0, 2], [1]) == spatial(6)
    assert len({local(6), local(2).local(3), local(3).local(2), spatial(6)}) == 2


def test_layouts_are_immutable_values():
    layout = spatial(2, 2)
    with pytest.raises(AttributeError):
        layout.shape = (4,)  # type: ignore[misc]
    assert {layout: 1}[spatial(2, 2)] == 1


def test_map_array_matches_logical():
    layout = column_local(2, 2).spatial(8, 4).local(1, 2)
    array = layout.map_array()
    assert array.shape == (32, 8, 2) and array.dtype == np.int64
    for t in range(32):
        for i in range(8):
            assert tuple(array[t, i]) == layout.logical(t, i)


def test_logical_is_symbolic_capable():
    layout = column_local(2, 2).spatial(8, 4).local(1, 2)
    t = var("t")
    for i in range(layout.local_size):
        expressions = layout.logical(t, i)
        for lane in range(32):
            assert tuple(value(e, {"t": lane}) for e in expressions) == layout.logical(lane, i)
    index = (var("r"), var("c"))
    thread, local_index = layout.thread_of(index), layout.local_index(index)
    for r in range(16):
        for c in range(16):
            env = {"r": r, "c": c}
            assert [(value(thread, env), value(local_index, env))] == layout.owners((r, c))


def test_logical_wraps_threads_and_locals():
    layout = spatial(4).local(2)
    assert layout.logical(4, 0) == layout.logical(0, 0)
    assert layout.logical(1, 3) == layout.logical(1, 1)


def test_owners_and_replication():
    scales = reduce(spatial(3, 4), [0])
    assert scales.shape == (4,)
    assert scales.spatial_modes == (-3, 0)
    assert scales.owners((0,)) == [(0, 0), (4, 0), (8, 0)]
    assert scales.is_replicated and scales.replication == 3
    assert not spatial(3, 4).is_replicated and spatial(3, 4).replication == 1
    with pytest.raises(LayoutError, match="out of range"):
        scales.owners((4,))
    with pytest.raises(LayoutError, match="rank 1"):
        scales.owners((0, 0))


def test_reduce_mma_c_rows_keeps_a_size_one_dimension():
    c = local(2, 1).spatial(8, 4).local(1, 2)
    columns = reduce(c, [0], keepdims=True)
    assert columns.shape == (1, 8)
    assert columns.num_threads == 32 and columns.local_size == 2 and columns.replication == 8
    assert columns.owners((0, 3)) == [(t, 1) for t in range(1, 32, 4)]
    assert reduce(c, [0]).shape == (8,)


@pytest.mark.parametrize(
    ("layout", "dim", "run"),
    [
        (local(2, 1).spatial(8, 4).local(1, 2), 1, 2),
        (local(2, 1).spatial(8, 4).local(1, 2), 0, 1),
        (local(2, 1).column_spatial(4, 8).local(2, 1), 0, 2),
        (spatial(4, 8).local(4, 8), 1, 8),
        (spatial(4, 8).local(4, 8), 0, 1),
        (spatial(4, 8).local(1, 6), 1, 6),
        (spatial(4, 8), 1, 1),
        (local(3, 4).spatial(2, 3), 1, 1),
    ],
)
def test_contiguous_local_run(layout, dim, run):
    assert layout.contiguous_local_run(dim) == run


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: local(2, 0), "positive"),
        (lambda: spatial(-1), "positive"),
        (lambda: local(), "at least one dimension"),
        (lambda: local(2.5), "ints"),
        (lambda: local(2, 2, order=[0, 0]), "permutation"),
        (lambda: local(2, 1) * local(2), "same rank"),
        (lambda: RegisterLayout([4], [3], [0], []), "multiply to 4"),
        (lambda: RegisterLayout([4], [4], [0], [0]), "more than once"),
        (lambda: RegisterLayout([4], [4], [], []), "neither"),
        (lambda: RegisterLayout([4], [4], [1], []), "only 1 modes"),
        (lambda: RegisterLayout([4], [4], [], [0, -2]), "replicated"),
    ],
)
def test_clear_errors(build, message):
    with pytest.raises(LayoutError, match=message):
        build()


def test_layout_error_is_a_value_error():
    assert issubclass(LayoutError, ValueError)


def _same_elements_brute_force(a: RegisterLayout, b: RegisterLayout) -> bool:
    mine, theirs = a.map_array(), b.map_array()
    return all(
        sorted(map(tuple, mine[t].tolist())) == sorted(map(tuple, theirs[t].tolist()))
        for t in range(mine.shape[0])
    )


@settings(max_examples=150, deadline=None)
@given(any_layouts, st.randoms(use_true_random=False))
def test_holds_same_elements_matches_a_per_thread_comparison(layout, rng):
    """Against sorting each thread's coordinate tuples: the layout with its local (or thread) modes
    shuffled holds the same elements per thread only when the shuffle leaves them alone."""
    shape, mode_shape, spatial_modes, local_modes = layout._key()
    shuffled_local = list(local_modes)
    rng.shuffle(shuffled_local)
    shuffled_spatial = list(spatial_modes)
    rng.shuffle(shuffled_spatial)
    for other in (
        RegisterLayout(shape, mode_shape, spatial_modes, shuffled_local),
        RegisterLayout(shape, mode_shape, shuffled_spatial, local_modes),
    ):
        expected = _same_elements_brute_force(layout, other)
        assert layout.holds_same_elements(other) == expected
        assert other.holds_same_elements(layout) == expected
    assert layout.holds_same_elements(RegisterLayout(shape, mode_shape, spatial_modes, shuffled_local))
