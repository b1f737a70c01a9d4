"""Casts of codes stored as two bit planes (``cast(low, dtype, high=..., code_dtype=...)``): the interpreter
against numpy, the bit-gathering pair conversion modelled bit by bit against the dtype's own decoding, the
generated CUDA compiled for sm_90a, and clear errors for misuse. (The same programs run on the GPU against
the interpreter in test_gpu_programs.)"""

from __future__ import annotations

import numpy as np
import pytest
from cuda_programs import PLANE_WIDTHS, planar_dequant, plane_layouts

import anybit
from anybit import dtypes as dt
from anybit.cuda import conversions
from anybit.dtypes import decode
from anybit.interp import interpret
from anybit.kernels.packing import pack_codes_numpy, spread_word_bits

PLANAR_TYPES = [
    dt.uint3,
    dt.int3,
    dt.uint5,
    dt.int5,
    dt.uint6,
    dt.int6,
    dt.float3_e1m1,
    dt.float5_e2m2,
    dt.float5_e3m1,
    dt.float6_e3m2,
    dt.float6_e2m3,
]


def _planes_bytes(codes: np.ndarray, dtype, operand: str, stride: int = 1) -> list[np.ndarray]:
    """Each plane of [16, 64] ``codes`` packed with its plane layout, as one warp tile's bytes (the top
    plane's words spread by ``stride``: the numpy reference of ``PackedLayout.top_plane_stride``)."""
    out, first = [], 0
    planes = plane_layouts(dtype, operand)
    for index, plane in enumerate(planes):
        part = (codes >> first) & ((1 << plane.nbits) - 1)
        packed = pack_codes_numpy(part.astype(np.uint8), plane).reshape(-1)
        if index == len(planes) - 1 and stride > 1:
            packed = spread_word_bits(packed.view("<u4"), stride).astype("<u4").view(np.uint8)
        out.append(packed)
        first += plane.nbits
    return out


@pytest.mark.parametrize("operand", ["a", "b"])
@pytest.mark.parametrize("target", [dt.float16, dt.bfloat16], ids=lambda t: t.name)
@pytest.mark.parametrize("dtype", PLANAR_TYPES, ids=lambda t: t.name)
def test_interpreter_casts_the_reassembled_codes(dtype, target, operand) -> None:
    rng = np.random.default_rng()
    codes = rng.integers(0, 1 << dtype.nbits, size=(16, 64), dtype=np.uint8)
    program = planar_dequant(dtype, target, operand)
    planes = _planes_bytes(codes, dtype, operand)
    out = np.full((64, 16), 0xFFFF, dtype=np.uint16)  # poisoned: NaN in both f16 and bf16
    interpret(program, *planes, out)
    got = decode(out, target).astype(np.float64)
    expected = decode(codes, dtype).astype(np.float64).T  # the tile is W^T [K, N]
    np.testing.assert_array_equal(got, expected)


#: (type, activation, top-plane stride): the spread the packing picks (float6_e2m3 → float16, float6_e4m1 →
#: float16, float6_e1m4 → bfloat16), and spreads no conversion asks for (the gather takes any).
SPREAD_CASES = [
    (dt.float6_e2m3, dt.float16, 4),
    (dt.float6_e4m1, dt.float16, 2),
    (dt.float6_e1m4, dt.bfloat16, 8),
    (dt.int6, dt.float16, 2),
    (dt.uint6, dt.bfloat16, 8),
    (dt.float6_e3m2, dt.float16, 4),
]


@pytest.mark.parametrize("operand", ["a", "b"])
@pytest.mark.parametrize(("dtype", "target", "stride"), SPREAD_CASES, ids=lambda v: getattr(v, "name", v))
def test_interpreter_casts_codes_whose_top_bits_are_spread(dtype, target, stride, operand) -> None:
    """The top plane as uint1 [..., 2] in the spread layout: the same values as the codes, every code."""
    rng = np.random.default_rng()
    codes = rng.integers(0, 1 << dtype.nbits, size=(16, 64), dtype=np.uint8)
    out = np.full((64, 16), 0xFFFF, dtype=np.uint16)  # poisoned: NaN in both f16 and bf16
    planes = _planes_bytes(codes, dtype, operand, stride)
    interpret(planar_dequant(dtype, target, operand, stride), *planes, out)
    expected = decode(codes, dtype).astype(np.float64).T
    np.testing.assert_array_equal(decode(out, target).astype(np.float64), expected)


def test_spread_top_plane_gathers_a_pair_with_one_lop3_less() -> None:
    """float6_e2m3 into float16 with the sign and top exponent bit 4 apart: two ``lop3`` a pair (the low
    plane's and the top plane's), where the plain top plane takes three; the CUDA compiles for sm_90a."""
    from anybit.cuda import generate_cuda
    from anybit.runtime.nvrtc import compile_cubin

    counts = {}
    for stride in (1, 4):
        kernel = generate_cuda(planar_dequant(dt.float6_e2m3, dt.float16, stride=stride), arch="sm_90a")
        counts[stride] = kernel.source.split("__global__", 1)[1].count("ab_lop3<")
        compile_cubin(kernel.source, kernel.name, "sm_90a")
    pairs = 64 * 16 // 32 // 2
    assert counts == {1: 3 * pairs, 4: 2 * pairs}


def _rotl(word: int, amount: int) -> int:
    return ((word << amount) | (word >> (32 - amount))) & 0xFFFFFFFF if amount else word


def _half_value(bits: int, target) -> float:
    return float(decode(np.array([bits], dtype=np.uint16), target)[0])


def _random_planes(dtype, interleaved: bool, count: int = 32):
    """(planes, their random words) of ``count`` elements a thread: one word of each plane holds a whole
    number of pairs; ``interleaved``: element 2p + e of a word's run at slot e · per_word/2 + p."""
    planes, words = [], {}
    for index, width in enumerate(PLANE_WIDTHS[dtype.nbits]):
        per_word = 32 // width
        if interleaved:
            half_word = per_word // 2
            order = [i - i % per_word + (i % 2) * half_word + (i % per_word) // 2 for i in range(count)]
        else:
            order = list(range(count))
        name = f"w{index}"
        planes.append((name, anybit.dtype(f"uint{width}"), order))
        words[name] = [int(w) for w in np.random.default_rng().integers(0, 2**32, size=count * width // 32)]
    return planes, words


def _assert_pair_holds_its_codes(dtype, target, planes, words, p, gather) -> None:
    """A pair's gather evaluated bit by bit: after the magic subtraction (integers) or the re-biasing power
    of two (floats) each half holds its code's value."""
    constant, subtrahend, groups = gather
    pair = constant
    for array, word, rotation, mask in groups:
        pair ^= _rotl(words[array][word], rotation) & mask
    for half in range(2):
        code, first = 0, 0
        for name, plane_dtype, order in planes:
            width = plane_dtype.nbits
            word, bit = divmod(order[2 * p + half] * width, 32)
            code |= ((words[name][word] >> bit) & ((1 << width) - 1)) << first
            first += width
        value = _half_value((pair >> (16 * half)) & 0xFFFF, target)
        if dtype.kind in ("int", "uint"):
            value -= _half_value((subtrahend >> (16 * half)) & 0xFFFF, target)
        else:
            value *= 2.0 ** conversions.aligned_float_constants(dtype, target)[2]
        assert value == float(decode(np.array([code], dtype=np.uint8), dtype)[0]), (p, half, code)


@pytest.mark.parametrize("choice", ["per-pair", "shared-subtrahends", "joint"])
@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("target", [dt.float16, dt.bfloat16], ids=lambda t: t.name)
@pytest.mark.parametrize("dtype", PLANAR_TYPES, ids=lambda t: t.name)
def test_pair_gather_places_every_code_bit(dtype, target, interleaved, choice) -> None:
    """The gathers' rotations and masks, evaluated bit by bit on random plane words: every pair holds the
    codes' values — with each pair's cheapest base (planar_groups), with bases steered towards subtrahends
    already used (as the zero-point fold does), and with the bases chosen together (choose_planar_gathers,
    zero pairs of three columns)."""
    if not conversions.planar_placements(dtype, target):
        pytest.skip(f"{dtype.name} → {target.name} has no bit-gathering form (generic path)")
    count = 32
    planes, words = _random_planes(dtype, interleaved, count)
    if choice == "joint":
        gathers = conversions.choose_planar_gathers(planes, dtype, target, count // 2, lambda p: f"z{p % 3}")
    else:
        used: set[int] = set()
        gathers = []
        for p in range(count // 2):
            cost = (lambda subtrahend: 0.0 if subtrahend in used else 1.0) if choice != "per-pair" else None
            gathers.append(conversions.planar_groups(planes, dtype, target, p, cost))
            used.add(gathers[-1][1])
    for p, gather in enumerate(gathers):
        _assert_pair_holds_its_codes(dtype, target, planes, words, p, gather)
        if interleaved:  # one group per integer plane; a float's top plane may take two
            assert len(gather[2]) <= len(PLANE_WIDTHS[dtype.nbits]) + (1 if dtype.is_float else 0)


@pytest.mark.parametrize("target", [dt.float16, dt.bfloat16], ids=lambda t: t.name)
@pytest.mark.parametrize("dtype", [dt.uint3, dt.int3, dt.uint5, dt.int6], ids=lambda t: t.name)
def test_joint_choice_shares_shifts_the_per_pair_choice_repeats(dtype, target) -> None:
    """Choosing the integers' bases together costs no more than pair by pair (shifted words counted once,
    each distinct subtrahend and zero pair once), and less for 3-bit codes; the same planes give the same
    choice every time (the search is seeded)."""
    planes, _ = _random_planes(dtype, True, 128)
    pairs, zero = 64, lambda p: f"z{p % 2}"

    def cost(gathers) -> float:
        shifts = {text: c for gather in gathers for text, c in conversions._shifts(gather)}
        folds = {(gather[1], zero(p)) for p, gather in enumerate(gathers)}
        return sum(shifts.values()) + conversions.ZERO_FOLD_COST * len(folds)

    used: set[tuple[int, str]] = set()
    per_pair = []
    for p in range(pairs):
        gather = conversions.planar_groups(
            planes, dtype, target, p, lambda subtrahend, p=p: float((subtrahend, zero(p)) not in used)
        )
        per_pair.append(gather)
        used.add((gather[1], zero(p)))
    joint = conversions.choose_planar_gathers(planes, dtype, target, pairs, zero)
    assert cost(joint) <= cost(per_pair)
    if dtype.nbits == 3:  # a 2-bit and a 1-bit plane: room to agree on rotations
        assert cost(joint) < cost(per_pair)
    conversions._joint_choice.cache_clear()
    assert conversions.choose_planar_gathers(planes, dtype, target, pairs, zero) == joint


def test_generated_cuda_gathers_with_lop3_and_compiles_for_sm90() -> None:
    from anybit.cuda import generate_cuda
    from anybit.runtime.nvrtc import compile_cubin

    for dtype, target in ((dt.int6, dt.float16), (dt.float6_e3m2, dt.bfloat16), (dt.uint3, dt.float16)):
        kernel = generate_cuda(planar_dequant(dtype, target), arch="sm_90a")
        body = kernel.source.split("__global__", 1)[1]
        assert "ab_lop3<0x6a>" in body and "ab_decode_float(" not in body
        compile_cubin(kernel.source, kernel.name, "sm_90a")


def test_misuse_is_refused_with_a_clear_error() -> None:
    layout = anybit.layout.spatial(32).local(4)

    class BadPlanes(anybit.Script):
        def __init__(self, high_dtype, code_dtype, bits: int = 0) -> None:
            super().__init__()
            self.high_dtype, self.code_dtype, self.bits = high_dtype, code_dtype, bits

        def __call__(self, out: anybit.ptr(anybit.float16)):
            self.attrs.blocks = 1
            self.attrs.warps = 1
            low = self.register_tensor(anybit.uint4, [128], layout=layout, init=1)
            if self.bits:  # a trailing axis of the high bits
                bits_layout = anybit.layout.spatial(32, 1).local(4, self.bits)
                high = self.register_tensor(self.high_dtype, [128, self.bits], layout=bits_layout, init=1)
            else:
                high = self.register_tensor(self.high_dtype, [128], layout=layout, init=1)
            self.cast(low, anybit.float16, high=high, code_dtype=self.code_dtype)

    with pytest.raises(Exception, match="sum to"):
        BadPlanes(anybit.uint2, anybit.uint5).program(None)
    with pytest.raises(Exception, match="unsigned integer type"):
        BadPlanes(anybit.int2, anybit.int6).program(None)
    with pytest.raises(Exception, match=r"sum to float6_e2m3's 6 bits"):
        BadPlanes(anybit.uint1, anybit.float6_e2m3, bits=3).program(None)
    with pytest.raises(Exception, match=r"or uint1 of that shape plus a trailing axis of the high bits"):
        BadPlanes(anybit.uint2, anybit.float6_e2m3, bits=2).program(None)
    BadPlanes(anybit.uint1, anybit.float6_e2m3, bits=2).program(None)  # the high bits as uint1 [128, 2]
