"""Models on anybit: ``QuantizedLinear``, ``quantize_model`` and checkpoint import (GPTQ, AWQ).

| module | job |
|---|---|
| ``linear`` | :class:`QuantizedLinear`, the drop-in ``torch.nn.Linear`` over a packed weight |
| ``convert`` | :func:`quantize_model`: replace a model's linear layers in place, with per-layer overrides |
| ``checkpoints`` | GPTQ / AWQ tensors → :class:`QuantizedLinear`, codes to codes |
| ``fuse`` | :func:`fuse_projections`: q/k/v and gate/up as one wider layer each (fewer decode launches); a |
| | SiLU-gated MLP's silu(gate) · up in the gate/up layer's epilogue (``gated_mlp=True``) |
| ``fold_norms`` | :func:`fold_norms`: a Llama layer's RMSNorms folded into the projections after them, its |
| | residual adds into the projections before them (no element-wise kernels between projections) |
| ``attention`` | :func:`fuse_attention`: a decode step's rotary embedding, KV-cache write and attention in |
| | one kernel (static cache, one token a sequence) |
| ``mlp`` | :func:`fuse_mlp`: a folded, quantized layer's gated MLP (gate/up, silu · up, down and the |
| | residual add) in one decode kernel |
| ``decode`` | greedy decode (static KV cache, CUDA graph) and logits agreement, for benchmarks |
| ``demo`` | the ``anybit demo`` command |
"""

from anybit.nn.attention import fuse_attention as fuse_attention
from anybit.nn.checkpoints import awq_linear as awq_linear
from anybit.nn.checkpoints import gptq_linear as gptq_linear
from anybit.nn.checkpoints import load_quantized_linears as load_quantized_linears
from anybit.nn.convert import LayerQuantization as LayerQuantization
from anybit.nn.convert import QuantizationSummary as QuantizationSummary
from anybit.nn.convert import quantize_model as quantize_model
from anybit.nn.fold_norms import NormFoldedLinear as NormFoldedLinear
from anybit.nn.fold_norms import ResidualProjection as ResidualProjection
from anybit.nn.fold_norms import fold_norms as fold_norms
from anybit.nn.fuse import FusedProjection as FusedProjection
from anybit.nn.fuse import GatedMLP as GatedMLP
from anybit.nn.fuse import GatedProjection as GatedProjection
from anybit.nn.fuse import ProjectionSlice as ProjectionSlice
from anybit.nn.fuse import fuse_projections as fuse_projections
from anybit.nn.linear import QuantizedLinear as QuantizedLinear
from anybit.nn.mlp import fuse_mlp as fuse_mlp
