"""Per-thread register arrays: every register tensor is a ``uint32_t`` word array holding its local elements.

Local element ``i`` of an ``n``-bit dtype occupies bits ``[i*n, (i+1)*n)`` of the thread's bit string, words
little-endian: exactly the per-thread bit order of the interpreter, so ``view`` moves no bits. The helpers
here turn (array, element) into C expressions and statements; element indices are always compile-time
constants, so nvcc keeps the arrays in registers.
"""

from __future__ import annotations

from anybit.dtypes import DataType


def word_count(dtype: DataType, local_size: int) -> int:
    """Number of 32-bit words holding ``local_size`` elements of ``dtype`` (at least one)."""
    return max(1, -(-local_size * dtype.nbits // 32))


def read_bits(array: str, bit: int, width: int) -> str:
    """C expression (``uint32_t``) of bits ``[bit, bit+width)`` of ``array`` (``width`` ≤ 32)."""
    assert 0 < width <= 32
    word, shift = divmod(bit, 32)
    mask = "" if width == 32 else f" & {hex((1 << width) - 1)}u"
    if shift + width <= 32:
        if shift == 0:
            return f"({array}[{word}]{mask})" if mask else f"{array}[{word}]"
        return f"(({array}[{word}] >> {shift}){mask})"
    low = f"({array}[{word}] >> {shift})"
    high = f"({array}[{word + 1}] << {32 - shift})"
    return f"(({low} | {high}){mask})"


def write_bits(array: str, bit: int, width: int, value: str) -> list[str]:
    """Statements storing the low ``width`` bits of C expression ``value`` at bits ``[bit, bit+width)``."""
    assert 0 < width <= 32
    word, shift = divmod(bit, 32)
    if shift == 0 and width == 32:
        return [f"{array}[{word}] = (uint32_t)({value});"]
    out = [f"{{ uint32_t v_ = (uint32_t)({value}){'' if width == 32 else f' & {hex((1 << width) - 1)}u'};"]
    low_width = min(width, 32 - shift)
    low_mask = ((1 << low_width) - 1) << shift
    out.append(f"  {array}[{word}] = ({array}[{word}] & {hex(~low_mask & 0xFFFFFFFF)}u) | (v_ << {shift});")
    if low_width < width:
        high_mask = (1 << (width - low_width)) - 1
        out.append(
            f"  {array}[{word + 1}] = ({array}[{word + 1}] & {hex(~high_mask & 0xFFFFFFFF)}u) | "
            f"(v_ >> {low_width});"
        )
    out.append("}")
    return out


# ---------------------------------------------------------------------------------- values in compute types
_NATIVE_C = {
    "float16": "float",
    "bfloat16": "float",
    "float32": "float",
    "float64": "double",
    "int8": "int",
    "uint8": "unsigned",
    "int16": "int",
    "int32": "int",
    "uint32": "unsigned",
    "int64": "long long",
    "boolean": "bool",
}


def compute_ctype(dtype: DataType) -> str:
    """The C type element-wise arithmetic on ``dtype`` runs in (mirrors ``anybit.interp.values``).

    float16/bfloat16 compute in float and round once per operation (exact for + - * / sqrt); packed floats
    compute in double and re-encode with nearest-even saturating rounding; packed ints in long long and wrap.
    """
    if dtype.name in _NATIVE_C:
        return _NATIVE_C[dtype.name]
    return "double" if dtype.is_float else "long long"


def get_value(array: str, dtype: DataType, i: int) -> str:
    """C expression of local element ``i`` of ``array`` converted to ``compute_ctype(dtype)``."""
    n = dtype.nbits
    name = dtype.name
    if n == 64:
        pair = f"(((unsigned long long){array}[{2 * i + 1}] << 32) | {array}[{2 * i}])"
        return f"__longlong_as_double({pair})" if name == "float64" else f"(long long){pair}"
    bits = read_bits(array, i * n, n)
    if name == "float32":
        return f"__uint_as_float({bits})"
    if name == "float16":
        return f"__half2float(__ushort_as_half((unsigned short){bits}))"
    if name == "bfloat16":
        return f"__bfloat162float(__ushort_as_bfloat16((unsigned short){bits}))"
    if name in ("int32",):
        return f"(int){bits}"
    if name in ("uint32", "uint8"):
        return f"(unsigned){bits}"
    if name == "int16":
        return f"(int)(short){bits}"
    if name == "int8":
        return f"(int)(signed char){bits}"
    if name == "boolean":
        return f"({bits} != 0u)"
    return decode_code(bits, dtype)


def decode_code(bits: str, dtype: DataType) -> str:
    """C expression: the value of packed ``dtype`` code ``bits`` in its compute type."""
    if dtype.is_float:
        return (
            f"ab_decode_float({bits}, {dtype.exponent_bits}, {dtype.mantissa_bits}, "
            f"{int(dtype.has_inf)}, {int(dtype.has_nan)})"
        )
    if dtype.kind == "int":
        return f"ab_sign_extend({bits}, {dtype.nbits})"
    return f"(long long){bits}"


def encode_value(value: str, dtype: DataType, *, saturate: bool) -> str:
    """C expression (``uint32_t`` code bits) of compute-type ``value`` stored as ``dtype``.

    ``saturate=False`` is arithmetic's store (native types round or wrap like C; packed ints wrap, packed
    floats round and saturate as the interpreter does); ``saturate=True`` is ``cast`` (DESIGN §4.1).
    """
    name = dtype.name
    if name == "float32":
        return f"__float_as_uint({value})"
    if name == "float16":
        conv = f"ab_sat_f16((double)({value}))" if saturate else f"__float2half_rn((float)({value}))"
        return f"(uint32_t)__half_as_ushort({conv})"
    if name == "bfloat16":
        conv = f"ab_sat_bf16((double)({value}))" if saturate else f"__float2bfloat16_rn((float)({value}))"
        return f"(uint32_t)__bfloat16_as_ushort({conv})"
    if name == "boolean":
        return f"(uint32_t)(({value}) != 0)"
    if dtype.is_float:
        return (
            f"ab_encode_float((double)({value}), {dtype.exponent_bits}, {dtype.mantissa_bits}, "
            f"{int(dtype.has_inf)}, {int(dtype.has_nan)})"
        )
    if saturate:
        low, high = dtype.min_value, dtype.max_value
        return f"(uint32_t)ab_saturate_int({value}, {low}LL, {high}LL)"
    return f"(uint32_t)(long long)({value})"


def set_value(array: str, dtype: DataType, i: int, value: str, *, saturate: bool = False) -> list[str]:
    """Statements storing compute-type ``value`` as local element ``i`` of ``array``."""
    n = dtype.nbits
    if n == 64:
        if dtype.name == "float64":
            wide = f"(unsigned long long)__double_as_longlong((double)({value}))"
        elif saturate:
            wide = f"(unsigned long long)ab_saturate_int({value}, {dtype.min_value}LL, {dtype.max_value}LL)"
        else:
            wide = f"(unsigned long long)(long long)({value})"
        return [
            f"{{ unsigned long long w_ = {wide};",
            f"  {array}[{2 * i}] = (uint32_t)w_; {array}[{2 * i + 1}] = (uint32_t)(w_ >> 32); }}",
        ]
    return write_bits(array, i * n, n, encode_value(value, dtype, saturate=saturate))


def constant_code(value: object, dtype: DataType) -> int:
    """The bit code of Python number ``value`` in ``dtype`` (cast semantics)."""
    import numpy as np

    from anybit.dtypes import encode

    return int(np.asarray(encode(np.asarray(value), dtype)).reshape(-1)[0])
