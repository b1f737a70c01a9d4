"""Independent reference semantics for the dtype tests, from DESIGN §4.1 rather than anybit's helpers."""

from __future__ import annotations

import math
import re

import numpy as np

# The only sub-16-bit floats with special values (DESIGN §4.1); every other encoding is finite.
SPECIALS = {"float8_e5m2": (True, True), "float8_e4m3": (False, True)}


def float_format(name: str) -> tuple[int, int]:
    """(exponent bits, mantissa bits) parsed from a ``floatN_eXmY`` name."""
    match = re.fullmatch(r"float(\d+)_e(\d+)m(\d+)", name)
    assert match is not None, name
    nbits, x, y = map(int, match.groups())
    assert nbits == 1 + x + y
    return x, y


def float_value(code: int, name: str) -> float:
    """The value of one code of a ``floatN_eXmY`` type, straight from the IEEE-style formula."""
    x, y = float_format(name)
    has_inf, has_nan = SPECIALS.get(name, (False, False))
    bias = 2 ** (x - 1) - 1
    sign = -1.0 if (code >> (x + y)) & 1 else 1.0
    exponent = (code >> y) & (2**x - 1)
    mantissa = code & (2**y - 1)
    if has_inf and exponent == 2**x - 1:
        return sign * math.inf if mantissa == 0 else math.nan
    if has_nan and not has_inf and exponent == 2**x - 1 and mantissa == 2**y - 1:
        return math.nan
    if exponent == 0:
        return sign * math.ldexp(mantissa, 1 - bias - y)
    return sign * math.ldexp(2**y + mantissa, exponent - bias - y)


def integer_value(code: int, name: str) -> int:
    """The value of one code of ``uintN``/``intN`` (two's complement)."""
    nbits = int(re.fullmatch(r"u?int(\d+)", name).group(1))
    if name.startswith("u") or code < 2 ** (nbits - 1):
        return code
    return code - 2**nbits


def reference_values(name: str, nbits: int) -> np.ndarray:
    """Values of all 2^nbits codes of a packed type, as float64."""
    value = float_value if name.startswith("float") else integer_value
    return np.array([value(code, name) for code in range(2**nbits)], dtype=np.float64)


def assert_same_floats(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal values, equal zero signs, NaN exactly where expected (NaN never matches a number)."""
    assert actual.shape == expected.shape
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan)
    bad = np.flatnonzero(
        (actual[~nan] != expected[~nan]) | (np.signbit(actual[~nan]) != np.signbit(expected[~nan]))
    )
    assert bad.size == 0, f"first mismatch: got {actual[~nan][bad[0]]!r}, expected {expected[~nan][bad[0]]!r}"
