"""The custom op: registered with its schema, a fake implementation that gives shapes, opcheck, compile."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import anybit.kernels as kernels
import anybit.ops as ops
from anybit.ops.library import SCHEMA, layout_arguments, layout_of

from .helpers import packed_weight, reference, relative_error


def op_arguments(x, p, bias=None) -> tuple:
    return (x, p.data, p.scales, p.zeros, bias, *layout_arguments(p.layout))


def test_op_is_registered_with_its_schema():
    op = torch.ops.anybit.quantized_matmul.default
    schema = str(op._schema)
    assert schema.startswith("anybit::quantized_matmul(Tensor x, Tensor data, Tensor scales, Tensor? zeros")
    assert schema.endswith("-> Tensor")
    assert SCHEMA.split("(")[0] == "quantized_matmul"


def test_layout_arguments_round_trip():
    _, p = packed_weight("int6", 32, 128)
    assert layout_of(*layout_arguments(p.layout)) == p.layout


def test_fake_tensor_shapes_and_dtypes():
    for act in (torch.float16, torch.bfloat16):
        q, p = packed_weight("uint3", 32, 256, act_dtype=act)
        with FakeTensorMode() as mode:
            fake = kernels.PackedWeight(
                mode.from_tensor(p.data), mode.from_tensor(p.scales), mode.from_tensor(p.zeros), p.layout, act
            )
            for shape in [(1, 256), (7, 256), (2, 3, 256), (256,), (0, 256), (600, 256)]:
                y = ops.quantized_matmul(torch.empty(shape, dtype=act), fake)
                assert isinstance(y, torch._subclasses.fake_tensor.FakeTensor)
                assert tuple(y.shape) == (*shape[:-1], 32) and y.dtype == act


def test_meta_tensors_give_shapes():
    _, p = packed_weight("int4", 32, 128)
    meta = [t.to("meta") if t is not None else None for t in (p.data, p.scales, p.zeros)]
    x = torch.empty(5, 128, dtype=torch.float16, device="meta")
    y = torch.ops.anybit.quantized_matmul(x, *meta, None, *layout_arguments(p.layout))
    assert y.device.type == "meta" and tuple(y.shape) == (5, 32) and y.dtype == torch.float16


def test_opcheck_passes():
    _, p = packed_weight("uint4", 32, 128)
    x = torch.randn(3, 128).half()
    bias = torch.randn(32).half()
    result = torch.library.opcheck(torch.ops.anybit.quantized_matmul.default, op_arguments(x, p, bias))
    assert all(value == "SUCCESS" for value in result.values()), result


@pytest.mark.parametrize("dtype", ["float6_e3m2", "float6_e2m3"])
def test_op_called_directly_matches_the_reference(dtype):
    """The layout travels as the op's arguments, float6_e2m3's spread top plane (stride 4) included."""
    q, p = packed_weight(dtype, 32, 256)
    assert p.layout.top_plane_stride == (4 if dtype == "float6_e2m3" else 1)
    x = torch.randn(2, 256).half()
    y = torch.ops.anybit.quantized_matmul(*op_arguments(x, p))
    assert relative_error(y, reference(x, q)) < 2e-3


@pytest.mark.parametrize("dtype", ["uint2", "float6_e2m3"])
def test_torch_compile_fullgraph(dtype):
    q, p = packed_weight(dtype, 32, 256)
    bias = torch.randn(32).half()

    def layer(x):
        return torch.relu(ops.quantized_matmul(x, p, bias)) * 2

    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 256).half()
    expected = torch.relu(reference(x, q, bias)) * 2
    assert relative_error(compiled(x), expected) < 2e-3
