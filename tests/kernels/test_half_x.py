"""bf16 activations through the fp16 decode loop on the interpreter: x's fp16 copy and its factors, a row or a
row and chunk (:mod:`anybit.kernels.half_activations`), against torch, and :class:`DecodeMatmulHalfX` in both
forms against float64, outputs poisoned with NaN; the errors of what they refuse."""

from __future__ import annotations

import pytest
import torch

from anybit.kernels import choose_layout, pack
from anybit.kernels.decode_half_x import DecodeMatmulHalfX, half_x_matmul
from anybit.kernels.half_activations import (
    FACTOR_ROWS,
    TOP_EXPONENT,
    prepare_half_x,
    prepare_half_x_on_device,
)

from .helpers import TOLERANCE, fresh_seed, random_quantized, reference_matmul, relative_error

BF16 = torch.bfloat16


def copy_times_factors(half: torch.Tensor, factors: torch.Tensor, k_chunk: int) -> torch.Tensor:
    """half · factor, each element's row and chunk's factor, in f32 [M, K]."""
    m, k = half.shape
    chunked = half.float().view(m, k // k_chunk, k_chunk) * factors[:, :m].T[..., None]
    return chunked.view(m, k)


def test_the_fp16_copy_times_its_row_factor_is_x():
    """Rows of every magnitude (bf16's range is f32's): x == half · factor exactly for every element within
    2^28 of its row's largest |x| (all of them but in the row whose largest is near bf16's limit), each
    row's largest lands in [2^14, 2^15), the factors are powers of two; a row of zeros keeps zeros."""
    torch.manual_seed(fresh_seed())
    x = torch.randn(5, 2048).bfloat16()
    x[1] *= 1e-30
    x[2] *= 1e30
    x[3] = 0.0
    x[4, 7] = 3.0e38  # near bf16's largest
    half, factors = prepare_half_x(x)
    assert half.dtype == torch.float16 and factors.dtype == torch.float32 and factors.shape == (5,)
    within = x.float().abs() >= x.float().abs().amax(dim=1, keepdim=True) * 2.0**-28
    assert torch.equal((half.float() * factors[:, None])[within], x.float()[within])
    assert within[:4].all()  # every element of the first four rows
    largest = half[[0, 1, 2, 4]].float().abs().amax(dim=1)
    assert ((largest >= 2.0**TOP_EXPONENT) & (largest < 2.0 ** (TOP_EXPONENT + 1))).all()
    assert torch.equal(torch.frexp(factors).mantissa, torch.full_like(factors, 0.5))
    assert not half[3].any()


def test_the_fp16_copy_times_its_chunk_factor_is_x():
    """Rows and chunks of every magnitude (bf16's range is f32's): x == half · factor exactly for every
    element within 2^28 of its chunk's largest |x| (all of them but in the chunk whose largest is near
    bf16's limit), each chunk's largest lands in [2^14, 2^15), the factors are powers of two and zeros past
    M; a chunk of zeros keeps zeros."""
    torch.manual_seed(fresh_seed())
    k_chunk = 128
    x = torch.randn(5, 2048).bfloat16()
    x[1] *= 1e-30
    x[2] *= 1e30
    x[3] = 0.0
    x[4, 7] = 3.0e38  # near bf16's largest
    x[0, 256:384] *= 2.0**60  # one chunk far above the row's others: each keeps its own exponent
    half, factors = prepare_half_x(x, k_chunk)
    assert half.dtype == torch.float16 and factors.dtype == torch.float32
    assert factors.shape == (2048 // k_chunk, FACTOR_ROWS) and not factors[:, 5:].any()
    chunk_largest = x.float().abs().view(5, -1, k_chunk).amax(dim=2, keepdim=True)
    within = (x.float().abs().view(5, -1, k_chunk) >= chunk_largest * 2.0**-28).view(5, -1)
    assert torch.equal(copy_times_factors(half, factors, k_chunk)[within], x.float()[within])
    assert within[:4].all()  # every element of the first four rows, the far chunk's row among them
    largest = half[[0, 1, 2]].float().abs().view(3, -1, k_chunk).amax(dim=2)
    assert ((largest >= 2.0**TOP_EXPONENT) & (largest < 2.0 ** (TOP_EXPONENT + 1))).all()
    assert torch.equal(torch.frexp(factors[:, :5]).mantissa, torch.full_like(factors[:, :5], 0.5))
    assert not half[3].any()


def test_elements_far_below_the_chunks_largest_round_to_fp16_subnormals():
    """An element 2^30 below its chunk's largest is an fp16 subnormal after scaling: rounded, not lost."""
    x = torch.zeros(1, 32, dtype=BF16)
    x[0, :3] = torch.tensor([1.0, 2.0**-30 * 1.5, 2.0**-45])
    half, factors = prepare_half_x(x, 32)
    assert float(half[0, 1]) * float(factors[0, 0]) == pytest.approx(2.0**-30 * 1.5, rel=2.0**-9)
    assert float(half[0, 2]) == 0.0  # below fp16's smallest subnormal after scaling


@pytest.mark.parametrize(
    ("m", "k", "k_chunk"),
    [
        (1, 4096, 128),
        (3, 1088, 64),
        (16, 2048, 128),
        (2, 64, 32),
        (1, 4096, None),
        (3, 1088, None),
        (2, 64, None),
    ],
)
def test_the_preparation_kernel_matches_torch(m, k, k_chunk):
    """Both preparations on the interpreter, bit for bit torch's: PrepareHalfX (K not a multiple of a
    block's chunks, or less than one block; chunks of 32, 64 and 128) and PrepareHalfXRows (k_chunk None:
    a cluster block's part of K past a step and not a multiple of one, or less than one)."""
    torch.manual_seed(fresh_seed())
    x = (torch.randn(m, k) * torch.logspace(-8, 8, m)[:, None]).bfloat16()
    half, factors = prepare_half_x_on_device(x, k_chunk)
    expected_half, expected_factors = prepare_half_x(x, k_chunk)
    assert torch.equal(half, expected_half) and torch.equal(factors, expected_factors)


def test_the_preparation_refuses_what_it_cannot_take():
    with pytest.raises(ValueError, match="bf16 x"):
        prepare_half_x_on_device(torch.randn(2, 64).half(), 32)
    with pytest.raises(ValueError, match="multiple of k_chunk 128"):
        prepare_half_x_on_device(torch.randn(2, 1000).bfloat16(), 128)
    with pytest.raises(ValueError, match="1 to 16 rows"):
        prepare_half_x_on_device(torch.randn(17, 128).bfloat16(), 128)
    with pytest.raises(ValueError, match="expected k_chunk a multiple of 8"):
        prepare_half_x_on_device(torch.randn(2, 60).bfloat16(), 12)
    with pytest.raises(ValueError, match="expected out"):
        prepare_half_x_on_device(torch.randn(2, 64).bfloat16(), 32, out=(torch.empty(2, 64), torch.empty(2)))
    with pytest.raises(ValueError, match="multiple of 64"):  # the row form: a cluster's 8 blocks a row
        prepare_half_x_on_device(torch.randn(2, 1000).bfloat16())
    half = torch.empty(2, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"expected out \(fp16 \[2, 64\], f32 \[2\]\)"):
        prepare_half_x_on_device(torch.randn(2, 64).bfloat16(), out=(half, torch.empty(4, 16)))


# (type, N, K, M, zero points, bias, config)
CASES = [
    ("int4", 256, 1024, 1, False, False, {}),
    ("uint4", 256, 1024, 3, True, True, {"split": 2}),
    ("float6_e3m2", 128, 1024, 12, False, False, {}),  # float weights: the scales' power after the loop
    ("int8", 128, 512, 16, False, True, {"warps": 2, "weights_in_registers": True}),
    ("uint3", 256, 1024, 2, True, False, {"warps": 2, "warps_along_k": True}),  # bit planes, warps along K
    ("float4_e2m1", 128, 512, 5, False, False, {"split": 2, "split_in_cluster": True}),
    ("uint2", 128, 512, 1, True, False, {"warps": 2, "bias_after_dot": True}),  # zero points after the dot
    ("uint4", 128, 512, 2, True, False, {"group": -1}),  # per-channel scales and zero points
]


@pytest.mark.parametrize("chunk_factors", [True, False])
@pytest.mark.parametrize(("dtype", "n", "k", "m", "zeros", "bias", "config"), CASES)
def test_the_fp16_loop_gives_the_bf16_product(dtype, n, k, m, zeros, bias, config, chunk_factors):
    """x of a wide range of magnitudes through either preparation and DecodeMatmulHalfX: the float64
    product of the bf16 inputs within bf16's tolerance, for integer, float and bit-plane weights, zero
    points in the conversion or after the dot, per-channel scales, bias, split-K (through L2 or a cluster),
    warps along K and the weights in registers; with a factor a chunk, chunks of one row 2^40 apart."""
    config = dict(config)
    group = config.pop("group", 128)
    q = random_quantized(dtype, n, k, group, BF16, zero_point=zeros, seed=fresh_seed())
    p = pack(q, layout=choose_layout(dtype, n, k, group, operand="a"))
    x = torch.randn(m, k) * torch.logspace(-6, 6, m)[:, None]
    if chunk_factors:
        x[:, : k // 4] *= 2.0**40  # a quarter of K far above the rest: only a factor a chunk keeps both exact
    x = x.to(BF16)
    b = torch.randn(n).to(BF16) if bias else None
    out = torch.full((m, n), float("nan"), dtype=BF16)
    y = half_x_matmul(x, p, b, config=config, chunk_factors=chunk_factors, out=out)
    assert y is out and torch.isfinite(y).all()
    for row in range(m):  # each row's own scale: a relative error a row
        assert relative_error(y[row : row + 1], reference_matmul(x[row : row + 1], q, b)) <= TOLERANCE[BF16]


def test_the_kernel_refuses_the_folds():
    layout = choose_layout("int4", 256, 1024, 128, operand="a")
    with pytest.raises(ValueError, match="no row RMS, residual add or gated pair"):
        DecodeMatmulHalfX(layout, rms_eps=1e-5)
    with pytest.raises(ValueError, match="no row RMS, residual add or gated pair"):
        DecodeMatmulHalfX(layout, accumulate=True)
    gated = choose_layout("int4", 256, 1024, 128, operand="a", gated=True)
    with pytest.raises(ValueError, match="gated pair"):
        DecodeMatmulHalfX(gated)


def test_the_entry_point_names_what_it_takes():
    q = random_quantized("int4", 128, 512, 128, BF16, seed=fresh_seed())
    p = pack(q, layout=choose_layout("int4", 128, 512, 128, operand="a"))
    with pytest.raises(ValueError, match="M ≤ 16"):
        half_x_matmul(torch.randn(17, 512).to(BF16), p)
    with pytest.raises(ValueError, match="expected x bf16"):
        half_x_matmul(torch.randn(1, 512).half(), p)
    fp16 = pack(random_quantized("int4", 128, 512, 128, torch.float16, seed=fresh_seed()))
    with pytest.raises(ValueError, match="bf16 weight packed as the A operand"):
        half_x_matmul(torch.randn(1, 512).half(), fp16)
