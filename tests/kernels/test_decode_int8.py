"""The int8-route decode kernel (prototype, :mod:`anybit.kernels.decode_int8`) on the interpreter: against
float64, outputs poisoned with NaN, fresh random inputs; its layouts, packing, x's fixed point and errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from anybit.cuda.conversions import byte_field_words
from anybit.kernels.decode_int8 import (
    X_MAX,
    Int8RouteWeight,
    byte_fields,
    column_order,
    fixed_point,
    int8_route_matmul,
    pack_for_int8_route,
    prepare_x,
    prepare_x_columns,
    prepare_x_on_device,
    warp_operand_layout,
)

from .helpers import TOLERANCE, assert_prepared_like, random_quantized, reference_matmul, relative_error

F16, BF16 = torch.float16, torch.bfloat16


def fresh_seed() -> int:
    """A new seed per run: fresh random inputs every time."""
    return random.randrange(2**31)


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group", "m", "warps", "tiles", "split", "act", "ahead"),
    [
        ("uint1", 256, 512, 128, 1, 4, 2, 1, F16, 1),
        ("uint1", 128, 1024, 256, 8, 2, 4, 1, BF16, 2),  # a chunk of 256: eight k32 steps a group, 8 rows
        ("uint1", 128, 1024, 128, 2, 2, 2, 3, F16, 3),  # split-K: 8 chunks in runs of 2, 3 and 3 (< ahead)
        ("uint2", 256, 512, 128, 3, 2, 2, 1, F16, 4),  # as many chunks as ahead
        ("uint2", 64, 256, 128, 5, 1, 4, 2, BF16, 2),
        ("uint4", 128, 384, 128, 2, 2, 2, 1, F16, 1),
        ("uint4", 256, 256, 128, 7, 8, 2, 1, F16, 1),
        ("uint4", 128, 512, 128, 16, 2, 2, 2, F16, 2),  # 16 rows of x: two n8 tiles
        ("uint1", 256, 256, 128, 11, 4, 2, 1, BF16, 1),
    ],
)
def test_int8_route_on_the_interpreter(dtype, n, k, group, m, warps, tiles, split, act, ahead):
    """x @ dequant(W)^T through the int8 tensor cores, x in fixed point: within the activation dtype's
    tolerance of float64 (the fixed point rounds x by at most 2^-14 of its group's largest |x|); the weight
    bytes ``ahead`` chunks ahead, also past the end of a split's run."""
    q = random_quantized(dtype, n, k, group, act, zero_point=True, seed=fresh_seed())
    weight = pack_for_int8_route(q, tiles=tiles)
    x = torch.randn(m, k).to(act)
    y = int8_route_matmul(x, weight, warps=warps, split=split, ahead=ahead)  # y poisoned with NaN
    assert torch.isfinite(y).all()
    assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[act]


@pytest.mark.parametrize(
    ("dtype", "n", "k", "warps", "tiles", "split", "act", "ahead"),
    [
        ("uint1", 128, 2048, 2, 2, 1, F16, 4),  # two runs of 8 groups
        ("uint1", 256, 3072, 4, 2, 3, BF16, 2),  # split-K by whole runs
        ("uint2", 64, 1024, 1, 4, 1, F16, 1),
        ("uint4", 128, 2048, 2, 2, 2, F16, 2),
    ],
)
def test_group_columns_form_on_the_interpreter(dtype, n, k, warps, tiles, split, act, ahead):
    """M = 1 with the mma's 8 columns carrying 8 scale groups (K in :func:`column_order`, x block-diagonal):
    the same product, each group scaled once every 8 chunks."""
    q = random_quantized(dtype, n, k, 128, act, zero_point=True, seed=fresh_seed())
    weight = pack_for_int8_route(q, tiles=tiles, group_columns=True)
    x = torch.randn(1, k).to(act)
    y = int8_route_matmul(x, weight, warps=warps, split=split, ahead=ahead)
    assert torch.isfinite(y).all()
    assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[act]


def test_column_order_gives_each_k32_step_four_k_of_every_group():
    order = column_order(2048, 128)
    assert sorted(order.tolist()) == list(range(2048))  # a permutation of K
    for start in range(0, 2048, 32):  # every k32 step: rows 4b..4b+3 from group b of its run of 8
        run = start // 1024
        groups = order[start : start + 32] // 128 - 8 * run
        assert groups.tolist() == [b for b in range(8) for _ in range(4)]


@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("tiles", [1, 2, 4])
def test_every_int8_register_takes_its_codes_from_one_word_eight_bits_apart(nbits, tiles):
    """The code layout (:func:`byte_fields`) holds the operand's elements in an order where each int8
    register's four codes sit at bits b, b+8, b+16, b+24 of one word: the conversion's four-a-lop3 form."""
    operand = warp_operand_layout(tiles, 128)
    codes = byte_fields(operand, nbits)
    assert codes.holds_same_elements(operand)
    source = {tuple(c): i for i, c in enumerate(codes.map_array()[0])}
    order = [source[tuple(c)] for c in operand.map_array()[0]]
    from anybit import dtype

    assert byte_field_words(order, dtype(f"uint{nbits}"), dtype("int8"), 7 - nbits, len(order))


def test_x_fixed_point_is_exact_in_two_int8_planes():
    """X = 128·H + L exactly with H, L int8 and |X| ≤ 8191; r·X within r/2 of x, r the group's largest |x| /
    8191; rows past M zero; :func:`prepare_x`'s shapes and sums."""
    x = (torch.randn(5, 512) * 3).to(F16)
    planes, r, fixed = fixed_point(x, 128)
    high, low = planes[0].int(), planes[1].int()
    assert torch.equal(128 * high + low, fixed) and fixed.abs().max() <= X_MAX
    assert low.min() >= -64 and low.max() <= 63 and high.abs().max() <= 64
    groups = x.double().view(5, 4, 128)
    assert torch.allclose(r[:5], groups.abs().amax(-1) / X_MAX)
    error = (r[:5, :, None] * fixed[:5].view(5, 4, 128).double() - groups).abs()
    assert (error <= r[:5, :, None] / 2 + 1e-12).all()
    assert (fixed[5:] == 0).all()
    fragments, inverse, sums = prepare_x(x, 128)
    assert fragments.dtype == torch.int8 and tuple(fragments.shape) == (4, 2, 1024)
    assert torch.allclose(inverse.double().t(), r.float().double())
    assert torch.allclose(
        sums.double().t()[:5], (r[:5, :, None] * fixed[:5].view(5, 4, 128)).sum(-1), rtol=1e-6
    )
    assert sorted(fragments[0, 0].tolist()) == sorted(planes[0, :, :128].reshape(-1).tolist())


@pytest.mark.parametrize(
    ("m", "k", "columns", "act", "rows"),
    [(3, 512, False, F16, 8), (8, 256, False, BF16, 8), (1, 2048, True, F16, 8), (13, 256, False, F16, 16)],
)
def test_the_preparation_kernel_matches_torchs(m, k, columns, act, rows):
    """:class:`PrepareX` on the interpreter: the same planes, r and r·Σ X as :func:`prepare_x` /
    :func:`prepare_x_columns` (the kernel rounds x · 8191 / max|x| in f32, torch x / r in f64: a fixed-point
    value may differ by one)."""
    x = (torch.randn(m, k) * 3).to(act)
    expected = prepare_x_columns(x, 128) if columns else prepare_x(x, 128, rows)
    assert_prepared_like(prepare_x_on_device(x, 128, group_columns=columns, rows=rows), expected)


def test_int8_route_rejects_what_it_cannot_take():
    q = random_quantized("int4", 64, 256, 128, F16, zero_point=False, seed=fresh_seed())
    with pytest.raises(ValueError, match="unsigned 1-, 2- or 4-bit"):
        pack_for_int8_route(q)
    q = random_quantized("uint2", 64, 256, 64, F16, zero_point=True, seed=fresh_seed())
    with pytest.raises(ValueError, match="multiple of 128"):
        pack_for_int8_route(q)
    q = random_quantized("uint1", 64, 256, 128, F16, zero_point=True, seed=fresh_seed())
    weight = pack_for_int8_route(q)
    with pytest.raises(ValueError, match=r"M ≤ 16"):
        int8_route_matmul(torch.randn(17, 256).half(), weight)
    with pytest.raises(ValueError, match="M = 1"):
        int8_route_matmul(
            torch.randn(2, 1024).half(),
            pack_for_int8_route(
                random_quantized("uint1", 64, 1024, 128, F16, zero_point=True, seed=fresh_seed()),
                group_columns=True,
            ),
            warps=2,
        )
    with pytest.raises(ValueError, match="multiple of 8 groups"):
        pack_for_int8_route(q, group_columns=True)  # K = 256: two groups
    with pytest.raises(ValueError, match="fewer warps"):
        int8_route_matmul(torch.randn(1, 256).half(), weight, warps=4)
    assert isinstance(weight, Int8RouteWeight) and weight.data.dtype == torch.uint8
    assert np.prod(weight.data.shape) == 64 * 256 // 8  # one bit a weight, nothing else
