"""Product, division, reduction and reshaping: the digest's worked examples (§3.3-3.5) and clear errors."""

from __future__ import annotations

import pytest

from anybit.layout import (
    LayoutError,
    column_local,
    column_spatial,
    concat,
    divide,
    divides,
    flatten,
    left_divide,
    local,
    permute,
    reduce,
    reshape,
    spatial,
    squeeze,
    unsqueeze,
)


def test_fig5_product_formula():
    # (a): 1 thread x 2 elements of shape (2, 1); (b): 6 threads x 2 elements of shape (2, 6).
    a = local(2, 1)
    b = spatial(2, 3).local(1, 2)
    c = a * b
    assert (c.shape, c.num_threads, c.local_size) == ((4, 6), 6, 4)
    for t in range(6):
        for i in range(4):
            outer = a.logical(t // 6, i // 2)
            inner = b.logical(t % 6, i % 2)
            assert c.logical(t, i) == (outer[0] * 2 + inner[0], outer[1] * 6 + inner[1])


def test_chaining_equals_product():
    assert local(2, 1).spatial(8, 4).local(1, 2) == local(2, 1) * spatial(8, 4) * local(1, 2)
    assert local(2, 1).column_spatial(4, 8) == local(2, 1) * column_spatial(4, 8)
    assert spatial(2, 2).column_local(2, 3) == spatial(2, 2) * column_local(2, 3)


def test_product_is_not_commutative():
    f, g = spatial(2), local(2)
    assert f * g != g * f
    assert (f * g).logical(1, 0) == (2,)
    assert (g * f).logical(1, 0) == (1,)


def test_division_worked_example():
    assert local(2, 4) / local(1, 2) == local(2, 2)
    assert divide(local(2, 4), local(1, 2)) == local(2, 2)


def test_division_splits_modes_and_divides_mma_layouts():
    c = local(2, 1).spatial(8, 4).local(1, 2)
    assert c / local(1, 2) == local(2, 1).spatial(8, 4)
    assert c / spatial(8, 4).local(1, 2) == local(2, 1)
    assert c / spatial(2, 4).local(1, 2) == local(2, 1).spatial(4, 1)
    assert spatial(6) / spatial(2) == spatial(3)
    assert spatial(6) / spatial(3) == spatial(2)
    assert left_divide(c, local(2, 1)) == spatial(8, 4).local(1, 2)
    assert left_divide(spatial(6), spatial(2)) == spatial(3)


def test_division_of_replicated_layouts():
    scales = reduce(spatial(4, 8).local(1, 2), [0])
    assert scales / local(2) == reduce(spatial(4, 8), [0])
    assert divides(scales, spatial(8).local(2))


@pytest.mark.parametrize(
    ("lhs", "rhs", "message"),
    [
        (local(2, 4), local(1, 3), "not a multiple of 3"),
        (local(2, 1).spatial(8, 4).local(1, 2), local(2, 1), "local modes are not the last"),
        (spatial(4).local(2), spatial(2), "thread modes are not the last"),
        (spatial(2, 6), local(1, 2), "local size 1 is not a multiple of 2"),
        (local(2, 2), local(4), "same rank"),
        (spatial(6), spatial(4), "6 is not a multiple of 4"),
    ],
)
def test_division_errors_say_why(lhs, rhs, message):
    with pytest.raises(LayoutError, match=message):
        divide(lhs, rhs)
    if "same rank" not in message:
        assert not divides(lhs, rhs)


def test_reduce_spatial_local_and_keepdims():
    layout = local(2, 1).spatial(8, 4).local(1, 2)
    rows = reduce(layout, [1])
    assert rows.shape == (16,) and rows.local_size == 2 and rows.replication == 4
    assert rows.owners((9,)) == [(4, 1), (5, 1), (6, 1), (7, 1)]  # row 9 = groupID 1 + 8
    assert reduce(layout, [0, 1], keepdims=True).shape == (1, 1)
    assert reduce(layout, [0, 1]).shape == ()
    assert reduce(layout, [0, 1]).replication == 32
    assert layout.reduce([0]) == reduce(layout, [0])
    with pytest.raises(LayoutError, match="out of range"):
        reduce(layout, [2])
    with pytest.raises(LayoutError, match="repeated"):
        reduce(layout, [0, -2])


def test_concat_stacks_dimensions():
    stacked = concat(spatial(2), local(3))
    assert stacked.shape == (2, 3)
    assert stacked == spatial(2, 1).local(1, 3)


def test_permute_reshape_flatten_squeeze_unsqueeze():
    c = local(2, 1).spatial(8, 4).local(1, 2)
    transposed = permute(c, [1, 0])
    for t in range(32):
        for i in range(4):
            assert transposed.logical(t, i) == c.logical(t, i)[::-1]
    flat = flatten(c)
    assert flat.shape == (128,)
    for t in range(32):
        for i in range(4):
            row, column = c.logical(t, i)
            assert flat.logical(t, i) == (row * 8 + column,)
    assert reshape(flat, (16, 8)) == c
    assert reshape(c, (2, 8, 8)).shape == (2, 8, 8)
    assert squeeze(unsqueeze(c, 1)) == c
    assert unsqueeze(c, -1).shape == (16, 8, 1)
    assert squeeze(unsqueeze(c, 0), [0]) == c
    with pytest.raises(LayoutError, match="has size 16"):
        squeeze(c, [0])
    with pytest.raises(LayoutError, match="straddles"):
        reshape(spatial(4).local(6), (6, 4))
    with pytest.raises(LayoutError, match="24 elements"):
        reshape(spatial(4).local(6), (5, 5))
    with pytest.raises(LayoutError, match="permutation"):
        permute(c, [0, 0])
