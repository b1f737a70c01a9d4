"""GPU tier of bf16 activations through the fp16 decode loop (skipped without a GPU): x's fp16 copy and
factors (a row, or a row and chunk) bit for bit torch's, and :class:`DecodeMatmulHalfX` in both forms
against float64 over the weight types, decode configurations and rows of x, outputs poisoned."""

from __future__ import annotations

import random

import pytest
import torch

from anybit.kernels import pack
from anybit.kernels.decode_half_x import half_x_matmul
from anybit.kernels.half_activations import prepare_half_x, prepare_half_x_on_device

from .helpers import TOLERANCE, random_quantized, reference_matmul, relative_error

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]
BF16 = torch.bfloat16


@pytest.mark.parametrize(
    ("m", "k", "k_chunk"),
    [(1, 8192, 128), (5, 28672, 128), (16, 4160, 64), (3, 1056, 32), (1, 8192, None), (5, 28672, None)],
)
def test_the_preparation_kernel_matches_torch_on_the_gpu(m, k, k_chunk):
    x = torch.randn(m, k, device="cuda") * torch.logspace(-20, 20, m, device="cuda")[:, None]
    if k_chunk:
        x[:, : k // 3] *= 2.0**50  # chunks of one row far apart: each its own factor
    x = x.to(BF16)
    half, factors = prepare_half_x_on_device(x, k_chunk)
    expected_half, expected_factors = prepare_half_x(x, k_chunk)
    torch.cuda.synchronize()
    assert torch.equal(half, expected_half) and torch.equal(factors, expected_factors)


# (type, zero points, M, config)
CASES = [
    ("int4", False, 1, {"rows": 8, "warps": 4, "stages": 4, "split": 2}),
    ("uint4", True, 16, {"rows": 16, "warps": 8, "stages": 3, "split": 4, "weights_in_registers": True}),
    ("int8", False, 16, {"rows": 16, "warps": 8, "stages": 4, "split": 1}),
    ("float6_e3m2", False, 1, {"rows": 8, "warps": 4, "stages": 3, "split": 4}),
    ("float4_e2m1", False, 9, {"rows": 16, "warps": 4, "stages": 4, "split": 8}),
    ("uint5", True, 3, {"rows": 8, "warps": 8, "stages": 2, "split": 2, "weights_in_registers": True}),
    ("uint2", True, 1, {"rows": 8, "warps": 4, "stages": 4, "split": 2, "split_in_cluster": True}),
    ("int3", False, 4, {"rows": 8, "warps": 4, "stages": 4, "split": 1, "warps_along_k": True}),
    ("float8_e4m3", False, 2, {"rows": 8, "warps": 8, "stages": 4, "split": 2, "min_blocks": 3}),
]


@pytest.mark.parametrize(("dtype", "zeros", "m", "config"), CASES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("chunk_factors", [True, False])
def test_the_fp16_loop_gives_the_bf16_product_on_the_gpu(dtype, zeros, m, config, bias, chunk_factors):
    q = random_quantized(dtype, 2048, 4096, 128, BF16, zero_point=zeros, seed=random.randrange(2**31))
    q = type(q)(
        q.codes.cuda(), q.dtype, q.group_size, q.scales.cuda(), None if q.zeros is None else q.zeros.cuda()
    )
    weight = pack(q)
    x = (torch.randn(m, 4096, device="cuda") * torch.logspace(-8, 8, m, device="cuda")[:, None]).to(BF16)
    b = torch.randn(2048, device="cuda").to(BF16) if bias else None
    out = torch.full((m, 2048), float("nan"), dtype=BF16, device="cuda")
    y = half_x_matmul(x, weight, b, config=config, chunk_factors=chunk_factors, out=out)
    torch.cuda.synchronize()
    assert y is out and torch.isfinite(y).all()
    expected = reference_matmul(x.cpu(), q_cpu(q), None if b is None else b.cpu())
    for row in range(m):
        assert relative_error(y[row : row + 1].cpu(), expected[row : row + 1]) <= TOLERANCE[BF16]


def q_cpu(q):
    """The quantized weight's tensors back on the CPU (the float64 reference runs there)."""
    zeros = None if q.zeros is None else q.zeros.cpu()
    return type(q)(q.codes.cpu(), q.dtype, q.group_size, q.scales.cpu(), zeros)
