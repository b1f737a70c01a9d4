"""The greedy pick on the GPU against torch's argmax: Llama-3's vocabulary, every logits dtype, and replayed
from a CUDA graph."""

from __future__ import annotations

import pytest
import torch

from anybit.kernels.greedy import greedy_token

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]


@pytest.mark.parametrize("act", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("batch", [1, 16])
def test_greedy_token_on_cuda(act, batch):
    logits = torch.randn(batch, 128256, device="cuda").to(act)
    out = torch.full((batch, 1), -1, dtype=torch.int64, device="cuda")
    greedy_token(logits, out=out)
    assert torch.equal(out, logits.argmax(-1, keepdim=True))


def test_greedy_token_in_a_cuda_graph():
    logits = torch.randn(2, 128256, device="cuda").half()
    out = torch.full((2, 1), -1, dtype=torch.int64, device="cuda")
    greedy_token(logits, out=out)  # warm up: the workspace is made outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        greedy_token(logits, out=out)
    for seed in range(3):
        logits.copy_(
            torch.randn(2, 128256, device="cuda", generator=torch.Generator("cuda").manual_seed(seed))
        )
        out.fill_(-1)
        graph.replay()
        assert torch.equal(out, logits.argmax(-1, keepdim=True))
