"""A folded, quantized Llama layer's MLP in one decode kernel: :func:`fuse_mlp`.

After :func:`~anybit.nn.fuse_projections` (``gated_mlp=True``), :func:`~anybit.nn.fold_norms` and
:func:`~anybit.nn.quantize_model`, a decoder layer's MLP is two decode kernels a step: the gated gate/up
projection (the post-attention RMSNorm folded in, silu · up in its epilogue) and down (its product added
to the residual stream). :func:`fuse_mlp` gives each such MLP a forward that runs both as one kernel
(:func:`anybit.ops.gated_mlp_`: each block's slice of the intermediate goes straight into down's matching
K slice, no block waiting for another) when the step has at most 16 rows and its input is the layer's
residual stream; other calls (prefill, a float model) keep the two-kernel forward.

An opt-in experiment: on an H200 (2026-11-29) the one kernel is slower than the two it replaces — int4
Llama-3-8B MLP 40.6 µs against 32.0 at batch 1, 173 against 56 at 16 rows (docs/quantized-matmul.md,
"A whole gated MLP in one kernel", says why).
"""

from __future__ import annotations

import types

import torch
from torch import nn

from anybit import ops
from anybit.kernels.mlp import check_mlp_shapes, mlp_warps
from anybit.nn.fold_norms import NormFoldedLinear, ResidualProjection
from anybit.nn.fuse import GatedMLP, GatedProjection
from anybit.nn.linear import QuantizedLinear

#: Rows a step may have for the fused kernel (one block of x rows; the decode kernels' range).
FUSED_MLP_MAX_ROWS = 16


def _unfusable(mlp: GatedMLP) -> str | None:
    """Why ``mlp`` cannot run as one kernel (None when it can)."""
    gate_up, down = mlp.gate_up_proj, mlp.down_proj
    folded = gate_up.linear if isinstance(gate_up, GatedProjection) else None
    if not isinstance(folded, NormFoldedLinear) or not isinstance(down, ResidualProjection):
        return "its norms were not folded (fold_norms before quantize_model)"
    pair, projection = folded.linear, down.linear
    if not isinstance(pair, QuantizedLinear) or not isinstance(projection, QuantizedLinear):
        return "its projections are not quantized (quantize_model first)"
    for name, layer in (("gate/up", pair), ("down", projection)):
        if layer.zeros is not None or layer.bias is not None or layer.input_permutation is not None:
            return f"{name} has zero points, a bias or an act-order permutation (the kernel takes none)"
    pair_layout, down_layout = pair.packed_weight.layout, projection.packed_weight.layout
    per_channel = pair_layout.per_channel or down_layout.per_channel
    if not pair_layout.gated or down_layout.operand != "a" or per_channel:
        return "its weights are not packed gated / as the A operand with group-wise scales"
    try:
        check_mlp_shapes(pair_layout, down_layout, mlp_warps(pair_layout, down_layout))
    except ValueError as error:
        return str(error)
    if down_layout.group_size % down_layout.k_chunk:
        return f"down's group size {down_layout.group_size} is not a multiple of its k_chunk"
    if pair.packed_weight.act_dtype != projection.packed_weight.act_dtype:
        return "gate/up and down take different activation dtypes"
    return None


def _fused_forward(self, x: torch.Tensor) -> torch.Tensor:
    """The MLP as one kernel on the residual stream (decode steps), else its two-kernel forward."""
    down, folded = self.down_proj, self.gate_up_proj.linear
    rows = x.numel() // x.shape[-1] if x.dim() else 0
    quantized = isinstance(folded.linear, QuantizedLinear) and isinstance(down.linear, QuantizedLinear)
    if not quantized or x is not down.stream[0] or not 0 < rows <= FUSED_MLP_MAX_ROWS:
        return self.anybit_forward(x)  # (a copy with its weights dequantized to float keeps this forward)
    stages, split = self.anybit_mlp_launch
    pair, weights = folded.linear.packed_weight, down.linear.packed_weight
    return ops.gated_mlp_(x, pair, weights, folded.eps, stages=stages, split=split)


def fuse_mlp(model: nn.Module, *, stages: int = 4, split: int = 1) -> int:
    """Give every folded, quantized SiLU-gated MLP of ``model`` the one-kernel decode step, in place (see the
    module docstring); returns how many MLPs were changed. ``stages`` and ``split``: the kernel's copy ring
    and gate/up's split-K (:class:`~anybit.kernels.mlp.DecodeGatedMLP`).

    Raises
    ------
    ValueError
        If no MLP qualifies, naming why the first one does not (its norms not folded, its projections not
        quantized, zero points or a bias, a packing the kernel cannot take).
    """
    fused, reasons = 0, []
    for module in model.modules():
        if not isinstance(module, GatedMLP):
            continue
        if hasattr(module, "anybit_forward"):  # fused already: the launch settings given now
            module.anybit_mlp_launch = (int(stages), int(split))
            fused += 1
            continue
        reason = _unfusable(module)
        if reason is not None:
            reasons.append(reason)
            continue
        module.anybit_forward = module.forward
        module.anybit_mlp_launch = (int(stages), int(split))
        module.forward = types.MethodType(_fused_forward, module)
        fused += 1
    if not fused:
        why = reasons[0] if reasons else "no GatedMLP (fuse_projections(model, gated_mlp=True) first)"
        raise ValueError(f"fuse_mlp: no MLP can run as one kernel: {why}")
    return fused


__all__ = ["FUSED_MLP_MAX_ROWS", "fuse_mlp"]
