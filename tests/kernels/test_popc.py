"""The binary route (1- and 2-bit codes on ``mma.m16n8k256 .and.popc``) on the interpreter: the view of the
packed bits, x's bit planes, the kernel against float64, and its refusals."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from anybit.kernels import pack
from anybit.kernels.decode_popc import DecodePopc, popc_route_matmul
from anybit.kernels.popc_activations import X_MAX, fixed_point, operand_layout, plane_weights, prepare_popc_x
from anybit.kernels.popc_order import check_popc_route, popc_view

from .helpers import TOLERANCE, random_quantized, reference_matmul, relative_error


@pytest.mark.parametrize("nbits", [1, 2])
def test_each_code_bit_of_a_chunk_meets_its_own_k(nbits):
    """Rebuild a warp tile's codes from the packed bytes through the view (masks and slots) alone."""
    view = popc_view(nbits)
    q = random_quantized(f"uint{nbits}", 32, 128, 128, torch.float16, seed=random.randrange(2**31))
    words = pack(q).data.view(torch.uint8).numpy().reshape(-1, 32, 16)  # [vector, lane, byte]
    words = (
        np.ascontiguousarray(words.transpose(1, 0, 2)).view("<u4").reshape(32, 2, -1)
    )  # [lane, tile, word]
    codes = np.zeros((32, 128), dtype=np.int64)
    for lane in range(32):
        g, t = divmod(lane, 4)
        for tile in range(2):
            for step in range(nbits):
                for half in range(2):
                    word = int(words[lane, tile, 2 * step + half])
                    for eta in range(2):
                        for beta in range(nbits):
                            kept = word & int(view.masks[eta, beta])
                            for i in range(32):
                                if kept >> i & 1:
                                    k = view.slot_k[step, 128 * half + 32 * t + i]
                                    codes[16 * tile + 8 * eta + g, k] += 1 << beta
    np.testing.assert_array_equal(codes, q.codes.numpy())


def test_the_planes_hold_x_fixed_point_at_every_slot():
    x = torch.randn(1, 512, dtype=torch.float16) * torch.logspace(-3, 3, 512)[None].half()
    planes, inverse, sums = prepare_popc_x(x, 2)
    fixed, r = fixed_point(x)
    assert int(fixed.abs().max()) == X_MAX
    torch.testing.assert_close(inverse, r.float())
    torch.testing.assert_close(sums, (r * fixed.double().sum(-1)).float())
    coords = operand_layout().map_array()  # [lane, bit, (slot, plane)]
    bits = np.unpackbits(
        planes.numpy().reshape(4, 2, 32, 16), axis=-1, bitorder="little"
    )  # [chunk, step, lane, bit]
    view = popc_view(2)
    for step in range(2):
        values = np.zeros((4, 256))
        for lane in range(32):
            for bit in range(128):
                slot, plane = coords[lane, bit]
                values[:, slot] += bits[:, step, lane, bit] * plane_weights()[plane]  # each plane in one lane
        expected = fixed.numpy()[:, view.slot_k[step]]
        np.testing.assert_array_equal(values, expected)


CASES = [
    ("uint1", True, 4, 1, 2),
    ("uint1", False, 2, 2, 1),
    ("uint2", True, 2, 4, 3),
    ("uint2", False, 4, 1, 2),
]


@pytest.mark.parametrize(("dtype", "zeros", "warps", "split", "ahead"), CASES)
@pytest.mark.parametrize("act", [torch.float16, torch.bfloat16])
def test_the_binary_route_against_float64(dtype, zeros, warps, split, ahead, act):
    q = random_quantized(dtype, 256, 1024, 128, act, zero_point=zeros, seed=random.randrange(2**31))
    x = (torch.randn(1, 1024) * torch.logspace(-2, 2, 1024)[None]).to(act)
    y = popc_route_matmul(x, pack(q), warps=warps, split=split, ahead=ahead)
    assert not torch.isnan(y).any()
    assert relative_error(y, reference_matmul(x, q, None)) < TOLERANCE[act]


def test_the_binary_route_refuses_what_it_cannot_read():
    for dtype, message in (("uint4", "1- or 2-bit"), ("int2", "unsigned")):
        q = random_quantized(dtype, 64, 256, 128, torch.float16)
        with pytest.raises(ValueError, match=message):
            check_popc_route(pack(q).layout)
    q = random_quantized("uint1", 64, 256, 64, torch.float16)
    with pytest.raises(ValueError, match="scale groups of one chunk of 128"):
        check_popc_route(pack(q).layout)
    weight = pack(random_quantized("uint2", 64, 256, 128, torch.float16))
    with pytest.raises(ValueError, match="multiple of warps"):
        popc_route_matmul(torch.randn(1, 256).half(), weight, warps=4)
    with pytest.raises(ValueError, match=r"expected x \[1, K = 256\]"):
        popc_route_matmul(torch.randn(2, 256).half(), weight, warps=2)
    with pytest.raises(ValueError, match="1 to 32 warps"):
        DecodePopc(1, torch.float16, warps=0)
    with pytest.raises(ValueError, match="1- or 2-bit"):
        DecodePopc(3, torch.float16)
