"""Llama decoder layers without their RMSNorm and residual-add kernels: the norms folded into the
projections that follow them, the residual adds into the projections that precede them.

A Llama decoder layer at decode time runs, besides attention and its four projections, two element-wise
kernels (residual add + RMSNorm, fused by Inductor) — 64 of a step's kernels for a 32-layer model, each
paying a launch and a ramp. :func:`fold_norms` removes them, in place, after
:func:`~anybit.nn.fuse_projections` and before :func:`~anybit.nn.quantize_model`:

* each norm's weight γ is folded into the next projection's weight (``W·diag(γ)``: q/k/v after the input
  norm, gate/up after the post-attention norm), and that projection becomes a :class:`NormFoldedLinear`:
  it normalises its input rows by their RMS itself — quantized, in the decode kernel
  (:func:`~anybit.ops.quantized_matmul_rms`), so no norm kernel runs;
* o_proj and down_proj become :class:`ResidualProjection`\\ s: quantized, they add their product into the
  layer's residual stream in place (:func:`~anybit.ops.quantized_matmul_add_`), so no add kernel runs;
* the layer's ``forward`` is replaced by one that hands the residual stream to those projections and skips
  the norms and adds (the attention module is transformers' own: rope, cache and attention unchanged).

The folded model computes the same function (γ folded exactly in float; quantizing ``W·diag(γ)`` instead
of ``W`` changes which rounding errors the weights carry). The residual stream is updated in place, so a
layer's input tensor is overwritten by its output: do not ask transformers for ``output_hidden_states``.
"""

from __future__ import annotations

import types

import torch
from torch import nn

from anybit import ops
from anybit.nn.fuse import FusedProjection, GatedProjection
from anybit.ops.plan import rms_normalized


class NormFoldedLinear(nn.Module):
    """``linear(x / rms(x))``: a projection after an RMSNorm whose weight was folded into ``linear``'s.

    ``linear`` is a float ``nn.Linear`` (the norm then runs here, in torch) or the ``QuantizedLinear`` it is
    quantized into (the decode kernel normalises the rows itself). ``eps``: the norm's epsilon.
    """

    def __init__(self, linear: nn.Module, eps: float) -> None:
        super().__init__()
        self.linear = linear
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.linear, nn.Linear):
            return self.linear(rms_normalized(x, self.eps))
        layer = _plain_quantized(self.linear)
        return ops.quantized_matmul_rms(x, layer.packed_weight, self.eps, layer.bias)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


class ResidualProjection(nn.Module):
    """``stream + linear(x)``: a projection whose output joins the residual stream the owning layer put in
    ``stream[0]`` — added in place by the decode kernel when ``linear`` is quantized (the sum is the
    stream tensor itself), out of place in torch for a float ``nn.Linear``."""

    def __init__(self, linear: nn.Module, stream: list) -> None:
        super().__init__()
        self.linear = linear
        self.__dict__["stream"] = stream  # shared with the layer, not a submodule or buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stream = self.stream[0]
        if isinstance(self.linear, nn.Linear):
            return stream + self.linear(x)
        layer = _plain_quantized(self.linear)
        return ops.quantized_matmul_add_(stream, x, layer.packed_weight, layer.bias)


def _plain_quantized(layer: nn.Module) -> nn.Module:
    """``layer`` (a QuantizedLinear) where the fused ops can take its packed weight as is."""
    if getattr(layer, "input_permutation", None) is not None:
        raise ValueError(
            "fold_norms: a layer with an act-order input permutation (GPTQ g_idx) cannot take the fused "
            "norm or residual; quantize the folded model with anybit.quantize_model instead"
        )
    return layer


def _fold(linear: nn.Linear, norm: nn.Module) -> None:
    """W ← W·diag(γ) in place (γ: the norm's weight, one factor per input feature)."""
    with torch.no_grad():
        linear.weight.mul_(norm.weight.to(linear.weight.dtype).unsqueeze(0))


def _norm_eps(norm: nn.Module) -> float:
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    if eps is None:
        raise ValueError(f"fold_norms: {type(norm).__name__} has no epsilon (variance_epsilon or eps)")
    return float(eps)


def _folded_forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """The decoder layer's forward with its norms and residual adds folded into the projections."""
    if args:
        raise TypeError("a layer with folded norms takes everything but hidden_states by keyword")
    self.anybit_stream[0] = hidden_states
    hidden_states, _ = self.self_attn(hidden_states=hidden_states, **kwargs)
    self.anybit_stream[0] = hidden_states
    hidden_states = self.mlp(hidden_states)
    self.anybit_stream[0] = None  # hold no tensor between forward passes
    return hidden_states


def fold_norms(model: nn.Module) -> int:
    """Fold every Llama-style decoder layer's RMSNorms and residual adds into its projections, in place (see
    the module docstring); returns how many layers were folded.

    A layer qualifies when it has ``input_layernorm`` and ``post_attention_layernorm`` with a weight and an
    epsilon, ``self_attn`` with a fused ``qkv_proj`` and an ``o_proj``, and ``mlp`` with a fused
    ``gate_up_proj`` and a ``down_proj`` — what :func:`~anybit.nn.fuse_projections` makes of a Llama layer;
    every layer must still hold float ``nn.Linear`` projections (fold before quantizing).

    Raises
    ------
    ValueError
        If no layer qualifies (the model was not fused first, or is not Llama-style), or a projection is
        already quantized.
    """
    folded = 0
    for layer in model.modules():
        attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        norms = (getattr(layer, "input_layernorm", None), getattr(layer, "post_attention_layernorm", None))
        if attention is None or mlp is None or None in norms:
            continue
        qkv, o_proj = getattr(attention, "qkv_proj", None), getattr(attention, "o_proj", None)
        gate_up, down = getattr(mlp, "gate_up_proj", None), getattr(mlp, "down_proj", None)
        if not isinstance(qkv, FusedProjection) or gate_up is None or o_proj is None or down is None:
            continue
        gate_up_owner = gate_up if isinstance(gate_up, (FusedProjection, GatedProjection)) else None
        if gate_up_owner is None:
            continue
        linears = (qkv.linear, gate_up_owner.linear, o_proj, down)
        if not all(type(linear) is nn.Linear for linear in linears):
            raise ValueError(
                "fold_norms: expected float nn.Linear projections (fuse_projections first, then fold_norms, "
                f"then quantize_model), got {[type(linear).__name__ for linear in linears]}"
            )
        stream: list = [None]
        _fold(qkv.linear, norms[0])
        qkv.linear = NormFoldedLinear(qkv.linear, _norm_eps(norms[0]))
        _fold(gate_up_owner.linear, norms[1])
        gate_up_owner.linear = NormFoldedLinear(gate_up_owner.linear, _norm_eps(norms[1]))
        attention.o_proj = ResidualProjection(o_proj, stream)
        mlp.down_proj = ResidualProjection(down, stream)
        layer.input_layernorm = nn.Identity()
        layer.post_attention_layernorm = nn.Identity()
        layer.__dict__["anybit_stream"] = stream
        layer.forward = types.MethodType(_folded_forward, layer)
        folded += 1
    if not folded:
        raise ValueError(
            "fold_norms: no Llama-style decoder layer with fused projections found: call "
            "anybit.fuse_projections(model) first"
        )
    return folded


__all__ = ["NormFoldedLinear", "ResidualProjection", "fold_norms"]
