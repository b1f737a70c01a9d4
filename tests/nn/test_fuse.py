"""fuse_projections: sibling projections as one wider layer, same outputs in any call order."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import anybit
from anybit.nn import FusedProjection, ProjectionSlice, fuse_projections

transformers = pytest.importorskip("transformers")


def _model(dtype=torch.float32):
    from anybit.nn.decode import build_llama

    return build_llama("tiny", dtype=dtype)


def _tokens(model, batch=2, length=7):
    return torch.randint(
        0, model.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(3)
    )


def test_fused_model_computes_the_same_logits():
    model = _model()
    reference = copy.deepcopy(model)
    names = fuse_projections(model)
    assert names == [
        f"model.layers.{i}.{part}" for i in range(2) for part in ("self_attn.qkv_proj", "mlp.gate_up_proj")
    ]
    attention = model.model.layers[0].self_attn
    assert isinstance(attention.qkv_proj, FusedProjection) and isinstance(attention.k_proj, ProjectionSlice)
    keys = model.state_dict().keys()
    assert "model.layers.0.self_attn.qkv_proj.linear.weight" in keys
    assert not any(key.endswith("q_proj.weight") for key in keys)  # the fused weight is held once
    tokens = _tokens(model)
    with torch.no_grad():
        expected = reference(tokens, use_cache=False).logits
        found = model(tokens, use_cache=False).logits
    torch.testing.assert_close(found, expected, rtol=0, atol=1e-5)
    assert fuse_projections(model) == []  # already fused: nothing to do


def test_slices_are_right_in_any_call_order():
    torch.manual_seed(0)
    parent = nn.Module()
    parent.self_attn = nn.Module()
    layers = [nn.Linear(32, size) for size in (16, 8, 8)]
    for name, layer in zip(("q_proj", "k_proj", "v_proj"), layers, strict=True):
        setattr(parent.self_attn, name, layer)
    expected = copy.deepcopy(layers)
    fuse_projections(parent)
    x, other = torch.randn(3, 32), torch.randn(3, 32)
    attention = parent.self_attn
    with torch.no_grad():
        # k before q, another input in between, v twice: each call returns its projection of its input
        for module, index, value in [
            (attention.k_proj, 1, x),
            (attention.q_proj, 0, other),
            (attention.v_proj, 2, x),
            (attention.v_proj, 2, other),
            (attention.k_proj, 1, other),
        ]:
            torch.testing.assert_close(module(value), expected[index](value))


def test_quantizing_a_fused_model_matches_quantizing_the_siblings():
    """Scales are per output row and group of K: the fused layer quantizes to the siblings' codes."""
    model = _model()
    separate = copy.deepcopy(model)
    fuse_projections(model)
    summary = anybit.quantize_model(model, "int4", group_size=64, progress=False)
    assert "model.layers.0.self_attn.qkv_proj.linear" in [layer.name for layer in summary.layers]
    anybit.quantize_model(separate, "int4", group_size=64, progress=False)
    tokens = _tokens(model, batch=1, length=5)
    with torch.no_grad():
        torch.testing.assert_close(
            model(tokens, use_cache=False).logits, separate(tokens, use_cache=False).logits, rtol=0, atol=1e-5
        )


def test_mismatched_siblings_are_left_alone():
    parent = nn.Module()
    parent.mlp = nn.Module()
    parent.mlp.gate_proj = nn.Linear(32, 64)
    parent.mlp.up_proj = nn.Linear(16, 64)  # another input size: not siblings of one input
    assert fuse_projections(parent) == []
    assert type(parent.mlp.gate_proj) is nn.Linear


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")
@pytest.mark.parametrize("gated_mlp", [False, True], ids=["fused", "gated"])
def test_fused_quantized_model_on_the_gpu_matches_unfused(gated_mlp):
    """Decode-kernel rows (12 ≤ 16) and dequantize rows (64): fused (and with the gated epilogue) and
    separate agree to the rounding."""
    from anybit.nn.decode import build_llama

    model = build_llama("tiny", device="cuda")
    fused = copy.deepcopy(model)
    fuse_projections(fused, gated_mlp=gated_mlp)
    anybit.quantize_model(model, "int4", progress=False)
    anybit.quantize_model(fused, "int4", progress=False)
    for batch, length in ((2, 6), (4, 16)):
        tokens = _tokens(model, batch, length).cuda()
        with torch.no_grad():
            expected = model(tokens, use_cache=False).logits.double()
            found = fused(tokens, use_cache=False).logits.double()
        assert torch.isfinite(found).all()
        assert float((found - expected).norm() / expected.norm()) < 2e-3


def test_gated_mlp_computes_the_same_logits_float_and_quantized():
    """gated_mlp: the MLP becomes down_proj(silu·up of one interleaved layer); float logits equal, and the
    quantized model (the epilogue pairs the rows) agrees with the unfused quantized one to the rounding."""
    from anybit.nn import GatedMLP, GatedProjection, QuantizedLinear

    model = _model(torch.float16)
    reference = copy.deepcopy(model)
    names = fuse_projections(model, gated_mlp=True)
    assert "model.layers.0.mlp.gate_up_proj" in names and "model.layers.0.self_attn.qkv_proj" in names
    mlp = model.model.layers[0].mlp
    assert isinstance(mlp, GatedMLP) and isinstance(mlp.gate_up_proj, GatedProjection)
    assert not hasattr(mlp, "gate_proj")
    tokens = _tokens(model, batch=1, length=5)
    with torch.no_grad():
        expected = reference(tokens, use_cache=False).logits.float()
        found = model(tokens, use_cache=False).logits.float()
    assert float((found - expected).norm() / expected.norm()) < 2e-3
    anybit.quantize_model(model, "int4", group_size=64, progress=False)
    anybit.quantize_model(reference, "int4", group_size=64, progress=False)
    gated_layer = model.model.layers[0].mlp.gate_up_proj.linear
    assert isinstance(gated_layer, QuantizedLinear) and gated_layer.layout.gated
    with torch.no_grad():
        expected = reference(tokens, use_cache=False).logits.float()
        found = model(tokens, use_cache=False).logits.float()
    assert torch.isfinite(found).all()
    assert float((found - expected).norm() / expected.norm()) < 5e-3
    # The packed form saves and loads with its gating (state version 4).
    state = gated_layer.state_dict()
    assert state["_extra_state"]["packing"]["gated"] is True
    plain = nn.Linear(gated_layer.in_features, gated_layer.out_features, bias=False).half()
    fresh = QuantizedLinear.from_linear(plain, "int4", 64)
    assert not fresh.layout.gated
    fresh.load_state_dict(state)
    x = torch.randn(2, gated_layer.in_features).half()
    torch.testing.assert_close(fresh(x), gated_layer(x), rtol=0, atol=0)
