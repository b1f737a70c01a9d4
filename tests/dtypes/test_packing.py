"""Bit-packing: layout against a Python big-integer reference, round trips, and errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anybit
from anybit.dtypes import all_types, pack, pack_values, packed_size, unpack, unpack_values

WIDTH_TYPES = [anybit.dtype(f"uint{n}") for n in range(1, 9)] + [anybit.int16, anybit.float32, anybit.int64]


def _reference_pack(codes: list[int], nbits: int) -> bytes:
    """Element i at bits [i·n, (i+1)·n) of one little-endian integer."""
    stream = sum(code << (index * nbits) for index, code in enumerate(codes))
    return stream.to_bytes((len(codes) * nbits + 7) // 8, "little")


@pytest.mark.parametrize("data_type", WIDTH_TYPES, ids=str)
@pytest.mark.parametrize("count", [0, 1, 7, 13, 1001])
def test_round_trip_every_width_and_odd_lengths(data_type, count):
    rng = np.random.default_rng(count)
    codes = (rng.integers(0, 2**63, count, dtype=np.uint64) >> np.uint64(63 - data_type.nbits + 1)).astype(
        data_type.code_dtype
    )
    packed = pack(codes, data_type)
    assert packed.dtype == np.uint8 and packed.size == packed_size(count, data_type) == -(
        -count * data_type.nbits // 8
    )
    assert packed.tobytes() == _reference_pack([int(c) for c in codes], data_type.nbits)
    unpacked = unpack(packed, data_type, count)
    assert unpacked.dtype == data_type.code_dtype
    np.testing.assert_array_equal(unpacked, codes)


def test_hand_computed_straddling_int6():
    # 1, -2 (code 0b111110), 31 (0b011111) → stream bits 0-5: 000001, 6-11: 111110, 12-17: 011111
    # byte 0 = bits 0-7   = 0b10_000001 → 0x81; byte 1 = bits 8-15 = 0b1111_1111 → 0xff
    # byte 2 = bits 16-17 = 0b01 → 0x01
    packed = pack_values([1, -2, 31], "int6")
    assert packed.tolist() == [0x81, 0xFF, 0x01]
    assert unpack_values(packed, "int6", 3).tolist() == [1.0, -2.0, 31.0]


def test_nibbles_and_bits_are_little_endian():
    assert pack([0x1, 0x2, 0x3], "uint4").tolist() == [0x21, 0x03]
    assert pack([1, 0, 0, 0, 0, 0, 0, 0, 1], "uint1").tolist() == [0x01, 0x01]
    assert pack([0x1234], "int16").tolist() == [0x34, 0x12]


def test_packs_in_c_order_and_accepts_bytes():
    codes = np.arange(12, dtype=np.uint8).reshape(3, 4) % 8
    packed = pack(codes, "u3")
    np.testing.assert_array_equal(unpack(bytes(packed), "u3", 12), codes.reshape(-1))
    np.testing.assert_array_equal(unpack(bytearray(packed) + b"\xff", "u3", 12), codes.reshape(-1))


@settings(max_examples=60, deadline=None)
@given(
    data_type=st.sampled_from([t for t in all_types() if t.nbits <= 16]),
    data=st.data(),
)
def test_property_pack_matches_reference_and_inverts(data_type, data):
    codes = data.draw(st.lists(st.integers(0, 2**data_type.nbits - 1), max_size=40))
    packed = pack(np.array(codes, dtype=np.int64), data_type)
    assert packed.tobytes() == _reference_pack(codes, data_type.nbits)
    assert unpack(packed, data_type, len(codes)).tolist() == codes


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["int3", "uint5", "float6_e3m2", "float8_e4m3"]), data=st.data())
def test_property_values_round_trip_through_packing(name, data):
    data_type = anybit.dtype(name)
    codes = data.draw(st.lists(st.integers(0, 2**data_type.nbits - 1), max_size=30))
    values = unpack_values(pack(codes, data_type), data_type, len(codes))
    finite = np.isfinite(values)
    np.testing.assert_array_equal(
        pack_values(values[finite], data_type), pack(np.array(codes)[finite], data_type)
    )


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda: pack([1, 2, 64, 70], "uint6"), "code 64 at index 2 does not fit in 6 bits of uint6"),
        (lambda: pack([-1], "int4"), "code -1 at index 0"),
        (lambda: pack([0.5], "int4"), "expected integer codes"),
        (lambda: unpack(b"\x00", "uint6", 2), r"2 elements of uint6 need 2 bytes \(ceil\(2·6/8\)\), got 1"),
        (lambda: unpack(np.zeros(4, dtype=np.int32), "int4", 2), "expected packed data as uint8 bytes"),
        (lambda: unpack(b"", "int4", -1), "expected a count ≥ 0"),
    ],
)
def test_packing_errors(call, problem):
    with pytest.raises(ValueError, match=problem):
        call()
