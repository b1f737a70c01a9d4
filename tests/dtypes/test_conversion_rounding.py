"""Rounding, saturation and NaN rules, checked against a brute-force nearest-value search."""

import math

import ml_dtypes
import numpy as np
import pytest

import anybit
from anybit.dtypes import decode, encode, packed_types

from .reference import float_format, reference_values

PACKED_FLOATS = [t for t in packed_types() if t.is_float]


def _brute_force_codes(inputs: np.ndarray, name: str, nbits: int) -> np.ndarray:
    """Nearest finite value by exhaustive search; ties to the even significand; saturate; keep the sign."""
    x, y = float_format(name)
    min_exponent = 2 - 2 ** (x - 1)
    values = reference_values(name, nbits)
    positive = [
        (value, code) for code, value in enumerate(values[: 2 ** (nbits - 1)]) if math.isfinite(value)
    ]
    grid = np.array([value for value, _ in positive])
    grid_codes = np.array([code for _, code in positive])
    magnitudes = np.minimum(np.abs(inputs), grid.max())  # saturate first: far values would tie in float64
    distance = np.abs(magnitudes[:, None] - grid[None, :])
    nearest = distance == distance.min(axis=1, keepdims=True)
    expected = np.empty(inputs.size, dtype=np.int64)
    for row, candidates in enumerate(nearest):
        choices = np.flatnonzero(candidates)
        if choices.size == 2:  # a tie: take the one whose significand, in quanta of the lower binade, is even
            low, high = grid[choices]
            binade = max(math.frexp(low)[1] - 1, min_exponent) if low > 0 else min_exponent
            quanta = high / math.ldexp(1.0, binade - y)
            choices = choices[1:] if quanta % 2 == 0 else choices[:1]
        expected[row] = grid_codes[choices[0]] | (int(np.signbit(inputs[row])) << (nbits - 1))
    return expected


def _inputs_for(data_type, rng) -> np.ndarray:
    values = reference_values(data_type.name, data_type.nbits)
    grid = np.unique(values[np.isfinite(values)])
    ties = (grid[:-1] + grid[1:]) / 2
    maximum = data_type.max_value
    parts = [
        ties,
        np.nextafter(ties, np.inf),
        np.nextafter(ties, -np.inf),
        grid,
        rng.uniform(-maximum * 1.2, maximum * 1.2, 2_000),
        rng.uniform(-2 * data_type.smallest_normal, 2 * data_type.smallest_normal, 500),
        [maximum * 1.01, -maximum * 7, 1e300, -1e300, 5e-324, -5e-324, 0.0, -0.0],
    ]
    return np.concatenate([np.asarray(part, dtype=np.float64) for part in parts])


@pytest.mark.parametrize("data_type", PACKED_FLOATS, ids=str)
def test_round_to_nearest_even_matches_brute_force(data_type):
    rng = np.random.default_rng(data_type.nbits * 10 + data_type.exponent_bits)
    inputs = _inputs_for(data_type, rng)
    expected = _brute_force_codes(inputs, data_type.name, data_type.nbits)
    actual = encode(inputs, data_type).astype(np.int64)
    mismatch = np.flatnonzero(actual != expected)
    assert mismatch.size == 0, (
        f"{inputs[mismatch[0]]!r} → {actual[mismatch[0]]}, expected {expected[mismatch[0]]}"
    )


def test_hand_checked_ties():
    # float5_e2m2: 1.0, 1.25, 1.5 … ; 1.125 ties to 1.0 (even), 1.375 ties to 1.5 (even).
    assert list(decode(encode([1.125, 1.375, 0.125, 0.375, 7.2, -100.0], "f5e2m2"), "f5e2m2")) == [
        1.0, 1.5, 0.0, 0.5, 7.0, -7.0
    ]  # fmt: skip
    # float3_e1m1 (bias 0) holds 0, 1 (subnormals), 2, 3: ties 0.5 → 0, 1.5 → 2, 2.5 → 2.
    assert list(decode(encode([0.5, 1.5, 2.5, 5.0], "float3_e1m1"), "float3_e1m1")) == [0.0, 2.0, 2.0, 3.0]
    # float7_e3m3 subnormals are multiples of 1/32; 3/64 ties to 2/32.
    assert decode(encode([3 / 64], "float7_e3m3"), "float7_e3m3")[0] == 1 / 16
    # Y = 0: a tie between two normals rounds up (significand 2 in quanta of the lower binade is even).
    assert list(decode(encode([3.0, 0.25, 0.75], "float3_e2m0"), "float3_e2m0")) == [4.0, 0.0, 1.0]


def test_exact_rounding_without_double_rounding():
    # Just above the tie between 1 and 1.125: a float32 step would make it an exact tie (→ 1.0).
    value = 1 + 2**-4 + 2**-30
    assert decode(encode([value], "float8_e4m3"), "float8_e4m3")[0] == 1.125


@pytest.mark.parametrize("name", ["float16", "float32"])
def test_standard_floats_match_numpy_rounding(name):
    data_type = getattr(anybit, name)
    rng = np.random.default_rng(3)
    inputs = np.concatenate(
        [rng.standard_normal(50_000) * 10.0 ** rng.integers(-10, 6, 50_000), rng.uniform(-1e-7, 1e-7, 10_000)]
    )
    if name == "float32":
        inputs = inputs * 1e30
    with np.errstate(over="ignore"):
        native = inputs.astype(data_type.numpy_dtype)
    finite = np.isfinite(native)
    np.testing.assert_array_equal(
        encode(inputs[finite], data_type), native[finite].view(data_type.code_dtype)
    )


def test_bfloat16_matches_ml_dtypes_on_float32_inputs():
    rng = np.random.default_rng(4)
    inputs = (rng.standard_normal(100_000) * 10.0 ** rng.integers(-30, 30, 100_000)).astype(np.float32)
    expected = inputs.astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(encode(inputs, anybit.bfloat16), expected)


def test_standard_floats_saturate_and_keep_specials():
    assert list(encode([1e6, -1e6, np.inf, np.nan, -np.nan], "float16")) == [
        0x7BFF,
        0xFBFF,
        0x7C00,
        0x7E00,
        0xFE00,
    ]
    assert list(encode([1e300, np.inf, np.nan], "bfloat16")) == [0x7F7F, 0x7F80, 0x7FC0]
    assert list(encode([1e300, -np.inf, np.nan], "float32")) == [0x7F7FFFFF, 0xFF800000, 0x7FC00000]
    assert encode([np.nan], "float64").view(np.float64)[0] != encode([np.nan], "float64").view(np.float64)[0]


def test_nan_policy_for_types_without_nan():
    for data_type in PACKED_FLOATS:
        if not data_type.has_nan:
            max_code = int(encode([data_type.max_value], data_type)[0])
            assert list(encode([np.nan, -np.nan], data_type)) == [max_code, max_code]
    assert list(encode([np.nan, -np.nan], "float8_e4m3")) == [0x7F, 0xFF]
    assert list(encode([np.nan, np.inf, -np.inf, 1e9], "float8_e5m2")) == [0x7E, 0x7C, 0xFC, 0x7B]
    assert list(encode([np.inf, -np.inf, 1e9, 465.0], "float8_e4m3")) == [0x7E, 0xFE, 0x7E, 0x7E]
    assert list(encode([np.nan, np.inf, -np.inf], "int4")) == [0, 7, 8]


def test_boolean_and_integer_inputs():
    assert list(encode([0.0, -0.0, 2.5, -1, np.nan], "bool")) == [0, 0, 1, 1, 1]
    assert list(encode(np.array([2**64 - 1, 5], dtype=np.uint64), "int64").view(np.int64)) == [2**63 - 1, 5]
    assert list(encode([2**63, -(2**70), 2**62], "int64").view(np.int64)) == [2**63 - 1, -(2**63), 2**62]
    assert list(encode(np.array([1, -3], dtype=ml_dtypes.int4), "int4")) == [1, 13]
    assert list(encode(np.array([1.5], dtype=ml_dtypes.bfloat16), "f4e2m1")) == [3]
    assert encode(np.zeros((2, 3)), "int3").shape == (2, 3)


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda: encode(["a"], "int4"), "expected real numbers"),
        (lambda: encode([1 + 2j], "int4"), "expected real numbers"),
        (lambda: decode([16], "int4"), "code 16 at index 0 does not fit in 4 bits of int4"),
        (lambda: decode([[0, 1], [-1, 2]], "uint2"), r"code -1 at index \(1, 0\)"),
        (lambda: decode([0.5], "int4"), "expected integer codes for int4, got an array of float64"),
        (lambda: encode([1.0], "int9"), "no such integer type"),
    ],
)
def test_conversion_errors(call, problem):
    with pytest.raises(ValueError, match=problem):
        call()


def test_shapes_are_kept_including_zero_dimensional():
    for name in ("float32", "float16", "float6_e3m2", "int4", "float64", "boolean"):
        assert encode(np.asarray(1.0), name).shape == ()
        assert encode(np.ones((2, 3)), name).shape == (2, 3)
