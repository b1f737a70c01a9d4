"""Scalar expressions: constant folding, typing, divisibility facts, and the guard against Python bools."""

import pytest

from anybit.dtypes import float32, int32, int64
from anybit.ir import Binary, Const, Var, as_expr, binary, cdiv, eq, gcd_divisor


def test_constants_fold_with_floor_semantics():
    assert binary("floordiv", -7, 2) == Const(-4, int32)
    assert binary("mod", -7, 2) == Const(1, int32)
    assert binary("add", 2, 3) == Const(5, int32)


def test_identities_simplify_but_keep_variables():
    x = Var("x", int32)
    assert binary("add", x, 0) is x
    assert binary("mul", 1, x) is x
    assert binary("mul", x, 0) == Const(0, int32)
    assert isinstance(x + 1, Binary)


def test_result_types_follow_c_promotion():
    x = Var("x", int32)
    assert (x * 2).dtype is int32
    assert (x + Var("y", int64)).dtype is int64
    assert (x + 1.5).dtype is float32
    assert eq(x, 3).dtype.name == "boolean"


def test_variables_compare_by_identity_and_expressions_structurally():
    a, b = Var("i", int32), Var("i", int32)
    assert a != b
    assert (a + 1) == (a + 1)
    assert (a + 1) != (b + 1)
    assert hash(a + 1) == hash(a + 1)


def test_divisibility_is_proven_from_structure():
    x = Var("x", int32)
    assert gcd_divisor(x * 8 + 16) == 8
    assert gcd_divisor(x + 1) == 1
    assert gcd_divisor(as_expr(48)) == 16


def test_cdiv_on_ints_and_expressions():
    assert cdiv(10, 4) == 3
    x = Var("n", int32)
    assert repr(cdiv(x, 4)) == "((n + 3) // 4)"


def test_runtime_values_refuse_python_truth_and_indexing():
    x = Var("x", int32)
    with pytest.raises(TypeError, match="run-time value"):
        bool(x < 3)
    with pytest.raises(TypeError, match="compile-time int"):
        range(x)


def test_binary_operators_have_one_definition_with_division_by_zero_rules():
    import math

    from anybit.ir import apply_binary

    assert apply_binary("floordiv", -7, 2) == -4 and apply_binary("mod", -7, 2) == 1
    assert apply_binary("div", 1.0, 0.0) == math.inf and apply_binary("div", -2.0, 0.0) == -math.inf
    assert math.isnan(apply_binary("div", 0.0, 0.0)) and math.isnan(apply_binary("mod", 1.5, 0.0))
    with pytest.raises(ZeroDivisionError, match="integer floordiv by zero"):
        apply_binary("floordiv", 3, 0)
