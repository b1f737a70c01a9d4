"""Helpers of the ops tests: random packed weights and the float64 reference."""

from __future__ import annotations

import pytest
import torch

import anybit.kernels as kernels


def packed_weight(
    dtype: str = "uint4",
    n: int = 64,
    k: int = 256,
    *,
    act_dtype: torch.dtype = torch.float16,
    group_size: int = 128,
    device: str = "cpu",
    seed: int = 0,
    operand: str | None = None,
):
    """A random [n, k] weight quantized to ``dtype`` and packed (the default packing, or as ``operand``):
    (QuantizedWeight, PackedWeight)."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(n, k, generator=generator).to(device)
    q = kernels.quantize(weight, dtype, group_size=group_size, act_dtype=act_dtype)
    layout = kernels.choose_layout(dtype, n, k, group_size, operand=operand, act_dtype=act_dtype)
    return q, kernels.pack(q, layout=layout)


def reference(x: torch.Tensor, q, bias: torch.Tensor | None = None) -> torch.Tensor:
    """float64 x @ dequantize(q)^T (+ bias), on x's device."""
    result = x.double() @ kernels.dequantize(q).double().to(x.device).T
    return result if bias is None else result + bias.double()


def relative_error(y: torch.Tensor, expected: torch.Tensor) -> float:
    """‖y − expected‖ / ‖expected‖ in float64."""
    return float(torch.linalg.norm(y.double() - expected) / torch.linalg.norm(expected))


def gpu_available() -> bool:
    """Whether torch sees a CUDA GPU."""
    return torch.cuda.is_available()


requires_gpu = pytest.mark.skipif(
    not gpu_available(),
    reason="needs an NVIDIA GPU (torch.cuda.is_available() is False); the GPU tier runs on the device",
)
