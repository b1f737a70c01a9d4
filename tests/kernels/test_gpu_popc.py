"""GPU tier of the binary route (skipped without a GPU): the kernel on ``mma.m16n8k256 .and.popc`` against
float64 over 1- and 2-bit codes, zero points or none, both activation dtypes and its configurations, outputs
poisoned."""

from __future__ import annotations

import random

import pytest
import torch

from anybit.kernels import pack
from anybit.kernels.decode_popc import popc_route_matmul

from .helpers import TOLERANCE, random_quantized, reference_matmul, relative_error

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]

CASES = [
    ("uint1", True, 4, 1, 2),
    ("uint1", False, 8, 4, 3),
    ("uint2", True, 4, 2, 1),
    ("uint2", False, 8, 8, 2),
]


@pytest.mark.parametrize(("dtype", "zeros", "warps", "split", "ahead"), CASES)
@pytest.mark.parametrize("act", [torch.float16, torch.bfloat16])
def test_the_binary_route_on_the_gpu(dtype, zeros, warps, split, ahead, act):
    q = random_quantized(dtype, 2048, 4096, 128, act, zero_point=zeros, seed=random.randrange(2**31))
    q = type(q)(
        q.codes.cuda(), q.dtype, q.group_size, q.scales.cuda(), None if q.zeros is None else q.zeros.cuda()
    )
    x = (torch.randn(1, 4096, device="cuda") * torch.logspace(-3, 3, 4096, device="cuda")[None]).to(act)
    y = popc_route_matmul(x, pack(q), warps=warps, split=split, ahead=ahead)
    torch.cuda.synchronize()
    assert not torch.isnan(y).any()
    assert relative_error(y, reference_matmul(x, q, None)) < TOLERANCE[act]
