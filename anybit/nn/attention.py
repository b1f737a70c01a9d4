"""A Llama attention block's decode step in one kernel: :func:`fuse_attention` swaps each attention block's
forward for one that, at decode time (one token a sequence, a static KV cache), runs the fused q/k/v
projection, then :func:`~anybit.kernels.attention.decode_attention` (rotary embedding, the cache write and
attention in one kernel, launched as a programmatic dependent), then ``o_proj``. Everything else (prefill,
dynamic caches, several tokens a step) runs the block's own forward.

It replaces ~5 kernels a layer (the rotary and cache-update kernels, the attention and its input copy) by one.
It assumes what a static-cache decode step is: every sequence of the batch at the same cache position; the
attention mask transformers passes (a left-padded batch's padding, the cache's unfilled positions) is
applied per sequence and position; a mask of another form keeps the block's own forward.
"""

from __future__ import annotations

import types

import torch
from torch import nn

from anybit.kernels.attention import COMBINE_CHOICES, decode_attention
from anybit.nn.fuse import FusedProjection


@torch.library.custom_op("anybit::decode_attention", mutates_args=("k_cache", "v_cache"))
def decode_attention_op(
    qkv: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    position: torch.Tensor,
    heads: int,
    scale: float,
    mask: torch.Tensor | None = None,
    combine: str = "auto",
) -> torch.Tensor:
    """:func:`decode_attention` as a torch op (``torch.compile`` and CUDA graphs see one op that writes the
    caches), returning the attention output [B, heads · D]."""
    return decode_attention(
        qkv, cos, sin, k_cache, v_cache, position, heads, scale, mask=mask, combine=combine
    )


@decode_attention_op.register_fake
def _decode_attention_fake(
    qkv, cos, sin, k_cache, v_cache, position, heads, scale, mask=None, combine="auto"
):
    return qkv.new_empty(qkv.shape[0], heads * k_cache.shape[-1])


#: What :func:`_decode_mask` returns for a mask the kernel cannot take (the block's own forward runs).
_UNSUPPORTED = object()


def _decode_mask(attention_mask, batch: int, length: int):
    """transformers' decode-step mask ([B or 1, 1, 1, L]: bool, True to attend, or additive float, 0 to
    attend) as the kernel takes it; None without one; ``_UNSUPPORTED`` for anything else (another shape, a
    block mask object)."""
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 4:
        return _UNSUPPORTED
    rows, heads, queries, positions = attention_mask.shape
    if rows not in (1, batch) or heads != 1 or queries != 1 or positions != length:
        return _UNSUPPORTED
    if attention_mask.dtype != torch.bool:
        return attention_mask == 0  # an additive mask: 0 where attended, a large negative number elsewhere
    if attention_mask.stride(-1) != 1:  # the kernel reads each row's positions as consecutive bytes
        return attention_mask.contiguous()
    # Compiled, the kernel's operand must be a tensor of its own: Inductor gives a view of the model's mask
    # (transformers' ends in an expand) a copy for each op that reads it. Eager, the mask as it is.
    return attention_mask.clone() if torch.compiler.is_compiling() else attention_mask


def _step_mask(block, attention_mask, batch: int, length: int):
    """The step's mask for ``block``: derived by the model's first fused block, the same tensor for the
    others (the model passes every layer one mask object).

    One derivation a step, not one a layer: compiled, each layer's own copy of the mask became a kernel of
    its own between the q/k/v projection and the attention kernel, a plain launch that broke the chain of
    dependent launches — ~4 µs a layer (H200, 2026-11-29: int4 Llama-3-8B 2.24 against 2.11 ms a step).
    The holder keeps the step's pair until the next step overwrites it, which makes the derived mask an
    output of the compiled step: Inductor then computes it into one buffer, in the step's first kernel, that
    every layer's op reads (a mask used only inside the graph it still copied once per op). The holder is
    never emptied: torch.compile guards on its length, and a step that found it otherwise would compile
    again.
    """
    shared = block.anybit_step_mask
    if not block.anybit_first_block and shared[0] is attention_mask:
        return shared[1]
    mask = _decode_mask(attention_mask, batch, length)
    if isinstance(mask, torch.Tensor):  # None and the unsupported marker are not worth keeping
        shared[0], shared[1] = attention_mask, mask
    return mask


def _cache_layer(cache, index: int):
    """The static cache's layer ``index`` once its tensors exist (the prompt fills them), else None."""
    layers = getattr(cache, "layers", None)
    if layers is None or index >= len(layers):
        return None
    layer = layers[index]
    if type(layer).__name__ != "StaticLayer":  # sliding-window and other layers keep the block's forward
        return None
    keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
    if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor) or keys.dim() != 4:
        return None
    return layer


def _fused_forward(
    self, hidden_states: torch.Tensor, position_embeddings=None, attention_mask=None, **kwargs
):
    """Decode steps through :func:`decode_attention`; anything else through the block's own forward."""
    cache_keyword = "cache" if "cache" in kwargs else "past_key_values"
    cache = kwargs.get(cache_keyword)
    layer = _cache_layer(cache, self.layer_idx) if cache is not None else None
    counted = layer is not None and isinstance(getattr(layer, "cumulative_length", None), torch.Tensor)
    position = layer.cumulative_length if counted else kwargs.get("cache_position")
    batch, tokens = hidden_states.shape[:2]
    mask = _step_mask(self, attention_mask, batch, layer.keys.shape[2]) if layer is not None else None
    if (
        layer is None
        or position is None
        or tokens != 1
        or position_embeddings is None
        or hidden_states.dtype not in (torch.float16, torch.bfloat16)
        or layer.keys.shape[0] != batch
        or mask is _UNSUPPORTED
    ):
        return self.anybit_forward(
            hidden_states, position_embeddings=position_embeddings, attention_mask=attention_mask, **kwargs
        )
    cos, sin = position_embeddings
    qkv = self.qkv_proj(hidden_states)
    out = decode_attention_op(
        qkv.reshape(batch, -1).contiguous(),
        cos.to(qkv.dtype).contiguous(),
        sin.to(qkv.dtype).contiguous(),
        layer.keys,
        layer.values,
        position.reshape(1),
        self.anybit_heads,
        float(self.scaling),
        mask,
        self.anybit_combine,
    )
    projected = self.o_proj(out.view(batch, 1, -1))
    if counted and self.anybit_counted_layers:
        # Static layers count their own length (transformers ≥ 5.2x) and update() advances each: the last
        # fused block advances every fused layer's count at once, after its o projection (the blocks before
        # it have read theirs by then). One kernel a step instead of one a layer, and none between a layer's
        # attention and its o projection: a kernel there is not a programmatic dependent, so o could not
        # launch early and load its weight while attention runs.
        counters = [_counter(cache, index) for index in self.anybit_counted_layers]
        torch._foreach_add_([c for c in counters if c is not None], 1)
    return projected, None


def _counter(cache, index: int) -> torch.Tensor | None:
    """Layer ``index``'s length count when it is a static layer counting in a tensor, else None."""
    layer = _cache_layer(cache, index)
    counter = getattr(layer, "cumulative_length", None) if layer is not None else None
    return counter if isinstance(counter, torch.Tensor) else None


#: Attention blocks whose decode step is the kernel's math: q/k/v, rotate_half rotary over the whole head
#: with transformers' cos/sin, the cache, softmax(q·kᵀ · scaling + mask) · v, o. Others (q/k norms as in
#: Qwen3, logit soft-capping as in Gemma 2, partial rotary) would decode wrongly through the kernel.
LLAMA_STYLE_ATTENTION = ("LlamaAttention", "MistralAttention", "Qwen2Attention")


def _check_llama_math(module: nn.Module, config) -> None:
    """Raise unless ``module`` computes what the kernel computes (see LLAMA_STYLE_ATTENTION)."""
    kind = type(module).__name__
    if kind not in LLAMA_STYLE_ATTENTION:
        raise ValueError(
            f"fuse_attention: {kind} is not one of the Llama-style attention blocks the kernel reproduces "
            f"({', '.join(LLAMA_STYLE_ATTENTION)}); leave this model's attention unfused"
        )
    if getattr(config, "partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(
            "fuse_attention: the config rotates only part of each head (partial_rotary_factor "
            f"{config.partial_rotary_factor}); the kernel rotates whole heads — leave the attention unfused"
        )


def fuse_attention(model: nn.Module, *, combine: str = "auto") -> int:
    """Give every Llama-style attention block with a fused ``qkv_proj`` (:func:`~anybit.nn.fuse_projections`)
    the one-kernel decode step, in place; returns how many blocks were changed. ``combine``: where a long
    cache's runs meet (:func:`~anybit.kernels.decode_attention`'s ``combine``: ``"auto"``, the default, the
    cluster where the runs fit a portable one and the grid one wave, else global memory; ``"global"``;
    ``"cluster"`` on sm_90 — at most 16 runs, combined in the cluster's shared memory).

    Raises
    ------
    ValueError
        If no block qualifies (call ``fuse_projections`` first), a block's head counts or head dimension
        are ones the kernel cannot take, or its math is not Llama's (``LLAMA_STYLE_ATTENTION``).
    """
    if combine not in COMBINE_CHOICES:
        raise ValueError(f"fuse_attention: expected combine one of {COMBINE_CHOICES}, got {combine!r}")
    fused = 0
    config = getattr(model, "config", None)
    for module in model.modules():
        qkv = getattr(module, "qkv_proj", None)
        if not isinstance(qkv, FusedProjection) or not hasattr(module, "o_proj"):
            continue
        if hasattr(module, "anybit_heads"):  # fused already (e.g. a copy of a fused model)
            module.anybit_combine = combine
            fused += 1
            continue
        _check_llama_math(module, config)
        head_dim = int(module.head_dim)
        heads = qkv.sizes[0] // head_dim
        kv_heads = qkv.sizes[1] // head_dim
        if len(qkv.sizes) != 3 or qkv.sizes[1] != qkv.sizes[2] or heads % kv_heads or head_dim % 64:
            raise ValueError(
                f"fuse_attention: expected q, k, v of {head_dim}-wide heads (a multiple of 64) with the "
                f"query heads a multiple of the KV heads, got projection sizes {list(qkv.sizes)}"
            )
        if config is not None and getattr(config, "num_attention_heads", heads) != heads:
            raise ValueError(f"fuse_attention: {heads} query heads in qkv_proj, the config says otherwise")
        module.anybit_heads = heads
        module.anybit_combine = combine
        module.anybit_forward = module.forward
        module.forward = types.MethodType(_fused_forward, module)
        fused += 1
    if not fused:
        raise ValueError(
            "fuse_attention: no attention block with a fused qkv_proj found: call "
            "anybit.fuse_projections(model) first"
        )
    blocks = sorted(
        (module for module in model.modules() if hasattr(module, "anybit_heads")),
        key=lambda module: module.layer_idx,
    )
    step_mask: list = [None, None]  # [the model's mask, the kernel's]: the first fused block derives it
    for block in blocks:  # the last fused block advances the fused layers' length counts
        block.anybit_counted_layers = ()
        block.anybit_first_block = block is blocks[0]
        block.anybit_step_mask = step_mask
    blocks[-1].anybit_counted_layers = tuple(block.layer_idx for block in blocks)
    return fused


__all__ = ["fuse_attention"]
