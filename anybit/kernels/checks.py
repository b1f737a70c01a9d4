"""What the kernel library's entry points share: checking a tensor argument, and running a kernel where its
tensors live (the interpreter for CPU tensors, a launch for CUDA ones)."""

from __future__ import annotations

import torch

import anybit


def run_kernel(kernel, *args) -> None:
    """Run ``kernel`` on ``args``: interpreted when the first argument is a CPU tensor, launched otherwise."""
    if args[0].device.type == "cpu":
        anybit.interpret(kernel, *args)
    else:
        kernel(*args)


def check_tensor(name: str, tensor: torch.Tensor, shape: tuple, dtype: torch.dtype, device) -> None:
    """Raise a ValueError/TypeError naming ``name`` unless it is a contiguous ``dtype`` ``shape`` tensor on
    ``device``."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, got {type(tensor).__name__}")
    if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype or tensor.device != device:
        raise ValueError(
            f"expected {name} {dtype} {list(shape)} on {device}, got {tensor.dtype} {list(tensor.shape)} "
            f"on {tensor.device}"
        )
    if not tensor.is_contiguous():
        raise ValueError(f"expected {name} to be contiguous")
