"""fuse_attention: a Llama attention block's decode step in one kernel (on the CPU interpreter here) computes
the logits the block's own forward does, step after step of a static-cache decode; prefill and other calls
keep the block's forward; clear errors where it does not apply."""

from __future__ import annotations

import copy

import pytest
import torch
from decoding import decode_side_by_side, relative

from anybit.nn import fuse_attention, fuse_projections
from anybit.nn.decode import GreedyDecoder

transformers = pytest.importorskip("transformers")


def _model(layers: int = 2, config_class=None, seed: int = 3) -> torch.nn.Module:
    """A small bfloat16 model (a Llama unless ``config_class`` says otherwise) with 64-wide heads (the
    kernel's smallest) and grouped-query attention."""
    config = (config_class or transformers.LlamaConfig)(
        vocab_size=128,
        hidden_size=256,
        intermediate_size=256,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16).eval()


def _count_launches(monkeypatch) -> list:
    """Record every launch of the kernel (its mask argument) from here on: the torch op calls the module-level
    name, so the list sees every launch."""
    import anybit.nn.attention as attention

    calls = []
    kernel = attention.decode_attention
    monkeypatch.setattr(
        attention, "decode_attention", lambda *a, **k: calls.append(k.get("mask")) or kernel(*a, **k)
    )
    return calls


def _fused_pair(layers: int = 2):
    """(the reference model, a copy with fused projections and attention)."""
    model = _model(layers)
    reference = copy.deepcopy(model)
    fuse_projections(model)
    fuse_attention(model)
    return reference, model


def test_fused_attention_decodes_like_the_block_forward(monkeypatch):
    calls = _count_launches(monkeypatch)
    model = _model()
    reference = copy.deepcopy(model)
    fuse_projections(model)
    assert fuse_attention(model) == 2
    decoders = decode_side_by_side(reference, model, batch=2, prompt_length=5, steps=4, tolerance=3e-2)
    assert len(calls) == 2 * 4  # every decode step of both layers took the kernel; the prompt did not
    counts = [[int(layer.cumulative_length) for layer in d.cache.layers] for d in decoders]
    assert counts[1] == counts[0] == [5 + 4, 5 + 4]  # the last block advanced both layers' counts each step
    keys = [d.cache.layers[0].keys[:, :, :9].float() for d in decoders]
    assert relative(keys[1], keys[0]) < 2e-2  # the kernel wrote the same rotated keys


def test_fused_attention_combines_runs_in_a_cluster_when_asked(monkeypatch):
    """``combine="cluster"`` reaches every launch (a long cache's runs then meet in a thread-block cluster;
    tests/kernels/test_attention.py checks that path's numbers) and the model decodes as before."""
    import anybit.nn.attention as attention

    combines = []
    kernel = attention.decode_attention
    monkeypatch.setattr(
        attention, "decode_attention", lambda *a, **k: combines.append(k.get("combine")) or kernel(*a, **k)
    )
    model = _model()
    reference = copy.deepcopy(model)
    fuse_projections(model)
    assert fuse_attention(model, combine="cluster") == 2
    decode_side_by_side(reference, model, batch=1, prompt_length=5, steps=3, tolerance=3e-2)
    assert combines == ["cluster"] * 2 * 3
    with pytest.raises(ValueError, match="combine one of"):
        fuse_attention(model, combine="shared")


def test_where_fuse_attention_does_not_apply_it_says_so():
    with pytest.raises(ValueError, match="fuse_projections"):
        fuse_attention(_model(layers=1))
    from anybit.nn.decode import build_llama

    tiny = build_llama("tiny", dtype=torch.bfloat16)  # 32-wide heads
    fuse_projections(tiny)
    with pytest.raises(ValueError, match="multiple of 64"):
        fuse_attention(tiny)


def test_fused_attention_traces_whole_under_torch_compile():
    """Dynamo traces the fused decode step without a graph break (the kernel is one torch op that writes the
    caches), and the compiled step computes what the eager one does."""
    model = _model()
    fuse_projections(model)
    fuse_attention(model)
    prompt = torch.randint(0, 128, (1, 5), generator=torch.Generator().manual_seed(6))
    decoders = [GreedyDecoder(model, batch=1, max_length=10, use_graph=False) for _ in range(2)]
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        for decoder in decoders:
            decoder.prefill(prompt)
        expected = decoders[0]._forward(decoders[0].token, decoders[0].position)
        found = decoders[1]._forward(decoders[1].token, decoders[1].position, compiled)
    assert not torch.isnan(found).any()
    assert relative(found, expected) < 1e-2
    assert torch.equal(decoders[0].cache.layers[1].keys, decoders[1].cache.layers[1].keys)


def test_fused_attention_with_folded_norms_on_a_quantized_model():
    """The whole fast path together, as the end-to-end benchmark builds it: fused projections, folded norms
    and residual adds, the fused attention, int8 weights (small quantization error), on the interpreter."""
    import anybit
    from anybit.nn import fold_norms

    model = _model(layers=1)
    reference = copy.deepcopy(model)
    fuse_projections(model, gated_mlp=True)
    fold_norms(model)
    fuse_attention(model)
    anybit.quantize_model(model, "int8", group_size=64, progress=False)
    decode_side_by_side(reference, model, batch=1, prompt_length=4, steps=2, tolerance=5e-2)


def test_transformers_generate_with_a_static_cache_takes_the_kernel(monkeypatch):
    """The user's path: ``model.generate(..., cache_implementation="static")`` on a fused model decodes the
    tokens the unfused model does, every decode step of every layer through the kernel."""
    calls = _count_launches(monkeypatch)
    reference, model = _fused_pair()
    prompt = torch.randint(0, 128, (2, 5), generator=torch.Generator().manual_seed(1))
    settings = dict(max_new_tokens=5, do_sample=False, cache_implementation="static")
    with torch.no_grad():
        expected = reference.generate(prompt, **settings)
        found = model.generate(prompt, **settings)
    assert torch.equal(found, expected)
    assert len(calls) == 2 * 4  # the first new token comes from the prompt's forward


def test_generate_a_left_padded_batch_through_the_kernel(monkeypatch):
    """transformers' padding mask reaches the kernel: a left-padded batch decodes the reference's tokens
    (the kernel ran every decode step), and so does the unpadded sequence beside it."""
    calls = _count_launches(monkeypatch)
    reference, model = _fused_pair()
    prompt = torch.randint(1, 128, (2, 6), generator=torch.Generator().manual_seed(8))
    padding = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    settings = dict(attention_mask=padding, max_new_tokens=5, do_sample=False, cache_implementation="static")
    with torch.no_grad():
        expected = reference.generate(prompt, pad_token_id=0, **settings)
        found = model.generate(prompt, pad_token_id=0, **settings)
    assert torch.equal(found, expected)
    # The model's own mask reaches the kernel ([B, 1, 1, L]), the first sequence's padding dropped.
    assert len(calls) == 2 * 4 and all(
        mask is not None and not mask.flatten(1)[0, :3].any() for mask in calls
    )


def test_mistral_and_qwen2_attention_decode_through_the_kernel():
    for config_class in (transformers.MistralConfig, transformers.Qwen2Config):
        model = _model(layers=1, config_class=config_class, seed=5)
        reference = copy.deepcopy(model)
        fuse_projections(model)
        assert fuse_attention(model) == 1
        decode_side_by_side(reference, model, batch=1, prompt_length=4, steps=3, tolerance=3e-2)


def test_attention_the_kernel_does_not_reproduce_is_refused():
    qwen3 = _model(layers=1, config_class=transformers.Qwen3Config)  # q_norm and k_norm on each head
    fuse_projections(qwen3)
    with pytest.raises(ValueError, match="Qwen3Attention is not one of the Llama-style"):
        fuse_attention(qwen3)
    partial = _model(layers=1)
    partial.config.partial_rotary_factor = 0.5
    fuse_projections(partial)
    with pytest.raises(ValueError, match="partial_rotary_factor"):
        fuse_attention(partial)


def test_a_compiled_step_derives_the_mask_once():
    """Compiled, every layer's kernel reads the one mask buffer the step computes (a copy a layer was a kernel
    of its own between each layer's q/k/v projection and attention: a plain launch there breaks the chain of
    dependent launches, ~4 µs a layer on an H200), and the compiled step's logits are the reference's."""
    import re

    from torch._inductor.utils import run_and_get_code

    reference, model = _fused_pair(layers=3)
    decoders = [
        GreedyDecoder(m, batch=1, max_length=12, use_graph=False, compile=True) for m in (reference, model)
    ]
    prompt = torch.randint(0, 128, (1, 5), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        for decoder in decoders:
            decoder.prefill(prompt)
        expected = decoders[0]._forward(decoders[0].token, decoders[0].position, decoders[0]._step_model)
        found, code = run_and_get_code(
            decoders[1]._forward, decoders[1].token, decoders[1].position, decoders[1]._step_model
        )
    assert relative(found, expected) < 3e-2
    # The wrapper's calls of the op: their last argument is the mask (a buffer, or a view of one).
    calls = re.findall(r"anybit\.decode_attention\.default\((.*)\)", "\n".join(code))
    masks = [_last_argument(call) for call in calls]
    assert len(masks) == 3 and len(set(masks)) == 1, masks
    # The steps after it run the same compiled code (the shared mask's holder changes no guard).
    decoder = decoders[1]
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(2):
            decoder.position.add_(1)
            assert not torch.isnan(
                decoder._forward(decoder.token, decoder.position, decoder._step_model)
            ).any()


def _last_argument(arguments: str) -> str:
    """The last top-level argument of a call's argument text."""
    depth, start = 0, 0
    for index, character in enumerate(arguments):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(character, 0)
        if character == "," and depth == 0:
            start = index + 1
    return arguments[start:].strip()


def test_the_mask_forms_the_kernel_is_given():
    """transformers' decode masks as the fused blocks hand them to the kernel: a bool mask as it is (its
    positions made consecutive if they are not), an additive one as bool, other forms refused; the first
    block derives a step's mask and the others reuse it unless they are given another."""
    from anybit.nn.attention import _UNSUPPORTED, _decode_mask, _step_mask

    rows = torch.rand(2, 1, 1, 6) > 0.3
    assert _decode_mask(rows, 2, 6) is rows
    strided = torch.rand(2, 1, 1, 12)[..., ::2] > 0.3
    assert torch.equal(_decode_mask(strided, 2, 6), strided) and _decode_mask(strided, 2, 6).stride(-1) == 1
    additive = torch.where(rows, 0.0, float("-inf"))
    assert torch.equal(_decode_mask(additive, 2, 6), rows)
    assert _decode_mask(rows, 2, 7) is _UNSUPPORTED and _decode_mask(rows[0], 2, 6) is _UNSUPPORTED
    assert _decode_mask(None, 2, 6) is None

    holder = [None, None]
    first, other = (
        type("Block", (), {"anybit_first_block": flag, "anybit_step_mask": holder})()
        for flag in (True, False)
    )
    additive_copy = additive.clone()
    derived = _step_mask(first, additive, 2, 6)
    assert _step_mask(other, additive, 2, 6) is derived  # the same step: reused
    assert _step_mask(other, additive_copy, 2, 6) is not derived  # another mask: derived again
    assert _step_mask(first, additive, 2, 6) is not derived  # the next step: the first block derives anew
