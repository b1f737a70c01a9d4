"""quantized_matmul on a gated pair (gate and up rows interleaved): silu(x·gateᵀ)·(x·upᵀ) on both paths, the
custom op's fake shape, opcheck and torch.compile, on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import anybit.kernels as kernels
import anybit.ops as ops
from anybit.ops.library import layout_arguments

from .helpers import relative_error

INTERMEDIATE, K = 32, 256


def gated_pair(dtype: str = "int4"):
    gate, up = torch.randn(INTERMEDIATE, K) * 0.05, torch.randn(INTERMEDIATE, K) * 0.05
    q = kernels.quantize(kernels.interleave_gated(gate, up), dtype, group_size=128)
    return q, kernels.pack(q, layout=kernels.choose_layout(dtype, 2 * INTERMEDIATE, K, 128, gated=True))


def expected(x, q, bias=None) -> torch.Tensor:
    products = x.double() @ kernels.dequantize(q).double().T
    return kernels.gated_reference(products if bias is None else products + bias.double())


@pytest.mark.parametrize("m", [1, 5, 40])  # the decode kernel (≤ 16 rows), then dequantize + the epilogue
@pytest.mark.parametrize("dtype", ["int4", "uint4"])
def test_both_paths_give_silu_of_gate_times_up(dtype, m):
    q, p = gated_pair(dtype)
    bias = torch.randn(2 * INTERMEDIATE).half() * 0.1
    x = torch.randn(m, K).half()
    y = ops.quantized_matmul(x, p, bias)
    assert y.shape == (m, INTERMEDIATE) and not y.isnan().any()
    assert relative_error(y, expected(x, q, bias)) < 3e-3


def test_the_op_reports_half_the_rows():
    q, p = gated_pair()
    with FakeTensorMode() as mode:
        data, scales = mode.from_tensor(p.data), mode.from_tensor(p.scales)
        fake = kernels.PackedWeight(data, scales, None, p.layout, p.act_dtype)
        y = ops.quantized_matmul(torch.empty(3, K, dtype=torch.float16), fake)
        assert tuple(y.shape) == (3, INTERMEDIATE)
    x = torch.randn(3, K).half()
    arguments = (x, p.data, p.scales, p.zeros, None, *layout_arguments(p.layout))
    result = torch.library.opcheck(torch.ops.anybit.quantized_matmul.default, arguments)
    assert all(value == "SUCCESS" for value in result.values()), result
    compiled = torch.compile(lambda t: ops.quantized_matmul(t, p) * 2, fullgraph=True, backend="aot_eager")
    assert relative_error(compiled(x), 2 * expected(x, q)) < 3e-3
