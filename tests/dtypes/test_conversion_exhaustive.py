"""Exhaustive decode of every code against the reference formula, and encode∘decode = identity."""

import ml_dtypes
import numpy as np
import pytest

from anybit.dtypes import all_types, decode, encode, packed_types

from .reference import assert_same_floats, reference_values

PACKED = [t for t in packed_types() if t.is_float or t.is_integer]


@pytest.mark.parametrize("data_type", PACKED, ids=str)
def test_decode_every_code_matches_reference_formula(data_type):
    codes = np.arange(2**data_type.nbits, dtype=np.uint8)
    assert_same_floats(decode(codes, data_type), reference_values(data_type.name, data_type.nbits))


@pytest.mark.parametrize(
    ("name", "storage"),
    [("float16", np.float16), ("bfloat16", ml_dtypes.bfloat16), ("int16", np.int16), ("int8", np.int8),
     ("uint8", np.uint8)],
)  # fmt: skip
def test_decode_every_code_of_small_standard_types_matches_numpy(name, storage):
    data_type = next(t for t in all_types() if t.name == name)
    codes = np.arange(2**data_type.nbits, dtype=data_type.code_dtype)
    with np.errstate(invalid="ignore"):  # NaN payloads warn when widened
        expected = codes.view(storage).astype(np.float64)
    assert_same_floats(decode(codes, data_type), expected)


WIDE = [("float32", np.float32), ("float64", np.float64), ("int32", np.int32), ("uint32", np.uint32),
        ("int64", np.int64)]  # fmt: skip


@pytest.mark.parametrize(("name", "storage"), WIDE)
def test_decode_random_codes_of_wide_types_matches_numpy(name, storage):
    data_type = next(t for t in all_types() if t.name == name)
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 2**63, size=20_000, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, 20_000, np.uint64
    )
    codes = (raw >> np.uint64(64 - data_type.nbits)).astype(data_type.code_dtype)
    with np.errstate(invalid="ignore"):  # NaN payloads warn when widened
        expected = codes.view(storage).astype(np.float64)
    assert_same_floats(decode(codes, data_type), expected)


def _codes_to_check(data_type):
    if data_type.nbits <= 16:
        return np.arange(2**data_type.nbits, dtype=np.uint64).astype(data_type.code_dtype)
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 2**63, size=20_000, dtype=np.uint64) << np.uint64(1)
    codes = np.concatenate([codes, np.array([0, 1, 2**63, 2**63 + 1, 2**64 - 1], dtype=np.uint64)])
    return (codes >> np.uint64(64 - data_type.nbits)).astype(data_type.code_dtype)


@pytest.mark.parametrize("data_type", all_types(), ids=str)
def test_encode_inverts_decode_on_every_finite_code(data_type):
    codes = _codes_to_check(data_type)
    values = decode(codes, data_type)
    finite = np.isfinite(values)
    if data_type.name == "int64":
        # float64 cannot hold every int64: check through the exact integer path instead.
        values = codes.view(np.int64)
    encoded = encode(values[finite], data_type)
    assert encoded.dtype == data_type.code_dtype
    np.testing.assert_array_equal(encoded, codes[finite])
    if data_type.is_float:
        negative_zero = encode(np.array([-0.0]), data_type)[0]
        assert int(negative_zero) == 1 << (data_type.nbits - 1)


@pytest.mark.parametrize("data_type", [t for t in all_types() if t.has_inf or t.has_nan], ids=str)
def test_special_codes_round_trip(data_type):
    encoded = encode(np.array([np.inf, -np.inf, np.nan, -np.nan]), data_type)
    decoded = decode(encoded, data_type)
    if data_type.has_inf:
        assert decoded[0] == np.inf and decoded[1] == -np.inf
    assert np.isnan(decoded[2]) and np.isnan(decoded[3])
    assert not np.signbit(decoded[2]) and np.signbit(decoded[3])
