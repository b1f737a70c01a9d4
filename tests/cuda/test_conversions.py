"""Fast in-register conversions: every 1–8-bit type to float16 and bfloat16, compiled and (GPU) exhaustive."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from cuda_support import requires_gpu, requires_nvrtc

import anybit
from anybit import dtypes as dt
from anybit.cuda.conversions import (
    aligned_float_constants,
    byte_field_word,
    byte_field_words,
    byte_pair_constants,
    conversion_kernel_name,
    conversion_test_kernel,
    conversion_test_modules,
    exponent_test_cases,
    half_word_pair_constants,
    has_fast_path,
    integer_pair_constants,
    nan_fixup_constants,
    rebias_exponent,
)

SOURCES = [t for t in dt.all_types() if t.nbits <= 8 and t.kind != "bool"]
TARGETS = [dt.float16, dt.bfloat16]


def test_fast_path_coverage() -> None:
    missing = [(s.name, t.name) for s in SOURCES for t in TARGETS if not has_fast_path(s, t)]
    # X > 5 overflows f16's exponent; X = 5 without inf/NaN would hit f16's inf/NaN codes: generic path
    assert sorted(name for name, _ in missing) == [
        "float6_e5m0",
        "float7_e5m1",
        "float7_e6m0",
        "float8_e6m1",
        "float8_e7m0",
    ], missing
    assert all(target == "float16" for _, target in missing)


def _halves(words: np.ndarray, target) -> np.ndarray:
    """The two 16-bit halves of uint32 ``words`` as float64 values of ``target`` ([..., 2])."""
    halves = np.stack([words & 0xFFFF, words >> 16], axis=-1).astype(np.uint32)
    if target is dt.float16:
        return halves.astype(np.uint16).view(np.float16).astype(np.float64)
    return (halves << 16).view(np.float32).astype(np.float64)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
@pytest.mark.parametrize("source", [t for t in SOURCES if t.kind in ("int", "uint") and t.nbits < 8])
def test_byte_pair_formula_every_code(source, target) -> None:
    """The prmt/lop3/sub sequence of ``byte_pair_constants``, emulated bit for bit over every code pair at
    every bit offset it accepts (f16/bf16 subtraction of two values rounds once, as numpy's does); signed
    codes flip their sign bits inside the same lop3 that sets the magic exponent."""
    n = source.nbits
    codes = np.arange(1 << n, dtype=np.uint32)
    lo, hi = (c.reshape(-1) for c in np.meshgrid(codes, codes, indexing="ij"))
    expected = np.stack([dt.decode(lo.astype(np.uint8), source), dt.decode(hi.astype(np.uint8), source)], -1)
    accepted = 0
    for lo_bit in range(0, 32 - 2 * n + 1, n):
        constants = byte_pair_constants(source, lo_bit, target)
        if constants is None:
            continue
        accepted += 1
        selector, mask, bits, subtrahend = constants
        word = (lo << lo_bit) | (hi << (lo_bit + n)) | np.uint32(0xA5A5A5A5 & ~(((1 << 2 * n) - 1) << lo_bit))
        source_bytes = [(word >> (8 * b)) & 0xFF for b in range(4)] + [np.zeros_like(word)] * 4
        y = sum((source_bytes[(selector >> (4 * r)) & 7] << (8 * r)) for r in range(4))
        q = (y & np.uint32(mask)) ^ np.uint32(bits)
        got = _halves(q, target) - _halves(np.uint32(subtrahend), target)
        np.testing.assert_array_equal(got, expected, err_msg=f"{source.name} at bit {lo_bit}")
    assert accepted > 0 or n in (3, 5, 6, 7) or target is dt.bfloat16 and n == 4


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
@pytest.mark.parametrize("source", [t for t in SOURCES if t.kind in ("int", "uint") and t.nbits < 8])
def test_integer_pair_formula_every_code(source, target) -> None:
    """``(x & mask) ^ bits`` then the subtraction, over every code pair with junk around the code fields."""
    n = source.nbits
    codes = np.arange(1 << n, dtype=np.uint32)
    lo, hi = (c.reshape(-1) for c in np.meshgrid(codes, codes, indexing="ij"))
    expected = np.stack([dt.decode(lo.astype(np.uint8), source), dt.decode(hi.astype(np.uint8), source)], -1)
    mask, bits, subtrahend = integer_pair_constants(source, target)
    x = lo | (hi << 16) | np.uint32(0x5A5A5A5A & ~mask)
    q = (x & np.uint32(mask)) ^ np.uint32(bits)
    got = _halves(q, target) - _halves(np.uint32(subtrahend), target)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
@pytest.mark.parametrize("source", [t for t in SOURCES if t.kind in ("int", "uint") and t.nbits < 8])
def test_half_word_pair_formula_every_code(source, target) -> None:
    """Pair-interleaved codes (16 bits apart): ``((word >> shift) & mask) ^ bits`` then the subtraction, at
    every offset below 16, over every code pair, with other codes' bits around them."""
    n = source.nbits
    codes = np.arange(1 << n, dtype=np.uint32)
    lo, hi = (c.reshape(-1) for c in np.meshgrid(codes, codes, indexing="ij"))
    expected = np.stack([dt.decode(lo.astype(np.uint8), source), dt.decode(hi.astype(np.uint8), source)], -1)
    for lo_bit in range(0, 16 - n + 1):
        constants = half_word_pair_constants(source, lo_bit, target)
        assert constants is not None
        shift, mask, bits, subtrahend = constants
        fields = ((1 << n) - 1) << lo_bit | ((1 << n) - 1) << (lo_bit + 16)
        word = (lo << lo_bit) | (hi << (lo_bit + 16)) | np.uint32(0xC3A5965A & ~fields)
        q = ((word >> np.uint32(shift)) & np.uint32(mask)) ^ np.uint32(bits)
        got = _halves(q, target) - _halves(np.uint32(subtrahend), target)
        np.testing.assert_array_equal(got, expected, err_msg=f"{source.name} at bit {lo_bit}")


def _shifted(words: np.ndarray, distance: int) -> np.ndarray:
    return (words << distance if distance >= 0 else words >> -distance) & 0xFFFFFFFF


def _times_power_of_two(words: np.ndarray, scale: int, target) -> np.ndarray:
    """Both halves of ``words`` (target bits) multiplied by 2^scale, rounded as f16x2/bf16x2 arithmetic."""
    halves = np.stack([words & 0xFFFF, words >> 16], axis=-1).astype(np.uint32)
    if target is dt.float16:
        scaled = (halves.astype(np.uint16).view(np.float16) * np.float16(2.0**scale)).view(np.uint16)
    else:  # bf16 has f32's exponent range: the product of a power of two is exact
        scaled = ((halves << 16).view(np.float32) * np.float32(2.0**scale)).view(np.uint32) >> 16
    scaled = scaled.astype(np.uint32)
    return scaled[..., 0] | (scaled[..., 1] << 16)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
@pytest.mark.parametrize("source", [t for t in SOURCES if t.is_float and t.nbits in (2, 4)])
def test_interleaved_float_pair_formula_every_code(source, target) -> None:
    """Pair-interleaved float codes (16 bits apart in one word, other codes around them): the magnitude and
    the sign bits shifted straight from the stored word, one lop3, the re-biasing multiply — emulated bit for
    bit over every code pair at every offset of a half word."""
    if not has_fast_path(source, target):
        pytest.skip("no fast path")
    n = source.nbits
    shift, magnitudes, scale = aligned_float_constants(source, target)
    codes = np.arange(1 << n, dtype=np.uint32)
    lo, hi = (c.reshape(-1) for c in np.meshgrid(codes, codes, indexing="ij"))
    expected = np.stack([dt.decode(lo.astype(np.uint8), source), dt.decode(hi.astype(np.uint8), source)], -1)
    rng = np.random.default_rng()
    for s0 in range(0, 16, n):
        noise = rng.integers(0, 1 << 32, size=lo.shape, dtype=np.uint64).astype(np.uint32)
        field = ((1 << n) - 1) * ((1 << s0) | (1 << (s0 + 16)))
        words = (noise & ~np.uint32(field)) | (lo << s0) | (hi << (s0 + 16))
        q = (_shifted(words, shift - s0) & magnitudes) | (_shifted(words, 16 - n - s0) & 0x80008000)
        if scale:
            q = _times_power_of_two(q, scale, target)
        got = _halves(q, target)
        np.testing.assert_array_equal(got, expected, err_msg=f"{source.name} → {target.name} at bit {s0}")


def _lop3(lut: int, a, b, c) -> np.ndarray:
    """PTX ``lop3.b32``: bit j of the result is bit (a_j·4 + b_j·2 + c_j) of ``lut`` (so a=0xF0, b=0xCC,
    c=0xAA give ``lut`` itself)."""
    a, b, c = (np.asarray(v, dtype=np.uint32) for v in (a, b, c))
    out = np.zeros(np.broadcast(a, b, c).shape, dtype=np.uint32)
    for i in range(8):
        if lut >> i & 1:
            out |= (a if i & 4 else ~a) & (b if i & 2 else ~b) & (c if i & 1 else ~c)
    return out


def _evaluate_c(line: str, words: np.ndarray) -> np.ndarray:
    """The value a generated ``uint32_t q_ = <expression>;`` line assigns, for ``w[0]`` = each of ``words``:
    the C expression (``ab_lop3<LUT>(...)``, shifts, ``&``, ``u``-suffixed hex constants) read as Python."""
    import re

    expression = line.split("=", 1)[1].strip().rstrip(";")
    expression = re.sub(r"ab_lop3<(0x[0-9a-f]+)>\(", r"_lop3(\1, ", expression)
    expression = re.sub(r"\b(0x[0-9a-f]+|[0-9]+)u\b", r"np.uint32(\1)", expression)
    expression = expression.replace("w[0]", "w")
    with np.errstate(over="ignore"):
        return np.asarray(eval(expression, {"np": np, "_lop3": _lop3, "w": words}), dtype=np.uint32)  # noqa: S307


@pytest.mark.parametrize("source", [dt.float4_e2m1, dt.float4_e1m2], ids=lambda t: t.name)
def test_nibble_float_pair_generated_code_every_code(source) -> None:
    """4-bit float codes pair-interleaved to float16 a byte at a time (``_nibble_float_pair``): the generated
    line itself, evaluated over every code pair at each of the four offsets with random codes around them,
    gives each code's value times 2^(bias − 15) (the decode kernel's cast), bit for bit."""
    from anybit.cuda.conversions import _float_pair, nibble_float_byte

    assert nibble_float_byte(source) is not None and nibble_float_byte(dt.float4_e3m0) is None
    scale = aligned_float_constants(source, dt.float16)[2]
    codes = np.arange(16, dtype=np.uint32)
    lo, hi = (c.reshape(-1) for c in np.meshgrid(codes, codes, indexing="ij"))
    expected = _expected_scaled_bits(source, dt.float16, -scale).astype(np.uint32)
    rng = np.random.default_rng()
    for s0 in (0, 4, 8, 12):
        lines = _float_pair("w", source, dt.float16, s0, s0 + 16, -scale)
        assert len(lines) == 1 and ("0xf0f0f0f0u" in lines[0] or "0x0f0f0f0fu" in lines[0]), lines
        noise = rng.integers(0, 1 << 32, size=lo.shape, dtype=np.uint64).astype(np.uint32)
        field = np.uint32(0xF * ((1 << s0) | (1 << (s0 + 16))))
        words = (noise & ~field) | (lo << s0) | (hi << (s0 + 16))
        q = _evaluate_c(lines[0], words)
        np.testing.assert_array_equal(q & 0xFFFF, expected[lo], err_msg=f"{source.name} low half at bit {s0}")
        np.testing.assert_array_equal(q >> 16, expected[hi], err_msg=f"{source.name} high half at bit {s0}")
    # bfloat16 and codes that are not 16 bits apart keep the other routes.
    assert "0xf0f0f0f0u" not in "".join(_float_pair("w", source, dt.bfloat16, 4, 20, 0))
    assert "0xf0f0f0f0u" not in "".join(_float_pair("w", source, dt.float16, 4, 8, -scale))


def _prmt(a: np.ndarray, b: int, selector: int) -> np.ndarray:
    """PTX ``prmt.b32`` (default mode, no sign replication): byte i of the result is byte ``selector`` nibble
    i of the eight bytes {b, a} (a's bytes 0–3, b's 4–7)."""
    pool = a.astype(np.uint64) | (np.uint64(b) << np.uint64(32))
    out = np.zeros_like(a, dtype=np.uint32)
    for i in range(4):
        index = (selector >> (4 * i)) & 0x7
        out |= ((pool >> np.uint64(8 * index)) & np.uint64(0xFF)).astype(np.uint32) << (8 * i)
    return out


def test_signed_byte_pairs_flip_the_word_once() -> None:
    """int8 → float16: the word's four sign bits flipped by one XOR, then one prmt per pair under the magic
    byte 0x64 and the subtraction of 1024 + 128 — emulated over every code pair at both byte offsets."""
    from anybit.cuda.conversions import integer_pair

    codes = np.arange(256, dtype=np.uint32)
    lo, hi = (c.reshape(-1) for c in np.meshgrid(codes, codes, indexing="ij"))
    expected = np.stack(
        [dt.decode(lo.astype(np.uint8), dt.int8), dt.decode(hi.astype(np.uint8), dt.int8)], -1
    )
    for lo_bit in (0, 16):
        selector = (lo_bit // 8) | (4 << 4) | ((lo_bit // 8 + 1) << 8) | (4 << 12)
        lines, subtrahend = integer_pair("w", dt.int8, dt.float16, lo_bit, lo_bit + 8)
        assert lines == [f"uint32_t q_ = ab_prmt((w[0] ^ 0x80808080u), 0x64u, {hex(selector)}u);"]
        other = (lo_bit + 16) % 32  # the word's other pair: its sign bits flip too, its bytes are not read
        words = (lo << lo_bit) | (hi << (lo_bit + 8)) | (np.uint32(0xA5C3) << other)
        q = _prmt(words ^ np.uint32(0x80808080), 0x64, selector)
        halves = np.stack([q & 0xFFFF, q >> 16], -1).astype(np.uint16).view(np.float16)
        minuend = np.array([subtrahend & 0xFFFF], dtype=np.uint16).view(np.float16)[0]
        np.testing.assert_array_equal((halves - minuend).astype(np.float64), expected)


def _bf16_rn(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (nearest even) as float64, as ``cvt.rn.bf16x2.f32`` does."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return (rounded.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


@pytest.mark.parametrize("zeros", [False, True], ids=["plain", "zero-points"])
@pytest.mark.parametrize("source", [dt.uint8, dt.int8], ids=lambda t: t.name)
def test_byte_f32_pair_formula_every_code(source, zeros) -> None:
    """8-bit codes → bfloat16: ``prmt`` under the f32 exponent of 2^23, the f32 subtraction of 2^23 (+ 128
    for signed codes, + the zero point widened from its bf16 word) and ``cvt.rn.bf16x2.f32``, emulated over
    every code pair at every byte offset, with random integer zero points: ``code − zero`` rounded once
    (exact for uint8, |code − zero| ≤ 255; signed codes with zero points can need 9 bits)."""
    from anybit.cuda.conversions import byte_f32_pair

    rng = np.random.default_rng()
    codes = np.arange(256, dtype=np.uint32)
    lo, hi = (c.reshape(-1) for c in np.meshgrid(codes, codes, indexing="ij"))
    zero_lo, zero_hi = (rng.integers(0, 256, lo.size) if zeros else np.zeros(lo.size, int) for _ in "lh")
    zero_word = (zero_lo.astype(np.float32).view(np.uint32) >> 16) | (
        zero_hi.astype(np.float32).view(np.uint32) & 0xFFFF0000
    )
    expected = np.stack(
        [
            dt.decode(lo.astype(np.uint8), source) - zero_lo,
            dt.decode(hi.astype(np.uint8), source) - zero_hi,
        ],
        -1,
    )
    signed = source.kind == "int"
    for lo_bit, hi_bit in ((0, 8), (16, 24), (8, 40), (24, 48)):
        lines = byte_f32_pair("w", source, lo_bit, hi_bit, "z" if zeros else None)
        assert lines[-1] == "uint32_t q_ = ab_f32x2_to_bf16x2(lo_, hi_);" and len(lines) == 3
        words = np.zeros((lo.size, 2), dtype=np.uint32)
        for bit, code in ((lo_bit, lo), (hi_bit, hi)):
            words[:, bit // 32] |= code << (bit % 32)
        halves = []
        for bit, zero in ((lo_bit, zero_word << 16), (hi_bit, zero_word & 0xFFFF0000)):
            word = words[:, bit // 32] ^ (np.uint32(0x80808080) if signed else np.uint32(0))
            assert (f"(w[{bit // 32}] ^ 0x80808080u)" in lines[len(halves)]) == signed
            selector = (bit % 32) // 8 | (4 << 4) | (4 << 8) | (7 << 12)
            assert f"{hex(selector)}u" in lines[len(halves)]
            magic = _prmt(word, 0x4B000000, selector).view(np.float32)
            subtrahend = np.float32(2**23 + (128 if signed else 0)) + zero.astype(np.uint32).view(np.float32)
            halves.append(_bf16_rn(magic - subtrahend))
        np.testing.assert_array_equal(np.stack(halves, -1), _bf16_rn(expected))
    assert byte_f32_pair("w", source, 4, 12) is None and byte_f32_pair("w", dt.int4, 0, 8) is None


def test_nan_fixup_formula_every_code() -> None:
    """float8_e4m3 → f16: the bit-aligning conversion, then ``q ^ ((|q| == pseudo) & flip)``, emulated over
    every code: finite codes keep their value, NaN codes become the canonical NaN with their sign."""
    source = dt.float8_e4m3
    pseudo, flip = nan_fixup_constants(source)
    codes = np.arange(256, dtype=np.uint32)
    magnitude = (codes & 0x7F) << (10 - source.mantissa_bits)
    aligned = (magnitude | ((codes >> 7) << 15)).astype(np.uint16).view(np.float16)
    q = (aligned * np.float16(2.0 ** (15 - source.exponent_bias))).view(np.uint16).astype(np.uint32)
    mask = np.where((q & 0x7FFF) == pseudo, 0xFFFF, 0)
    fixed = (q ^ (mask & flip)).astype(np.uint16)
    expected = dt.decode(codes.astype(np.uint8), source).astype(np.float16)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(fixed[finite].view(np.float16), expected[finite])
    assert (fixed[~finite] == ((codes[~finite] >> 7) << 15 | 0x7E00)).all() and (~finite).sum() == 2
    assert nan_fixup_constants(dt.float8_e5m2) is None and nan_fixup_constants(dt.float6_e3m2) is None


def _compile_all(arch: str) -> dict:
    """Every per-type conversion module compiled for ``arch``, in a thread pool (NVRTC releases the GIL)."""
    from anybit.runtime.nvrtc import compile_cubin

    modules = conversion_test_modules()

    def build(module):
        source_type, source, names = module
        return source_type, source, names, compile_cubin(source, names[0], arch)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return {m[0]: m[1:] for m in pool.map(build, modules)}


@requires_nvrtc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_every_conversion_compiles(arch: str) -> None:
    built = _compile_all(arch)
    assert sorted(t.name for t in built) == sorted(s.name for s in SOURCES)
    ptx = ""
    for source_type, (_, names, result) in built.items():
        for name in names:
            assert f".entry {name}(" in result.ptx, name
        assert not result.resources.spills, (source_type.name, result.resources)
        ptx += result.ptx
    assert "prmt.b32" in ptx and "lop3.b32" in ptx
    assert "sub.f16x2" in ptx and "fma.rn.bf16x2" in ptx and "mul.f16x2" in ptx
    # sm_89+: float8_e4m3/e5m2 → f16 pairs in one instruction each; sm_80 keeps the bit-aligning path.
    native = "cvt.rn.f16x2.e4m3x2" in ptx and "cvt.rn.f16x2.e5m2x2" in ptx
    assert native == (arch == "sm_90a")
    # 8-bit integer codes to bf16 through f32 (prmt under 2^23): both architectures
    assert "cvt.rn.bf16x2.f32" in ptx


def _expected_bits(source, target) -> np.ndarray:
    values = dt.decode(np.arange(1 << source.nbits), source)
    return dt.encode(values, target).astype(np.uint16)


def _same(got: np.ndarray, expected: np.ndarray, target) -> np.ndarray:
    got_values = dt.decode(got, target)
    want_values = dt.decode(expected, target)
    nan = np.isnan(want_values)
    return np.where(nan, np.isnan(got_values), got == expected)


def _test_kernel(source: str, name: str):
    from anybit.cuda.kernel_source import CudaKernelSource, KernelParam

    return CudaKernelSource(
        name=name,
        source=source,
        params=(KernelParam("fast", "pointer", dt.int16), KernelParam("generic", "pointer", dt.int16)),
        grid=(1, 1, 1),
        block_threads=32,
        dynamic_shared_bytes=0,
        workspace_bytes=0,
        workspace_clean=False,
        alignment_requirements=(),
    )


@pytest.mark.gpu
@requires_gpu
def test_every_code_converts_bit_for_bit() -> None:
    """Every code of every 1–8-bit type, fast and generic path, against ``anybit.dtypes.decode``."""

    from anybit.runtime import compile_source
    from anybit.runtime.device import default_arch

    arch = default_arch()
    cases = [
        (source_type, target, _test_kernel(source, name))
        for source_type, source, names in conversion_test_modules()
        for target, name in zip(TARGETS, names, strict=True)
    ]
    assert [c[2].name for c in cases] == [conversion_kernel_name(s, t) for s, t, _ in cases]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        compiled = list(pool.map(lambda case: compile_source(case[2], arch=arch), cases))
    failures = []
    for (source_type, target, _), kernel in zip(cases, compiled, strict=True):
        expected = _expected_bits(source_type, target)
        failures += _wrong_codes(kernel, source_type, target, expected, f"{source_type.name}->{target.name}")
    assert len(cases) == 2 * len(SOURCES)
    assert not failures, "\n".join(failures)


# -- cast(..., exponent=): the value times 2^exponent ----------------------------------------------------
def _expected_scaled_bits(source, target, exponent: int) -> np.ndarray:
    values = dt.decode(np.arange(1 << source.nbits), source) * 2.0**exponent
    return dt.encode(values, target).astype(np.uint16)


@pytest.mark.parametrize(
    "source", [t for t in SOURCES if t.is_float and has_fast_path(t, dt.float16)], ids=lambda t: t.name
)
def test_aligned_bits_are_the_value_times_the_rebias(source) -> None:
    """Without its re-biasing multiply, the bit-aligning conversion leaves value · 2^(source bias − 15) as
    f16 bits for every code (subnormals included) but the NaN/inf codes: what ``cast(exponent=)`` with the
    cancelling exponent returns, so that conversion is a shift and a lop3 a pair."""
    n = source.nbits
    shift, magnitudes, _ = aligned_float_constants(source, dt.float16)
    codes = np.arange(1 << n, dtype=np.uint32)
    q = ((codes << shift) & (magnitudes & 0xFFFF)) | (((codes >> (n - 1)) & 1) << 15)
    got = q.astype(np.uint16).view(np.float16).astype(np.float64)
    expected = dt.decode(codes.astype(np.uint8), source) * 2.0 ** rebias_exponent(source, dt.float16)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[finite], expected[finite])


def test_the_cancelling_exponent_drops_the_multiply() -> None:
    """float4/5/6 → f16 with the cancelling exponent: no f16x2 multiply at all; one exponent off: one."""
    for name in ("float4_e2m1", "float5_e2m2", "float6_e3m2", "float6_e2m3"):
        source = dt.dtype(name)
        cancel = rebias_exponent(source, dt.float16)
        assert "ab_mul_f16x2(q_" not in conversion_test_kernel(source, dt.float16, exponent=cancel), name
        assert "ab_mul_f16x2(q_" in conversion_test_kernel(source, dt.float16, exponent=cancel + 1), name
        assert "ab_mul_f16x2(q_" in conversion_test_kernel(source, dt.float16), name


def _exponent_modules() -> list[tuple[tuple, str, str]]:
    """One small translation unit per exponent case: ((source, target, exponent), CUDA source, name)."""
    from anybit.cuda.prelude import PRELUDE

    return [
        (
            (s, t, e),
            PRELUDE + "\n" + conversion_test_kernel(s, t, exponent=e),
            conversion_kernel_name(s, t, e),
        )
        for s, t, e in exponent_test_cases()
    ]


@requires_nvrtc
def test_exponent_casts_compile() -> None:
    from anybit.runtime.nvrtc import compile_cubin

    modules = _exponent_modules()
    assert len({name for _, _, name in modules}) == len(modules) >= 30
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda module: compile_cubin(module[1], module[2], "sm_90a"), modules))
    for (_, _, name), result in zip(modules, results, strict=True):
        assert f".entry {name}(" in result.ptx and not result.resources.spills, name


@pytest.mark.gpu
@requires_gpu
def test_exponent_casts_bit_for_bit() -> None:
    """Every code of each exponent case, fast and generic path, against decode(code) · 2^exponent."""

    from anybit.runtime import compile_source
    from anybit.runtime.device import default_arch

    modules = _exponent_modules()
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        compiled = list(
            pool.map(
                lambda module: compile_source(_test_kernel(module[1], module[2]), arch=default_arch()),
                modules,
            )
        )
    failures = []
    for ((source_type, target, exponent), _, name), kernel in zip(modules, compiled, strict=True):
        expected = _expected_scaled_bits(source_type, target, exponent)
        failures += _wrong_codes(kernel, source_type, target, expected, name)
    assert not failures, "\n".join(failures)


def _wrong_codes(kernel, source_type, target, expected: np.ndarray, name: str) -> list[str]:
    """Run a conversion test kernel over every code (outputs poisoned first); what its fast and generic
    paths got wrong against the ``expected`` bits."""
    import torch

    fast = torch.full((1 << source_type.nbits,), -1, dtype=torch.int16, device="cuda")
    generic = torch.full_like(fast, -1)
    kernel(fast, generic)
    torch.cuda.synchronize()
    failures = []
    for label, got in (("fast", fast), ("generic", generic)):
        bits = got.cpu().numpy().view(np.uint16)
        ok = _same(bits, expected, target)
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            failures.append(
                f"{name} {label}: {int((~ok).sum())} codes wrong, first {bad:#x} gave "
                f"{int(bits[bad]):#06x}, expected {int(expected[bad]):#06x}"
            )
    return failures


@pytest.mark.parametrize("n", [1, 2, 4])
def test_byte_field_words_formula_every_code(n) -> None:
    """Unsigned n-bit codes to int8 times 2^e, four a word (:func:`byte_field_word`): the emitted shift and
    mask evaluated on words holding every code at every place of each byte, other codes' bits around them,
    against code · 2^e."""
    source = anybit.dtype(f"uint{n}")
    rng = np.random.default_rng()
    for exponent in range(0, 8 - n):
        for base in range(0, 9 - n):
            codes = rng.integers(0, 1 << n, size=(256, 4), dtype=np.uint32)
            codes[: 1 << n, :] = np.arange(1 << n, dtype=np.uint32)[:, None]  # every code in every byte
            field = (1 << n) - 1
            words = rng.integers(0, 1 << 32, size=256, dtype=np.uint64).astype(np.uint32)
            for j in range(4):
                words &= np.uint32(~(field << (base + 8 * j)) & 0xFFFFFFFF)
                words |= codes[:, j] << np.uint32(base + 8 * j)
            # the codes of output word 0 are source locals base/n + 8j/n of word 0 (in n-bit slots)
            order = [(base + 8 * j) // n for j in range(4)] if base % n == 0 else None
            if order is None:
                continue
            assert byte_field_words(order, source, dt.int8, exponent, 4)
            expression = byte_field_word("src", order, source, exponent, 0)
            src = [words.astype(np.uint64)]
            got = eval(re.sub(r"(0x[0-9a-f]+)u", r"\1", expression), {"src": src}) & 0xFFFFFFFF
            got_bytes = np.stack([(got >> np.uint64(8 * j)) & np.uint64(0xFF) for j in range(4)], -1)
            np.testing.assert_array_equal(got_bytes, codes.astype(np.uint64) << np.uint64(exponent))


def test_byte_field_words_refuses_what_it_cannot_do() -> None:
    """Only unsigned codes of at most 4 bits to int8, values below 128, four codes of one word 8 bits
    apart a word."""
    uint1, uint2 = anybit.dtype("uint1"), anybit.dtype("uint2")
    assert byte_field_words([0, 8, 16, 24], uint1, dt.int8, 6, 4)
    assert not byte_field_words([0, 8, 16, 24], uint1, dt.int8, 7, 4)  # 128 is not an int8
    assert not byte_field_words([0, 8, 16, 24], uint1, dt.uint8, 6, 4)
    assert not byte_field_words([0, 1, 2, 3], uint1, dt.int8, 6, 4)  # adjacent codes
    assert not byte_field_words([0, 8, 16, 32], uint1, dt.int8, 6, 4)  # two words
    assert not byte_field_words([0, 1, 2, 3], uint2, dt.int8, 5, 4)  # adjacent codes of one byte
    assert not byte_field_words([0, 4, 8, 12], uint2, dt.int8, 6, 4)  # 3 · 64 is not an int8
    assert byte_field_words([3, 7, 11, 15], uint2, dt.int8, 5, 4)  # bits 6, 14, 22, 30
