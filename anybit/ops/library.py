"""The ``anybit::quantized_matmul`` torch custom op: its schema, CPU/CUDA kernels and fake implementation.

The op takes the packed weight as its tensors plus its layout's fields as plain ints and a string, so that
``torch.compile`` (dynamo, AOTAutograd, Inductor) and CUDA-graph capture see an ordinary op with a known
output shape. The fake implementation gives that shape ([..., N], or [..., N/2] for a gated pair; the dtype of
x) without running anything.
"""

from __future__ import annotations

import functools

import torch

from anybit.kernels import PackedLayout
from anybit.ops.checks import OP, check_packed_tensors
from anybit.ops.plan import WeightPlan, plan_for

NAMESPACE = "anybit"
SCHEMA = (
    "quantized_matmul(Tensor x, Tensor data, Tensor scales, Tensor? zeros, Tensor? bias, str dtype, int n, "
    "int k, int group_size, int k_chunk, int n_per_warp, int bytes_per_thread, str operand, "
    "bool gated=False, int[] planes=[], int top_plane_stride=1) -> Tensor"
)

_library = torch.library.Library(NAMESPACE, "FRAGMENT")
_library.define(SCHEMA)


@functools.lru_cache(maxsize=1024)
def layout_of(
    dtype: str,
    n: int,
    k: int,
    group_size: int,
    k_chunk: int,
    n_per_warp: int,
    bytes_per_thread: int,
    operand: str = "b",
    gated: bool = False,
    planes: tuple[int, ...] = (),
    top_plane_stride: int = 1,
) -> PackedLayout:
    """The :class:`~anybit.kernels.PackedLayout` of the op's layout arguments (checked by its constructor;
    ``planes`` a tuple: the op's ``int[]`` arrives as a list, see :func:`layout_from_arguments`)."""
    import anybit

    return PackedLayout(
        anybit.dtype(dtype),
        n,
        k,
        group_size,
        k_chunk,
        n_per_warp,
        bytes_per_thread,
        operand,
        gated,
        planes=tuple(planes),
        top_plane_stride=top_plane_stride,
    )


#: Where the op's layout arguments hold the bit-plane widths (an ``int[]``, a list when the op is called).
PLANES_ARGUMENT = 9


def layout_from_arguments(layout_args) -> PackedLayout:
    """:func:`layout_of` the op's layout arguments as the op receives them (planes a list)."""
    fields = list(layout_args)
    fields[PLANES_ARGUMENT] = tuple(fields[PLANES_ARGUMENT])
    return layout_of(*fields)


def layout_arguments(layout: PackedLayout) -> tuple[str, int, int, int, int, int, int, str, bool, tuple, int]:
    """The op's layout arguments of a layout: (dtype name, n, k, group_size, k_chunk, n_per_warp, bpt,
    operand, gated, planes, top_plane_stride)."""
    return (
        layout.dtype.name,
        layout.n,
        layout.k,
        layout.group_size,
        layout.k_chunk,
        layout.n_per_warp,
        layout.bytes_per_thread,
        layout.operand,
        layout.gated,
        tuple(layout.planes),
        layout.top_plane_stride,
    )


def _plan(x: torch.Tensor, data, scales, zeros, layout_args: tuple) -> WeightPlan:
    try:
        layout = layout_from_arguments(layout_args)
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(
            f"{OP}: the layout arguments {layout_args} do not make a packed layout: {error}"
        ) from None
    check_packed_tensors(layout, scales.dtype, data, scales, zeros)
    return plan_for(layout, scales.dtype, data.device)


def _kernel(
    x: torch.Tensor,
    data: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    dtype: str,
    n: int,
    k: int,
    group_size: int,
    k_chunk: int,
    n_per_warp: int,
    bytes_per_thread: int,
    operand: str,
    gated: bool = False,
    planes: list[int] | None = None,
    top_plane_stride: int = 1,
) -> torch.Tensor:
    """The op on real tensors (CPU: interpreter; CUDA: the decode kernel or dequantize + cuBLAS)."""
    planes = planes or []
    layout_args = (
        *(dtype, n, k, group_size, k_chunk, n_per_warp, bytes_per_thread, operand, gated, planes),
        top_plane_stride,
    )
    plan = _plan(x, data, scales, zeros, layout_args)
    return plan(x, data, scales, zeros, bias)


_library.impl("quantized_matmul", _kernel, "CPU")
_library.impl("quantized_matmul", _kernel, "CUDA")


@torch.library.register_fake(f"{NAMESPACE}::quantized_matmul")
def _fake(
    x: torch.Tensor,
    data: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    dtype: str,
    n: int,
    k: int,
    group_size: int,
    k_chunk: int,
    n_per_warp: int,
    bytes_per_thread: int,
    operand: str,
    gated: bool = False,
    planes: list[int] | None = None,
    top_plane_stride: int = 1,
) -> torch.Tensor:
    """Output shape and dtype only: [..., N] ([..., N/2] for a gated pair) in the dtype of x (the same checks
    on what is known)."""
    torch._check(x.dim() >= 1, lambda: f"{OP}: expected x [..., K={k}], got a 0-d tensor")
    torch._check(x.shape[-1] == k, lambda: f"{OP}: expected x [..., K={k}], got x of shape {list(x.shape)}")
    torch._check(
        x.dtype == scales.dtype,
        lambda: f"{OP}: expected x of dtype {scales.dtype} (the weight's act_dtype), got {x.dtype}",
    )
    if bias is not None:
        torch._check(bias.shape == (n,), lambda: f"{OP}: expected bias [N={n}], got {list(bias.shape)}")
    return x.new_empty((*x.shape[:-1], n // 2 if gated else n))


def call_op(
    x: torch.Tensor,
    data: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    layout: PackedLayout,
) -> torch.Tensor:
    """``torch.ops.anybit.quantized_matmul`` with the layout spelled out as its fields."""
    return torch.ops.anybit.quantized_matmul(
        x,
        data,
        scales,
        zeros,
        bias,
        layout.dtype.name,
        layout.n,
        layout.k,
        layout.group_size,
        layout.k_chunk,
        layout.n_per_warp,
        layout.bytes_per_thread,
        layout.operand,
        layout.gated,
        list(layout.planes),
        layout.top_plane_stride,
    )
