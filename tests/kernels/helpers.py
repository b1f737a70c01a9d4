"""Shared pieces of the kernel tests: the type sweep, random weights and the float64 references."""

from __future__ import annotations

import random

import torch

import anybit
from anybit.kernels import QuantizedWeight, dequantize, quantize

# Every family at several widths: the brief's list, and the wide-exponent float that needs bfloat16.
UINT_TYPES = [f"uint{b}" for b in range(1, 9)]
INT_TYPES = [f"int{b}" for b in range(2, 9)]
FLOAT_TYPES = [
    "float3_e1m1",
    "float4_e2m1",
    "float5_e2m2",
    "float6_e3m2",
    "float6_e2m3",
    "float8_e4m3",
    "float8_e5m2",
]
WEIGHT_TYPES = UINT_TYPES + INT_TYPES + FLOAT_TYPES
WIDE_FLOAT = "float8_e6m1"  # 6 exponent bits: bfloat16 activations only

# Relative Frobenius error allowed against the float64 reference. The kernels are exact up to f32
# accumulation and the final rounding to the activation dtype: about 2^-12/√3 (float16) and 2^-9/√3
# (bfloat16) on average, so bfloat16 gets a 4x looser bound.
TOLERANCE = {torch.float16: 1e-3, torch.bfloat16: 4e-3}


def fresh_seed() -> int:
    """A new seed per run: fresh random inputs every time."""
    return random.randrange(2**31)


def random_quantized(
    dtype: str, n: int, k: int, group_size: int, act: torch.dtype, *, zero_point: bool | None = None, seed=0
) -> QuantizedWeight:
    """A weight of normal entries with a few outlier columns, quantized."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(n, k, generator=generator)
    weight[:, :: max(1, k // 8)] *= 4
    return quantize(weight, anybit.dtype(dtype), group_size=group_size, zero_point=zero_point, act_dtype=act)


def reference_matmul(x: torch.Tensor, q: QuantizedWeight, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ dequantize(q)^T (+ bias) in float64."""
    result = x.double() @ dequantize(q).double().T
    return result if bias is None else result + bias.double()


def relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    """‖result − reference‖ / ‖reference‖ in float64 (NaN when the result has a NaN)."""
    return float((result.double() - reference).norm() / reference.norm())


def assert_prepared_like(prepared, expected) -> None:
    """The int8 route's x preparation (planes, r, r·Σ X) against torch's: a fixed-point value may round the
    other way (f32 x · 8191 / max|x| against f64 x / r), moving its group's r·Σ X by r."""
    planes, inverse, sums = prepared
    fixed, expected_fixed = (128 * p[:, 0].int() + p[:, 1].int() for p in (planes, expected[0]))
    assert (fixed - expected_fixed).abs().max() <= 1
    assert ((fixed == 0) == (expected_fixed == 0)).float().mean() > 0.99  # the zeros off the diagonal kept
    assert torch.allclose(inverse, expected[1], rtol=1e-6)
    assert ((sums - expected[2]).abs() <= 2.5 * inverse + 1e-4 * expected[2].abs()).all()
