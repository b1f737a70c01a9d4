"""Fast low-precision conversions in registers, the generic per-element path, and test kernels for both.

Fast paths (two values per 32-bit register, f16x2/bf16x2 arithmetic; ``lop3``/``prmt`` to place bits):

* **uN → f16** (N ≤ 8): the two codes are placed in bits [0, N) and [16, 16+N), OR-ed with the exponent of
  1024 (0x6400) and 1024 is subtracted (``sub.f16x2``): exact for every integer below 1024. 8-bit codes take
  one ``prmt`` that inserts the 0x64 byte at the same time.
* **iN → f16**: the sign bit is flipped first (offset binary, ``x ^ 2^(N-1)``), then as above subtracting
  1024 + 2^(N-1).
* **uN/iN → bf16**, N ≤ 7: the same with 128.0 (0x4300) whose ulp is 1, subtracting with ``fma.rn.bf16x2``
  (x·1 − c; sm_80 has no ``sub.bf16x2``). N = 8 (bf16 has 7 mantissa bits): one ``prmt`` per code builds the
  f32 2^23 + code, one f32 subtraction of 2^23 (+ 128 for signed codes, + the zero point) and one
  ``cvt.rn.bf16x2.f32`` per pair (exact).
* **floatN_eXmY → f16** (X ≤ 4, and float8_e5m2) **and → bf16** (every X ≤ 7): the magnitude bits
  are shifted so the source
  mantissa aligns with the top of the target mantissa and the sign goes to bit 15 (one ``lop3``), then one
  multiply by 2^(bias_target − bias_source) re-biases; subnormals come out exact because the scale is a power
  of two and f16/bf16 arithmetic keeps subnormals. float8_e5m2 → f16 is the identity on bits (inf/NaN kept).
  Fix-ups (a select per value, documented): float8_e4m3's NaN (S.1111.111) and float8_e5m2's inf/NaN when
  the target is bf16. On sm_89+ a float8_e4m3/e5m2 pair in one 16-bit half goes to f16x2 in one
  instruction instead (``cvt.rn.f16x2.e4m3x2``; the code keeps both forms under ``__CUDA_ARCH__``); to bf16
  the f16 pair then goes through f32 (two ``cvt.f32.f16``, one ``cvt.rn.bf16x2.f32``: exact, inf/NaN kept)
  instead of the bit-aligning path's per-value inf/NaN fix-ups.

Everything else, and narrowing casts (f32/f16 → any type, with nearest-even rounding and saturation per
DESIGN §4.1), use the generic per-element path, which is correct for every (source, target) pair.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable

import numpy as np

from anybit.cuda.registers import decode_code, get_value, read_bits, set_value, word_count, write_bits
from anybit.dtypes import DataType, all_types, bfloat16, float16
from anybit.dtypes import dtype as dtype_named

_SELECT_LOW_HALF = 0xE4  # lop3: c ? a : b
_AND_OR = 0xEA  # lop3: (a & b) | c
_AND_XOR = 0x6A  # lop3: (a & b) ^ c
_XOR_AND = 0x78  # lop3: a ^ (b & c)
_OR_AND = 0xA8  # lop3: (a | b) & c
_AND = 0xC0  # lop3: a & b


def contiguous_pairs(layout) -> int:
    """Elements each thread holds next to each other in its register bits (all of its local elements)."""
    return layout.local_size


def has_fast_path(source: DataType, target: DataType) -> bool:
    """Whether a two-values-per-instruction conversion from ``source`` to ``target`` exists."""
    if target not in (float16, bfloat16) or source.nbits > 8:
        return False
    if source.kind in ("int", "uint"):
        return True
    if source.is_float:
        # X = 5 types without inf would land their top binade on f16's inf/NaN codes
        return target is bfloat16 or source.exponent_bits <= 4 or source.has_inf
    return False


def _normal_power(target: DataType, exponent: int) -> bool:
    """Whether 2^``exponent`` is a normal value of the 16-bit float ``target`` (an exact multiplier)."""
    bias = 15 if target is float16 else 127
    return 1 - bias <= exponent <= bias


def _half_bits(value: float, target: DataType) -> int:
    if target is float16:
        return int(np.array(value, dtype=np.float16).view(np.uint16))
    return int(np.array(value, dtype=np.float32).view(np.uint32)) >> 16


def _x2(bits16: int) -> str:
    return hex(bits16 | (bits16 << 16)) + "u"


def _shifted(word: str, distance: int) -> str:
    """``word`` shifted left by ``distance`` bits (right for a negative one), as C."""
    if distance > 0:
        return f"({word} << {distance})"
    return f"({word} >> {-distance})" if distance else word


def _pair_bits(src: str, n: int, lo_bit: int, hi_bit: int, magic_byte: int | None) -> str:
    """C expression with the code at ``lo_bit`` in bits [0, n) and the one at ``hi_bit`` in bits [16, 16+n)
    (other bits: junk, except for the 8-bit ``prmt`` form, which puts ``magic_byte`` above each code)."""
    same_word = lo_bit // 32 == (hi_bit + n - 1) // 32
    if not same_word:
        return f"({read_bits(src, lo_bit, n)} | ({read_bits(src, hi_bit, n)} << 16))"
    word = f"{src}[{lo_bit // 32}]"
    s0, s1 = lo_bit % 32, hi_bit % 32
    if n == 8 and s0 % 8 == 0:
        fill = 4 if magic_byte is not None else 7  # byte 4 = the magic byte; byte 7 = 0
        selector = (s0 // 8) | (fill << 4) | ((s1 // 8) << 8) | (fill << 12)
        other = hex(magic_byte) + "u" if magic_byte is not None else "0u"
        return f"ab_prmt({word}, {other}, {hex(selector)}u)"
    low = f"({word} >> {s0})" if s0 else word
    high = f"({word} << {16 - s1})" if s1 <= 16 else f"({word} >> {s1 - 16})"
    return f"ab_lop3<{hex(_SELECT_LOW_HALF)}>({low}, {high}, 0x0000ffffu)"


def byte_pair_constants(source: DataType, lo_bit: int, target: DataType) -> tuple[int, int, int, int] | None:
    """(prmt selector, lop3 mask, lop3 bits, subtrahend) of a pair of codes that share one byte.

    Codes of n-bit ``source`` at bits ``lo_bit`` and ``lo_bit + n`` of a word, both in byte b:
    ``y = prmt(word, 0, selector)`` copies byte b to bytes 0 and 2; ``(y & mask) ^ bits`` makes half h the
    float 2^(m − s_h) + code, its code field starting at bit s_h of the mantissa (m mantissa bits, so the
    ulp is 1): ``bits`` holds the magic exponent (disjoint from the mask, so XOR sets it as OR would) and,
    for signed codes, their sign bits (inside the mask: XOR flips them, making offset binary), one ``lop3``
    for both. Subtracting the ``subtrahend`` pair 2^(m − s_h) (+ 2^(n−1) for signed codes) leaves the value,
    exactly. None where the pair straddles bytes or a code does not fit in the mantissa. One prmt serves
    every pair of a byte (nvcc shares it), so a pair costs three instructions, signed or not.
    """
    n = source.nbits
    byte, s0 = divmod(lo_bit, 8)
    s1 = s0 + n
    mantissa, bias = (10, 15) if target is float16 else (7, 127)
    if n >= 8 or s1 + n > 8 or s1 + n > mantissa:
        return None
    signed = source.kind == "int"
    offset = 2 ** (n - 1) if signed else 0
    selector = byte | (4 << 4) | (byte << 8) | (4 << 12)
    flip = ((1 << (n - 1 + s0)) | (1 << (n - 1 + s1 + 16))) if signed else 0
    mask = (((1 << n) - 1) << s0) | (((1 << n) - 1) << (16 + s1))
    magic = ((bias + mantissa - s0) << mantissa) | ((bias + mantissa - s1) << (mantissa + 16))
    low, high = (_half_bits(2.0 ** (mantissa - s) + offset, target) for s in (s0, s1))
    return selector, mask, magic ^ flip, low | (high << 16)


def integer_pair_constants(source: DataType, target: DataType) -> tuple[int, int, int]:
    """(lop3 mask, lop3 bits, subtrahend) of two n-bit integer codes (n ≤ 7) at bits [0, n) and [16, 16+n).

    ``(x & mask) ^ bits`` keeps the codes, sets each half's magic exponent (1024.0 for f16, 128.0 for bf16:
    ulp 1; outside the code fields, so XOR sets it as OR would) and, for signed codes, flips their sign bits
    (offset binary) in the same ``lop3``; subtracting ``subtrahend`` (magic + 2^(n−1) for signed codes)
    from both halves leaves the values, exactly.
    """
    n = source.nbits
    magic = 0x6400 if target is float16 else 0x4300
    base = 1024 if target is float16 else 128
    signed = source.kind == "int"
    flip = ((1 << (n - 1)) | (1 << (n + 15))) if signed else 0
    field = (1 << n) - 1
    subtrahend = _half_bits(base + (2 ** (n - 1) if signed else 0), target)
    return field | (field << 16), (magic | (magic << 16)) ^ flip, subtrahend | (subtrahend << 16)


def half_word_pair_constants(
    source: DataType, lo_bit: int, target: DataType
) -> tuple[int, int, int, int] | None:
    """(shift, lop3 mask, lop3 bits, subtrahend) of two codes 16 bits apart in one word (pair-interleaved
    packing), the first at bit ``lo_bit`` < 16.

    ``((word >> shift) & mask) ^ bits`` puts both codes at bit s = lo_bit − shift of their half's mantissa
    under the magic exponent 2^(m − s) (ulp 1; shift is 0 when the code fits there, else a multiple of 8
    that nvcc shares between pairs, else lo_bit), flipping the sign bits of signed codes; subtracting the
    subtrahend pair 2^(m − s) (+ 2^(n−1) when signed) leaves the values, exactly. None for 8-bit codes.
    """
    n = source.nbits
    mantissa, bias = (10, 15) if target is float16 else (7, 127)
    if n >= 8 or lo_bit >= 16 or n > mantissa:
        return None
    if lo_bit + n <= mantissa:
        shift = 0
    elif lo_bit % 8 + n <= mantissa:
        shift = lo_bit - lo_bit % 8
    else:
        shift = lo_bit
    s = lo_bit - shift
    signed = source.kind == "int"
    field = (1 << n) - 1
    mask = (field << s) | (field << (16 + s))
    magic = (bias + mantissa - s) << mantissa
    flip = ((1 << (s + n - 1)) | (1 << (s + n + 15))) if signed else 0
    value = _half_bits(2.0 ** (mantissa - s) + (2 ** (n - 1) if signed else 0), target)
    return shift, mask, (magic | (magic << 16)) ^ flip, value | (value << 16)


def _half_word_pair(
    src: str, source: DataType, target: DataType, lo_bit: int, hi_bit: int
) -> tuple[list[str], int] | None:
    """The :func:`half_word_pair_constants` form (None where the codes are not 16 bits apart in a word)."""
    if hi_bit != lo_bit + 16 or lo_bit // 32 != hi_bit // 32:
        return None
    constants = half_word_pair_constants(source, lo_bit % 32, target)
    if constants is None:
        return None
    shift, mask, bits, subtrahend = constants
    word = f"{src}[{lo_bit // 32}]"
    x = f"({word} >> {shift})" if shift else word
    return [f"uint32_t q_ = ab_lop3<{hex(_AND_XOR)}>({x}, {hex(mask)}u, {hex(bits)}u);"], subtrahend


def _byte_pair(
    src: str, source: DataType, target: DataType, lo_bit: int, hi_bit: int
) -> tuple[list[str], int] | None:
    """The :func:`byte_pair_constants` form of the pair at ``lo_bit``: lines leaving magic + code in ``q_``,
    and the subtrahend (None where it does not apply)."""
    if hi_bit != lo_bit + source.nbits:
        return None
    constants = byte_pair_constants(source, lo_bit % 32, target)
    if constants is None:
        return None
    selector, mask, bits, subtrahend = constants
    lines = [
        f"uint32_t x_ = ab_prmt({src}[{lo_bit // 32}], 0u, {hex(selector)}u);",
        f"uint32_t q_ = ab_lop3<{hex(_AND_XOR)}>(x_, {hex(mask)}u, {hex(bits)}u);",
    ]
    return lines, subtrahend


def integer_pair(
    src: str, source: DataType, target: DataType, lo_bit: int, hi_bit: int
) -> tuple[list[str], int] | None:
    """The integer codes at ``lo_bit`` and ``hi_bit`` as an f16/bf16 pair *before* the magic subtraction:
    lines leaving both halves' magic + code in ``q_``, and the subtrahend pair word that turns them into the
    values (exact). None where the conversion takes another route (8-bit codes to bf16: through f32)."""
    if source.kind not in ("int", "uint") or source.nbits > 8 or target not in (float16, bfloat16):
        return None
    for form in (_half_word_pair, _byte_pair):
        found = form(src, source, target, lo_bit, hi_bit)
        if found is not None:
            return found
    n = source.nbits
    if target is bfloat16 and n == 8:
        return None
    if n == 8:  # one prmt places each code byte under the magic byte 0x64: 1024 + code
        flip = 0x00800080 if source.kind == "int" else 0
        if flip and lo_bit // 32 == hi_bit // 32 and lo_bit % 8 == 0 and hi_bit % 8 == 0:
            # Signed codes flip their sign bits once per word (nvcc shares the XOR between the word's two
            # pairs), before the prmt, instead of once per pair after it.
            flipped = f"({src}[{lo_bit // 32}] ^ 0x80808080u)"
            s0, s1 = lo_bit % 32, hi_bit % 32
            selector = (s0 // 8) | (4 << 4) | ((s1 // 8) << 8) | (4 << 12)
            code = f"ab_prmt({flipped}, 0x64u, {hex(selector)}u)"
            subtrahend = _half_bits(1024 + 128, target)
            return [f"uint32_t q_ = {code};"], subtrahend | (subtrahend << 16)
        pair = _pair_bits(src, n, lo_bit, hi_bit, 0x64)
        code = f"({pair} ^ {hex(flip)}u)" if flip else pair
        subtrahend = _half_bits(1024 + (128 if flip else 0), target)
        return [f"uint32_t q_ = {code};"], subtrahend | (subtrahend << 16)
    mask, bits, subtrahend = integer_pair_constants(source, target)
    lines = [
        f"uint32_t x_ = {_pair_bits(src, n, lo_bit, hi_bit, None)};",
        f"uint32_t q_ = ab_lop3<{hex(_AND_XOR)}>(x_, {hex(mask)}u, {hex(bits)}u);",
    ]
    return lines, subtrahend


def byte_f32_pair(
    src: str, source: DataType, lo_bit: int, hi_bit: int, zero_pair: str | None = None
) -> list[str] | None:
    """8-bit integer codes at byte offsets ``lo_bit`` and ``hi_bit`` to a bf16 pair in ``q_`` (minus the
    zero points of the bf16 pair word ``zero_pair``), or None where a code is not byte-aligned.

    ``prmt(word, 0x4b000000, selector)`` puts the code byte under the f32 exponent of 2^23 (ulp 1), so the
    float is 2^23 + code; subtracting 2^23 (+ 128 for signed codes, whose sign bits are flipped once per
    word; + the zero point, an integer, widened from bf16 by a shift) is exact, and so is the final
    ``cvt.rn.bf16x2.f32`` (|code − zero| ≤ 255 fits bf16's 8 significant bits). Five instructions a pair
    where the masks and shifts of the generic f32 route took about nine.
    """
    if source.kind not in ("int", "uint") or source.nbits != 8 or lo_bit % 8 or hi_bit % 8:
        return None
    signed = source.kind == "int"
    lines = []
    for name, bit, zero in (
        ("lo_", lo_bit, zero_pair and f"({zero_pair} << 16)"),
        ("hi_", hi_bit, zero_pair and f"({zero_pair} & 0xffff0000u)"),
    ):
        word = f"{src}[{bit // 32}]"
        if signed:
            word = f"({word} ^ 0x80808080u)"  # offset binary; nvcc shares the XOR between a word's codes
        selector = (bit % 32) // 8 | (4 << 4) | (4 << 8) | (7 << 12)
        subtrahend = f"{float(2**23 + (128 if signed else 0))}f"
        if zero is not None:
            subtrahend = f"({subtrahend} + __uint_as_float{zero})"
        lines.append(
            f"float {name} = __uint_as_float(ab_prmt({word}, 0x4b000000u, {hex(selector)}u)) - {subtrahend};"
        )
    return [*lines, "uint32_t q_ = ab_f32x2_to_bf16x2(lo_, hi_);"]


def subtract_pair(target: DataType, subtrahend: str) -> str:
    """``q_ -= subtrahend`` on both halves, rounded once (bf16: an fma, sm_80 has no ``sub.bf16x2``)."""
    if target is float16:
        return f"q_ = ab_sub_f16x2(q_, {subtrahend});"
    return f"q_ = ab_fma_bf16x2({subtrahend}, 0xbf80bf80u, q_);"


def scale_pair(target: DataType, exponent: int) -> list[str]:
    """``q_ *= 2^exponent`` on both halves (exact where the result is representable; none for 0)."""
    if not exponent:
        return []
    if not _normal_power(target, exponent):
        raise AssertionError(f"2^{exponent} is not a normal {target.name}: scale in two steps")
    factor = _x2(_half_bits(2.0**exponent, target))
    if target is float16:
        return [f"q_ = ab_mul_f16x2(q_, {factor});"]
    return [f"q_ = ab_fma_bf16x2(q_, {factor}, 0x80008000u);"]


def _fast_pair(
    src: str, source: DataType, target: DataType, lo_bit: int, hi_bit: int, exponent: int = 0
) -> list[str]:
    """Statements leaving the codes at ``lo_bit`` and ``hi_bit`` converted (a target x2 pair), times
    2^``exponent``, in ``q_``."""
    if source.is_float:
        return _float_pair(src, source, target, lo_bit, hi_bit, exponent)
    return [*_fast_pair_unscaled(src, source, target, lo_bit, hi_bit), *scale_pair(target, exponent)]


def _fast_pair_unscaled(src: str, source: DataType, target: DataType, lo_bit: int, hi_bit: int) -> list[str]:
    """:func:`_fast_pair` of integer codes, before any 2^exponent."""
    n = source.nbits
    if source.kind in ("int", "uint"):
        unsubtracted = integer_pair(src, source, target, lo_bit, hi_bit)
        if unsubtracted is not None:
            lines, subtrahend = unsubtracted
            return [*lines, subtract_pair(target, f"{hex(subtrahend)}u")]
        by_bytes = byte_f32_pair(src, source, lo_bit, hi_bit) if target is bfloat16 else None
        if by_bytes is not None:
            return by_bytes
        flip = (1 << (n - 1)) | (1 << (n + 15)) if source.kind == "int" else 0
        offset = (1 << (n - 1)) if source.kind == "int" else 0
        pair = _pair_bits(src, n, lo_bit, hi_bit, None)
        lines = [f"uint32_t x_ = {pair};"]
        if flip:
            lines.append(f"x_ ^= {hex(flip)}u;")
        lines += [
            f"float lo_ = __uint_as_float(0x4b000000u | (x_ & 0xffu)) - {float(2**23 + offset)}f;",
            f"float hi_ = __uint_as_float(0x4b000000u | ((x_ >> 16) & 0xffu)) - {float(2**23 + offset)}f;",
            "uint32_t q_ = ab_f32x2_to_bf16x2(lo_, hi_);",
        ]
        return lines
    raise AssertionError(f"no fast pair conversion from {source.name}")


def _float_pair(
    src: str, source: DataType, target: DataType, lo_bit: int, hi_bit: int, exponent: int
) -> list[str]:
    """A float pair: the native float8 conversion, or the bit-aligning one whose re-biasing multiply by
    2^scale takes ``exponent`` along (none at all when they cancel), times 2^``exponent``."""
    n = source.nbits
    native = _native_fp8_pair(src, source, target, lo_bit, hi_bit)
    # floats: align magnitude to the target's mantissa, sign to bit 15, then re-bias by a power of two
    shift, magnitudes, scale = aligned_float_constants(source, target)
    by_bytes = _nibble_float_pair(src, source, target, lo_bit, hi_bit)
    if by_bytes is not None:
        lines = by_bytes
    elif lo_bit // 32 == (hi_bit + n - 1) // 32 and hi_bit - lo_bit == 16:
        # A pair-interleaved pair (its codes 16 bits apart in one word): both halves' magnitude and sign bits
        # move into place with one shift each, straight from the stored word.
        word, s0 = f"{src}[{lo_bit // 32}]", lo_bit % 32
        lines = [
            f"uint32_t x_ = {_shifted(word, -s0)};",  # the codes at bits 0 and 16, for the fix-ups below
            f"uint32_t q_ = ab_lop3<{hex(_AND_OR)}>({_shifted(word, shift - s0)}, {hex(magnitudes)}u, "
            f"{_shifted(word, 16 - n - s0)} & 0x80008000u);",
        ]
    else:
        lines = [
            f"uint32_t x_ = {_pair_bits(src, n, lo_bit, hi_bit, None)};",
            f"uint32_t q_ = ab_lop3<{hex(_AND_OR)}>(x_ << {shift}, {hex(magnitudes)}u, "
            f"(x_ << {16 - n}) & 0x80008000u);",
        ]
    fixups = _special_fixups(source, target)
    if fixups:  # they test the re-biased values: re-bias fully, then scale
        lines += [*scale_pair(target, scale), *fixups, *scale_pair(target, exponent)]
    elif _normal_power(target, scale + exponent):  # one multiply by 2^(scale + exponent), or none
        lines += scale_pair(target, scale + exponent)
    else:  # the product of the two factors is not a target value (float4 to bf16 has 2^126 · 2^3)
        lines += [*scale_pair(target, scale), *scale_pair(target, exponent)]
    if native is None:
        return lines
    return ["#if __CUDA_ARCH__ >= 890", *native, *scale_pair(target, exponent), "#else", *lines, "#endif"]


def nibble_float_byte(source: DataType) -> tuple[int, int] | None:
    """(t, byte mask) of a 4-bit float code whose bit-aligned f16 value lies in its high byte alone: the
    magnitude bits go to bits t … t + 2 of that byte and the sign to bit 7; None for other types.

    A 4-bit float without inf/NaN aligned to f16 puts its magnitude at mantissa bit 10 − m (m mantissa bits)
    and up, its sign at bit 15: for m = 1 (e2m1: t = 1) and m = 2 (e1m2: t = 0) nothing lands in the low byte,
    which stays zero. (e3m0, t = 2, would overlap the sign's copy below: not taken.)"""
    if not source.is_float or source.nbits != 4 or source.has_inf or source.has_nan:
        return None
    t = 10 - source.mantissa_bits - 8
    if not 0 <= t <= 1:
        return None
    return t, 0x80 | (0x7 << t)


def _nibble_float_pair(
    src: str, source: DataType, target: DataType, lo_bit: int, hi_bit: int
) -> list[str] | None:
    """A pair-interleaved pair of 4-bit float codes to their bit-aligned f16 pair (value · 2^(bias − 15)),
    the word's nibbles taken a byte at a time; None where it does not apply.

    ``A = w & 0x0F0F0F0F`` and ``B = w & 0xF0F0F0F0`` (shared by the word's four pairs) hold every code alone
    in its byte's low or high nibble. A code's f16 high byte is its magnitude at bits t … t + 2 and its sign
    at bit 7: ``((A << t) | (A << 4)) & mask`` builds it for low nibbles (the copies' stray bits fall outside
    the mask), ``((B >> (4 − t)) | B) & mask`` for high ones, and the same with 8 more bits of left shift
    places a pair stored in bytes 0 and 2 into bytes 1 and 3 — one ``lop3`` a pair after shifts the word's
    pairs share: 13 instructions a word of four pairs where aligning sign and magnitude apart took 15."""
    found = nibble_float_byte(source)
    if found is None or target is not float16 or hi_bit - lo_bit != 16 or lo_bit // 32 != hi_bit // 32:
        return None
    t, byte_mask = found
    word, s0 = f"{src}[{lo_bit // 32}]", lo_bit % 32
    if s0 >= 16:
        return None
    upper_byte, high_nibble = s0 >= 8, s0 % 8 == 4  # which byte of its half, which nibble of its byte
    mask = hex((byte_mask << 8) | (byte_mask << 24)) + "u"
    # The masks through lop3 (asm): written as C, nvcc moves each shift inside its mask and the word's
    # pairs no longer share the masked word.
    if high_nibble:
        codes = f"ab_lop3<{hex(_AND)}>({word}, 0xf0f0f0f0u, 0u)"
        parts = (
            (_shifted(codes, t - 4), codes) if upper_byte else (_shifted(codes, 4 + t), _shifted(codes, 8))
        )
    else:
        codes = f"ab_lop3<{hex(_AND)}>({word}, 0x0f0f0f0fu, 0u)"
        parts = (
            (_shifted(codes, t), _shifted(codes, 4))
            if upper_byte
            else (_shifted(codes, 8 + t), _shifted(codes, 12))
        )
    return [f"uint32_t q_ = ab_lop3<{hex(_OR_AND)}>({parts[0]}, {parts[1]}, {mask});"]


#: The 8-bit float types sm_89+ converts to f16x2 in one instruction (PTX ``cvt.rn.f16x2.<type>x2``).
_NATIVE_FP8 = {"float8_e4m3": "e4m3x2", "float8_e5m2": "e5m2x2"}


def _native_fp8_pair(
    src: str, source: DataType, target: DataType, lo_bit: int, hi_bit: int
) -> list[str] | None:
    """``cvt.rn.f16x2.e4m3x2`` (or ``e5m2x2``) of a pair stored as the two bytes of one 16-bit half of a word
    (element 2p in the low byte: the instruction converts the low byte into the low half), or None.

    Exact (every float8 value is an f16 value) with NaN and inf kept, in one instruction per pair where the
    bit-aligning path takes a shift, a ``lop3``, a multiply and, for e4m3, the NaN fix-up. To bf16 the f16
    pair widens to f32 and narrows to bf16 (every float8 value is a bf16 value too): four instructions a
    pair where the bit-aligning path needs a test and a select per value for inf/NaN.
    """
    name = _NATIVE_FP8.get(source.name)
    if name is None or target not in (float16, bfloat16) or lo_bit % 16 or hi_bit != lo_bit + 8:
        return None
    word, shift = f"{src}[{lo_bit // 32}]", lo_bit % 32
    half = f"(unsigned short)({word} >> {shift})" if shift else f"(unsigned short){word}"
    if target is float16:
        return ["uint32_t q_;", f'asm("cvt.rn.f16x2.{name} %0, %1;" : "=r"(q_) : "h"({half}));']
    return [
        "uint32_t h_; float lo_, hi_;",
        f'asm("cvt.rn.f16x2.{name} %0, %1;" : "=r"(h_) : "h"({half}));',
        'asm("cvt.f32.f16 %0, %1;" : "=f"(lo_) : "h"((unsigned short)h_));',
        'asm("cvt.f32.f16 %0, %1;" : "=f"(hi_) : "h"((unsigned short)(h_ >> 16)));',
        "uint32_t q_ = ab_f32x2_to_bf16x2(lo_, hi_);",
    ]


def aligned_float_constants(source: DataType, target: DataType) -> tuple[int, int, int]:
    """(shift, magnitudes, scale) of the bit-aligning float conversion of a pair: a code's magnitude bits
    shifted left by ``shift`` sit at the top of the target mantissa (``magnitudes``: their mask in both
    halves), its sign goes to bit 15 of its half, and multiplying by 2^``scale`` re-biases the exponent."""
    target_mantissa, target_bias = (10, 15) if target is float16 else (7, 127)
    shift = target_mantissa - source.mantissa_bits
    magnitude = (1 << (source.nbits - 1)) - 1
    return shift, (magnitude | (magnitude << 16)) << shift, target_bias - source.exponent_bias


def nan_fixup_constants(source: DataType) -> tuple[int, int] | None:
    """(pseudo, flip) of a float type whose only special codes are NaN (magnitude all ones, no inf), to f16.

    The bit-aligning conversion turns a NaN code into the finite ±``pseudo`` (f16 bits; no finite code gives
    that magnitude). ``m = (|q| == pseudo)`` per half (one ``set.eq.u32.f16x2`` after clearing the signs)
    and ``q ^ (m & flip)`` turn exactly those halves into the canonical NaN 0x7E00 with their sign, where a
    test and a branch per value did. None for other types.
    """
    if not (source.is_float and source.has_nan and not source.has_inf):
        return None
    n, m = source.nbits, source.mantissa_bits
    shift = 10 - m
    magnitude = ((1 << (n - 1)) - 1) << shift
    aligned = np.array(magnitude, dtype=np.uint16).view(np.float16)
    scaled = aligned * np.float16(2.0 ** (15 - source.exponent_bias))
    pseudo = int(np.array(scaled, dtype=np.float16).view(np.uint16))
    return pseudo, pseudo ^ 0x7E00


def _special_fixups(source: DataType, target: DataType) -> list[str]:
    """Restore inf/NaN where the bit-aligning trick maps them to finite values."""
    constants = nan_fixup_constants(source) if target is float16 else None
    if constants is not None:
        pseudo, flip = constants
        return [
            f"uint32_t m_ = ab_eq_mask_f16x2(q_ & 0x7fff7fffu, {_x2(pseudo)});",
            f"q_ = ab_lop3<{hex(_XOR_AND)}>(q_, m_, {_x2(flip)});",
        ]
    n = source.nbits
    nan = 0x7E00 if target is float16 else 0x7FC0
    inf = 0x7C00 if target is float16 else 0x7F80
    lines = []
    for half in range(2):
        code = f"((x_ >> {16 * half}) & {hex((1 << n) - 1)}u)"
        sign = f"(({code} >> {n - 1}) << 15)"
        if source.has_nan and not source.has_inf:
            lines.append(
                f"if (({code} & 0x7fu) == 0x7fu) q_ = (q_ & {hex(0xFFFF << (16 * (1 - half)))}u) | "
                f"(({sign} | {hex(nan)}u) << {16 * half});"
            )
        elif source.has_inf and target is bfloat16:
            exponent = f"(({code} >> {source.mantissa_bits}) & {hex((1 << source.exponent_bits) - 1)}u)"
            mantissa = f"({code} & {hex((1 << source.mantissa_bits) - 1)}u)"
            lines.append(
                f"if ({exponent} == {hex((1 << source.exponent_bits) - 1)}u) q_ = "
                f"(q_ & {hex(0xFFFF << (16 * (1 - half)))}u) | "
                f"(({sign} | ({mantissa} ? {hex(nan)}u : {hex(inf)}u)) << {16 * half});"
            )
    return lines


def emit_cast(
    ctx,
    src: str,
    source: DataType,
    dst: str,
    target: DataType,
    count: int,
    *,
    fast: bool,
    order: list[int] | None = None,
    zero_pair: Callable[[int], str] | None = None,
    zero_element: Callable[[int], str] | None = None,
    exponent: int = 0,
    biased: bool = False,
) -> None:
    """Convert ``count`` local elements of word array ``src`` into word array ``dst`` (times 2^``exponent``,
    which the caller has checked is exact; not with zero points).

    ``biased`` (integer codes, no zero points or exponent): pairs on the integer fast path keep their magic
    number (magic + code, exact: one subtraction a pair less); other elements convert plainly (bias 0). The
    bias of each output element so depends only on the types and ``order``, as a biased cast promises.

    ``order[i]``: the source local of output local i (a cast that reorders each thread's elements, e.g.
    pair-interleaved codes into tensor-core order; default: the same local). Pairs go through the fast path
    when ``fast`` and one exists for the pair of types; the rest (and every other type pair) through the
    generic path: decode to the compute type, encode with DESIGN §4.1 rounding. With zero points
    (``zero_pair(p)``: the f16/bf16 pair word of output elements 2p, 2p+1; ``zero_element(i)``: one element
    as float), the result is ``cast − zero``: on the integer fast path the zero is added to the magic
    subtrahend (``S + z`` is exact for integer zeros below 2^bits, so ``(S + code) − (S + z)`` rounds once,
    as ``code − z`` does) — the zero costs no instruction per pair, only one addition per distinct
    (subtrahend, zero) pair, which nvcc shares; elsewhere a subtraction per element.
    """
    order = list(range(count)) if order is None else order
    n = source.nbits
    gatherable = zero_pair is not None and source.kind == "uint" and planar_placements(source, target)
    if fast and gatherable and _pairs_sixteen_apart(order, n, count):
        # Zero points of pair-interleaved codes: the gathering form picks each pair's magic base so that
        # pairs of a column share (subtrahend + zero) sums, one addition each instead of one per shift form.
        plane = (src, source, order)
        emit_planar_cast(
            ctx, [plane], source, dst, target, count, zero_pair=zero_pair, zero_element=zero_element
        )
        return
    if (
        fast
        and zero_pair is None
        and zero_element is None
        and byte_field_words(order, source, target, exponent, count)
    ):
        for word in range(count // 4):
            ctx.emit(f"{dst}[{word}] = {byte_field_word(src, order, source, exponent, word)};")
        return
    pairs = count // 2 if fast and has_fast_path(source, target) else 0
    folded: set[int] = set()  # output elements whose zero the fast path already subtracted
    for p in range(pairs):
        lo_bit, hi_bit = order[2 * p] * n, order[2 * p + 1] * n
        magic_kept = zero_pair is not None or biased
        unsubtracted = integer_pair(src, source, target, lo_bit, hi_bit) if magic_kept else None
        by_bytes = None
        if zero_pair is not None and unsubtracted is None and target is bfloat16:
            by_bytes = byte_f32_pair(src, source, lo_bit, hi_bit, zero_pair(p))
        if by_bytes is not None:
            lines = by_bytes
            folded |= {2 * p, 2 * p + 1}
        elif unsubtracted is not None and biased:
            lines = unsubtracted[0]  # magic + code: the caller subtracts the bias after its dot
        elif unsubtracted is not None:
            lines, subtrahend = unsubtracted
            if target is float16:
                total = f"ab_add_rn_f16x2({hex(subtrahend)}u, {zero_pair(p)})"
            else:
                total = f"ab_fma_bf16x2({zero_pair(p)}, 0x3f803f80u, {hex(subtrahend)}u)"
            lines = [*lines, subtract_pair(target, total)]
            folded |= {2 * p, 2 * p + 1}
        else:
            lines = _fast_pair(src, source, target, lo_bit, hi_bit, exponent)
        ctx.emit("{", *["  " + line for line in lines], f"  {dst}[{p}] = q_;", "}")
    for i in range(2 * pairs, count):
        j = order[i]
        if source is target and not exponent:
            if n <= 32:
                ctx.emit(*write_bits(dst, i * n, n, read_bits(src, j * n, n)))
            else:
                ctx.emit(f"{dst}[{2 * i}] = {src}[{2 * j}]; {dst}[{2 * i + 1}] = {src}[{2 * j + 1}];")
            continue
        value = get_value(src, source, j)
        if exponent:  # exact in f32 (the caller checked the result is a target value)
            value = f"((float)({value}) * {float(2.0**exponent)!r}f)"
        ctx.emit(*set_value(dst, target, i, value, saturate=True))
    if zero_element is not None:  # the elements the fold did not cover: cast, then subtract, rounded once
        for i in (i for i in range(count) if i not in folded):
            ctx.emit(*set_value(dst, target, i, f"({get_value(dst, target, i)} - {zero_element(i)})"))


def byte_field_words(order: list[int], source: DataType, target: DataType, exponent: int, count: int) -> bool:
    """Whether every output word of a cast of unsigned ``source`` codes to int8 times 2^``exponent`` takes its
    four codes from one source word, 8 bits apart and at the same place of each byte (see
    :func:`byte_field_word`)."""
    n = source.nbits
    if target.name != "int8" or source.kind != "uint" or n > 4 or exponent < 0 or exponent + n > 7:
        return False
    if count % 4:
        return False
    for word in range(count // 4):
        bits = [order[4 * word + j] * n for j in range(4)]
        base = bits[0] % 32
        if (
            base > 8 - n
            or any(bit != bits[0] + 8 * j for j, bit in enumerate(bits))
            or bits[0] // 32 != bits[3] // 32
        ):
            return False
    return True


def byte_field_word(src: str, order: list[int], source: DataType, exponent: int, word: int) -> str:
    """Output word ``word`` of an int8 cast of unsigned n-bit codes times 2^``exponent``: its four codes sit
    at bits b, b+8, b+16, b+24 of one source word (b + n ≤ 8), so one shift (none where b = exponent; a
    left one nvcc may issue as ``IMAD.SHL`` on the FMA pipe) and one ``lop3`` mask put each at bits
    [exponent, exponent + n) of its byte: four weights an ALU instruction, where a 16-bit float pair takes
    one for two."""
    n = source.nbits
    bit = order[4 * word] * n
    base = bit % 32
    mask = (((1 << n) - 1) << exponent) * 0x01010101
    shifted = _shifted(f"{src}[{bit // 32}]", exponent - base)
    return f"({shifted} & {hex(mask)}u)"


def _pairs_sixteen_apart(order: list[int], n: int, count: int) -> bool:
    """Whether every output pair's two codes sit 16 bits apart in one word (pair-interleaved codes)."""
    if count % 2 or n > 8:
        return False
    for p in range(count // 2):
        lo, hi = order[2 * p] * n, order[2 * p + 1] * n
        if hi != lo + 16 or lo // 32 != (hi + n - 1) // 32:
            return False
    return True


# ---------------------------------------------------------------------------------------- bit planes
#: A plane of a planar cast: (its word array, its unsigned type, order: the plane local of each output local).
Plane = tuple[str, DataType, list[int]]


def planar_placements(source: DataType, target: DataType) -> list[tuple[list[int], int, int]]:
    """The ways the bit-gathering planar conversion may place a ``source`` code in a 16-bit half of a
    ``target`` pair: (the place of each code bit, the constant bits of the pair word, the pair word to
    subtract afterwards — 0 for floats); empty where it does not apply.

    Integers: bits b..b+n−1 of the mantissa under the exponent that makes the half 2^(m−b) + code (m
    mantissa bits, so the code's ulp is 1), for any base b with b + n ≤ m — the conversion picks per pair
    the base its planes need the fewest shifts for; a signed code's sign bit flipped (offset binary, in the
    constant) and 2^(n−1) added to the subtrahend. Floats without inf or NaN: the bit-aligning layout
    (:func:`aligned_float_constants`): magnitude bits to the top of the target mantissa, the sign to bit 15.
    """
    n = source.nbits
    if target not in (float16, bfloat16):
        return []
    mantissa, bias = (10, 15) if target is float16 else (7, 127)
    if source.kind in ("int", "uint"):
        signed = source.kind == "int"
        placements = []
        for base in range(mantissa - n + 1):
            constant = ((bias + mantissa - base) << mantissa) ^ ((1 << (base + n - 1)) if signed else 0)
            half = _half_bits(2.0 ** (mantissa - base) + (2 ** (n - 1) if signed else 0), target)
            placements.append((list(range(base, base + n)), constant | (constant << 16), half | (half << 16)))
        return placements
    if source.is_float and not source.has_inf and not source.has_nan and has_fast_path(source, target):
        shift = aligned_float_constants(source, target)[0]
        return [([b + shift for b in range(n - 1)] + [15], 0, 0)]
    return []


def _shifted_source(word: str, rotation: int, mask: int) -> tuple[str, float]:
    """``word`` rotated left by ``rotation`` as far as the bits under ``mask`` see it, and a cost in
    instructions (the ALU pipe, which the ``lop3``s load, counted 1.5): none for 0; a left shift (which nvcc
    may issue as ``IMAD.SHL`` on the FMA pipe); a right shift (counted 0.5 by a multiple of 8: the pairs of
    a word whose fields sit 8 or 16 bits up share it — nvcc computes it once); else a funnel shift. (Right
    shifts written as a shared ``word >> 8k`` and a left shift measured no fewer issue slots in SASS.)"""
    if not rotation:
        return word, 0.0
    destinations = [bit for bit in range(32) if mask >> bit & 1]
    if all(bit >= rotation for bit in destinations):
        return f"({word} << {rotation})", 1.0
    if all(bit < rotation for bit in destinations):
        right = 32 - rotation
        lowest = min(destinations) + right  # the lowest source bit
        if right % 8 == 0 and right <= lowest:
            return f"({word} >> {right})", 0.5
        return f"({word} >> {right})", 1.5
    return f"__funnelshift_l({word}, {word}, {rotation})", 1.5


#: A pair's gather in one placement: (constant pair bits, subtrahend pair word, groups of (word array, word,
#: left rotation, mask)); see :func:`planar_groups`.
PairGather = tuple[int, int, list[tuple[str, int, int, int]]]


def planar_candidates(planes: list[Plane], source: DataType, target: DataType, p: int) -> list[PairGather]:
    """Output pair ``p``'s gather in every placement :func:`planar_placements` allows (one for floats, one a
    base for integers), or an empty list where the planes do not hold the code's bits."""
    found = []
    for targets, constant, subtrahend in planar_placements(source, target):
        groups: dict[tuple[str, int, int], int] = {}
        first_bit = 0
        for array, plane_dtype, order in planes:
            width = plane_dtype.nbits
            for half, local in enumerate((order[2 * p], order[2 * p + 1])):
                for b in range(width):
                    word, bit = divmod(local * width + b, 32)
                    destination = targets[first_bit + b] + 16 * half
                    key = (array, word, (destination - bit) % 32)
                    groups[key] = groups.get(key, 0) | (1 << destination)
            first_bit += width
        if first_bit != source.nbits:
            return []
        ordered = sorted(groups.items(), key=lambda item: (item[0][2] != 0, item[0]))
        found.append((constant, subtrahend, [(a, w, r, mask) for (a, w, r), mask in ordered]))
    return found


def _shifts(gather: PairGather) -> list[tuple[str, float]]:
    """The shifted words a gather reads, as (expression, cost) (:func:`_shifted_source`; none for 0)."""
    groups = gather[2]
    shifted = (_shifted_source(f"{array}[{word}]", rotation, mask) for array, word, rotation, mask in groups)
    return [(text, cost) for text, cost in shifted if cost]


def planar_groups(
    planes: list[Plane],
    source: DataType,
    target: DataType,
    p: int,
    subtrahend_cost: Callable[[int], float] | None = None,
) -> PairGather | None:
    """How output pair ``p`` gathers its codes from bit ``planes``: (constant pair bits, subtrahend pair
    word, groups of (word array, word, left rotation, mask)) — the pair word is the constant XOR each
    group's rotated word masked — or None where no such form applies (:func:`planar_placements`).

    Every code bit goes to its place; bits that share a word and a rotation form one group. Planes stored so
    that the two codes of a pair sit 16 bits apart in one word (pair-interleaved) take one group per plane,
    or two for a float plane holding the sign and another bit (they land at unrelated places) unless its
    bits are stored as far apart as they land (a spread top plane: ``cast(high=)`` of uint1 [..., h]). Of
    the placements, the one whose groups cost the fewest shift instructions (:func:`_shifted_source`) wins,
    plus ``subtrahend_cost(subtrahend)`` where given (the zero-point fold adds the zero pair to each distinct
    subtrahend once: a base no other pair of that column uses costs that addition).
    """
    best = None
    for gather in planar_candidates(planes, source, target, p):
        cost = sum(cost for _, cost in _shifts(gather))
        cost += subtrahend_cost(gather[1]) if subtrahend_cost is not None else 0.0
        if best is None or cost < best[0]:
            best = (cost, gather)
    return None if best is None else best[1]


#: The placements' joint search (:func:`choose_planar_gathers`): its moves and its annealing's first
#: temperature, and a fixed seed, so that the same planes always make the same code.
JOINT_SEARCH_MOVES = 20000
JOINT_SEARCH_TEMPERATURE = 2.0
JOINT_SEARCH_SEED = 0
#: What the search counts a distinct (subtrahend, zero pair) addition as, against a shift's cost.
ZERO_FOLD_COST = 2.0


def choose_planar_gathers(
    planes: list[Plane],
    source: DataType,
    target: DataType,
    pairs: int,
    zero_pair: Callable[[int], str] | None = None,
) -> list[PairGather] | None:
    """Each output pair's gather (:func:`planar_candidates`), chosen together: a shifted word several pairs
    read is one instruction (nvcc computes it once), and with zero points folded in each distinct
    (subtrahend, zero pair) costs one addition. Integers may take any base a pair, so the pairs of one plane
    word can agree on a rotation that serves several of them, which choosing per pair never finds: the
    search starts from the per-pair choice (:func:`planar_groups`'s, pair by pair) and anneals, changing one
    or two pairs' bases at a time (deterministic: a fixed seed, count and schedule), keeping the cheapest
    choice it met. None where some pair has no gather."""
    # The choice depends only on which planes share an array and which pairs share a zero pair, not on the
    # registers' names: cached under canonical names, kernels of one weight's configurations share it.
    arrays = {array: f"a{index}" for index, array in enumerate(dict.fromkeys(a for a, _, _ in planes))}
    key = tuple((arrays[array], dtype.name, tuple(order)) for array, dtype, order in planes)
    named = [zero_pair(p) if zero_pair is not None else None for p in range(pairs)]
    first = {name: index for index, name in reversed(list(enumerate(named)))}
    zeros = tuple(None if name is None else f"z{first[name]}" for name in named)
    chosen = _joint_choice(key, source.name, target.name, pairs, zeros)
    if chosen is None:
        return None
    return [planar_candidates(planes, source, target, p)[c] for p, c in enumerate(chosen)]


@functools.lru_cache(maxsize=256)
def _joint_choice(
    key: tuple, source_name: str, target_name: str, pairs: int, zeros: tuple
) -> tuple[int, ...] | None:
    """:func:`choose_planar_gathers`'s candidate index per pair (cached: a kernel's configurations share
    their planes' orders)."""
    planes = [(array, dtype_named(name), list(order)) for array, name, order in key]
    source, target = dtype_named(source_name), dtype_named(target_name)
    candidates = [planar_candidates(planes, source, target, p) for p in range(pairs)]
    if any(not found for found in candidates):
        return None
    shifts = [[_shifts(gather) for gather in found] for found in candidates]
    choice: list[int] = []
    summed: set[tuple[int, str]] = set()
    for p, found in enumerate(candidates):  # the per-pair choice, as planar_groups makes it
        costs = [
            sum(cost for _, cost in shifts[p][c])
            + (float((gather[1], zeros[p]) not in summed) if zeros[p] is not None else 0.0)
            for c, gather in enumerate(found)
        ]
        choice.append(costs.index(min(costs)))
        if zeros[p] is not None:
            summed.add((found[choice[p]][1], zeros[p]))
    counts: dict[object, int] = {}

    def change(p: int, c: int, sign: int) -> float:
        """Add (sign 1) or remove (−1) pair p's candidate c; the total's change."""
        items = list(shifts[p][c])
        if zeros[p] is not None:
            items.append(((candidates[p][c][1], zeros[p]), ZERO_FOLD_COST))
        delta = 0.0
        for item, cost in items:
            before = counts.get(item, 0)
            counts[item] = before + sign
            if (before == 0) != (before + sign == 0):
                delta += cost * sign
        return delta

    total = sum(change(p, c, 1) for p, c in enumerate(choice))
    best = (total, tuple(choice))
    movable = [p for p in range(pairs) if len(candidates[p]) > 1]
    rng = random.Random(JOINT_SEARCH_SEED)
    moves = JOINT_SEARCH_MOVES if movable else 0
    for move in range(moves):
        temperature = JOINT_SEARCH_TEMPERATURE * (1 - move / moves)
        moved = rng.sample(movable, min(len(movable), 1 + (rng.random() < 0.5)))
        old = [choice[p] for p in moved]
        delta = 0.0
        for p in moved:
            delta += change(p, choice[p], -1)
            choice[p] = rng.randrange(len(candidates[p]))
            delta += change(p, choice[p], 1)
        if delta <= 0 or (temperature > 0 and rng.random() < math.exp(-delta / temperature)):
            total += delta
            if total < best[0] - 1e-9:
                best = (total, tuple(choice))
        else:  # undo
            for p, c in zip(moved, old, strict=True):
                change(p, choice[p], -1)
                choice[p] = c
                change(p, c, 1)
    return best[1]


def planar_gather_lines(gather: PairGather) -> list[str]:
    """Statements leaving a pair's codes gathered in ``q_`` (before any subtraction or re-biasing): per
    group one shift (none for 0) and one ``lop3`` that masks it and merges it into the pair word."""
    constant, _, groups = gather
    lines, merged = [], hex(constant) + "u"
    for index, (array, word, rotation, mask) in enumerate(groups):
        value = _shifted_source(f"{array}[{word}]", rotation, mask)[0]
        declare = "uint32_t q_ = " if index == 0 else "q_ = "
        lines.append(f"{declare}ab_lop3<{hex(_AND_XOR)}>({value}, {hex(mask)}u, {merged});")
        merged = "q_"
    return lines


def emit_planar_cast(
    ctx,
    planes: list[Plane],
    source: DataType,
    dst: str,
    target: DataType,
    count: int,
    *,
    zero_pair: Callable[[int], str] | None = None,
    zero_element: Callable[[int], str] | None = None,
    exponent: int = 0,
) -> None:
    """Convert ``count`` output elements whose ``source`` codes are split over bit ``planes`` (low plane
    first: code = Σ plane << its first bit) into word array ``dst`` (times 2^``exponent``; with zero points
    as in :func:`emit_cast`).

    Pairs gather their bits from the planes (:func:`planar_gather`), then integers subtract the magic
    number (with the zero point folded in, as :func:`emit_cast` does) and floats re-bias by a power of two;
    elements without such a form take the generic path on the reassembled code.
    """
    pairs = count // 2
    folded: set[int] = set()
    gathers = choose_planar_gathers(planes, source, target, pairs, zero_pair)
    p = 0
    for p, gather in enumerate(gathers or []):
        lines, subtrahend = planar_gather_lines(gather), gather[1]
        if source.kind in ("int", "uint"):
            if zero_pair is not None:
                if target is float16:
                    total = f"ab_add_rn_f16x2({hex(subtrahend)}u, {zero_pair(p)})"
                else:
                    total = f"ab_fma_bf16x2({zero_pair(p)}, 0x3f803f80u, {hex(subtrahend)}u)"
                folded |= {2 * p, 2 * p + 1}
            else:
                total = f"{hex(subtrahend)}u"
            lines += [subtract_pair(target, total), *scale_pair(target, exponent)]
        else:
            scale = aligned_float_constants(source, target)[2]
            if _normal_power(target, scale + exponent):
                lines += scale_pair(target, scale + exponent)
            else:
                lines += [*scale_pair(target, scale), *scale_pair(target, exponent)]
        ctx.emit("{", *["  " + line for line in lines], f"  {dst}[{p}] = q_;", "}")
    p = pairs if gathers is not None else 0
    for i in range(2 * p, count):
        code, first_bit = [], 0
        for array, plane_dtype, order in planes:
            width = plane_dtype.nbits
            bits = read_bits(array, order[i] * width, width)
            code.append(f"({bits} << {first_bit})" if first_bit else bits)
            first_bit += width
        value = decode_code(f"(uint32_t)({' | '.join(code)})", source)
        if exponent:
            value = f"((float)({value}) * {float(2.0**exponent)!r}f)"
        ctx.emit(*set_value(dst, target, i, value, saturate=True))
    if zero_element is not None:
        for i in (i for i in range(count) if i not in folded):
            ctx.emit(*set_value(dst, target, i, f"({get_value(dst, target, i)} - {zero_element(i)})"))


# ---------------------------------------------------------------------------------------- test kernels
class _Lines:
    """A minimal emission context for standalone kernels."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def emit(self, *lines: str) -> None:
        self.lines.extend("  " + line for line in lines)


def conversion_kernel_name(source: DataType, target: DataType, exponent: int = 0) -> str:
    """Name of the standalone conversion test kernel of a type pair (and a 2^exponent scaling)."""
    scaled = f"_times_2_{'m' if exponent < 0 else 'p'}{abs(exponent)}" if exponent else ""
    return f"ab_convert_{source.name}_to_{target.name}{scaled}"


def conversion_test_kernel(
    source: DataType, target: DataType, *, per_thread: int = 8, exponent: int = 0
) -> str:
    """CUDA source of a kernel converting every code of ``source`` to ``target`` (16-bit results), times
    2^``exponent`` (a ``cast(..., exponent=)``; the caller checks it is exact).

    ``kernel(uint16_t* fast, uint16_t* generic)``: launch with at least ``2**n / per_thread`` threads
    (one block of ``max(1, 2**n // 8)`` threads is enough for n ≤ 8). ``fast[c]`` is code ``c`` through the
    fast path (the generic path where none exists), ``generic[c]`` through the generic path.
    """
    assert target.nbits == 16 and source.nbits <= 8
    n = source.nbits
    ctx = _Lines()
    words = word_count(source, per_thread)
    ctx.emit(
        f"uint32_t src[{words}] = {{}};",
        f"uint32_t fast_out[{per_thread // 2}] = {{}};",
        f"uint32_t slow_out[{per_thread // 2}] = {{}};",
    )
    ctx.emit(f"const unsigned base = (blockIdx.x * blockDim.x + threadIdx.x) * {per_thread};")
    ctx.emit(f"if (base >= {1 << n}u) return;")
    for j in range(per_thread):
        ctx.emit(*write_bits("src", j * n, n, f"(base + {j}u) & {hex((1 << n) - 1)}u"))
    emit_cast(ctx, "src", source, "fast_out", target, per_thread, fast=True, exponent=exponent)
    emit_cast(ctx, "src", source, "slow_out", target, per_thread, fast=False, exponent=exponent)
    for j in range(per_thread):
        ctx.emit(
            f"if (base + {j}u < {1 << n}u) {{",
            f"  fast[base + {j}u] = (uint16_t){read_bits('fast_out', 16 * j, 16)};",
            f"  generic[base + {j}u] = (uint16_t){read_bits('slow_out', 16 * j, 16)};",
            "}",
        )
    body = "\n".join(ctx.lines)
    name = conversion_kernel_name(source, target, exponent)
    return f'extern "C" __global__ void {name}(uint16_t* fast, uint16_t* generic) {{\n{body}\n}}\n'


def conversion_test_module(pairs=None) -> tuple[str, list[str]]:
    """One translation unit holding the test kernel of every (source, target) pair; returns (source, names).

    By default: every 1–8-bit integer and float type to float16 and to bfloat16.
    """
    from anybit.cuda.prelude import PRELUDE

    if pairs is None:
        sources = [t for t in all_types() if t.nbits <= 8 and t.kind != "bool"]
        pairs = [(s, t) for s in sources for t in (float16, bfloat16)]
    kernels = [conversion_test_kernel(s, t) for s, t in pairs]
    return PRELUDE + "\n" + "\n".join(kernels), [conversion_kernel_name(s, t) for s, t in pairs]


def rebias_exponent(source: DataType, target: DataType) -> int:
    """The ``cast(..., exponent=)`` that cancels the bit-aligning float conversion's re-biasing multiply
    (2^(target bias − source bias)): with it the conversion is a shift and a ``lop3`` a pair."""
    target_bias = 15 if target is float16 else 127
    return source.exponent_bias - target_bias


def exponent_test_cases() -> list[tuple[DataType, DataType, int]]:
    """(source, target, exponent) conversions with an exact 2^exponent scaling, for the test kernels: every
    1–8-bit float type to float16 with the exponent that cancels its re-biasing; the suite's float types
    with that one plus one; float8 (native conversion, NaN/inf fix-ups) to both targets with −1; integer
    codes with a small exponent."""
    from anybit.dtypes import scaling_is_exact

    def named(name: str) -> DataType:
        return next(t for t in all_types() if t.name == name)

    floats = [t for t in all_types() if t.is_float and t.nbits <= 8]
    cases = [(source, float16, rebias_exponent(source, float16)) for source in floats]
    for name in ("float4_e2m1", "float5_e2m2", "float6_e3m2", "float6_e2m3"):
        cases.append((named(name), float16, rebias_exponent(named(name), float16) + 1))
    for name in ("float8_e4m3", "float8_e5m2", "float6_e3m2"):
        cases += [(named(name), target, -1) for target in (float16, bfloat16)]
    for name in ("uint2", "int3", "uint4", "int8"):
        cases += [(named(name), float16, -2), (named(name), bfloat16, 1)]
    return [case for case in cases if case[2] and scaling_is_exact(*case)]


def conversion_test_modules() -> list[tuple[DataType, str, list[str]]]:
    """One small translation unit per 1–8-bit source type (its kernels to float16 and to bfloat16).

    Returns ``(source type, CUDA source, kernel names)`` per type. Small units compile in a fraction of a
    second each and in parallel, where the single unit of all 86 kernels took NVRTC 13.0 over 45 s.
    """
    sources = [t for t in all_types() if t.nbits <= 8 and t.kind != "bool"]
    return [(s, *conversion_test_module([(s, float16), (s, bfloat16)])) for s in sources]
