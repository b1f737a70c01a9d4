"""Exact numpy reference conversions between values and bit codes, for every anybit type.

`encode(values, dtype)` returns codes (``dtype.code_dtype``); `decode(codes, dtype)` returns float64. Inputs
are first converted to float64 (exact for every float type up to float64 and for integers up to 2^53).

Floats (every floatN_eXmY, float16, bfloat16, float32; float64 is the identity on its bits):

* Round to nearest, ties to even, computed on the integer significand of the float64 input (no search, no
  double rounding), into subnormals and across binades alike. "Even" is the significand counted in quanta
  of the lower neighbour's binade, as in IEEE 754; for Y ≥ 1 that is the even code, and for Y = 0 (no
  mantissa) a tie between two normals rounds up, as ml_dtypes does for float8_e8m0fnu.
* A finite value beyond the largest finite value saturates to ±max (it never becomes inf, not even in
  float16/float32). ±inf becomes ±inf where the type has inf, else ±max.
* NaN becomes the type's quiet NaN with the input's sign (ml_dtypes/numpy patterns: e4m3 S.1111.111, e5m2
  S.11111.10, float16 0x7e00, bfloat16 0x7fc0, float32 0x7fc00000). Types without NaN (all sub-byte floats
  and the other 8-bit floats) saturate NaN to +max, as DESIGN §4.1 specifies (ml_dtypes produces a zero
  there, with the NaN's sign bit inverted; a zero would hide the NaN, +max makes it visible).
* −0.0, and negative values that round to zero, encode to the negative-zero code.

Integers (uintN, intN, int16 … int64): round half to even, saturate to [min, max], NaN → 0. The code is the
low n bits of the two's-complement value. Integer inputs convert exactly, without a float64 step.

boolean: any nonzero value (NaN included, as in numpy) → 1, zero → 0.

`decode` is exact for every type except int64 codes whose value needs more than 53 bits (rounded to float64).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from anybit.dtypes.codes import check_codes
from anybit.dtypes.datatype import DataType
from anybit.dtypes.resolve import dtype as resolve

_FLOAT64_FRACTION_BITS = 52
_FLOAT64_BIAS = 1023


def encode(values: Any, dtype: Any) -> np.ndarray:
    """Encode values into bit codes of ``dtype`` with the rounding and saturation rules above.

    Parameters
    ----------
    values
        Array-like of numbers (any numpy, ml_dtypes or Python numeric type).
    dtype
        Anything `anybit.dtype` resolves.

    Returns
    -------
    np.ndarray
        Codes of the same shape, in ``dtype.code_dtype``.
    """
    data_type = resolve(dtype)
    array = _as_real_array(values, data_type)
    return _encode(np.atleast_1d(array), data_type).reshape(array.shape)  # 0-d in, 0-d out


@functools.cache
def scaling_is_exact(source: DataType, target: DataType, exponent: int) -> bool:
    """Whether every value of ``source`` times 2^``exponent`` is a value of ``target`` (inf and NaN kept):
    then ``cast(x, target) · 2^exponent`` needs no rounding. Sources of at most 16 bits (all codes are
    checked)."""
    if source.nbits > 16:
        return False
    codes = np.arange(1 << source.nbits, dtype=np.uint32).astype(source.code_dtype)
    scaled = decode(codes, source) * 2.0**exponent
    if not source.is_float:
        scaled = scaled.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        back = decode(encode(scaled, target), target)
    return bool(np.array_equal(back, scaled, equal_nan=True))


def _encode(array: np.ndarray, data_type: DataType) -> np.ndarray:
    if data_type.kind == "bool":
        return (array != 0).astype(data_type.code_dtype)
    if data_type.is_integer:
        return _encode_integer(array, data_type)
    floats = array.astype(np.float64)
    if data_type.name == "float64":
        return floats.view(np.uint64).copy()
    return _encode_float(floats, data_type)


def decode(codes: Any, dtype: Any) -> np.ndarray:
    """Decode bit codes of ``dtype`` to their exact values as float64 (codes are validated first)."""
    data_type = resolve(dtype)
    checked = check_codes(codes, data_type)
    if data_type.is_float:
        if data_type.name == "float64":
            return checked.view(np.float64).copy()
        return _decode_float(checked.astype(np.int64), data_type)
    if data_type.kind == "int":
        if data_type.nbits == 64:
            return checked.view(np.int64).astype(np.float64)
        wide = checked.astype(np.int64)
        wide -= (wide >> (data_type.nbits - 1)) << data_type.nbits
        return wide.astype(np.float64)
    return checked.astype(np.float64)


def _as_real_array(values: Any, data_type: DataType) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind == "O":
        # Python ints too large for int64 land here; they go through float64 like any other number.
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"expected real numbers to encode as {data_type.name}: {error}") from None
    is_ml_dtypes = array.dtype.kind == "V" and array.dtype.type.__module__ == "ml_dtypes"
    if array.dtype.kind not in "biuf" and not is_ml_dtypes:
        raise ValueError(f"expected real numbers to encode as {data_type.name}, got {array.dtype} values")
    return array


def _encode_integer(array: np.ndarray, data_type: DataType) -> np.ndarray:
    low, high = data_type.min_value, data_type.max_value
    if array.dtype.kind == "u":
        # Clamp while still unsigned: a uint64 above 2^63 must not wrap to a negative int64.
        wide = np.minimum(array, np.array(high, dtype=np.uint64)).astype(np.int64)
    elif array.dtype.kind in "bi":
        wide = np.clip(array.astype(np.int64), low, high)
    else:
        wide = _round_float_to_int(array.astype(np.float64), low, high)
    if data_type.nbits == 64:
        return wide.view(np.uint64).copy()
    return (wide & ((1 << data_type.nbits) - 1)).astype(data_type.code_dtype)


def _round_float_to_int(floats: np.ndarray, low: int, high: int) -> np.ndarray:
    rounded = np.rint(floats)  # IEEE round half to even, exact on float64
    rounded = np.where(np.isnan(rounded), 0.0, rounded)
    # float(2^63 − 1) is 2^63, which does not fit in int64: clip to the float below and saturate past it.
    upper = float(high) if high < 2**53 else float(np.nextafter(2.0**63, 0.0))
    too_high = rounded > upper
    wide = np.clip(rounded, float(low), upper).astype(np.int64)
    wide[too_high] = high
    return wide


def _special_codes(data_type: DataType) -> tuple[int, int | None, int | None]:
    """Largest finite magnitude code, the +inf code (or None) and the +NaN code (or None)."""
    mantissa_bits = data_type.mantissa_bits
    all_ones_exponent = ((1 << data_type.exponent_bits) - 1) << mantissa_bits
    mantissa_mask = (1 << mantissa_bits) - 1
    if data_type.has_inf:
        # IEEE: the all-ones exponent is reserved; the quiet NaN sets the top mantissa bit.
        return all_ones_exponent - 1, all_ones_exponent, all_ones_exponent | (1 << (mantissa_bits - 1))
    if data_type.has_nan:
        # OCP e4m3fn: only S.1111.111 is NaN.
        return (all_ones_exponent | mantissa_mask) - 1, None, all_ones_exponent | mantissa_mask
    return all_ones_exponent | mantissa_mask, None, None


def _encode_float(floats: np.ndarray, data_type: DataType) -> np.ndarray:
    mantissa_bits = data_type.mantissa_bits
    assert mantissa_bits < _FLOAT64_FRACTION_BITS and data_type.exponent_bits < 11
    min_exponent = 1 - data_type.exponent_bias  # exponent of the smallest normal

    bits = np.ascontiguousarray(floats).view(np.uint64)
    sign = (bits >> np.uint64(63)).astype(np.int64)
    biased = ((bits >> np.uint64(_FLOAT64_FRACTION_BITS)) & np.uint64(0x7FF)).astype(np.int64)
    fraction = (bits & np.uint64((1 << _FLOAT64_FRACTION_BITS) - 1)).astype(np.int64)
    is_normal = biased != 0
    # |x| = significand · 2^scale exactly.
    significand = np.where(is_normal, fraction | (1 << _FLOAT64_FRACTION_BITS), fraction)
    scale = np.where(is_normal, biased, 1) - _FLOAT64_BIAS - _FLOAT64_FRACTION_BITS

    # The target binade is the value's own, but never below the subnormal range; its quantum is
    # 2^(binade − Y). float64 subnormals sit far below every target binade and round to zero.
    binade = np.maximum(biased - _FLOAT64_BIAS, min_exponent)
    # shift ≥ 52 − Y ≥ 1; beyond 62 bits the 53-bit significand rounds to zero either way.
    shift = np.minimum(binade - mantissa_bits - scale, 62)
    quotient = significand >> shift
    remainder = significand & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    round_up = (remainder > half) | ((remainder == half) & ((quotient & 1) == 1))
    # (binade − min_exponent)·2^Y + rounded quantum count is the magnitude code, for normals and subnormals
    # alike; a carry out of the mantissa moves into the exponent field by itself.
    magnitude = ((binade - min_exponent) << mantissa_bits) + quotient + round_up

    max_code, inf_code, nan_code = _special_codes(data_type)
    magnitude = np.minimum(magnitude, max_code)  # saturate finite overflow (and ±inf, fixed below)
    if inf_code is not None:
        magnitude = np.where(np.isinf(floats), inf_code, magnitude)
    sign_shift = data_type.exponent_bits + mantissa_bits
    codes = (sign << sign_shift) | magnitude
    is_nan = np.isnan(floats)
    nan_codes = (sign << sign_shift) | nan_code if nan_code is not None else max_code
    codes = np.where(is_nan, nan_codes, codes)
    return codes.astype(data_type.code_dtype)


def _decode_float(codes: np.ndarray, data_type: DataType) -> np.ndarray:
    mantissa_bits = data_type.mantissa_bits
    exponent_mask = (1 << data_type.exponent_bits) - 1
    mantissa_mask = (1 << mantissa_bits) - 1
    sign = (codes >> (data_type.exponent_bits + mantissa_bits)) & 1
    exponent = (codes >> mantissa_bits) & exponent_mask
    mantissa = codes & mantissa_mask
    # Subnormals (exponent field 0) share the exponent of the smallest normal, without the implicit 1.
    significand = np.where(exponent == 0, mantissa, mantissa | (1 << mantissa_bits))
    power = np.maximum(exponent, 1) - data_type.exponent_bias - mantissa_bits
    magnitude = np.ldexp(significand.astype(np.float64), power.astype(np.int32))
    if data_type.has_inf:
        top = exponent == exponent_mask
        magnitude = np.where(top & (mantissa == 0), np.inf, magnitude)
        magnitude = np.where(top & (mantissa != 0), np.nan, magnitude)
    elif data_type.has_nan:
        magnitude = np.where((exponent == exponent_mask) & (mantissa == mantissa_mask), np.nan, magnitude)
    return np.where(sign == 1, -magnitude, magnitude)
