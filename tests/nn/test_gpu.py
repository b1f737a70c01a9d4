"""The nn layer on a GPU: QuantizedLinear against its reference, and greedy decode under a CUDA graph."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import anybit
from anybit.nn import QuantizedLinear

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)"),
]


@pytest.mark.parametrize("dtype", ["int4", "uint4", "int3", "int2", "float6_e3m2"])
@pytest.mark.parametrize("rows", [1, 16, 64])
def test_quantized_linear_on_cuda(dtype: str, rows: int) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(512, 256, device="cuda", dtype=torch.float16)
    layer = QuantizedLinear.from_linear(linear, dtype, group_size=128)
    assert layer.packed.is_cuda
    x = torch.randn(rows, 512, device="cuda", dtype=torch.float16)
    y = layer(x)
    reference = x.double() @ layer.dequantize().double().t() + layer.bias.double()
    error = float((y.double() - reference).norm() / reference.norm())
    assert torch.isfinite(y).all() and error < 2e-3, error


def test_greedy_decode_under_a_cuda_graph_matches_eager() -> None:
    transformers = pytest.importorskip("transformers")
    assert transformers
    from anybit.nn.decode import GreedyDecoder, build_llama

    model = build_llama("tiny", device="cuda")
    anybit.quantize_model(model, "int4", progress=False)
    prompt = torch.randint(0, model.config.vocab_size, (4, 8), generator=torch.Generator().manual_seed(0))
    graphed = GreedyDecoder(model, 4, 32)
    tokens = graphed.generate(prompt, 12)
    assert graphed.mode == "cuda-graph", graphed.graph_error
    eager = GreedyDecoder(model, 4, 32, use_graph=False).generate(prompt, 12)
    assert torch.equal(tokens, eager)


@pytest.mark.timeout(200)  # compiles the int4 and int3 decode kernels of four shapes first
def test_gpu_demo_runs(monkeypatch) -> None:
    """`anybit demo` on a GPU (here 2 layers, 8 tokens): every model decodes under a CUDA graph and the
    table has a row per model and batch. Tuning off (each kernel's first configuration that fits): this
    checks what the demo shows, not how long tuning takes (`STEPS=demo` in scripts/gpu_check.sh times the
    command itself, cold)."""
    pytest.importorskip("transformers")
    monkeypatch.setenv("ANYBIT_AUTOTUNE", "0")
    from anybit.nn.demo import GPU_TYPES, gpu_demo

    lines: list[str] = []
    assert gpu_demo(lines.append, layers=2, new_tokens=8)
    text = "\n".join(lines)
    for name in ("fp16", *GPU_TYPES):
        for batch in (1, 16):
            assert any(line.split()[:2] == [name, str(batch)] for line in lines), (name, batch, text)
    assert "CUDA graph capture failed" not in text
    checks = [line.split()[-2] for line in lines if line.split()[:1] in (["int4"], ["int3"])]
    # The kernels against cuBLAS on the same weights: fp32 accumulation in another order flips only near ties.
    assert checks and all(float(check.rstrip("%")) >= 90.0 for check in checks), text
