"""Global-memory layouts with concrete or symbolic shapes and strides."""

from __future__ import annotations

import pytest

from anybit.layout import LayoutError, global_column_major, global_row_major, global_strided

from .layout_helpers import value, var


def test_row_and_column_major():
    assert global_row_major(4, 8).strides == (8, 1)
    assert global_row_major(4, 8).offset((2, 3)) == 19
    assert global_column_major(4, 8).strides == (1, 4)
    assert global_strided((4, 8), (16, 2)).offset((1, 3)) == 22


def test_symbolic_shape_and_index():
    n, k = var("n"), var("k")
    layout = global_row_major(n, k, 8)
    offset = layout.offset((var("a"), var("b"), 5))
    env = {"n": 3, "k": 7, "a": 2, "b": 4}
    assert value(offset, env) == 2 * 7 * 8 + 4 * 8 + 5


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: global_strided((4, 4), (1,)), "expected 2 strides"),
        (lambda: global_row_major(0, 4), "positive"),
        (lambda: global_strided((4,), (-1,)), "non-negative"),
        (lambda: global_row_major(4).offset((1, 2)), "rank 1"),
    ],
)
def test_global_errors(build, message):
    with pytest.raises(LayoutError, match=message):
        build()
