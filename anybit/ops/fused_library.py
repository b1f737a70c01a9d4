"""The fused custom ops of a decoder layer's projections: ``anybit::quantized_matmul_rms`` (x's rows
normalised by their RMS first — a Llama RMSNorm whose weight was folded into W),
``anybit::quantized_matmul_add_`` (the product added in place to a residual stream) and
``anybit::gated_mlp_`` (a whole SiLU-gated MLP added in place to the residual stream it reads, in one kernel).

Both take the packed weight as :mod:`anybit.ops.library`'s op does (tensors plus the layout's fields), so
``torch.compile`` and CUDA graphs see ordinary ops: the first has a fake implementation giving its output
shape, the second mutates its first argument (schema ``Tensor(a!)``), which AOTAutograd functionalises and
Inductor re-inplaces.
"""

from __future__ import annotations

import torch

from anybit.kernels import PackedLayout, PackedWeight
from anybit.kernels.mlp import decode_gated_mlp_
from anybit.ops.library import NAMESPACE, _fake, _plan, layout_arguments, layout_from_arguments

_LAYOUT = (
    "str dtype, int n, int k, int group_size, int k_chunk, int n_per_warp, int bytes_per_thread, "
    "str operand, bool gated, int[] planes, int top_plane_stride"
)
SCHEMA_RMS = (
    "quantized_matmul_rms(Tensor x, Tensor data, Tensor scales, Tensor? zeros, Tensor? bias, "
    f"{_LAYOUT}, float rms_eps) -> Tensor"
)
SCHEMA_ADD = (
    "quantized_matmul_add_(Tensor(a!) out, Tensor x, Tensor data, Tensor scales, Tensor? zeros, "
    f"Tensor? bias, {_LAYOUT}) -> ()"
)


def _prefixed_layout(prefix: str) -> str:
    """The layout's fields with their names prefixed (two layouts in one schema)."""
    fields = (field.rsplit(" ", 1) for field in _LAYOUT.split(", "))
    return ", ".join(f"{kind} {prefix}{name}" for kind, name in fields)


SCHEMA_MLP = (
    "gated_mlp_(Tensor(a!) stream, Tensor pair_data, Tensor pair_scales, Tensor down_data, "
    f"Tensor down_scales, {_prefixed_layout('pair_')}, {_prefixed_layout('down_')}, float rms_eps, "
    "int stages=4, int split=1) -> ()"
)
#: The layout fields a layout takes in the op's arguments.
_LAYOUT_FIELDS = _LAYOUT.count(",") + 1

_library = torch.library.Library(NAMESPACE, "FRAGMENT")
_library.define(SCHEMA_RMS)
_library.define(SCHEMA_ADD)
_library.define(SCHEMA_MLP)


def _rms_kernel(x, data, scales, zeros, bias, *layout_and_eps) -> torch.Tensor:
    """(x / rms(x)) @ W^T (+ bias) on real tensors."""
    *layout_args, rms_eps = layout_and_eps
    plan = _plan(x, data, scales, zeros, tuple(layout_args))
    return plan(x, data, scales, zeros, bias, rms_eps=float(rms_eps))


def _add_kernel(out, x, data, scales, zeros, bias, *layout_args) -> None:
    """out += x @ W^T (+ bias) on real tensors."""
    plan = _plan(x, data, scales, zeros, tuple(layout_args))
    plan(x, data, scales, zeros, bias, into=out)


def _mlp_weights(pair_data, pair_scales, down_data, down_scales, layouts_and_eps):
    """The op's arguments as (gate/up pair, down) packed weights and rms_eps (the launch's stages and split,
    when given, are left out)."""
    layout_args, rms_eps = layouts_and_eps[: 2 * _LAYOUT_FIELDS], layouts_and_eps[2 * _LAYOUT_FIELDS]
    pair_layout = layout_from_arguments(layout_args[:_LAYOUT_FIELDS])
    down_layout = layout_from_arguments(layout_args[_LAYOUT_FIELDS:])
    pair = PackedWeight(pair_data, pair_scales, None, pair_layout, pair_scales.dtype)
    down = PackedWeight(down_data, down_scales, None, down_layout, down_scales.dtype)
    return pair, down, float(rms_eps)


def _mlp_kernel(stream, pair_data, pair_scales, down_data, down_scales, *arguments, **launch) -> None:
    """stream += down(silu(gate)·up of stream's RMS-normalised rows), in place, on real tensors; the launch's
    stages and split follow rms_eps, by position or by name, or keep their defaults."""
    pair, down, rms_eps = _mlp_weights(pair_data, pair_scales, down_data, down_scales, arguments)
    launch.update(zip(("stages", "split"), arguments[2 * _LAYOUT_FIELDS + 1 :], strict=False))
    decode_gated_mlp_(stream, stream, pair, down, rms_eps=rms_eps, **{k: int(v) for k, v in launch.items()})


for _device in ("CPU", "CUDA"):
    _library.impl("quantized_matmul_rms", _rms_kernel, _device)
    _library.impl("quantized_matmul_add_", _add_kernel, _device)
    _library.impl("gated_mlp_", _mlp_kernel, _device)


@torch.library.register_fake(f"{NAMESPACE}::gated_mlp_")
def _mlp_fake(stream, pair_data, pair_scales, down_data, down_scales, *arguments, **launch) -> None:
    """Checks only: the op writes ``stream`` in place (its last dimension is down's N and gate/up's K)."""
    pair, down, _ = _mlp_weights(pair_data, pair_scales, down_data, down_scales, arguments)
    torch._check(
        stream.shape[-1] == down.layout.n == pair.layout.k,
        lambda: f"gated_mlp_: expected stream [..., {down.layout.n}], got {list(stream.shape)}",
    )


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


def call_mlp_op(stream, pair, down, rms_eps: float, stages: int = 4, split: int = 1) -> torch.Tensor:
    """``torch.ops.anybit.gated_mlp_`` with both layouts spelled out; returns ``stream``."""
    torch.ops.anybit.gated_mlp_(
        stream,
        pair.data,
        pair.scales,
        down.data,
        down.scales,
        *layout_arguments(pair.layout),
        *layout_arguments(down.layout),
        float(rms_eps),
        int(stages),
        int(split),
    )
    return stream


def call_add_op(out, x, data, scales, zeros, bias, layout: PackedLayout) -> torch.Tensor:
    """``torch.ops.anybit.quantized_matmul_add_`` with the layout spelled out; returns ``out``."""
    torch.ops.anybit.quantized_matmul_add_(out, x, data, scales, zeros, bias, *layout_arguments(layout))
    return out
