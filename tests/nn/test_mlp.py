"""fuse_mlp: a folded, quantized Llama layer's MLP as one decode kernel (CPU interpreter) gives the logits the
two-kernel MLP gives, eager and compiled, step after step of a static-cache decode; longer inputs keep the
two kernels; clear errors where it does not apply."""

from __future__ import annotations

import copy

import pytest
import torch
from decoding import decode_side_by_side

import anybit
from anybit.nn import fold_norms, fuse_mlp, fuse_projections

transformers = pytest.importorskip("transformers")


def _model() -> torch.nn.Module:
    """A 2-layer float16 Llama whose MLP shapes the fused kernel takes at int4 (hidden and intermediate 256:
    whole 8-warp blocks), with norm weights away from 1 so that folding them matters."""
    config = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=256,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    torch.manual_seed(2)
    model = transformers.AutoModelForCausalLM.from_config(config).to(torch.float16).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("layernorm.weight"):
                parameter.copy_(1.0 + 0.3 * torch.randn(parameter.shape))
    return model


def _folded_quantized() -> torch.nn.Module:
    model = _model()
    fuse_projections(model, gated_mlp=True)
    fold_norms(model)
    anybit.quantize_model(model, "int4", progress=False)
    return model


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_fused_mlp_decodes_as_the_two_kernels_do(compile, monkeypatch):
    reference = _folded_quantized()
    model = copy.deepcopy(reference)
    assert fuse_mlp(model, stages=3, split=2) == 2
    calls = []
    kernel = anybit.ops.matmul.decode_gated_mlp_
    counted = lambda *a, **k: calls.append(1) or kernel(*a, **k)  # noqa: E731
    monkeypatch.setattr(anybit.ops.matmul, "decode_gated_mlp_", counted)  # eager calls
    monkeypatch.setattr(anybit.ops.fused_library, "decode_gated_mlp_", counted)  # the custom op's (compiled)
    decode_side_by_side(reference, model, batch=1, prompt_length=5, steps=3, tolerance=1e-2, compile=compile)
    assert len(calls) == 2 * 4  # the prompt (5 rows, eager) and three steps, two layers each


def test_more_rows_keep_the_two_kernels(monkeypatch):
    model = _folded_quantized()
    fuse_mlp(model)
    calls = []
    monkeypatch.setattr(anybit.ops, "gated_mlp_", lambda *a, **k: calls.append(1))
    tokens = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(5))  # 24 rows
    with torch.no_grad():
        logits = model(tokens, use_cache=False).logits
    assert torch.isfinite(logits).all() and not calls


def test_fuse_mlp_says_why_it_does_not_apply():
    float_model = _model()
    with pytest.raises(ValueError, match="fuse_projections"):
        fuse_mlp(float_model)
    fuse_projections(float_model, gated_mlp=True)
    with pytest.raises(ValueError, match="fold_norms"):
        fuse_mlp(float_model)
    fold_norms(float_model)
    with pytest.raises(ValueError, match="quantize_model first"):
        fuse_mlp(float_model)
    unsigned = _model()
    fuse_projections(unsigned, gated_mlp=True)
    fold_norms(unsigned)
    anybit.quantize_model(unsigned, "uint4", progress=False)
    with pytest.raises(ValueError, match="zero points"):
        fuse_mlp(unsigned)
