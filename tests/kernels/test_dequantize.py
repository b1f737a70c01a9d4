"""The dequantize kernel on the interpreter: bit-exact with the reference rounded to the activation dtype, for
every tiling (warps, k-chunks per block, a partial last block)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import anybit
from anybit.kernels import DequantizeWeight, choose_layout, dequantize, dequantize_weight, pack
from anybit.kernels.dequantize import default_chunks, read_layout

from .helpers import WEIGHT_TYPES, WIDE_FLOAT, random_quantized

GROUPS = (32, 64, 128, -1)
CASES = [
    (dtype, GROUPS[i % 4], (torch.float16, torch.bfloat16)[i % 2]) for i, dtype in enumerate(WEIGHT_TYPES)
]


@pytest.mark.parametrize(("dtype", "group_size", "act"), [*CASES, (WIDE_FLOAT, 128, torch.bfloat16)])
def test_dequantize_is_exact(dtype, group_size, act):
    """(q − z) is exact and (q − z) · s rounds once, so the kernel equals the f32 reference rounded."""
    q = random_quantized(dtype, 64, 256, group_size, act)
    out = torch.full((64, 256), float("nan"), dtype=act)
    result = dequantize_weight(pack(q), out=out)
    assert result is out
    assert torch.equal(out, dequantize(q).to(act))


def test_fresh_output_and_errors():
    p = pack(random_quantized("uint4", 32, 128, 64, torch.float16))
    assert dequantize_weight(p).shape == (32, 128)
    with pytest.raises(ValueError, match=r"expected out torch.float16 \[32, 128\]"):
        dequantize_weight(p, out=torch.empty(128, 32, dtype=torch.float16))


# (type, N, K, group size, act): K = 5 or 6 k-chunks, so some chunk counts leave a partial last block; group
# 256 spans two of four chunks (one scale row per chunk), group 32 is one chunk, -1 is one row for all.
TAIL_CASES = [
    ("uint4", 256, 160, 32, torch.float16),
    ("int4", 128, 768, 256, torch.bfloat16),
    ("int8", 64, 640, -1, torch.float16),
]


@pytest.mark.parametrize(("dtype", "n", "k", "group_size", "act"), TAIL_CASES)
@pytest.mark.parametrize("warps", [1, 2, 4])
@pytest.mark.parametrize("chunks", [1, 3, 4])
def test_dequantize_chunks_warps_and_partial_blocks(dtype, n, k, group_size, act, warps, chunks):
    """Every (warps, chunks) tiling gives the same bits; a block's chunks past K read zeros, write nothing."""
    q = random_quantized(dtype, n, k, group_size, act, zero_point=dtype.startswith("u"), seed=warps + chunks)
    p = pack(q)
    kernel = DequantizeWeight(p.layout, act, has_zeros=p.zeros is not None, warps=warps, chunks=chunks)
    out = torch.full((n + 1, k), float("nan"), dtype=act)  # one guard row after the weight
    zeros = p.zeros if p.zeros is not None else p.scales
    anybit.interpret(kernel, p.data, p.scales, zeros, out, n, k)
    assert torch.equal(out[:n], dequantize(q).to(act))
    assert out[n].isnan().all()


@pytest.mark.parametrize(("k_extent", "n_extent", "threads"), [(128, 32, 128), (64, 64, 128), (16, 8, 32)])
def test_read_layout_gives_each_thread_consecutive_k_of_one_row(k_extent, n_extent, threads):
    layout = read_layout(k_extent, n_extent, threads)
    coordinates = layout.map_array()  # [threads, local, (k, n)]
    vector = min(8, k_extent * n_extent // threads)
    assert layout.num_threads == threads and not layout.is_replicated
    assert layout.contiguous_local_run(0) == vector
    pairs = {tuple(c) for c in coordinates.reshape(-1, 2)}
    assert len(pairs) == k_extent * n_extent  # every element once
    runs = coordinates.reshape(threads, -1, vector, 2)
    assert (np.diff(runs[..., 0], axis=-1) == 1).all() and (np.diff(runs[..., 1], axis=-1) == 0).all()


def test_default_chunks_bound_the_staged_tile():
    assert default_chunks(choose_layout("uint4", 8192, 8192, 128), 1) == 4  # 128 × 32 per chunk
    assert default_chunks(choose_layout("int8", 8192, 8192, 128), 2) == 4  # 128 × 2·16
    assert default_chunks(choose_layout("uint4", 8192, 8192, 128), 4) == 1  # 128 × 4·32
    assert default_chunks(choose_layout("uint1", 8192, 8192, 128), 2) == 1  # 128 × 2·64
    with pytest.raises(ValueError, match="expected chunks ≥ 1, got 0"):
        DequantizeWeight(choose_layout("uint4", 64, 256, 64), torch.float16, chunks=0)
