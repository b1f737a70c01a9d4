"""The fused custom ops of a decoder layer's projections: ``anybit::quantized_matmul_rms`` (x's rows
normalised by their RMS first — a Llama RMSNorm whose weight was folded into W) and
``anybit::quantized_matmul_add_`` (the product added in place to a residual stream).

Both take the packed weight as :mod:`anybit.ops.library`'s op does (tensors plus the layout's fields), so
``torch.compile`` and CUDA graphs see ordinary ops: the first has a fake implementation giving its output
shape, the second mutates its first argument (schema ``Tensor(a!)``), which AOTAutograd functionalises and
Inductor re-inplaces.
"""

from __future__ import annotations

import torch

from anybit.kernels import PackedLayout
from anybit.ops.library import NAMESPACE, _fake, _plan, layout_arguments

_LAYOUT = (
    "str dtype, int n, int k, int group_size, int k_chunk, int n_per_warp, int bytes_per_thread, "
    "str operand, bool gated, int[] planes"
)
SCHEMA_RMS = (
    "quantized_matmul_rms(Tensor x, Tensor data, Tensor scales, Tensor? zeros, Tensor? bias, "
    f"{_LAYOUT}, float rms_eps) -> Tensor"
)
SCHEMA_ADD = (
    "quantized_matmul_add_(Tensor(a!) out, Tensor x, Tensor data, Tensor scales, Tensor? zeros, "
    f"Tensor? bias, {_LAYOUT}) -> ()"
)

_library = torch.library.Library(NAMESPACE, "FRAGMENT")
_library.define(SCHEMA_RMS)
_library.define(SCHEMA_ADD)


def _rms_kernel(x, data, scales, zeros, bias, *layout_and_eps) -> torch.Tensor:
    """(x / rms(x)) @ W^T (+ bias) on real tensors."""
    *layout_args, rms_eps = layout_and_eps
    plan = _plan(x, data, scales, zeros, tuple(layout_args))
    return plan(x, data, scales, zeros, bias, rms_eps=float(rms_eps))


def _add_kernel(out, x, data, scales, zeros, bias, *layout_args) -> None:
    """out += x @ W^T (+ bias) on real tensors."""
    plan = _plan(x, data, scales, zeros, tuple(layout_args))
    plan(x, data, scales, zeros, bias, into=out)


for _device in ("CPU", "CUDA"):
    _library.impl("quantized_matmul_rms", _rms_kernel, _device)
    _library.impl("quantized_matmul_add_", _add_kernel, _device)


@torch.library.register_fake(f"{NAMESPACE}::quantized_matmul_rms")
def _rms_fake(x, data, scales, zeros, bias, *layout_and_eps) -> torch.Tensor:
    """The plain op's output shape and checks (the normalisation changes no shape)."""
    return _fake(x, data, scales, zeros, bias, *layout_and_eps[:-1])


@torch.library.register_fake(f"{NAMESPACE}::quantized_matmul_add_")
def _add_fake(out, x, data, scales, zeros, bias, *layout_args) -> None:
    """Checks only: the op writes ``out`` in place."""
    expected = _fake(x, data, scales, zeros, bias, *layout_args)
    torch._check(
        tuple(out.shape) == tuple(expected.shape) and out.dtype == expected.dtype,
        lambda: (
            f"quantized_matmul_add_: expected out {expected.dtype} {list(expected.shape)}, got "
            f"{out.dtype} {list(out.shape)}"
        ),
    )


def call_rms_op(x, data, scales, zeros, bias, layout: PackedLayout, rms_eps: float) -> torch.Tensor:
    """``torch.ops.anybit.quantized_matmul_rms`` with the layout spelled out as its fields."""
    layout_args = layout_arguments(layout)
    return torch.ops.anybit.quantized_matmul_rms(x, data, scales, zeros, bias, *layout_args, rms_eps)


def call_add_op(out, x, data, scales, zeros, bias, layout: PackedLayout) -> torch.Tensor:
    """``torch.ops.anybit.quantized_matmul_add_`` with the layout spelled out; returns ``out``."""
    torch.ops.anybit.quantized_matmul_add_(out, x, data, scales, zeros, bias, *layout_arguments(layout))
    return out
