"""The int8-route decode kernel (:mod:`anybit.kernels.decode_int8`) on the interpreter, on the weights
:func:`~anybit.kernels.pack` makes: against float64, outputs poisoned with NaN, fresh random inputs; its
relabelled k order, x's fixed point and preparation, and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anybit import dtype
from anybit.cuda.conversions import byte_field_words
from anybit.kernels import PackedLayout, pack
from anybit.kernels.decode_int8 import int8_route_matmul
from anybit.kernels.int8_activations import (
    X_MAX,
    fixed_point,
    logical_order,
    prepare_x,
    prepare_x_columns,
    prepare_x_on_device,
)
from anybit.kernels.int8_order import code_layout, k_order, k_strides, operand_layout

from .helpers import (
    TOLERANCE,
    assert_prepared_like,
    fresh_seed,
    random_quantized,
    reference_matmul,
    relative_error,
)

F16, BF16 = torch.float16, torch.bfloat16


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group", "m", "warps", "tiles", "split", "act", "ahead", "zeros"),
    [
        ("uint1", 256, 512, 128, 1, 4, 2, 1, F16, 1, True),
        ("uint1", 128, 1024, 128, 8, 2, 4, 1, BF16, 2, True),  # the packing's whole warp tile, 8 rows
        ("uint1", 128, 1024, 128, 2, 2, 2, 3, F16, 3, False),  # split-K: runs of 2, 3 and 3 (< ahead)
        ("uint2", 256, 512, 128, 3, 2, 1, 1, F16, 4, True),  # a quarter of a packed warp tile a warp
        ("uint2", 64, 256, 128, 5, 1, 4, 2, BF16, 2, True),
        ("uint4", 128, 384, 128, 2, 2, 2, 1, F16, 1, True),
        ("uint4", 256, 256, 128, 7, 8, 1, 1, F16, 1, False),
        ("uint4", 128, 512, 128, 16, 2, 2, 2, F16, 2, True),  # 16 rows of x: two n8 tiles
        ("uint1", 256, 256, 128, 11, 4, 2, 1, BF16, 1, True),
    ],
)
def test_int8_route_on_the_interpreter(dtype, n, k, group, m, warps, tiles, split, act, ahead, zeros):
    """x @ dequant(W)^T through the int8 tensor cores on the packed weight, x in fixed point: within the
    activation dtype's tolerance of float64 (the fixed point rounds x by at most 2^-14 of its group's largest
    |x|); with zero points or without; the weight bytes ``ahead`` chunks ahead, also past a split's end."""
    q = random_quantized(dtype, n, k, group, act, zero_point=zeros, seed=fresh_seed())
    weight = pack(q)  # the default packing: the same bytes quantized_matmul reads
    x = torch.randn(m, k).to(act)
    y = int8_route_matmul(x, weight, warps=warps, tiles=tiles, split=split, ahead=ahead)  # poisoned: NaN
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
    """M = 1 with the mma's 8 columns carrying 8 chunks of x (x block-diagonal): the same product, each
    group scaled once every 8 chunks."""
    q = random_quantized(dtype, n, k, 128, act, zero_point=True, seed=fresh_seed())
    weight = pack(q)
    x = torch.randn(1, k).to(act)
    y = int8_route_matmul(x, weight, warps=warps, tiles=tiles, split=split, ahead=ahead, group_columns=True)
    assert torch.isfinite(y).all()
    assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[act]


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_the_logical_k_order_is_a_permutation_of_binary_digits(nbits):
    """k_order permutes a chunk's k; its digits' strides rebuild it (the views of x use them)."""
    order = k_order(nbits, 128)
    assert sorted(order.tolist()) == list(range(128))
    strides = k_strides(nbits, 128)
    rebuilt = [sum((p >> (6 - i) & 1) * stride for i, stride in enumerate(strides)) for p in range(128)]
    assert rebuilt == order.tolist()
    assert logical_order(256, 128, nbits).tolist() == [*order.tolist(), *(order + 128).tolist()]


@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("tiles", [1, 2, 4])
def test_the_packed_codes_are_the_int8_operand_with_k_relabelled(nbits, tiles):
    """:func:`code_layout` — the packing's code layout (operand "a") with k relabelled — holds each lane's
    elements of the int8 A operand, each int8 register's four codes at bits b, b+8, b+16, b+24 of one word
    (the conversion's four-a-lop3 form), and is the packing's own map with k through :func:`k_order`."""
    operand = operand_layout(tiles, 128)
    codes = code_layout(nbits, tiles, 128)
    assert codes.holds_same_elements(operand)
    source = {tuple(c): i for i, c in enumerate(codes.map_array()[0])}
    order = [source[tuple(c)] for c in operand.map_array()[0]]
    assert byte_field_words(order, dtype(f"uint{nbits}"), dtype("int8"), 7 - nbits, len(order))
    bpt = 16 * tiles * 128 * nbits // 8 // 32
    packed = PackedLayout(dtype(f"uint{nbits}"), 16 * tiles, 128, 128, 128, 16 * tiles, bpt, "a")
    actual = packed.code_layout.map_array()  # [lane, local, (k, n)]
    logical = codes.map_array()  # [lane, local, (n, k')]
    assert np.array_equal(actual[..., 1], logical[..., 0])
    assert np.array_equal(actual[..., 0], k_order(nbits, 128)[logical[..., 1]])


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
    fragments, inverse, sums = prepare_x(x, 128, 4)
    assert fragments.dtype == torch.int8 and tuple(fragments.shape) == (4, 2, 1024)
    assert torch.allclose(inverse.double().t(), r.float().double())
    assert torch.allclose(
        sums.double().t()[:5], (r[:5, :, None] * fixed[:5].view(5, 4, 128)).sum(-1), rtol=1e-6
    )
    assert sorted(fragments[0, 0].tolist()) == sorted(planes[0, :, :128].reshape(-1).tolist())


@pytest.mark.parametrize(
    ("m", "k", "columns", "act", "rows", "nbits"),
    [
        (3, 512, False, F16, 8, 4),
        (8, 256, False, BF16, 8, 1),
        (1, 2048, True, F16, 8, 2),
        (1, 1024, True, BF16, 8, 1),
        (13, 256, False, F16, 16, 2),
    ],
)
def test_the_preparation_kernel_matches_torchs(m, k, columns, act, rows, nbits):
    """:class:`PrepareX` on the interpreter: the same planes, r and r·Σ X as :func:`prepare_x` /
    :func:`prepare_x_columns` (the kernel rounds x · 8191 / max|x| in f32, torch x / r in f64: a fixed-point
    value may differ by one)."""
    x = (torch.randn(m, k) * 3).to(act)
    expected = prepare_x_columns(x, 128, nbits) if columns else prepare_x(x, 128, nbits, rows)
    assert_prepared_like(prepare_x_on_device(x, 128, nbits, group_columns=columns, rows=rows), expected)


def test_int8_route_rejects_what_it_cannot_take():
    x = torch.randn(1, 256).half()
    q = random_quantized("int4", 64, 256, 128, F16, zero_point=False, seed=fresh_seed())
    with pytest.raises(ValueError, match="unsigned 1-, 2- or 4-bit"):
        int8_route_matmul(x, pack(q))
    q = random_quantized("uint2", 64, 256, 256, F16, zero_point=True, seed=fresh_seed())
    with pytest.raises(ValueError, match="scale groups of one chunk"):
        int8_route_matmul(x, pack(q))
    weight = pack(random_quantized("uint1", 64, 256, 128, F16, zero_point=True, seed=fresh_seed()))
    with pytest.raises(ValueError, match=r"M ≤ 16"):
        int8_route_matmul(torch.randn(17, 256).half(), weight)
    with pytest.raises(ValueError, match=r"M ≤ 16"):
        int8_route_matmul(torch.randn(256).half(), weight)  # one dimension
    with pytest.raises(ValueError, match="whole 16-byte vectors"):
        int8_route_matmul(x, weight, tiles=1)  # 8 bytes a thread: half of each thread's vector
    with pytest.raises(ValueError, match="group-columns form takes M = 1"):
        int8_route_matmul(x, weight, warps=2, group_columns=True)  # K = 256: two chunks, not a run of 8
    with pytest.raises(ValueError, match="fewer warps"):
        int8_route_matmul(x, weight, warps=4)
    wrong = (torch.zeros(2, 2, 1024, dtype=torch.int8), torch.zeros(2, 8), torch.zeros(1, 8))
    with pytest.raises(ValueError, match=r"expected out = \(planes int8 \[2, 2, 1024\]"):
        prepare_x_on_device(x, 128, 1, out=wrong)  # sums of the wrong shape
