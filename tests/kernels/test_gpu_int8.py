"""GPU tier of the int8-route decode kernel (:mod:`anybit.kernels.decode_int8`; skipped without a GPU) on
the weights :func:`~anybit.kernels.pack` makes: uint1, uint2 and uint4 with zero points at a realistic size,
both activation dtypes, split-K or not, against float64, outputs poisoned."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from anybit.kernels import pack
from anybit.kernels.decode_int8 import int8_route_matmul
from anybit.kernels.int8_activations import prepare_x, prepare_x_columns, prepare_x_on_device

from .helpers import TOLERANCE, assert_prepared_like, random_quantized, reference_matmul, relative_error

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]

#: (warps, m16 tiles a warp (None: the packing's whole warp tile), split-K, chunks of weight bytes ahead)
CONFIGS = ((4, 2, 1, 1), (2, None, 4, 2), (8, 2, 2, 4))
ACTS = (torch.float16, torch.bfloat16)
TYPES = ("uint1", "uint2", "uint4")
CASES = list(itertools.product(TYPES, ACTS, (1, 8, 16), CONFIGS))


def packed_on_the_gpu(dtype: str, act: torch.dtype, k: int, tiles: int | None):
    """(QuantizedWeight, its default packing, tiles) of a fresh random [1024, k] weight with zero points on
    the GPU; ``tiles`` None: the packing's whole warp tile."""
    q = random_quantized(dtype, 1024, k, 128, act, zero_point=True, seed=random.randrange(2**31))
    q = type(q)(q.codes.cuda(), q.dtype, q.group_size, q.scales.cuda(), q.zeros.cuda())
    weight = pack(q)
    return q, weight, tiles or weight.layout.n_per_warp // 16


@pytest.mark.parametrize(("dtype", "act", "m", "config"), CASES)
def test_int8_route_on_the_gpu(dtype, act, m, config):
    warps, tiles, split, ahead = config
    q, weight, tiles = packed_on_the_gpu(dtype, act, 2048, tiles)
    x = torch.randn(m, 2048, device="cuda").to(act)
    y = int8_route_matmul(x, weight, warps=warps, tiles=tiles, split=split, ahead=ahead, group_columns=False)
    torch.cuda.synchronize()
    assert torch.isfinite(y).all()
    assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[act]


@pytest.mark.parametrize(("dtype", "act", "config"), list(itertools.product(TYPES, ACTS, CONFIGS)))
def test_group_columns_form_on_the_gpu(dtype, act, config):
    """M = 1 with 8 scale groups in the mma's columns, on CUDA, against float64."""
    warps, tiles, split, ahead = config
    q, weight, tiles = packed_on_the_gpu(dtype, act, 4096, tiles)
    x = torch.randn(1, 4096, device="cuda").to(act)
    y = int8_route_matmul(x, weight, warps=warps, tiles=tiles, split=split, ahead=ahead)
    torch.cuda.synchronize()
    assert torch.isfinite(y).all()
    assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[act]
    # split-K's counters left clean and its partials added in split order: a second call, the same bits
    assert torch.equal(int8_route_matmul(x, weight, warps=warps, tiles=tiles, split=split, ahead=ahead), y)


@pytest.mark.parametrize(
    ("m", "columns", "act", "nbits"),
    [
        (1, False, torch.float16, 4),
        (8, False, torch.bfloat16, 1),
        (1, True, torch.float16, 2),
        (1, True, torch.bfloat16, 1),
    ],
)
def test_the_preparation_kernel_on_the_gpu(m, columns, act, nbits):
    """PrepareX on CUDA against torch's preparation (a code may differ by one: f32 against f64 quotients)."""
    x = (torch.randn(m, 8192, device="cuda") * 3).to(act)
    expected = (prepare_x_columns if columns else prepare_x)(x, 128, nbits)
    prepared = prepare_x_on_device(x, 128, nbits, group_columns=columns)
    torch.cuda.synchronize()
    assert_prepared_like(prepared, expected)
