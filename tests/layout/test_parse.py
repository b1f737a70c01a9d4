"""parse_layout and the printed form of layouts."""

from __future__ import annotations

import pytest

from anybit.layout import (
    LayoutError,
    LayoutParseError,
    RegisterLayout,
    column_spatial,
    local,
    parse_layout,
    reduce,
    reshape,
    spatial,
    to_expression,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("local(2,1).spatial(8,4).local(1,2)", local(2, 1) * spatial(8, 4) * local(1, 2)),
        ("spatial(8,4) * local(1,2)", spatial(8, 4) * local(1, 2)),
        ("column_spatial(4,8).local(2,1)", column_spatial(4, 8) * local(2, 1)),
        ("  (local(2, 1) * spatial(8, 4)).local(1, 2) ", local(2, 1).spatial(8, 4).local(1, 2)),
        ("local(2, 4) / local(1, 2)", local(2, 2)),
        ("spatial(2, 3, 4, order=[2, 0, 1])", spatial(2, 3, 4, order=[2, 0, 1])),
        ("reduce(spatial(3, 4), dims=[0])", reduce(spatial(3, 4), [0])),
        ("reduce(spatial(3, 4), dims=[0], keepdims=True)", reduce(spatial(3, 4), [0], keepdims=True)),
        (
            "RegisterLayout(shape=[4], mode_shape=[4], spatial_modes=[-3, 0], local_modes=[])",
            reduce(spatial(3, 4), [0]),
        ),
    ],
)
def test_parse(text, expected):
    assert parse_layout(text) == expected


@pytest.mark.parametrize(
    "layout",
    [
        local(2, 1).spatial(8, 4).local(1, 2),
        local(2, 1).column_spatial(4, 8).local(2, 1),
        spatial(2, 3, 4, order=[1, 2, 0]).local(2, 1, 2),
        local(1, 1),
    ],
)
def test_repr_is_the_primitive_chain(layout):
    assert parse_layout(repr(layout)) == layout
    assert repr(layout) == str(layout) == to_expression(layout)


def test_repr_falls_back_to_the_mode_form():
    replicated = reduce(spatial(3, 4), [0])
    assert to_expression(replicated) is None
    assert (
        repr(replicated) == "RegisterLayout(shape=[4], mode_shape=[4], spatial_modes=[-3, 0], local_modes=[])"
    )
    odd = RegisterLayout([4], [2, 2], [], [1, 0])  # local index digits reversed: no primitive chain
    assert to_expression(odd) is None
    assert parse_layout(repr(odd)) == odd
    assert repr(reshape(local(2, 3), (3, 2))) == "local(3, 2)"
    assert repr(local(2, 1).spatial(8, 4).local(1, 2)) == "local(2, 1).spatial(8, 4).local(1, 2)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("local(2,", "cannot parse"),
        ("locl(2, 2)", "unknown layout 'locl'"),
        ("local(2, 2).spatail(2, 2)", "unknown layout method 'spatail'"),
        ("local(2, x)", "expected an integer"),
        ("local(2.0)", "expected an integer"),
        ("local()", "at least one dimension"),
        ("local(2, 0)", "positive"),
        ("local(2, 2) * local(2)", "same rank"),
        ("local(2, 2) + local(2, 2)", "expected a layout"),
        ("column_local(2, 2, order=[1, 0])", "only integer dimensions"),
        ("reduce(local(2, 2))", "dims"),
        ("RegisterLayout(shape=[4])", "exactly the keywords"),
        ("__import__('os')", "unknown layout"),
    ],
)
def test_bad_strings_raise_clear_errors(text, message):
    with pytest.raises(LayoutParseError, match=message):
        parse_layout(text)


def test_parse_error_is_a_layout_error_and_points_at_the_problem():
    with pytest.raises(LayoutError) as info:
        parse_layout("local(2, 2).spatail(2, 2)")
    assert "^" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_rejects_non_strings():
    with pytest.raises(LayoutParseError, match="string"):
        parse_layout(local(2))  # type: ignore[arg-type]


def test_mode_form_round_trip():
    layout = RegisterLayout([4, 6], [2, 2, 3, 2], [0, 2], [3, 1])
    assert parse_layout(layout.mode_form()) == layout
