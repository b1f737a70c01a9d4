"""Bad input gets an error that says what was expected and what came."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import anybit.ops as ops
from anybit.ops.library import layout_arguments

from .helpers import packed_weight, reference, relative_error


@pytest.fixture
def weight():
    return packed_weight("uint4", 32, 128)


def test_wrong_dtype(weight):
    _, p = weight
    with pytest.raises(TypeError, match=r"expected x of dtype torch.float16 .* got torch.bfloat16; cast x"):
        ops.quantized_matmul(torch.randn(2, 128).bfloat16(), p)
    with pytest.raises(
        TypeError, match=r"got torch.float32; activations are torch.float16 or torch.bfloat16"
    ):
        ops.quantized_matmul(torch.randn(2, 128), p)


def test_k_mismatch_and_0d(weight):
    _, p = weight
    with pytest.raises(ValueError, match=r"expected x \[\.\.\., K=128\] .* got x of shape \[2, 127\]"):
        ops.quantized_matmul(torch.randn(2, 127).half(), p)
    with pytest.raises(ValueError, match=r"got x of shape \[\]"):
        ops.quantized_matmul(torch.tensor(1.0).half(), p)


def test_wrong_device(weight):
    _, p = weight
    with pytest.raises(ValueError, match=r"expected x on cpu, where the packed weight is, got x on meta"):
        ops.quantized_matmul(torch.empty(2, 128, dtype=torch.float16, device="meta"), p)


def test_not_tensors(weight):
    _, p = weight
    with pytest.raises(TypeError, match="expected x to be a torch.Tensor, got list"):
        ops.quantized_matmul([[1.0] * 128], p)
    with pytest.raises(TypeError, match="expected an anybit.kernels.PackedWeight .* got QuantizedWeight"):
        ops.quantized_matmul(torch.randn(1, 128).half(), weight[0])


def test_bad_bias(weight):
    _, p = weight
    x = torch.randn(2, 128).half()
    with pytest.raises(
        ValueError, match=r"expected bias torch.float16 \[N=32\] on cpu, got torch.float16 \[31\]"
    ):
        ops.quantized_matmul(x, p, torch.randn(31).half())
    with pytest.raises(
        ValueError, match=r"expected bias torch.float16 \[N=32\] on cpu, got torch.float32 \[32\]"
    ):
        ops.quantized_matmul(x, p, torch.randn(32))
    with pytest.raises(ValueError, match="contiguous bias"):
        ops.quantized_matmul(x, p, torch.randn(64).half()[::2])


def test_inconsistent_packed_weight(weight):
    _, p = weight
    broken = dataclasses.replace(p, scales=p.scales[:, :16].contiguous())
    with pytest.raises(
        ValueError, match=r"expected the packed weight's scales torch.float16 \[1, 32\] .* \[1, 16\]"
    ):
        ops.quantized_matmul(torch.randn(1, 128).half(), broken)
    wrong_act = dataclasses.replace(p, act_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="act_dtype is torch.bfloat16 but its scales are torch.float16"):
        ops.quantized_matmul(torch.randn(1, 128).bfloat16(), wrong_act)


def test_op_rejects_a_bad_layout(weight):
    _, p = weight
    x = torch.randn(1, 128).half()
    with pytest.raises(ValueError, match="do not make a packed layout"):
        torch.ops.anybit.quantized_matmul(
            x, p.data, p.scales, p.zeros, None, "uint4", 32, 128, 128, 100, 8, 16, "b"
        )
    with pytest.raises(ValueError, match="expected operand 'a' or 'b'"):
        arguments = (*layout_arguments(p.layout)[:-4], "c", False, [], 1)
        torch.ops.anybit.quantized_matmul(x, p.data, p.scales, p.zeros, None, *arguments)
    with pytest.raises(ValueError, match="a gated pair is packed as the A operand"):
        arguments = (*layout_arguments(p.layout)[:-4], "b", True, [], 1)
        torch.ops.anybit.quantized_matmul(x, p.data, p.scales, p.zeros, None, *arguments)
    with pytest.raises(ValueError, match="top_plane_stride spreads the two bits of a 2-bit top plane"):
        arguments = (*layout_arguments(p.layout)[:-1], 4)  # a uint4 weight has no planes
        torch.ops.anybit.quantized_matmul(x, p.data, p.scales, p.zeros, None, *arguments)


def test_non_contiguous_x_is_copied(weight):
    q, p = weight
    wide = torch.randn(3, 256).half()
    x = wide[:, ::2]
    assert not x.is_contiguous()
    assert relative_error(ops.quantized_matmul(x, p), reference(x, q)) < 2e-3
