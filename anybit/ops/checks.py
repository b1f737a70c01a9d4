"""Input checks of :func:`anybit.ops.quantized_matmul`, with errors that say what was expected and what came.

The hot path only compares a few attributes; when one differs it calls :func:`raise_bad_input`, which works
out what exactly is wrong and says so. A packed weight is checked in full once, the first time it is seen.
"""

from __future__ import annotations

import torch

from anybit.kernels import PackedLayout, PackedWeight

ACTIVATION_DTYPES = (torch.float16, torch.bfloat16)
OP = "quantized_matmul"


def _shape(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape)


def check_packed_tensors(
    layout: PackedLayout,
    act_dtype: torch.dtype,
    data: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
) -> None:
    """Check a packed weight's tensors against its layout: shapes, dtypes, one device, contiguous."""
    if act_dtype not in ACTIVATION_DTYPES:
        raise TypeError(f"{OP}: expected scales of dtype torch.float16 or torch.bfloat16, got {act_dtype}")
    groups = layout.k // layout.group_size
    expected = [
        ("data", data, torch.uint8, list(layout.packed_shape)),
        ("scales", scales, act_dtype, [groups, layout.n]),
    ]
    if zeros is not None:
        expected.append(("zeros", zeros, act_dtype, [groups, layout.n]))
    for name, tensor, dtype, shape in expected:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"{OP}: expected the packed weight's {name} to be a tensor, got {type(tensor).__name__}"
            )
        if tensor.dtype != dtype or _shape(tensor) != shape:
            raise ValueError(
                f"{OP}: expected the packed weight's {name} {dtype} {shape} (its layout: "
                f"{layout.dtype.name} [N={layout.n}, K={layout.k}], group {layout.group_size}), got "
                f"{tensor.dtype} {_shape(tensor)}"
            )
        if tensor.device != data.device:
            raise ValueError(
                f"{OP}: expected the packed weight's tensors on one device, got data on {data.device} and "
                f"{name} on {tensor.device}"
            )
        if not tensor.is_contiguous():
            raise ValueError(f"{OP}: expected the packed weight's {name} to be contiguous")


def check_packed_weight(p: object) -> PackedWeight:
    """Check that ``p`` is a consistent :class:`~anybit.kernels.PackedWeight` (once per weight)."""
    if not isinstance(p, PackedWeight):
        raise TypeError(
            f"{OP}: expected an anybit.kernels.PackedWeight (from anybit.kernels.pack), "
            f"got {type(p).__name__}"
        )
    if p.scales.dtype != p.act_dtype:
        raise ValueError(
            f"{OP}: the packed weight's act_dtype is {p.act_dtype} but its scales are {p.scales.dtype}"
        )
    check_packed_tensors(p.layout, p.act_dtype, p.data, p.scales, p.zeros)
    return p


def raise_bad_input(
    x: object, bias: object, *, layout: PackedLayout, act_dtype: torch.dtype, device: torch.device
) -> None:
    """Raise the error that says what is wrong with ``x`` or ``bias`` (called when a quick check failed)."""
    n, k = layout.n, layout.k
    weight = f"the {layout.dtype.name} weight [N={n}, K={k}] packed for {act_dtype} on {device}"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{OP}: expected x to be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != act_dtype:
        if x.dtype in ACTIVATION_DTYPES:
            hint = f"cast x with x.to({act_dtype}), or quantize the weight with act_dtype={x.dtype}"
        else:
            hint = "activations are torch.float16 or torch.bfloat16"
        raise TypeError(f"{OP}: expected x of dtype {act_dtype} ({weight}), got {x.dtype}; {hint}")
    if x.dim() == 0 or x.shape[-1] != k:
        raise ValueError(f"{OP}: expected x [..., K={k}] ({weight}), got x of shape {_shape(x)}")
    if x.device != device:
        raise ValueError(
            f"{OP}: expected x on {device}, where the packed weight is, got x on {x.device}; "
            f"move x with x.to('{device}') or the weight's tensors to {x.device}"
        )
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"{OP}: expected bias to be a torch.Tensor or None, got {type(bias).__name__}")
        if bias.dtype != act_dtype or _shape(bias) != [n] or bias.device != device:
            raise ValueError(
                f"{OP}: expected bias {act_dtype} [N={n}] on {device}, got {bias.dtype} {_shape(bias)} "
                f"on {bias.device}"
            )
        if not bias.is_contiguous():
            raise ValueError(f"{OP}: expected a contiguous bias")
    raise AssertionError(f"{OP}: an input check failed but no error was found for x {x.dtype} {_shape(x)}")
