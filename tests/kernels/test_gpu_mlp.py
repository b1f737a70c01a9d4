"""The fused gated MLP kernel on the GPU: Llama-3-8B's MLP (hidden 4096, intermediate 14336) against float64
and against the two kernels it replaces, 1–16 rows, in place on a residual stream, replayed from a CUDA graph
(its workspace and counters left clean for the next replay)."""

from __future__ import annotations

import pytest
import torch

from anybit import kernels, ops
from anybit.kernels.gated import gated_reference, interleave_gated
from anybit.kernels.mlp import decode_gated_mlp_

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]

HIDDEN, INTERMEDIATE, EPS = 4096, 14336, 1e-5


def _mlp(dtype: str, act: torch.dtype, down_bytes: int | None = None):
    generator = torch.Generator(device="cuda").manual_seed(11)
    shape = (INTERMEDIATE, HIDDEN)
    gate, up = (torch.randn(shape, device="cuda", generator=generator) * 0.02 for _ in range(2))
    down = torch.randn(HIDDEN, INTERMEDIATE, device="cuda", generator=generator) * 0.02
    q_pair = kernels.quantize(interleave_gated(gate, up), dtype, act_dtype=act)
    q_down = kernels.quantize(down, dtype, act_dtype=act)
    pair = kernels.pack(
        q_pair, layout=kernels.choose_layout(dtype, 2 * INTERMEDIATE, HIDDEN, 128, gated=True)
    )
    packed_down = kernels.pack(
        q_down,
        layout=kernels.choose_layout(
            dtype, HIDDEN, INTERMEDIATE, 128, operand="a", max_bytes_per_thread=down_bytes
        ),
    )
    return q_pair, pair, q_down, packed_down


def _expected(stream, q_pair, q_down):
    x = stream.double()
    normed = x / torch.sqrt((x * x).mean(-1, keepdim=True) + EPS)
    h = gated_reference(normed @ kernels.dequantize(q_pair).double().T).to(stream.dtype).double()
    return x + h @ kernels.dequantize(q_down).double().T


@pytest.mark.parametrize(
    ("dtype", "act", "down_bytes"),
    [
        ("int4", torch.float16, None),
        ("int4", torch.bfloat16, None),
        ("int8", torch.float16, None),
        ("int8", torch.float16, 128),  # down as choose_layout packs a 70B-sized 8-bit down: wide tiles
        ("int6", torch.bfloat16, 128),
    ],
)
@pytest.mark.parametrize("m", [1, 4, 16])
def test_fused_mlp_on_cuda(dtype, act, down_bytes, m):
    q_pair, pair, q_down, down = _mlp(dtype, act, down_bytes)
    stream = torch.randn(m, HIDDEN, dtype=act, device="cuda")
    expected = _expected(stream, q_pair, q_down)
    two = stream.clone()
    ops.quantized_matmul_add_(two, ops.quantized_matmul_rms(two, pair, EPS), down)
    found = stream.clone()
    decode_gated_mlp_(found, found, pair, down, rms_eps=EPS)
    assert not found.isnan().any()
    tolerance = 4e-3 if act == torch.bfloat16 else 1e-3
    for result in (found, two):
        assert float((result.double() - expected).norm() / expected.norm()) < tolerance
    assert float((found.double() - two.double()).norm() / two.double().norm()) < tolerance


@pytest.mark.parametrize("stages", [3, 6])
@pytest.mark.parametrize("split", [1, 2])
def test_fused_mlp_variants_on_cuda(stages, split):
    """The probe's variants: ring depths (6 stages: phase 2 reuses phase 1's shared memory) and gate/up's
    split-K."""
    q_pair, pair, q_down, down = _mlp("int4", torch.float16)
    stream = torch.randn(2, HIDDEN, dtype=torch.float16, device="cuda")
    expected = _expected(stream, q_pair, q_down)
    decode_gated_mlp_(stream, stream, pair, down, rms_eps=EPS, stages=stages, split=split)
    assert float((stream.double() - expected).norm() / expected.norm()) < 1e-3


def test_fused_mlp_replays_from_a_cuda_graph():
    """Three replays, each from a fresh stream copied in: every one gives the one-step result (the workspace
    and the counters are clean again after each launch)."""
    q_pair, pair, q_down, down = _mlp("int4", torch.float16)
    source = torch.randn(1, HIDDEN, dtype=torch.float16, device="cuda")
    stream = source.clone()
    decode_gated_mlp_(stream, stream, pair, down, rms_eps=EPS)  # warm-up: compiles and allocates
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        decode_gated_mlp_(stream, stream, pair, down, rms_eps=EPS)
    expected = _expected(source, q_pair, q_down)
    for _ in range(3):
        stream.copy_(source)
        before = stream.clone()
        graph.replay()
        torch.cuda.synchronize()
        assert not torch.equal(stream, before)  # the replay ran
        assert float((stream.double() - expected).norm() / expected.norm()) < 1e-3
