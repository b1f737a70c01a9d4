"""Small sizes through the interpreter against the float64 reference: types, M on both paths, bias, bf16."""

from __future__ import annotations

import pytest
import torch

import anybit.ops as ops

from .helpers import packed_weight, reference, relative_error

TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1.2e-2}


@pytest.mark.parametrize(
    "dtype", ["uint1", "uint3", "int4", "uint5", "int8", "float4_e2m1", "float6_e2m3", "float8_e5m2"]
)
def test_decode_path_every_kind_of_type(dtype):
    q, p = packed_weight(dtype, 32, 256)
    x = torch.randn(3, 256).half()
    assert relative_error(ops.quantized_matmul(x, p), reference(x, q)) < TOLERANCE[torch.float16]


@pytest.mark.parametrize("act", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 256), (4, 256), (2, 3, 256), (20, 256)])
def test_both_paths_with_bias(act, shape):
    q, p = packed_weight("int6", 32, 256, act_dtype=act)
    x = torch.randn(shape).to(act)
    bias = torch.randn(32).to(act)
    y = ops.quantized_matmul(x, p, bias)
    assert y.shape == (*shape[:-1], 32) and y.dtype == act
    expected = reference(x.reshape(-1, 256), q, bias).reshape(*shape[:-1], 32)
    assert relative_error(y, expected) < TOLERANCE[act]


def test_zero_rows():
    _, p = packed_weight("uint4", 32, 128)
    y = ops.quantized_matmul(torch.empty(0, 128, dtype=torch.float16), p)
    assert y.shape == (0, 32)


def test_per_channel_scales():
    q, p = packed_weight("int4", 32, 256, group_size=-1)
    x = torch.randn(2, 256).half()
    assert relative_error(ops.quantized_matmul(x, p), reference(x, q)) < 2e-3
