"""Bit-for-bit agreement with ml_dtypes (the oracle of DESIGN §4.1) on ≥ 100k values per type.

ml_dtypes converts float64 through float32 (so it double-rounds a few float64 inputs), and its overflow
handling differs from anybit's saturation for e4m3fn (→ NaN) and e5m2 (→ inf). The inputs are therefore
float32 values, and wherever ml_dtypes overflows a finite input the expected code is the documented ±max.
"""

import numpy as np
import pytest

import anybit
from anybit.dtypes import decode, encode

from .reference import reference_values

ML_FLOATS = ["float8_e4m3", "float8_e5m2", "float6_e2m3", "float6_e3m2", "float4_e2m1"]
ML_INTS = ["int2", "int4", "uint2", "uint4"]


def _float_inputs(data_type, rng) -> np.ndarray:
    values = reference_values(data_type.name, data_type.nbits)
    grid = np.unique(values[np.isfinite(values)])
    ties = (grid[:-1] + grid[1:]) / 2  # exact: one more bit than the type has
    ties32 = np.concatenate([ties, -ties]).astype(np.float32)
    maximum, tiny = data_type.max_value, data_type.smallest_normal
    parts = [
        rng.uniform(-maximum, maximum, 40_000),
        rng.choice(ties32, 20_000),
        np.nextafter(rng.choice(ties32, 10_000), np.float32(np.inf)),
        np.nextafter(rng.choice(ties32, 10_000), np.float32(-np.inf)),
        rng.uniform(-2 * tiny, 2 * tiny, 15_000),
        rng.choice(grid, 5_000),
        maximum * rng.uniform(1.0, 1.5, 5_000) * rng.choice([-1, 1], 5_000),
        [0.0, -0.0, maximum, -maximum, np.inf, -np.inf, np.nan, -np.nan, 1e30, -1e30],
    ]
    return np.concatenate([np.asarray(part, dtype=np.float32) for part in parts])


@pytest.mark.parametrize("name", ML_FLOATS)
def test_floats_agree_with_ml_dtypes(name):
    data_type = getattr(anybit, name)
    rng = np.random.default_rng(ML_FLOATS.index(name))
    inputs = _float_inputs(data_type, rng)
    assert inputs.size >= 100_000
    oracle = inputs.astype(data_type.ml_dtype)
    expected = oracle.view(np.uint8).copy()
    oracle_values = oracle.astype(np.float64)

    sign_bit = 1 << (data_type.nbits - 1)
    max_code = int(encode(np.array([data_type.max_value]), data_type)[0])
    overflow = np.isfinite(inputs) & ~np.isfinite(oracle_values)
    assert overflow.any() == (name in ("float8_e4m3", "float8_e5m2"))
    expected[overflow] = np.where(np.signbit(inputs[overflow]), sign_bit | max_code, max_code)
    infinite = np.isinf(inputs)
    if not data_type.has_inf:
        expected[infinite] = np.where(np.signbit(inputs[infinite]), sign_bit | max_code, max_code)
    if not data_type.has_nan:
        expected[np.isnan(inputs)] = max_code  # documented: NaN → +max where the type has no NaN

    actual = encode(inputs, data_type)
    mismatch = np.flatnonzero(actual != expected)
    assert mismatch.size == 0, (
        f"{inputs[mismatch[0]]!r} → {actual[mismatch[0]]:#x}, expected {expected[mismatch[0]]:#x}"
    )


def test_nan_codes_match_ml_dtypes_where_the_type_has_nan():
    for name in ("float8_e4m3", "float8_e5m2"):
        data_type = getattr(anybit, name)
        inputs = np.array([np.nan, -np.nan], dtype=np.float32)
        np.testing.assert_array_equal(
            encode(inputs, data_type), inputs.astype(data_type.ml_dtype).view(np.uint8)
        )


@pytest.mark.parametrize("name", ML_INTS)
def test_integers_agree_with_ml_dtypes(name):
    data_type = getattr(anybit, name)
    rng = np.random.default_rng(len(name))
    inputs = rng.integers(data_type.min_value, data_type.max_value + 1, 100_000)
    expected = inputs.astype(data_type.ml_dtype).view(np.uint8)
    np.testing.assert_array_equal(encode(inputs, data_type), expected)
    np.testing.assert_array_equal(encode(inputs.astype(np.float64), data_type), expected)
    np.testing.assert_array_equal(decode(expected, data_type), inputs.astype(np.float64))


@pytest.mark.parametrize("name", ML_INTS + ["int3", "uint7", "int8", "int16", "int32", "uint32"])
def test_integer_rounding_and_saturation_follow_the_rule(name):
    data_type = getattr(anybit, name)
    rng = np.random.default_rng(7)
    low, high = data_type.min_value, data_type.max_value
    span = high - low + 1
    halves = rng.integers(2 * low - 4, 2 * high + 4, 50_000) / 2  # many exact .5 ties
    uniform = rng.uniform(low - span, high + span, 50_000)
    inputs = np.concatenate([halves, uniform, [np.nan, np.inf, -np.inf, -0.0, 0.5, -0.5, 1.5, 2.5]])
    rounded = np.array(
        [round(value) if np.isfinite(value) else value for value in inputs.tolist()], dtype=object
    )
    expected_values = [0 if value != value else min(max(value, low), high) for value in rounded]  # NaN → 0
    expected = np.array([value % 2**data_type.nbits for value in expected_values], dtype=data_type.code_dtype)
    np.testing.assert_array_equal(encode(inputs, data_type), expected)
