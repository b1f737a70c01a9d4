"""``quantized_matmul(x, packed_weight, bias=None)``: the one call a model makes for a quantized linear layer.

Eager calls on plain tensors go straight to the weight's :class:`~anybit.ops.plan.WeightPlan` (found by the
weight object's identity), skipping the torch dispatcher's few microseconds; under ``torch.compile``, with
tensor subclasses (fake tensors, proxies) or tensor modes, the call goes through the custom op
``torch.ops.anybit.quantized_matmul``, whose fake implementation gives the output shape.
"""

from __future__ import annotations

import threading
import weakref

import torch

from anybit.kernels import PackedWeight
from anybit.kernels.mlp import decode_gated_mlp_
from anybit.ops.checks import OP, check_packed_weight
from anybit.ops.fused_library import call_add_op, call_mlp_op, call_rms_op
from anybit.ops.library import call_op
from anybit.ops.plan import WeightPlan, plan_for

# id(PackedWeight) -> (weak reference to it, its plan, whether its tensors are 16-byte aligned: its eager
# calls may then skip the launcher's per-tensor checks); the reference tells a reused id from the same weight.
_by_weight: dict[int, tuple[weakref.ref, WeightPlan, bool]] = {}
_by_weight_lock = threading.Lock()
_is_compiling = torch.compiler.is_compiling
_Tensor = torch.Tensor
_function_mode = torch._C._is_torch_function_mode_enabled
_dispatch_modes = torch._C._len_torch_dispatch_stack


def quantized_matmul(
    x: torch.Tensor, packed_weight: PackedWeight, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """y = x @ W^T (+ bias) for a packed low-bit weight W [N, K].

    Parameters
    ----------
    x
        [..., K] activations (any leading dimensions, any number of rows M) in the weight's activation
        dtype (torch.float16 or torch.bfloat16), on the weight's device. A non-contiguous x is copied.
    packed_weight
        From ``anybit.kernels.pack(anybit.kernels.quantize(weight, dtype, ...))``.
    bias
        Optional [N] in the activation dtype.

    Returns
    -------
    torch.Tensor
        [..., N] in the activation dtype. M ≤ ``anybit.ops.decode_max_m()`` rows run the decode kernel
        (tuned per M bucket, N, K, type and GPU); up to 128 rows on the GPU, whichever of the two paths the
        first call of that M bucket measured faster; more rows dequantize the weight and call cuBLAS. CPU
        tensors run the same kernels on the interpreter (exact, slow: for tests at small sizes).
    """
    if _is_compiling() or type(x) is not _Tensor or _function_mode() or _dispatch_modes():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{OP}: expected x to be a torch.Tensor, got {type(x).__name__}")
        p = packed_weight if _is_compiling() else check_packed_weight(packed_weight)
        return call_op(x, p.data, p.scales, p.zeros, bias, p.layout)
    entry = _by_weight.get(id(packed_weight))  # _entry's lookup inline: this is the hottest call
    if entry is None or entry[0]() is not packed_weight:
        entry = _register(packed_weight)
    p = packed_weight
    if entry[2]:
        return entry[1].call_registered(x, p.data, p.scales, p.zeros, bias)
    return entry[1](x, p.data, p.scales, p.zeros, bias)


def _special(x: torch.Tensor) -> bool:
    """Whether a call must go through the custom op (tracing, subclasses, modes) rather than the plan."""
    return _is_compiling() or type(x) is not _Tensor or _function_mode() or _dispatch_modes()


def quantized_matmul_rms(
    x: torch.Tensor, packed_weight: PackedWeight, rms_eps: float, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """y = (x / rms(x)) @ W^T (+ bias): x's rows normalised by sqrt(mean_k x² + rms_eps) first.

    A Llama RMSNorm followed by a projection, with the norm's weight γ folded into the projection's weight
    before quantization (W·diag(γ); :func:`anybit.fold_norms` does it): the decode kernel computes each
    row's RMS itself (every block copies its rows of x into shared memory with its first weight chunk, or
    reads them before its main loop where the copy would be large), so no norm kernel runs. Weights packed
    as the A operand (the default); shapes and dtypes as :func:`quantized_matmul`.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{OP}: expected x to be a torch.Tensor, got {type(x).__name__}")
    if _special(x):
        p = packed_weight if _is_compiling() else check_packed_weight(packed_weight)
        return call_rms_op(x, p.data, p.scales, p.zeros, bias, p.layout, rms_eps)
    p = packed_weight
    _, plan, aligned = _entry(p)
    if aligned:
        return plan.call_registered(x, p.data, p.scales, p.zeros, bias, rms_eps=rms_eps)
    return plan(x, p.data, p.scales, p.zeros, bias, rms_eps=rms_eps)


def quantized_matmul_add_(
    out: torch.Tensor, x: torch.Tensor, packed_weight: PackedWeight, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """out += x @ W^T (+ bias), in place, one rounding: a projection that feeds a residual stream (a decoder
    layer's o_proj and down_proj) without an element-wise add kernel. ``out`` [..., N] contiguous in the
    weight's activation dtype; returns it."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{OP}: expected x to be a torch.Tensor, got {type(x).__name__}")
    if _special(x) or _special(out):
        p = packed_weight if _is_compiling() else check_packed_weight(packed_weight)
        return call_add_op(out, x, p.data, p.scales, p.zeros, bias, p.layout)
    p = packed_weight
    _, plan, aligned = _entry(p)
    if aligned:
        return plan.call_registered(x, p.data, p.scales, p.zeros, bias, into=out)
    return plan(x, p.data, p.scales, p.zeros, bias, into=out)


def gated_mlp_(
    stream: torch.Tensor,
    gate_up: PackedWeight,
    down: PackedWeight,
    rms_eps: float,
    *,
    stages: int = 4,
    split: int = 1,
) -> torch.Tensor:
    """stream += down(silu(x·gateᵀ) · (x·upᵀ)) in place, x = stream's rows divided by their RMS
    (sqrt(mean x² + rms_eps)): a folded Llama layer's whole MLP — its post-attention RMSNorm folded into
    gate/up (:func:`anybit.fold_norms`), silu · up paired in the kernel, down's product added to the residual
    stream — in one kernel (:class:`~anybit.kernels.mlp.DecodeGatedMLP`), for decode steps (≤ 16 rows a
    block; more rows take more blocks). ``gate_up``: the gated pair [2I, K] packed with ``gated=True``;
    ``down`` [K, I] packed as the A operand; both without zero points; ``stages`` and ``split``: the kernel's
    copy ring and gate/up's split-K. Returns ``stream``.
    """
    if not isinstance(stream, torch.Tensor):
        raise TypeError(f"gated_mlp_: expected stream to be a torch.Tensor, got {type(stream).__name__}")
    if _special(stream):
        pair = gate_up if _is_compiling() else check_packed_weight(gate_up)
        weights = down if _is_compiling() else check_packed_weight(down)
        return call_mlp_op(stream, pair, weights, rms_eps, stages, split)
    return decode_gated_mlp_(stream, stream, gate_up, down, rms_eps=rms_eps, stages=stages, split=split)


def quantized_matmul_path(
    x: torch.Tensor, packed_weight: PackedWeight, bias: torch.Tensor | None = None, *, path: str
) -> torch.Tensor:
    """:func:`quantized_matmul` forced onto one path, ``"decode"`` or ``"dequantize"`` (benchmarks, tests)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{OP}: expected x to be a torch.Tensor, got {type(x).__name__}")
    plan = _register(packed_weight)[1]
    p = packed_weight
    return plan(x, p.data, p.scales, p.zeros, bias, path=path)


def plan_of(packed_weight: PackedWeight) -> WeightPlan:
    """The plan eager calls with this weight use (made and the weight checked on first use)."""
    return _register(packed_weight)[1]


def _entry(packed_weight: PackedWeight) -> tuple[weakref.ref, WeightPlan, bool]:
    """The weight's registry entry: found by identity, else made (:func:`_register`)."""
    entry = _by_weight.get(id(packed_weight))
    if entry is None or entry[0]() is not packed_weight:
        entry = _register(packed_weight)
    return entry


def _register(packed_weight: PackedWeight) -> tuple[weakref.ref, WeightPlan, bool]:
    """Check a weight once and remember its plan by identity until it is garbage collected."""
    p = check_packed_weight(packed_weight)
    key = id(p)
    with _by_weight_lock:
        entry = _by_weight.get(key)
        if entry is not None and entry[0]() is p:
            return entry
        tensors = (p.data, p.scales) if p.zeros is None else (p.data, p.scales, p.zeros)
        aligned = not any(tensor.data_ptr() & 15 for tensor in tensors)
        plan = plan_for(p.layout, p.act_dtype, p.device)
        entry = (weakref.ref(p, lambda _, key=key: _forget(key)), plan, aligned)
        _by_weight[key] = entry
    return entry


def _forget(key: int) -> None:
    with _by_weight_lock:
        entry = _by_weight.get(key)
        if entry is not None and entry[0]() is None:
            del _by_weight[key]
