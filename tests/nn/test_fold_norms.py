"""fold_norms: a Llama layer's RMSNorms folded into the projections after them and its residual adds into
the projections before them — the same logits in float, the fused ops on the quantized model (CPU
interpreter), under torch.compile, and clear errors where it does not apply."""

from __future__ import annotations

import copy

import pytest
import torch
from decoding import relative

import anybit
from anybit.nn import NormFoldedLinear, QuantizedLinear, ResidualProjection, fold_norms, fuse_projections

transformers = pytest.importorskip("transformers")


def _model(dtype=torch.float32):
    """The tiny Llama with norm weights away from 1, so that folding them matters."""
    from anybit.nn.decode import build_llama

    model = build_llama("tiny", dtype=dtype)
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("layernorm.weight"):
                parameter.copy_(1.0 + 0.3 * torch.randn(parameter.shape, generator=generator))
    return model


def _tokens(model, batch=2, length=7):
    generator = torch.Generator().manual_seed(5)
    return torch.randint(0, model.config.vocab_size, (batch, length), generator=generator)


@pytest.mark.parametrize("gated_mlp", [False, True], ids=["fused", "gated"])
def test_folded_model_computes_the_same_logits(gated_mlp):
    model = _model()
    reference = copy.deepcopy(model)
    fuse_projections(model, gated_mlp=gated_mlp)
    assert fold_norms(model) == 2
    layer = model.model.layers[0]
    assert isinstance(layer.self_attn.o_proj, ResidualProjection)
    assert isinstance(layer.mlp.down_proj, ResidualProjection)
    assert isinstance(layer.self_attn.qkv_proj.linear, NormFoldedLinear)
    assert isinstance(layer.input_layernorm, torch.nn.Identity)
    tokens = _tokens(model)
    with torch.no_grad():
        expected = reference(tokens, use_cache=False).logits
        found = model(tokens, use_cache=False).logits
    assert relative(found, expected) < 1e-5


def test_quantized_folded_model_runs_the_fused_ops():
    """The folded model quantized (int8: small quantization error) against the float folded model, on the
    CPU interpreter: the decode kernel's row RMS and in-place residual add, and the dequantize path."""
    model = _model(torch.float16)
    fuse_projections(model, gated_mlp=True)
    fold_norms(model)
    float_model = copy.deepcopy(model)
    anybit.quantize_model(model, "int8", group_size=64, progress=False)
    layer = model.model.layers[0]
    assert isinstance(layer.self_attn.o_proj.linear, QuantizedLinear)
    assert isinstance(layer.mlp.gate_up_proj.linear.linear, QuantizedLinear)
    for batch, length in ((1, 3), (2, 12)):  # 3 and 24 rows: the decode kernel and the dequantize path
        tokens = _tokens(model, batch, length)
        with torch.no_grad():
            expected = float_model(tokens, use_cache=False).logits
            found = model(tokens, use_cache=False).logits
        assert torch.isfinite(found).all()
        assert relative(found, expected) < 2e-2


def test_folded_quantized_model_compiles_whole():
    model = _model(torch.float16)
    fuse_projections(model, gated_mlp=True)
    fold_norms(model)
    anybit.quantize_model(model, "int8", group_size=64, progress=False)
    tokens = _tokens(model, 1, 3)
    with torch.no_grad():
        expected = model(tokens, use_cache=False).logits
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        found = compiled(tokens, use_cache=False).logits
    assert relative(found, expected) < 1e-3


def test_where_it_does_not_apply_it_says_so():
    model = _model()
    with pytest.raises(ValueError, match="fuse_projections"):
        fold_norms(model)  # not fused first
    fuse_projections(model)
    anybit.quantize_model(model, "int4", progress=False)
    with pytest.raises(ValueError, match="fold_norms, then quantize_model"):
        fold_norms(model)  # already quantized


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")
def test_folded_quantized_model_on_the_gpu():
    """Decode-kernel rows (3) and dequantize rows (24): the folded int4 model against the unfolded one
    quantized the same way (the folded weights are the same with γ = 1, the tiny model's own norms)."""
    from anybit.nn.decode import build_llama

    model = build_llama("tiny", device="cuda")
    fuse_projections(model, gated_mlp=True)
    folded = copy.deepcopy(model)
    fold_norms(folded)
    anybit.quantize_model(model, "int4", progress=False)
    anybit.quantize_model(folded, "int4", progress=False)
    for batch, length in ((1, 3), (2, 12)):
        tokens = _tokens(model, batch, length).cuda()
        with torch.no_grad():
            expected = model(tokens, use_cache=False).logits
            found = folded(tokens, use_cache=False).logits
        assert torch.isfinite(found).all()
        assert relative(found, expected) < 2e-3
