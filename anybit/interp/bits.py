"""Bit-level helpers: re-slicing each thread's register bits, and packed element access in byte arrays.

Both follow DESIGN §4.1: element i of an n-bit sequence occupies bits [i·n, (i+1)·n), little-endian.
"""

from __future__ import annotations

import numpy as np


def code_dtype(nbits: int) -> np.dtype:
    """The unsigned numpy dtype holding one ``nbits``-bit code (uint8/16/32/64)."""
    return np.dtype(f"uint{max(8, 1 << (nbits - 1).bit_length())}")


def reslice(codes: np.ndarray, nbits: int, new_nbits: int) -> np.ndarray:
    """Reinterpret each row of ``codes`` (threads × locals, ``nbits`` each) as ``new_nbits``-bit codes.

    Row t is the concatenation of its codes' bits (local element i at bits [i·n, (i+1)·n)); the result's row
    t re-cuts the same bit string into pieces of ``new_nbits``. The bit count per row must divide evenly.
    """
    threads, count = codes.shape
    total = count * nbits
    assert total % new_nbits == 0, (total, new_nbits)
    out_dtype = code_dtype(new_nbits)
    if nbits % 8 == 0 and new_nbits % 8 == 0 and nbits <= 64 and new_nbits <= 64:
        as_bytes = np.ascontiguousarray(codes.astype(f"<u{nbits // 8}")).view(np.uint8)
        regrouped = as_bytes.reshape(threads, total // new_nbits, new_nbits // 8)
        return (
            np.ascontiguousarray(regrouped).view(f"<u{new_nbits // 8}").reshape(threads, -1).astype(out_dtype)
        )
    shifts = np.arange(nbits, dtype=np.uint64)
    bit_planes = (codes.astype(np.uint64)[..., None] >> shifts) & np.uint64(1)
    bit_planes = bit_planes.reshape(threads, total // new_nbits, new_nbits)
    weights = np.uint64(1) << np.arange(new_nbits, dtype=np.uint64)
    return (bit_planes * weights).sum(axis=-1, dtype=np.uint64).astype(out_dtype)


def touched_bytes(bit_positions: np.ndarray, nbits: int) -> np.ndarray:
    """For each element starting at a bit position, the indices of the bytes it touches (..., k).

    Elements touching fewer than k bytes repeat their last byte, so the result is rectangular.
    """
    first = bit_positions // 8
    last = (bit_positions + nbits - 1) // 8
    width = (nbits + 14) // 8
    return np.minimum(first[..., None] + np.arange(width), last[..., None])


def read_codes(data: np.ndarray, bit_positions: np.ndarray, nbits: int) -> np.ndarray:
    """Read the ``nbits``-bit codes starting at ``bit_positions`` of byte array ``data`` (bounds checked by
    the caller); returns uint64 codes of the positions' shape."""
    positions = np.asarray(bit_positions, dtype=np.int64)
    if positions.size == 0:
        return np.zeros(positions.shape, dtype=np.uint64)
    if nbits % 8 == 0 and not (positions % 8).any():
        width = nbits // 8
        byte_index = positions[..., None] // 8 + np.arange(width)
        gathered = data[byte_index].astype(np.uint64)
        return (gathered << (np.uint64(8) * np.arange(width, dtype=np.uint64))).sum(axis=-1, dtype=np.uint64)
    low = int(positions.min()) // 8
    high = (int(positions.max()) + nbits + 7) // 8
    stream = np.unpackbits(data[low:high], bitorder="little").astype(np.uint64)
    bit_index = (positions - low * 8)[..., None] + np.arange(nbits)
    weights = np.uint64(1) << np.arange(nbits, dtype=np.uint64)
    return (stream[bit_index] * weights).sum(axis=-1, dtype=np.uint64)


def write_codes(data: np.ndarray, bit_positions: np.ndarray, nbits: int, codes: np.ndarray) -> None:
    """Write ``nbits``-bit ``codes`` at ``bit_positions`` of byte array ``data`` (other bits kept)."""
    positions = np.asarray(bit_positions, dtype=np.int64).reshape(-1)
    if positions.size == 0:
        return
    codes = np.broadcast_to(np.asarray(codes).astype(np.uint64), np.shape(bit_positions)).reshape(-1)
    if nbits % 8 == 0 and not (positions % 8).any():
        width = nbits // 8
        byte_index = positions[:, None] // 8 + np.arange(width)
        shifts = np.uint64(8) * np.arange(width, dtype=np.uint64)
        data[byte_index] = ((codes[:, None] >> shifts) & np.uint64(0xFF)).astype(np.uint8)
        return
    low = positions.min() // 8
    high = (positions.max() + nbits + 7) // 8
    stream = np.unpackbits(data[low:high], bitorder="little")
    bit_index = (positions - low * 8)[:, None] + np.arange(nbits)
    stream[bit_index] = ((codes[:, None] >> np.arange(nbits, dtype=np.uint64)) & np.uint64(1)).astype(
        np.uint8
    )
    data[low:high] = np.packbits(stream, bitorder="little")
