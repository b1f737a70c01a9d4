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
    pack,
    pack_codes_numpy,
    unpack,
    unpack_codes_numpy,
)

from .helpers import WEIGHT_TYPES, WIDE_FLOAT, random_quantized


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
