"""Conversions between bit codes (what registers and memory hold) and numbers (what arithmetic uses).

Each dtype has a *compute type*: the numpy dtype its arithmetic runs in.

* float16, bfloat16, float32, float64: the IEEE type itself (numpy / ml_dtypes), so each operation rounds
  exactly as the GPU's IEEE operation does.
* int8, uint8, int16, int32, uint32, int64: the numpy integer type, which wraps around on overflow (C).
* sub-byte and 8-bit packed floats (float4_e2m1, float8_e4m3, …): float64; results are encoded back with
  DESIGN §4.1 rounding (nearest even, saturating).
* sub-byte integers (int4, uint3, …): int64; results wrap around to the type's n bits, as the low n bits of
  a C integer would.
* boolean: numpy bool.
"""

from __future__ import annotations

import numpy as np

from anybit.dtypes import DataType, decode, encode

_NATIVE = frozenset(
    {"float16", "bfloat16", "float32", "float64", "int8", "uint8", "int16", "int32", "uint32", "int64"}
)


def is_native(dtype: DataType) -> bool:
    """Whether numpy holds the type natively, so codes and values are views of each other."""
    return dtype.name in _NATIVE


def compute_type(dtype: DataType) -> np.dtype:
    """The numpy dtype arithmetic on ``dtype`` runs in (see the module docstring)."""
    if is_native(dtype):
        return dtype.numpy_dtype
    if dtype.kind == "bool":
        return np.dtype(np.bool_)
    return np.dtype(np.float64) if dtype.is_float else np.dtype(np.int64)


def values_from_codes(codes: np.ndarray, dtype: DataType) -> np.ndarray:
    """The numbers that bit ``codes`` of ``dtype`` hold, in ``compute_type(dtype)``."""
    codes = np.asarray(codes)
    if is_native(dtype):
        return np.ascontiguousarray(codes.astype(dtype.code_dtype, copy=False)).view(dtype.numpy_dtype)
    if dtype.kind == "bool":
        return codes != 0
    values = decode(codes.astype(dtype.code_dtype, copy=False), dtype)
    return values if dtype.is_float else values.astype(np.int64)


def codes_from_values(values: np.ndarray, dtype: DataType) -> np.ndarray:
    """Bit codes of results computed in ``compute_type(dtype)`` (packed floats round, packed ints wrap)."""
    values = np.asarray(values)
    if is_native(dtype):
        return np.ascontiguousarray(values.astype(dtype.numpy_dtype, copy=False)).view(dtype.code_dtype)
    if dtype.kind == "bool":
        return (values != 0).astype(dtype.code_dtype)
    if dtype.is_float:
        return encode(values, dtype)
    mask = (1 << dtype.nbits) - 1
    return (values.astype(np.int64) & mask).astype(dtype.code_dtype)


def convert_codes(codes: np.ndarray, source: DataType, target: DataType) -> np.ndarray:
    """``cast``: codes of ``source`` converted to codes of ``target`` (nearest even, saturating, §4.1)."""
    if source is target:
        return np.asarray(codes).astype(target.code_dtype, copy=False)
    return encode(values_from_codes(codes, source), target)


def to_compute(values: np.ndarray, dtype: DataType) -> np.ndarray:
    """``values`` (any numeric array) in ``compute_type(dtype)``, converted with cast semantics if needed."""
    values = np.asarray(values)
    if values.dtype == compute_type(dtype):
        return values
    return values_from_codes(encode(values, dtype), dtype)


def constant_codes(value: object, dtype: DataType) -> np.ndarray:
    """The code of one Python number converted to ``dtype`` (a 0-d array)."""
    return encode(np.asarray(value), dtype)
