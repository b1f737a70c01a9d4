"""quantize_model on a tiny Hugging Face Llama and on plain modules: selection, overrides, summary, output."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

import anybit
from anybit.nn import QuantizedLinear
from anybit.nn.convert import pattern_matches

transformers = pytest.importorskip("transformers")


def tiny_llama() -> nn.Module:
    config = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def dequantized_copy(model: nn.Module) -> nn.Module:
    """The same model with every QuantizedLinear replaced by its float reference (``to_linear``)."""
    reference = copy.deepcopy(model)
    for name, module in list(reference.named_modules()):
        if isinstance(module, QuantizedLinear):
            parent, _, child = name.rpartition(".")
            setattr(reference.get_submodule(parent), child, module.to_linear().float())
    return reference


def test_pattern_matches_full_names_and_suffixes() -> None:
    name = "model.layers.0.mlp.up_proj"
    assert pattern_matches(name, "*.mlp.*") and pattern_matches(name, "mlp.*")
    assert pattern_matches(name, "up_proj") and pattern_matches(name, name)
    assert not pattern_matches(name, "self_attn.*") and not pattern_matches("lm_head", "head")


def test_mixed_precision_llama(caplog: pytest.LogCaptureFixture) -> None:
    model = tiny_llama()
    before = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    with caplog.at_level(logging.INFO, logger="anybit"):
        summary = anybit.quantize_model(
            model,
            "int4",
            group_size=64,
            overrides={"*.mlp.*": "int3", "*.mlp.down_proj": {"group_size": 32}},
            progress=False,
        )
    assert isinstance(model.lm_head, nn.Linear)  # skipped by default
    layers = {layer.name: layer for layer in summary.layers}
    assert len(layers) == 14
    assert layers["model.layers.0.self_attn.q_proj"].dtype == "int4"
    assert layers["model.layers.1.mlp.gate_proj"].dtype == "int3"
    down = model.model.layers[1].mlp.down_proj  # last matching override wins, on top of the default
    assert down.weight_dtype.name == "int4" and down.group_size == 32
    assert summary.by_dtype() == {"int4": 10, "int3": 4}
    assert summary.skipped == (("lm_head", "matches skip pattern 'lm_head'"),)
    assert summary.model_bytes_before == before and summary.model_bytes_after < before
    assert summary.linear_bytes_after < summary.linear_bytes_before / 3
    assert "quantized 14 linear layers" in caplog.text and "whole model" in str(summary)


def test_operand_a_packing_through_quantize_model() -> None:
    """``operand="a"`` (default and per override) packs for the transposed decode kernel; the model computes
    what its dequantized reference does, and the same codes as with the default packing."""
    model = tiny_llama()
    default = copy.deepcopy(model)
    anybit.quantize_model(
        model,
        "int4",
        group_size=64,
        operand="a",
        overrides={"*.mlp.down_proj": {"operand": "b"}},
        skip=("lm_head", "*.mlp.gate_proj", "*.mlp.up_proj"),
        progress=False,
    )
    anybit.quantize_model(
        default, "int4", group_size=64, skip=("lm_head", "*.mlp.gate_proj", "*.mlp.up_proj"), progress=False
    )
    layers = model.model.layers[0]
    assert layers.self_attn.q_proj.layout.operand == "a" and layers.mlp.down_proj.layout.operand == "b"
    assert torch.equal(
        layers.self_attn.q_proj.dequantize(), default.model.layers[0].self_attn.q_proj.dequantize()
    )
    tokens = torch.tensor([[1, 5, 9]])
    with torch.no_grad():
        logits = model(tokens).logits
        expected = dequantized_copy(model)(tokens).logits
    assert torch.allclose(logits, expected, atol=5e-2, rtol=0), (logits - expected).abs().max()


def test_quantized_llama_runs_and_matches_its_dequantized_reference() -> None:
    model = tiny_llama()
    anybit.quantize_model(model, "int4", group_size=64, skip=("lm_head", "*.mlp.*"), progress=False)
    reference = dequantized_copy(model)
    tokens = torch.tensor([[1, 5, 9]])
    with torch.no_grad():
        logits = model(tokens).logits
        expected = reference(tokens).logits
    assert torch.allclose(logits, expected, atol=5e-2, rtol=0), (logits - expected).abs().max()


def test_state_dict_of_quantized_model_round_trips() -> None:
    model = tiny_llama()
    anybit.quantize_model(model, "uint4", group_size=64, overrides={"*.v_proj": "int8"}, progress=False)
    fresh = tiny_llama()
    anybit.quantize_model(fresh, "int2", group_size=64, progress=False)  # other types: adopted on load
    fresh.load_state_dict(model.state_dict())
    assert fresh.model.layers[0].self_attn.v_proj.weight_dtype.name == "int8"
    assert fresh.model.layers[0].mlp.up_proj.zero_point
    assert torch.equal(
        fresh.model.layers[0].mlp.up_proj.dequantize(), model.model.layers[0].mlp.up_proj.dequantize()
    )


def test_unsupported_layers_skip_or_raise() -> None:
    model = nn.Sequential(nn.Linear(128, 64), nn.Linear(64, 30))  # N = 30 fits no packing
    summary = anybit.quantize_model(model, "int4", group_size=64, progress=False)
    assert isinstance(model[0], QuantizedLinear) and isinstance(model[1], nn.Linear)
    assert summary.skipped[0][0] == "1" and "expected" in summary.skipped[0][1]
    with pytest.raises(ValueError, match="layer 1:"):
        anybit.quantize_model(model, "int4", group_size=64, on_unsupported="raise", progress=False)


def test_override_to_none_skips_and_bad_types_fail_before_work() -> None:
    model = nn.Sequential(nn.Linear(128, 64), nn.Linear(64, 64))
    summary = anybit.quantize_model(model, "int4", group_size=64, overrides={"1": None}, progress=False)
    assert [layer.name for layer in summary.layers] == ["0"] and isinstance(model[1], nn.Linear)
    with pytest.raises(ValueError, match="int9"):
        anybit.quantize_model(model, "int4", overrides={"1": "int9"}, progress=False)
    assert isinstance(model[1], nn.Linear)
