"""Packing: default layouts, VM program == numpy reference byte for byte, exact inverse, clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import anybit
from anybit.kernels import (
    PackedLayout,
    QuantizedWeight,
    choose_layout,
    default_bytes_per_thread,
    pack,
    pack_codes_numpy,
    unpack,
    unpack_codes_numpy,
)

from .helpers import WEIGHT_TYPES, WIDE_FLOAT, fresh_seed, random_quantized


@pytest.mark.parametrize(
    ("dtype", "n_per_warp", "bytes_per_thread"),
    [
        ("uint1", 64, 32),
        ("uint2", 64, 64),
        ("int3", 32, 48),
        ("int4", 32, 64),
        ("uint5", 16, 40),
        ("uint6", 16, 48),
        ("int8", 16, 64),
    ],
)
def test_default_layout_per_bit_width(dtype, n_per_warp, bytes_per_thread):
    layout = choose_layout(dtype, 4096, 4096, 128)
    assert (layout.k_chunk, layout.n_per_warp, layout.bytes_per_thread) == (128, n_per_warp, bytes_per_thread)
    assert layout.packed_shape == (4096 // 128, 4096 // n_per_warp, 32 * bytes_per_thread)
    assert layout.vector_bytes == (8 if bytes_per_thread == 40 else 16)


@pytest.mark.parametrize(
    ("dtype", "n", "k", "gated", "bytes_per_thread"),
    [
        ("int6", 57344, 8192, False, 96),  # Llama-3-70B gate_up: 2^27 weights and more take the wide tile
        ("uint5", 8192, 28672, False, 80),  # 70B down
        ("float6_e3m2", 8192, 16384, False, 96),  # exactly 2^27
        ("float5_e2m2", 8192, 8192, False, 40),  # 70B o: too few warp tiles to spread over the GPU
        ("float6_e2m3", 28672, 4096, False, 48),  # 8B gate_up, just under 2^27
        ("float4_e2m1", 57344, 8192, False, 64),  # 4-bit: measured slower wide
        ("int8", 57344, 8192, False, 128),
        ("float8_e5m2", 8192, 28672, False, 128),
        ("uint7", 57344, 8192, False, 56),  # 7-bit: not measured wide
        ("int4", 57344, 8192, False, 64),  # 3- and 4-bit: level or slower wide
        ("int6", 57344, 8192, True, 48),  # a gated pair: the fused MLP's block follows the tile
    ],
)
def test_default_width_is_wide_only_for_large_5_6_and_8_bit_weights(dtype, n, k, gated, bytes_per_thread):
    layout = choose_layout(dtype, n, k, 128, gated=gated)
    assert layout.bytes_per_thread == bytes_per_thread
    assert default_bytes_per_thread(dtype, n, k, gated=gated) == (128 if bytes_per_thread > 64 else 64)
    # Asking for a width still overrides the default.
    assert choose_layout(dtype, n, k, 128, gated=gated, max_bytes_per_thread=64).bytes_per_thread <= 64


def test_narrow_n_takes_narrower_warp_tiles():
    """The widest warp tile that divides N: uint2 takes 64 columns, else 32, 16 or 8."""
    assert [choose_layout("uint2", n, 256, 128).n_per_warp for n in (128, 96, 80, 72)] == [64, 32, 16, 8]


def test_k_chunk_follows_the_group_size():
    assert choose_layout("int4", 64, 512, 32).k_chunk == 32
    assert choose_layout("int4", 64, 512, 32).n_per_warp == 64  # NT = 8: 32 bytes per thread
    assert choose_layout("int4", 64, 512, 256).k_chunk == 128
    per_channel = choose_layout("int4", 64, 512, -1)
    assert per_channel.k_chunk == 128 and per_channel.per_channel and per_channel.group_size == 512


def test_layout_byte_map_is_the_register_bits():
    """The byte layout holds exactly the bits the tile layout holds, thread by thread."""
    layout = choose_layout("int3", 16, 128, 128)
    assert layout.byte_layout.num_threads == layout.tile_layout.num_threads == 32
    assert layout.byte_layout.local_size * 8 == layout.tile_layout.local_size * 3


# Weights the interpreter runs (natural codes → VM program), every type of the brief plus the wide float.
VM_CASES = [
    (dtype, 32 if i % 2 else 64, "bfloat16" if dtype == WIDE_FLOAT else "float16")
    for i, dtype in enumerate([*WEIGHT_TYPES, WIDE_FLOAT])
]


@pytest.mark.parametrize(("dtype", "group_size", "act"), VM_CASES)
def test_vm_packing_matches_numpy_and_round_trips(dtype, group_size, act):
    q = random_quantized(dtype, 64, 256, group_size, getattr(torch, act))
    by_vm = pack(q, method="vm")
    by_numpy = pack(q, method="numpy")
    assert by_vm.data.dtype == torch.uint8 and tuple(by_vm.data.shape) == by_vm.layout.packed_shape
    assert torch.equal(by_vm.data, by_numpy.data)
    for method in ("vm", "numpy"):
        back = unpack(by_vm, method=method)
        assert torch.equal(back.codes, q.codes)
        assert back.dtype is q.dtype and back.group_size == q.group_size
        assert back.scales is q.scales and back.zeros is q.zeros


@pytest.mark.parametrize("dtype", anybit.dtypes.packed_types(), ids=str)
def test_numpy_round_trip_for_every_packed_type(dtype):
    rng = np.random.default_rng(dtype.nbits)
    layout = choose_layout(dtype, 64, 256, 64)
    codes = rng.integers(0, 1 << dtype.nbits, (64, 256)).astype(np.uint8)
    packed = pack_codes_numpy(codes, layout)
    assert packed.shape == layout.packed_shape
    assert np.array_equal(unpack_codes_numpy(packed, layout), codes)


def test_packed_bytes_are_the_bit_stream_of_each_thread():
    """Thread t's bytes, in byte-layout order, hold its elements' codes back to back (little end first), in
    the stored code order; in each 32-bit word the two codes of a tensor-core pair are 16 bits apart."""
    layout = choose_layout("uint4", 8, 128, 128)  # one warp tile, 16 bytes per thread
    assert layout.interleaved
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 16, (8, 128)).astype(np.uint8)
    packed = pack_codes_numpy(codes, layout).reshape(-1)
    element = layout.code_layout.map_array()  # [32, 32, (k, n)]
    for thread in (0, 5, 31):
        values = codes[element[thread, :, 1], element[thread, :, 0]]
        expected = anybit.dtypes.pack(values, anybit.uint4)
        assert np.array_equal(packed[thread * 16 : thread * 16 + 16], expected)


@pytest.mark.parametrize("name", ["uint2", "int2", "int4", "uint4"])
def test_pairs_are_interleaved_sixteen_bits_apart(name):
    """Element 2p and 2p+1 of the tensor-core order (one f16x2 register) are stored at bits o and o + 16 of
    one 32-bit word, o < 16; 1-, 3-, 5- to 8-bit codes keep the tensor-core order."""
    layout = choose_layout(name, 64, 256, 128)
    tensor_core, stored = layout.tile_layout.map_array(), layout.code_layout.map_array()
    b = layout.nbits
    for thread in range(32):
        slot = {tuple(e): j for j, e in enumerate(stored[thread].tolist())}
        for p in range(tensor_core.shape[1] // 2):
            lo = slot[tuple(tensor_core[thread, 2 * p])] * b
            hi = slot[tuple(tensor_core[thread, 2 * p + 1])] * b
            assert hi == lo + 16 and lo % 32 < 16
    for other in ("uint1", "uint3", "int6", "int8"):
        plain = choose_layout(other, 64, 256, 128)
        assert not plain.interleaved and plain.code_layout == plain.tile_layout


def test_custom_layout_with_more_columns_per_warp():
    q = random_quantized("int4", 64, 256, 128, torch.float16)
    layout = dataclasses.replace(choose_layout("int4", 64, 256, 128), n_per_warp=16, bytes_per_thread=32)
    packed = pack(q, layout=layout)
    assert packed.layout.n_per_warp == 16
    assert torch.equal(packed.data, pack(q, layout=layout, method="numpy").data)
    assert torch.equal(unpack(packed).codes, q.codes)


@pytest.mark.parametrize(
    ("n", "k", "group_size", "message"),
    [
        (60, 256, 128, "N a multiple of 8"),
        (64, 200, 40, "multiple of 16 dividing K"),
        (64, 136, -1, "multiple of 16 dividing K = 136"),
    ],
)
def test_shape_errors_name_the_required_multiples(n, k, group_size, message):
    with pytest.raises(ValueError, match=message):
        choose_layout("int4", n, k, group_size)
    with pytest.raises(ValueError, match=r"K a multiple of 128 \(k_chunk\)"):
        PackedLayout(anybit.int4, 64, 200, 128, 128, 8, 16)


def test_float16_rejects_wide_exponent_floats():
    q = random_quantized(WIDE_FLOAT, 64, 128, 128, torch.float16)
    with pytest.raises(ValueError, match="float8_e6m1 has values float16 cannot hold.*bfloat16"):
        pack(q)
    with pytest.raises(ValueError, match="float7_e5m1"):
        pack(random_quantized("float7_e5m1", 64, 128, 128, torch.float16))
    pack(random_quantized(WIDE_FLOAT, 64, 128, 128, torch.bfloat16))  # bfloat16 holds every value


def test_layout_mismatch_and_bad_inputs():
    q = random_quantized("int4", 64, 256, 128, torch.float16)
    with pytest.raises(ValueError, match="expected a layout for int4"):
        pack(q, layout=choose_layout("int3", 64, 256, 128))
    with pytest.raises(ValueError, match="method"):
        pack(q, method="fast")
    with pytest.raises(ValueError, match="bytes_per_thread"):
        PackedLayout(anybit.int4, 64, 256, 128, 128, 8, 8)
    wide = QuantizedWeight(q.codes.to(torch.int16), q.dtype, 128, q.scales, None)
    with pytest.raises(ValueError, match="uint8 codes"):
        pack(wide)
    packed = pack(q)
    with pytest.raises(ValueError, match="uint8 data of shape"):
        unpack(dataclasses.replace(packed, data=packed.data[:1]))


# --- bit planes ----------------------------------------------------------------------------------------

PLANAR_TYPES = [
    "uint3",
    "int3",
    "uint5",
    "int5",
    "uint6",
    "int6",
    "float5_e2m2",
    "float6_e3m2",
    "float6_e2m3",
]
# (N, K, group size): KC·NT = 128 (one word per thread for a 1-bit plane), 256, and per-channel scales.
PLANAR_SHAPES = [(16, 128, 64), (32, 128, 64), (16, 256, -1)]


def random_codes(layout: PackedLayout, seed: int = 0) -> np.ndarray:
    """Fresh uniform codes [N, K] of the layout's type (every bit pattern, not only quantized values)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1 << layout.nbits, (layout.n, layout.k)).astype(np.uint8)


@pytest.mark.parametrize("operand", ["a", "b"])
@pytest.mark.parametrize("shape", PLANAR_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", PLANAR_TYPES)
def test_forced_planes_keep_the_dense_shape_and_split_the_code_bits(dtype, shape, operand):
    n, k, group_size = shape
    layout = choose_layout(dtype, n, k, group_size, operand=operand, planar=True)
    dense = choose_layout(dtype, n, k, group_size, operand=operand, planar=False)
    assert layout.planar and not dense.planar and dense.planes == ()
    assert layout.planes == anybit.kernels.layout.PLANE_WIDTHS[layout.nbits]
    assert dataclasses.replace(layout, planes=()) == dense
    assert (layout.packed_shape, layout.bytes_per_thread) == (dense.packed_shape, dense.bytes_per_thread)
    assert choose_layout(dtype, n, k, group_size, operand=operand) == layout  # planes by default

    planes = layout.plane_layouts()
    low, high = layout.planes
    assert [plane.dtype.name for plane in planes] == [f"uint{low}", f"uint{high}"]
    assert layout.plane_bit_offsets == (0, low)
    assert layout.plane_byte_offsets == (0, 32 * planes[0].bytes_per_thread)
    assert sum(plane.bytes_per_thread for plane in planes) == layout.bytes_per_thread
    for plane in planes:
        assert plane.plane and not plane.planar and plane.interleaved
        assert plane.bytes_per_thread % 4 == 0  # whole 32-bit words per thread
        same = ("n", "k", "group_size", "k_chunk", "n_per_warp", "operand", "gated")
        assert all(getattr(plane, name) == getattr(layout, name) for name in same)

    codes = random_codes(layout, seed=sum(shape))
    packed = pack_codes_numpy(codes, layout)
    assert packed.shape == layout.packed_shape
    assert np.array_equal(unpack_codes_numpy(packed, layout), codes)
    for plane, start, offset in zip(planes, layout.plane_byte_offsets, layout.plane_bit_offsets, strict=True):
        part = packed[..., start : start + plane.tile_bytes]
        plane_codes = (codes >> offset) & ((1 << plane.nbits) - 1)
        assert np.array_equal(unpack_codes_numpy(part, plane), plane_codes)
        assert np.array_equal(part, pack_codes_numpy(plane_codes, plane))


@pytest.mark.parametrize("operand", ["a", "b"])
@pytest.mark.parametrize("dtype", PLANAR_TYPES)
def test_vm_packing_of_planes_matches_numpy(dtype, operand):
    """The packing and unpacking programs (interpreter, per plane) give the numpy reference's bytes."""
    for index, (n, k, group_size) in enumerate(PLANAR_SHAPES[:2]):
        q = random_quantized(dtype, n, k, group_size, torch.float16, seed=index)
        layout = choose_layout(dtype, n, k, group_size, operand=operand, planar=True)
        codes = torch.from_numpy(random_codes(layout, seed=index))
        if q.zeros is not None:  # keep the zero points codes of the type
            q = dataclasses.replace(q, zeros=q.zeros.clamp(0, (1 << layout.nbits) - 1))
        q = dataclasses.replace(q, codes=codes)
        by_vm = pack(q, layout=layout, method="vm")
        by_numpy = pack(q, layout=layout, method="numpy")
        assert by_vm.layout is layout and tuple(by_vm.data.shape) == layout.packed_shape
        assert torch.equal(by_vm.data, by_numpy.data)
        for method in ("vm", "numpy"):
            assert torch.equal(unpack(by_vm, method=method).codes, codes)


@pytest.mark.parametrize("operand", ["a", "b"])
@pytest.mark.parametrize("dtype", ["int3", "uint5", "float6_e2m3"])
def test_every_plane_holds_each_pair_sixteen_bits_apart(dtype, operand):
    """Read each thread's words of each plane bit by bit: in word j of a w-bit plane, tensor-core element
    (32/w)·j + 2p + e (pair p, e = 0 or 1) sits at bits 16·e + w·p .. + w; the 1-bit plane too."""
    layout = choose_layout(dtype, 32, 64, 64, operand=operand, planar=True)
    assert layout.packed_shape[:2] == (1, 1)  # one warp tile
    codes = random_codes(layout, seed=3)
    packed = pack_codes_numpy(codes, layout).reshape(-1)
    planes = layout.plane_layouts()
    for plane, start, offset in zip(planes, layout.plane_byte_offsets, layout.plane_bit_offsets, strict=True):
        w, g, bpt = plane.nbits, plane.vector_bytes, plane.bytes_per_thread
        per_word = 32 // w
        tile = plane.tile_layout.map_array()  # [32, local, (k, n)]: the tensor-core order
        for thread in range(32):
            # byte_layout local(bpt/g).spatial(32).local(g): local byte i of the thread
            local = [start + (i // g) * 32 * g + thread * g + i % g for i in range(bpt)]
            bits = np.unpackbits(packed[local], bitorder="little")
            for word in range(bpt // 4):
                for p in range(per_word // 2):
                    for e in (0, 1):
                        kk, nn = tile[thread, per_word * word + 2 * p + e]
                        at = 32 * word + 16 * e + w * p
                        value = int(np.packbits(bits[at : at + w], bitorder="little")[0])
                        assert value == (codes[nn, kk] >> offset) & ((1 << w) - 1)


def test_planar_by_default_picks_planes_where_they_fit(monkeypatch):
    monkeypatch.setattr(anybit.kernels.layout, "PLANAR_BY_DEFAULT", True)
    assert choose_layout("int3", 64, 256, 128).planes == (2, 1)
    assert choose_layout("float6_e3m2", 64, 256, 128, operand="b").planes == (4, 2)
    assert choose_layout("int3", 64, 256, 128, planar=False).planes == ()
    assert choose_layout("int4", 64, 256, 128).planes == ()  # a power-of-two width: stored whole
    assert choose_layout("int3", 8, 256, 32, operand="b").planes == ()  # KC·NT = 32: not whole words


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group_size", "kwargs", "message"),
    [
        ("int4", 64, 256, 128, {}, "int4 .* cannot be stored as bit planes: only 3-, 5- and 6-bit"),
        ("float8_e4m3", 64, 256, 128, {}, "cannot be stored as bit planes"),
        ("int3", 8, 256, 32, {"operand": "b"}, "whole 32-bit words per thread.*planar=False"),
    ],
)
def test_forcing_planes_where_they_cannot_be_is_refused(dtype, n, k, group_size, kwargs, message):
    with pytest.raises(ValueError, match=message):
        choose_layout(dtype, n, k, group_size, planar=True, **kwargs)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"planes": (2, 2)}, r"two widths of 1, 2 or 4 bits summing to 3 \(int3\), e.g. \(2, 1\)"),
        ({"planes": (3,)}, "two widths of 1, 2 or 4 bits"),
        ({"planes": (1, 1, 1)}, "two widths of 1, 2 or 4 bits"),
        ({"planes": [2, 1]}, "expected planes a tuple of ints"),
        ({"dtype": anybit.int4, "bytes_per_thread": 64}, "int4 cannot be stored as bit planes"),
        ({"k_chunk": 16, "group_size": 16, "bytes_per_thread": 6}, "whole 32-bit words per thread"),
        ({"plane": True}, "a plane layout"),
    ],
)
def test_bad_planes_are_refused_with_the_fix(changes, message):
    layout = choose_layout("int3", 32, 256, 128, planar=True)
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(layout, **changes)


def test_a_plane_layout_must_be_narrow_unsigned_whole_words():
    plane = choose_layout("int5", 32, 256, 128, planar=True).plane_layouts()[1]
    assert plane.dtype is anybit.uint1 and plane.interleaved
    assert not dataclasses.replace(plane, plane=False).interleaved  # 1-bit codes stored whole: plain order
    with pytest.raises(ValueError, match="a plane layout .* unsigned 1-, 2- or 4-bit"):
        dataclasses.replace(plane, dtype=anybit.int2, bytes_per_thread=2 * plane.bytes_per_thread)
    with pytest.raises(ValueError, match="whole 32-bit words"):
        PackedLayout(anybit.uint1, 16, 16, 16, 16, 16, 1, plane=True)  # 8 codes per thread: one byte


# --- a top plane's bits spread where the conversion puts them ------------------------------------------
@pytest.mark.parametrize(
    ("dtype", "act", "stride"),
    [
        ("float6_e2m3", torch.float16, 4),  # sign at 15, top exponent bit at 11
        ("float6_e4m1", torch.float16, 2),
        ("float6_e1m4", torch.bfloat16, 8),
        ("float6_e2m3", torch.bfloat16, 1),  # 7 apart: no power of two
        ("float6_e3m2", torch.float16, 1),  # 3 apart
        ("int6", torch.float16, 1),  # integers' top bits side by side
        ("uint5", torch.float16, 1),  # a 1-bit top plane
    ],
)
def test_top_plane_stride_is_where_the_conversion_puts_the_top_bits(dtype, act, stride):
    assert anybit.kernels.layout.top_plane_stride_for(dtype, act) == stride
    assert choose_layout(dtype, 64, 256, 128, act_dtype=act).top_plane_stride == stride
    assert choose_layout(dtype, 64, 256, 128).top_plane_stride == 1  # no activation dtype: plain
    assert choose_layout(dtype, 64, 256, 128, act_dtype=act, planar=False).top_plane_stride == 1


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_spread_bits_layout_puts_each_codes_bits_stride_apart(stride):
    """Bit b of code local j at (j mod s) + s·b + 2s·(j div s) of the thread's bits; stride 1 = the codes'
    own bits (2j + b), the layout a ``view`` of the plane's bytes as uint1 reads."""
    from anybit.kernels.layout import spread_bits_layout

    codes = choose_layout("float6_e2m3", 64, 256, 128, planar=True).plane_layouts()[1].code_layout
    spread = spread_bits_layout(codes, 2, stride)
    assert spread.shape == (*codes.shape, 2) and spread.local_size == 2 * codes.local_size
    code_map, bit_map = codes.map_array(), spread.map_array()
    for thread in (0, 7, 31):
        for j in range(codes.local_size):
            for b in (0, 1):
                position = j % stride + stride * b + 2 * stride * (j // stride)
                assert tuple(bit_map[thread, position]) == (*code_map[thread, j], b)


@pytest.mark.parametrize("operand", ["a", "b"])
@pytest.mark.parametrize(("dtype", "act"), [("float6_e2m3", torch.float16), ("float6_e1m4", torch.bfloat16)])
def test_spread_top_plane_packs_by_vm_as_numpy_and_round_trips(dtype, act, operand):
    """The packing programs (interpreter) and numpy give the same bytes: the low plane as plainly packed,
    the top plane's words the plain ones with their bits spread (spread_word_bits); both unpack exactly."""
    from anybit.kernels.packing import spread_word_bits

    q = random_quantized(dtype, 64, 512, 128, act, seed=fresh_seed())
    layout = choose_layout(dtype, 64, 512, 128, operand=operand, act_dtype=act)
    stride = layout.top_plane_stride
    assert stride > 1 and pack(q).layout == choose_layout(dtype, 64, 512, 128, act_dtype=act)
    by_vm, by_numpy = pack(q, layout=layout, method="vm"), pack(q, layout=layout, method="numpy")
    assert torch.equal(by_vm.data, by_numpy.data)
    plain = pack(q, layout=dataclasses.replace(layout, top_plane_stride=1), method="numpy").data.numpy()
    top = layout.plane_byte_offsets[1]
    assert np.array_equal(by_vm.data.numpy()[..., :top], plain[..., :top])
    spread_top = spread_word_bits(np.ascontiguousarray(plain[..., top:]).view("<u4"), stride)
    assert np.array_equal(by_vm.data.numpy()[..., top:].view("<u4"), spread_top)
    assert not np.array_equal(by_vm.data.numpy(), plain)
    for method in ("vm", "numpy"):
        assert torch.equal(unpack(by_vm, method=method).codes, q.codes)


@pytest.mark.parametrize(
    ("dtype", "changes", "message"),
    [
        (
            "float6_e2m3",
            {"top_plane_stride": 3},
            r"a stride in \(1, 2, 4, 8\), got planes \(4, 2\) and stride 3",
        ),
        ("float6_e2m3", {"top_plane_stride": 16}, "top_plane_stride=1"),
        ("uint5", {"top_plane_stride": 2}, r"a 2-bit top plane .* got planes \(4, 1\)"),
        ("int4", {"top_plane_stride": 2}, r"got planes \(\) and stride 2"),
    ],
)
def test_bad_top_plane_strides_are_refused_with_the_fix(dtype, changes, message):
    layout = choose_layout(dtype, 64, 256, 128)
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(layout, **changes)
