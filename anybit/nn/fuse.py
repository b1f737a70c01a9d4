"""Fused projections: sibling linear layers that read the same input run as one wider layer.

A Llama attention block projects its input three times (``q_proj``, ``k_proj``, ``v_proj``) and its MLP twice
(``gate_proj``, ``up_proj``). At decode time every projection is a separate memory-bound launch, and the small
ones (``k_proj``/``v_proj`` of a grouped-query model: 1024 × 4096) cost little bandwidth and a whole launch's
fixed time each. Serving engines stack such weights into one matrix (vLLM's QKV and merged column layers,
gpt-fast's ``wqkv``); :func:`fuse_projections` does the same to a model in place:

* the siblings' weights (and biases) are concatenated along the output dimension into one ``nn.Linear``, held
  by a :class:`FusedProjection` registered on the parent (``self_attn.qkv_proj``, ``mlp.gate_up_proj``);
* each sibling is replaced by a :class:`ProjectionSlice`, so the model's own ``forward`` still calls
  ``self.q_proj(x)``: the first slice computes the fused product, the others return their columns of it when
  called with the same input tensor (and compute it again otherwise, so any call order stays correct).

With ``gated_mlp=True`` a SiLU-gated MLP (``down_proj(silu(gate_proj(x)) * up_proj(x))``) goes further: its
gate and up weights are interleaved in blocks of 8 rows into one layer whose product *is* silu(gate) · up
(:class:`GatedProjection`; quantized, the decode kernel computes the SiLU and the product in its epilogue, so
neither half is written and no element-wise kernel runs), and the MLP becomes a :class:`GatedMLP`:
``down_proj(gate_up_proj(x))``.

Fuse **before** :func:`~anybit.nn.quantize_model`: the fused ``nn.Linear`` is then quantized like any other
layer, with results identical to quantizing the siblings one by one (scales are per output row and group of
K). Name patterns given to ``quantize_model`` see the fused names (``*.self_attn.qkv_proj.linear``), and the
model's ``state_dict`` has the fused keys, not the original checkpoint's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from anybit.kernels.gated import gated_reference, interleave_gated

#: The marker on a gated pair's float ``nn.Linear`` that makes ``QuantizedLinear.from_linear`` pack it gated.
GATED_MARKER = "anybit_gated"

#: The sibling groups of a Llama-architecture block: (parent attribute, fused name, sibling names).
LLAMA_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("self_attn", "qkv_proj", ("q_proj", "k_proj", "v_proj")),
    ("mlp", "gate_up_proj", ("gate_proj", "up_proj")),
)


class FusedProjection(nn.Module):
    """One ``nn.Linear`` (or quantized layer) computing several sibling projections of the same input.

    Parameters
    ----------
    linear
        The fused layer: ``out_features`` = the sum of ``sizes``.
    sizes
        Output features of each sibling, in order.
    """

    def __init__(self, linear: nn.Module, sizes: Sequence[int]) -> None:
        super().__init__()
        self.linear = linear
        self.sizes = tuple(int(size) for size in sizes)
        self.offsets = tuple(sum(self.sizes[:index]) for index in range(len(self.sizes)))
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All siblings' outputs, concatenated along the last dimension."""
        return self.linear(x)

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Sibling ``index``'s output for input ``x`` (a view of the fused output)."""
        if index == 0 or self._input is not x:
            self._input, self._output = x, self.linear(x)
        output = self._output
        if index == len(self.sizes) - 1:
            self._input = self._output = None  # hold no tensor between forward passes
        return output.narrow(-1, self.offsets[index], self.sizes[index])

    def extra_repr(self) -> str:
        return f"sizes={list(self.sizes)}"


class ProjectionSlice(nn.Module):
    """Stands in for one fused sibling: ``forward(x)`` returns its columns of the fused product."""

    def __init__(self, fused: FusedProjection, index: int, name: str) -> None:
        super().__init__()
        # A plain attribute, not a submodule: the fused layer's parameters belong to the parent only once.
        self.__dict__["fused"] = fused
        self.index = index
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused.part(x, self.index)

    def extra_repr(self) -> str:
        fused = self.fused
        start = fused.offsets[self.index]
        return f"{self.name}: columns {start}:{start + fused.sizes[self.index]} of the fused projection"


class GatedProjection(nn.Module):
    """silu(x·gateᵀ) · (x·upᵀ) from one layer whose rows interleave gate and up in blocks of 8
    (:func:`~anybit.kernels.interleave_gated`): a float ``nn.Linear`` (its product paired here, in torch) or
    the gated ``QuantizedLinear`` it quantizes into (paired in the decode kernel's epilogue)."""

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.linear(x)
        # Float: paired here. (The layer may sit inside a wrapper, e.g. fold_norms' NormFoldedLinear.)
        inner = getattr(self.linear, "linear", self.linear)
        return gated_reference(output) if isinstance(inner, nn.Linear) else output


class GatedMLP(nn.Module):
    """A SiLU-gated MLP with its gate and up projections fused: ``down_proj(gate_up_proj(x))``."""

    def __init__(self, gate_up_proj: GatedProjection, down_proj: nn.Module) -> None:
        super().__init__()
        self.gate_up_proj = gate_up_proj
        self.down_proj = down_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.gate_up_proj(x))


def _gated_mlp(mlp: nn.Module) -> GatedMLP | None:
    """The :class:`GatedMLP` of a Llama-style MLP (float ``gate_proj``/``up_proj``/``down_proj`` and a SiLU),
    or None where it does not apply (other activations, quantized or mismatched layers, sizes not a multiple
    of 8)."""
    gate, up, down = (getattr(mlp, name, None) for name in ("gate_proj", "up_proj", "down_proj"))
    activation = getattr(mlp, "act_fn", None)
    if not all(type(layer) is nn.Linear for layer in (gate, up)) or down is None:
        return None
    if not isinstance(activation, nn.SiLU) and type(activation).__name__ not in ("SiLU", "SiLUActivation"):
        return None
    if gate.weight.shape != up.weight.shape or (gate.bias is None) != (up.bias is None):
        return None
    if gate.out_features % 8:  # the epilogue pairs rows in blocks of 8
        return None
    fused = nn.Linear(
        gate.in_features,
        2 * gate.out_features,
        bias=gate.bias is not None,
        device=gate.weight.device,
        dtype=gate.weight.dtype,
    )
    with torch.no_grad():
        fused.weight.copy_(interleave_gated(gate.weight, up.weight))
        if gate.bias is not None:
            fused.bias.copy_(interleave_gated(gate.bias, up.bias))
    setattr(fused, GATED_MARKER, True)
    return GatedMLP(GatedProjection(fused), down)


def _fused_linear(layers: Sequence[nn.Linear]) -> nn.Linear:
    first = layers[0]
    has_bias = first.bias is not None
    fused = nn.Linear(
        first.in_features,
        sum(layer.out_features for layer in layers),
        bias=has_bias,
        device=first.weight.device,
        dtype=first.weight.dtype,
    )
    with torch.no_grad():
        fused.weight.copy_(torch.cat([layer.weight for layer in layers], dim=0))
        if has_bias:
            fused.bias.copy_(torch.cat([layer.bias for layer in layers], dim=0))
    fused.weight.requires_grad_(first.weight.requires_grad)
    return fused


def fuse_projections(
    model: nn.Module,
    groups: Sequence[tuple[str, str, tuple[str, ...]]] = LLAMA_GROUPS,
    *,
    gated_mlp: bool = False,
) -> list[str]:
    """Fuse sibling projections of ``model`` in place (see the module docstring); returns the fused names.

    For every module whose ``parent`` attribute holds all of a group's sibling ``nn.Linear`` layers with the
    same input size, dtype, device and bias presence, the siblings become :class:`ProjectionSlice` views of
    one :class:`FusedProjection` registered as ``parent.<fused name>``. With ``gated_mlp``, a SiLU-gated
    ``mlp`` is replaced by a :class:`GatedMLP` instead (its ``gate_up_proj`` a :class:`GatedProjection`).
    Anything else is left alone (already quantized siblings too: fuse first, then quantize).
    """
    fused_names = []
    for module_name, module in list(model.named_modules()):
        if gated_mlp and isinstance(getattr(module, "mlp", None), nn.Module):
            gated = _gated_mlp(module.mlp)
            if gated is not None:
                module.mlp = gated
                fused_names.append(f"{module_name}.mlp.gate_up_proj" if module_name else "mlp.gate_up_proj")
        for parent_name, fused_name, siblings in groups:
            parent = getattr(module, parent_name, None)
            if not isinstance(parent, nn.Module) or hasattr(parent, fused_name):
                continue
            layers = [getattr(parent, sibling, None) for sibling in siblings]
            if not all(type(layer) is nn.Linear for layer in layers):
                continue
            first = layers[0]
            if any(
                layer.in_features != first.in_features
                or layer.weight.dtype != first.weight.dtype
                or layer.weight.device != first.weight.device
                or (layer.bias is None) != (first.bias is None)
                for layer in layers
            ):
                continue
            fused = FusedProjection(_fused_linear(layers), [layer.out_features for layer in layers])
            parent.add_module(fused_name, fused)
            for index, sibling in enumerate(siblings):
                setattr(parent, sibling, ProjectionSlice(fused, index, sibling))
            prefix = f"{module_name}.{parent_name}" if module_name else parent_name
            fused_names.append(f"{prefix}.{fused_name}")
    return fused_names
