"""The `DataType` record and the generated registry of every anybit data type.

Families (DESIGN §4.1):

* ``uint1`` … ``uint8``: unsigned integers.
* ``int2`` … ``int8``: two's-complement signed integers.
* ``floatN_eXmY``: 1 sign bit, X ≥ 1 exponent bits, Y ≥ 0 mantissa bits, N = 1 + X + Y ≤ 8, IEEE-style
  bias 2^(X−1) − 1 with subnormals. Every encoding is finite (the OCP/MX "fn" convention) except
  ``float8_e5m2`` (IEEE: inf and NaN) and ``float8_e4m3`` (OCP e4m3fn: NaN only at S.1111.111, no inf).
* The standard types: ``float16``, ``bfloat16``, ``float32``, ``float64``, ``int16``, ``int32``, ``uint32``,
  ``int64`` and ``boolean`` (``int8``/``uint8`` are the 8-bit members of the integer families).

A type is *standard* when a native numpy dtype holds its value; every other type is *packed*: its values live
as unsigned integer codes that `anybit.dtypes.pack` packs densely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Kind = Literal["int", "uint", "float", "bool"]

# Names of the types a native numpy dtype holds (value for value); every other type is packed.
_STANDARD_NUMPY = {
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "int32": "int32",
    "uint32": "uint32",
    "int64": "int64",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "float32": "float32",
    "float64": "float64",
    "boolean": "bool",
}

# Packed types whose exact bit format torch stores one per byte.
_PACKED_TORCH = {"float8_e4m3": "float8_e4m3fn", "float8_e5m2": "float8_e5m2"}

# Types ml_dtypes implements with the same bit format and special values (the test oracle).
_ML_DTYPES = {
    "float8_e4m3": "float8_e4m3fn",
    "float8_e5m2": "float8_e5m2",
    "float6_e2m3": "float6_e2m3fn",
    "float6_e3m2": "float6_e3m2fn",
    "float4_e2m1": "float4_e2m1fn",
    "int2": "int2",
    "int4": "int4",
    "uint2": "uint2",
    "uint4": "uint4",
    "bfloat16": "bfloat16",
}


@dataclass(frozen=True, slots=True)
class DataType:
    """One anybit data type; instances are interned, so compare them with ``is`` or ``==``."""

    name: str
    short_name: str
    kind: Kind
    nbits: int
    exponent_bits: int = 0
    mantissa_bits: int = 0
    has_inf: bool = False
    has_nan: bool = False

    # -- classification ------------------------------------------------------------------------------------
    @property
    def is_signed(self) -> bool:
        """Whether negative values exist (signed ints and floats)."""
        return self.kind in ("int", "float")

    @property
    def is_integer(self) -> bool:
        """Whether this is a signed or unsigned integer type (``boolean`` is not)."""
        return self.kind in ("int", "uint")

    @property
    def is_float(self) -> bool:
        """Whether this is a floating-point type."""
        return self.kind == "float"

    @property
    def is_standard(self) -> bool:
        """Whether a native numpy dtype holds the value (float16…float64, bfloat16, int8…int64, bool)."""
        return self.name in _STANDARD_NUMPY

    @property
    def is_packed(self) -> bool:
        """Whether values are stored as densely packed bit codes (every non-standard type, float8 too)."""
        return not self.is_standard

    @property
    def is_subbyte(self) -> bool:
        """Whether one value takes fewer than 8 bits."""
        return self.nbits < 8

    # -- float format --------------------------------------------------------------------------------------
    @property
    def exponent_bias(self) -> int | None:
        """IEEE-style bias 2^(X−1) − 1 for floats, None for other kinds."""
        return (1 << (self.exponent_bits - 1)) - 1 if self.is_float else None

    @property
    def max_exponent_code(self) -> int:
        """Largest biased exponent field that encodes finite normals (all ones unless it is reserved)."""
        top = (1 << self.exponent_bits) - 1
        return top - 1 if self.has_inf else top

    # -- range ---------------------------------------------------------------------------------------------
    @property
    def max_value(self) -> int | float:
        """Largest finite value."""
        if self.kind == "bool":
            return 1
        if self.kind == "uint":
            return (1 << self.nbits) - 1
        if self.kind == "int":
            return (1 << (self.nbits - 1)) - 1
        mantissa = (1 << self.mantissa_bits) - 1
        # e4m3fn spends the all-ones mantissa of the top binade on NaN.
        if self.has_nan and not self.has_inf:
            mantissa -= 1
        exponent = self.max_exponent_code - self.exponent_bias
        return float(np.ldexp(float((1 << self.mantissa_bits) + mantissa), exponent - self.mantissa_bits))

    @property
    def min_value(self) -> int | float:
        """Most negative finite value."""
        if self.kind in ("bool", "uint"):
            return 0
        if self.kind == "int":
            return -(1 << (self.nbits - 1))
        return -self.max_value

    @property
    def smallest_normal(self) -> float | None:
        """Smallest positive normal value 2^(1 − bias), None for non-floats."""
        return float(np.ldexp(1.0, 1 - self.exponent_bias)) if self.is_float else None

    @property
    def smallest_subnormal(self) -> float | None:
        """Smallest positive subnormal 2^(1 − bias − Y); None for non-floats and for Y = 0 (no subnormals)."""
        if not self.is_float or self.mantissa_bits == 0:
            return None
        return float(np.ldexp(1.0, 1 - self.exponent_bias - self.mantissa_bits))

    # -- storage -------------------------------------------------------------------------------------------
    @property
    def code_dtype(self) -> np.dtype:
        """Unsigned numpy dtype wide enough for one bit pattern (uint8/16/32/64)."""
        return np.dtype(f"uint{max(8, 1 << (self.nbits - 1).bit_length())}")

    @property
    def numpy_dtype(self) -> np.dtype:
        """Numpy dtype holding the value for standard types; for packed types the code dtype (uint8)."""
        name = _STANDARD_NUMPY.get(self.name)
        if name is None:
            return self.code_dtype
        if name == "bfloat16":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(name)

    @property
    def torch_dtype(self) -> Any:
        """Matching ``torch.dtype`` (float8 types included), or None for packed types torch cannot hold."""
        name = _STANDARD_NUMPY.get(self.name) or _PACKED_TORCH.get(self.name)
        if name is None:
            return None
        import torch  # lazy: torch is slow to import and most users of the record never need it

        return getattr(torch, name)

    @property
    def ml_dtype(self) -> np.dtype | None:
        """The ml_dtypes dtype with the identical bit format and special values, or None."""
        name = _ML_DTYPES.get(self.name)
        if name is None:
            return None
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))

    # -- printing and identity -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"anybit.{self.name}"

    def __str__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Unpickling goes through the registry, so the result is the interned instance.
        return (_lookup, (self.name,))

    def __copy__(self) -> DataType:
        return self

    def __deepcopy__(self, memo: dict) -> DataType:
        return self


def _float(exponent_bits: int, mantissa_bits: int) -> DataType:
    nbits = 1 + exponent_bits + mantissa_bits
    name = f"float{nbits}_e{exponent_bits}m{mantissa_bits}"
    return DataType(
        name=name,
        short_name=f"f{nbits}e{exponent_bits}m{mantissa_bits}",
        kind="float",
        nbits=nbits,
        exponent_bits=exponent_bits,
        mantissa_bits=mantissa_bits,
        has_inf=name == "float8_e5m2",
        has_nan=name in ("float8_e5m2", "float8_e4m3"),
    )


def _generate() -> tuple[DataType, ...]:
    uints = [DataType(f"uint{n}", f"u{n}", "uint", n) for n in range(1, 9)]
    ints = [DataType(f"int{n}", f"i{n}", "int", n) for n in range(2, 9)]
    floats = [_float(x, n - 1 - x) for n in range(2, 9) for x in range(n - 1, 0, -1)]
    standard = [
        DataType("float16", "f16", "float", 16, 5, 10, True, True),
        DataType("bfloat16", "bf16", "float", 16, 8, 7, True, True),
        DataType("float32", "f32", "float", 32, 8, 23, True, True),
        DataType("float64", "f64", "float", 64, 11, 52, True, True),
        DataType("int16", "i16", "int", 16),
        DataType("int32", "i32", "int", 32),
        DataType("uint32", "u32", "uint", 32),
        DataType("int64", "i64", "int", 64),
        DataType("boolean", "bool", "bool", 1),
    ]
    return (*uints, *ints, *floats, *standard)


_ALL_TYPES = _generate()
TYPES_BY_NAME: dict[str, DataType] = {t.name: t for t in _ALL_TYPES}
assert len(TYPES_BY_NAME) == len(_ALL_TYPES), "duplicate type name"
assert len({t.short_name for t in _ALL_TYPES}) == len(_ALL_TYPES), "duplicate short name"


def _lookup(name: str) -> DataType:
    return TYPES_BY_NAME[name]


def all_types() -> tuple[DataType, ...]:
    """Every anybit type: uint1…uint8, int2…int8, the sub-byte and 8-bit floats, then the standard ones."""
    return _ALL_TYPES


def types_of_kind(kind: Kind) -> tuple[DataType, ...]:
    """Every type of one kind ("int", "uint", "float" or "bool"), in `all_types` order."""
    if kind not in ("int", "uint", "float", "bool"):
        raise ValueError(f"expected a kind among 'int', 'uint', 'float', 'bool', got {kind!r}")
    return tuple(t for t in _ALL_TYPES if t.kind == kind)


def packed_types() -> tuple[DataType, ...]:
    """Every type stored as packed bit codes (all but the standard types)."""
    return tuple(t for t in _ALL_TYPES if t.is_packed)


def standard_types() -> tuple[DataType, ...]:
    """Every type a native numpy dtype holds: float16, bfloat16, float32, float64, int8…int64, boolean."""
    return tuple(t for t in _ALL_TYPES if t.is_standard)
