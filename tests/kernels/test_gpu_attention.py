"""The fused decode attention on the GPU: Llama-3-8B's heads against float64, and replayed from a CUDA graph
with the position advancing in device memory between replays."""

from __future__ import annotations

import pytest
import torch

from anybit.kernels.attention import decode_attention

from .test_attention import check_case, make_case, reference, run_case

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]


@pytest.mark.parametrize("act", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    ("batch", "length", "position", "splits"),
    [
        (1, 256, 0, 1),
        (1, 256, 77, 1),
        (16, 256, 150, 1),
        (2, 256, 255, 1),
        (1, 2048, 1500, 16),
        (16, 1024, 700, 8),
    ],
)
@pytest.mark.parametrize(("warps_over", "tile"), [("heads", 8), ("heads", 16), ("positions", 16)])
def test_decode_attention_on_cuda(act, batch, length, position, splits, warps_over, tile):
    found, expected = run_case(
        batch,
        32,
        8,
        128,
        length,
        position,
        act=act,
        seed=position,
        device="cuda",
        splits=splits,
        tile=tile,
        warps_over=warps_over,
    )
    check_case(found, expected)


@pytest.mark.parametrize(
    ("batch", "length", "position", "splits", "warps_over", "tile"),
    [
        (1, 256, 150, 8, "heads", 16),
        (1, 2048, 1500, 8, "heads", 8),
        (16, 1024, 700, 2, "positions", 16),
        (1, 145, 144, 10, "heads", 16),  # past the portable 8 blocks: the H200's non-portable clusters
        (1, 1024, 1000, 16, "heads", 16),
    ],
)
def test_decode_attention_runs_combined_in_a_cluster_on_cuda(
    batch, length, position, splits, warps_over, tile
):
    options = dict(seed=position, device="cuda", splits=splits, tile=tile, warps_over=warps_over)
    check_case(*run_case(batch, 32, 8, 128, length, position, combine="cluster", **options))


@pytest.mark.parametrize(("batch", "length", "position"), [(1, 145, 144), (16, 145, 144), (16, 1024, 1000)])
def test_decode_attention_default_runs_with_auto_combine_on_cuda(batch, length, position):
    """The runs, tile and warps a model's step takes by default with ``combine="auto"`` (in a cluster at
    batch 16's 2 runs, through global memory for batch 1's 10) against float64."""
    qkv, cos, sin, k_cache, v_cache = make_case(batch, 32, 8, 128, length, torch.float16, position, "cuda")
    expected = reference(
        qkv.cpu(), cos.cpu(), sin.cpu(), k_cache.cpu(), v_cache.cpu(), position, 32, 8, 128, 128**-0.5
    )
    out = torch.full((batch, 32 * 128), float("nan"), dtype=torch.float16, device="cuda")
    position_tensor = torch.tensor([position], device="cuda")
    decode_attention(qkv, cos, sin, k_cache, v_cache, position_tensor, 32, out=out, combine="auto")
    check_case((out.cpu(), k_cache.cpu(), v_cache.cpu()), expected)


@pytest.mark.parametrize(
    ("warps_over", "tile", "splits"), [("heads", 8, 1), ("heads", 16, 8), ("positions", 16, 4)]
)
def test_decode_attention_with_a_padding_mask_on_cuda(warps_over, tile, splits):
    mask = torch.ones(4, 1024, dtype=torch.bool)
    mask[0, :300] = False  # left padding
    mask[2, 500:520] = False
    mask[3, 700] = False  # the step's own position
    found, expected = run_case(
        4,
        32,
        8,
        128,
        1024,
        700,
        seed=9,
        device="cuda",
        splits=splits,
        tile=tile,
        warps_over=warps_over,
        mask=mask.cuda(),
    )
    check_case(found, expected)


@pytest.mark.parametrize(("batch", "combine"), [(1, "global"), (4, "cluster"), (1, "cluster")])
def test_decode_attention_in_a_cuda_graph(batch, combine):
    """Three steps replayed from one graph: each writes its own cache row and attends over all before it
    (batch 1: 16 runs, through global memory or in a cluster of 16; batch 4 in clusters of 8 runs)."""
    qkv, cos, sin, k_cache, v_cache = make_case(batch, 32, 8, 128, 1024, seed=7, device="cuda")
    position = torch.tensor([600], device="cuda")
    out = torch.full((batch, 32 * 128), float("nan"), dtype=torch.float16, device="cuda")
    options = dict(heads=32, out=out, combine=combine)
    decode_attention(qkv, cos, sin, k_cache.clone(), v_cache.clone(), position, **options)  # warm up
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        decode_attention(qkv, cos, sin, k_cache, v_cache, position, **options)
        position.add_(1)
    for step in range(3):
        fresh = make_case(batch, 32, 8, 128, 1024, seed=20 + step, device="cuda")
        qkv.copy_(fresh[0])
        k_before, v_before = k_cache.cpu(), v_cache.cpu()
        expected = reference(
            qkv.cpu(), cos.cpu(), sin.cpu(), k_before, v_before, 600 + step, 32, 8, 128, 128**-0.5
        )
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        check_case((out.cpu(), k_cache.cpu(), v_cache.cpu()), expected)
