"""`dtype(x)`: turn a name, alias, numpy/ml_dtypes/torch dtype or `DataType` into the interned `DataType`.

Accepted spellings (case-insensitive): the canonical name (``int3``, ``float6_e3m2``, ``float16``), the short
name (``i3``, ``f6e3m2``, ``bf16``), ``fpN_eXmY``, a bare ``eXmY``, the ml_dtypes/OCP ``…fn`` suffix on types
without inf (``float8_e4m3fn``, ``float4_e2m1fn``) and the usual aliases (``half``, ``fp16``, ``float`` for
float32, ``double``, ``bool``). Anything else raises `ValueError` listing what exists.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np

from anybit.dtypes.datatype import TYPES_BY_NAME, DataType, all_types

AVAILABLE_TYPES = (
    "uint1…uint8, int2…int8, floatN_eXmY with X≥1, Y≥0, N=1+X+Y≤8 (float2_e1m0 … float8_e7m0), "
    "float16, bfloat16, float32, float64, int16, int32, uint32, int64, boolean"
)

_ALIASES = {
    "half": "float16",
    "fp16": "float16",
    "bf16": "bfloat16",
    "float": "float32",
    "single": "float32",
    "fp32": "float32",
    "double": "float64",
    "fp64": "float64",
    "bool": "boolean",
}

# floatN_eXmY, fpN_eXmY, fN_eXmY, fNeXmY, or a bare eXmY; an optional "fn" suffix (OCP: no inf).
_FLOAT_PATTERN = re.compile(r"^(?:(?:float|fp|f)(\d+)_?)?e(\d+)m(\d+)(fn)?$")

# torch dtype names (after "torch.") that name a different anybit type.
_TORCH_NAMES = {"bool": "boolean", "float8_e4m3fn": "float8_e4m3"}


def _problem(what: str) -> ValueError:
    return ValueError(f"{what}; anybit has: {AVAILABLE_TYPES}")


def _from_float_match(text: str, match: re.Match) -> DataType:
    nbits, x, y, fn = match.groups()
    x, y = int(x), int(y)
    if nbits is not None and int(nbits) != 1 + x + y:
        raise _problem(f"{text!r}: N must be 1 + X + Y = {1 + x + y} for e{x}m{y}")
    if x < 1:
        raise _problem(f"{text!r}: a float needs at least 1 exponent bit")
    # The standard floats match too: "e5m10" is float16, "e8m7" is bfloat16.
    found = _FLOATS_BY_FORMAT.get((x, y))
    if found is None:
        raise _problem(f"{text!r}: floatN_eXmY types have N = 1 + X + Y ≤ 8")
    if fn and found.has_inf:
        raise _problem(f"{text!r}: {found.name} has inf (IEEE), so it has no 'fn' variant")
    return found


def _from_name(text: str) -> DataType:
    key = text.strip().lower()
    key = _ALIASES.get(key, key)
    found = TYPES_BY_NAME.get(key) or _SHORT_NAMES.get(key)
    if found is not None:
        return found
    match = _FLOAT_PATTERN.match(key)
    if match is not None:
        return _from_float_match(text, match)
    integer = re.match(r"^(u?)int(\d+)$", key)
    if integer is not None:
        family = "uint1…uint8, uint32" if integer.group(1) else "int2…int8, int16, int32, int64"
        raise _problem(f"{text!r}: no such integer type (the {integer.group(1)}int types are {family})")
    raise _problem(f"unknown data type name {text!r}")


def _from_numpy(value: np.dtype) -> DataType:
    found = _numpy_table().get(value)
    if found is None:
        raise _problem(f"numpy dtype {value} has no anybit equivalent")
    return found


@functools.cache
def _numpy_table() -> dict[np.dtype, DataType]:
    table = {t.numpy_dtype: t for t in all_types() if t.is_standard}
    table.update({t.ml_dtype: t for t in all_types() if t.ml_dtype is not None})
    return table


def _is_torch_dtype(value: Any) -> bool:
    return type(value).__module__ == "torch" and type(value).__name__ == "dtype"


def dtype(value: Any) -> DataType:
    """Resolve a name, alias, numpy/ml_dtypes/torch dtype or `DataType` to the interned `DataType`.

    Parameters
    ----------
    value
        ``"int3"``, ``"i3"``, ``"f6e3m2"``, ``"fp16"``, ``np.float32``, ``np.dtype(ml_dtypes.int4)``,
        ``ml_dtypes.float8_e4m3fn``, ``torch.bfloat16``, ``anybit.int4`` …

    Returns
    -------
    DataType
        The registry's instance, so ``dtype("int4") is anybit.int4``.

    Raises
    ------
    ValueError
        For anything that names no anybit type; the message says why and lists the types that exist.
    """
    if isinstance(value, DataType):
        # A record built by hand is accepted only if it equals a registered one; the result is interned.
        if TYPES_BY_NAME.get(value.name) != value:
            raise _problem(f"{value.name!r} is not a registered DataType (build types with anybit.dtype)")
        return TYPES_BY_NAME[value.name]
    if isinstance(value, str):
        return _from_name(value)
    if _is_torch_dtype(value):
        name = str(value).removeprefix("torch.")
        found = TYPES_BY_NAME.get(_TORCH_NAMES.get(name, name))
        if found is None:
            raise _problem(f"torch dtype {value} has no anybit equivalent")
        return found
    if isinstance(value, np.dtype):
        return _from_numpy(value)
    if isinstance(value, type) and (issubclass(value, np.generic) or value in (bool, int, float)):
        return _from_numpy(np.dtype(value))
    raise _problem(f"expected a data type name, numpy/torch dtype or DataType, got {value!r}")


_SHORT_NAMES = {t.short_name: t for t in all_types()}
_FLOATS_BY_FORMAT = {(t.exponent_bits, t.mantissa_bits): t for t in all_types() if t.is_float}
