"""Dense bit-packing of codes (DESIGN §4.1 storage).

Element i of an n-bit packed tensor occupies bits [i·n, (i+1)·n) of a little-endian bit stream: bit k of the
stream is bit (k mod 8) of byte k // 8, and bit j of a code is stream bit i·n + j. Values may straddle bytes;
E elements take ceil(E·n / 8) bytes and the unused high bits of the last byte are zero. For 8/16/32/64-bit
types this is the usual little-endian byte layout.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from anybit.dtypes.codes import check_codes
from anybit.dtypes.conversion import decode, encode
from anybit.dtypes.resolve import dtype as resolve


def packed_size(count: int, dtype: Any) -> int:
    """Number of bytes that ``count`` elements of ``dtype`` take when packed: ceil(count·n / 8)."""
    return (count * resolve(dtype).nbits + 7) // 8


def pack(codes: Any, dtype: Any) -> np.ndarray:
    """Pack codes (flattened in C order) into a dense little-endian bit stream.

    Parameters
    ----------
    codes
        Integer array-like; every code must fit in ``dtype.nbits`` bits.
    dtype
        Anything `anybit.dtype` resolves.

    Returns
    -------
    np.ndarray
        1-D uint8 array of ``packed_size(codes.size, dtype)`` bytes.
    """
    data_type = resolve(dtype)
    flat = check_codes(codes, data_type).reshape(-1)
    # One row of little-endian bytes per code, expanded to bits, keeping the low n of each.
    as_bytes = flat.astype(flat.dtype.newbyteorder("<")).view(np.uint8).reshape(flat.size, flat.itemsize)
    bits = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, : data_type.nbits]
    return np.packbits(bits.reshape(-1), bitorder="little")


def unpack(data: Any, dtype: Any, count: int) -> np.ndarray:
    """Unpack ``count`` codes of ``dtype`` from a packed byte stream (extra trailing bytes are ignored).

    Parameters
    ----------
    data
        uint8 array-like, ``bytes``, ``bytearray`` or ``memoryview`` holding at least
        ``packed_size(count, dtype)`` bytes.
    dtype
        Anything `anybit.dtype` resolves.
    count
        Number of elements to read.

    Returns
    -------
    np.ndarray
        1-D array of ``count`` codes in ``dtype.code_dtype``.
    """
    data_type = resolve(dtype)
    count = operator.index(count)
    if count < 0:
        raise ValueError(f"expected a count ≥ 0, got {count}")
    buffer = _as_bytes(data)
    needed = packed_size(count, data_type)
    if buffer.size < needed:
        raise ValueError(
            f"{count} elements of {data_type.name} need {needed} bytes "
            f"(ceil({count}·{data_type.nbits}/8)), got {buffer.size}"
        )
    nbits = data_type.nbits
    bits = np.unpackbits(buffer[:needed], bitorder="little")[: count * nbits].reshape(count, nbits)
    code_dtype = data_type.code_dtype
    padded = np.zeros((count, 8 * code_dtype.itemsize), dtype=np.uint8)
    padded[:, :nbits] = bits
    as_bytes = np.packbits(padded, axis=1, bitorder="little")
    return as_bytes.view(code_dtype.newbyteorder("<")).reshape(count).astype(code_dtype)


def pack_values(values: Any, dtype: Any) -> np.ndarray:
    """Encode values into ``dtype`` and pack them: ``pack(encode(values, dtype), dtype)``."""
    return pack(encode(values, dtype), dtype)


def unpack_values(data: Any, dtype: Any, count: int) -> np.ndarray:
    """Unpack ``count`` elements and decode them to float64: ``decode(unpack(data, dtype, count), dtype)``."""
    return decode(unpack(data, dtype, count), dtype)


def _as_bytes(data: Any) -> np.ndarray:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    array = np.asarray(data)
    if array.dtype != np.uint8:
        raise ValueError(f"expected packed data as uint8 bytes, got an array of {array.dtype}")
    return array.reshape(-1)
