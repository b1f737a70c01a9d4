"""quantize / dequantize: error bounds per type family, zero points, group sizes, activation dtypes."""

from __future__ import annotations

import pytest
import torch

import anybit
from anybit.kernels import dequantize, quantize

from .helpers import FLOAT_TYPES, INT_TYPES, UINT_TYPES, random_quantized

# Scales are rounded to the activation dtype (half an ulp: 2^-11 for float16, 2^-9 for bfloat16), which can
# push the group's absmax past the type's largest value and clamp it by up to that fraction of the absmax.
SCALE_ROUNDING = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-9}


def _groups(tensor: torch.Tensor, group_size: int) -> torch.Tensor:
    n, k = tensor.shape
    return tensor.float().reshape(n, k // group_size, group_size)


def _weight(n=32, k=256, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(n, k, generator=generator)
    weight[:, ::32] *= 5
    return weight


def _check_bound(weight, q, per_element_bound):
    error = _groups(weight - dequantize(q), q.group_size).abs()
    groups = _groups(weight, q.group_size)
    # The range the scale covers: the absmax for symmetric types, max − min (with 0) with zero points.
    if q.zeros is None:
        covered = groups.abs().amax(-1, keepdim=True)
    else:
        covered = groups.amax(-1, keepdim=True).clamp(min=0) - groups.amin(-1, keepdim=True).clamp(max=0)
    slack = covered * SCALE_ROUNDING[q.act_dtype] * 1.01 + 1e-6
    assert torch.all(error <= per_element_bound + slack), float((error - per_element_bound - slack).max())


@pytest.mark.parametrize("act", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group_size", [32, 64, 128, -1])
@pytest.mark.parametrize("dtype", INT_TYPES)
def test_signed_ints_round_to_nearest(dtype, group_size, act):
    weight = _weight()
    q = quantize(weight, dtype, group_size=group_size, act_dtype=act)
    assert q.zeros is None and q.scales.dtype == act and q.codes.dtype == torch.uint8
    assert q.scales.shape == (256 // q.group_size, 32)
    scales = q.scales.float().t()[..., None]
    _check_bound(weight, q, scales / 2 * 1.0001)


@pytest.mark.parametrize("act", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group_size", [32, 128, -1])
@pytest.mark.parametrize("dtype", UINT_TYPES)
def test_unsigned_ints_with_zero_points(dtype, group_size, act):
    weight = _weight()
    q = quantize(weight, dtype, group_size=group_size, act_dtype=act)
    assert q.zeros is not None and q.zeros.dtype == act
    zeros = q.zeros.float()
    assert torch.equal(zeros, zeros.round())
    assert zeros.min() >= 0 and zeros.max() <= anybit.dtype(dtype).max_value
    scales = q.scales.float().t()[..., None]
    # Rounding the zero point costs up to half a step more than plain rounding.
    _check_bound(weight, q, scales * 1.0001)


def test_unsigned_without_zero_points_clamps_negatives():
    weight = _weight().abs()
    q = quantize(weight, "uint4", group_size=64, zero_point=False)
    assert q.zeros is None
    _check_bound(weight, q, q.scales.float().t()[..., None] / 2 * 1.0001)


@pytest.mark.parametrize("act", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group_size", [32, 128])
@pytest.mark.parametrize("dtype", FLOAT_TYPES)
def test_floats_round_to_nearest(dtype, group_size, act):
    data_type = anybit.dtype(dtype)
    weight = _weight()
    q = quantize(weight, dtype, group_size=group_size, act_dtype=act)
    scales = q.scales.float().t()[..., None]
    relative = _groups(weight, group_size).abs() * 2.0 ** -(data_type.mantissa_bits + 1)
    spacing = data_type.smallest_subnormal or data_type.smallest_normal  # the grid step around zero
    _check_bound(weight, q, torch.maximum(relative, scales * spacing / 2) * 1.0001)


@pytest.mark.parametrize("dtype", ["int4", "float6_e3m2", "float8_e4m3"])
def test_symmetric_scale_maps_absmax_onto_the_largest_value(dtype):
    weight = _weight()
    q = quantize(weight, dtype, group_size=64)
    absmax = _groups(weight, 64).abs().amax(-1)
    assert torch.allclose(q.scales.float().t() * anybit.dtype(dtype).max_value, absmax, rtol=2e-3)


def test_float_ties_go_to_the_even_code():
    # float4_e2m1 values 1.0 (code 2) and 1.5 (code 3): 1.25 is a tie → the even code 2; 1.75 → 2.0 (code 4).
    weight = torch.tensor([[1.25, 1.75, 6.0, -1.25] + [0.0] * 12])
    q = quantize(weight, "float4_e2m1", group_size=16)
    assert q.scales.item() == 1.0
    assert q.codes[0, :4].tolist() == [2, 4, 7, 8 + 2]


def test_all_zero_groups_get_unit_scales():
    q = quantize(torch.zeros(8, 64), "int4", group_size=32)
    assert torch.all(q.scales == 1) and torch.all(dequantize(q) == 0)


def test_bfloat16_input_weights_and_per_channel():
    weight = _weight().to(torch.bfloat16)
    q = quantize(weight, "int8", group_size=-1, act_dtype=torch.bfloat16)
    assert q.group_size == 256 and q.scales.shape == (1, 32)


def test_random_quantized_helper_covers_outliers():
    q = random_quantized("uint4", 16, 128, 32, torch.float16)
    assert q.codes.max() <= 15


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "float16"}, "1-8-bit weight type"),
        ({"dtype": "int4", "group_size": 48}, "group_size dividing K"),
        ({"dtype": "int4", "zero_point": True}, "zero points are for unsigned"),
        ({"dtype": "int4", "act_dtype": torch.float32}, "act_dtype"),
    ],
)
def test_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        quantize(_weight(8, 128), **kwargs)


def test_rejects_non_matrix_weights():
    with pytest.raises(ValueError, match=r"\[N, K\] weight"):
        quantize(torch.ones(4, 4, 4), "int4")
