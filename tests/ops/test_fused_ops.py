"""The fused projection ops: ``quantized_matmul_rms`` (rows of x normalised by their RMS first) and
``quantized_matmul_add_`` (the product added into a residual stream in place), against float64 references,
on both paths, through the custom ops, under ``torch.compile``, and with clear errors for misuse."""

from __future__ import annotations

import pytest
import torch

import anybit.kernels as kernels
import anybit.ops as ops
from anybit.ops.fused_library import call_add_op, call_rms_op
from anybit.ops.library import layout_arguments

from .helpers import relative_error

EPS = 1e-5


def weight(dtype: str = "int4", n: int = 128, k: int = 256, zero_point: bool = False):
    w = torch.randn(n, k) * 0.05  # fresh for every call
    q = kernels.quantize(w, dtype, group_size=128, zero_point=zero_point, act_dtype=torch.float16)
    return q, kernels.pack(q)


def normalised(x: torch.Tensor) -> torch.Tensor:
    wide = x.double()
    return wide / torch.sqrt(wide.pow(2).mean(-1, keepdim=True) + EPS)


CASES = [("int4", False, 1), ("uint5", True, 3), ("int6", False, 2)]


@pytest.mark.parametrize("path", ["decode", "dequantize"])
@pytest.mark.parametrize(("dtype", "zero_point", "m"), CASES)
def test_rms_and_add_match_the_references(dtype, zero_point, m, path):
    q, p = weight(dtype, zero_point=zero_point)
    x = (torch.randn(m, 256) * 4.0).half()
    bias = torch.randn(128).half()
    w = kernels.dequantize(q).double()
    plan = ops.plan_of(p)
    y = plan(x, p.data, p.scales, p.zeros, bias, path=path, rms_eps=EPS)
    assert torch.isfinite(y).all()
    assert relative_error(y, normalised(x) @ w.t() + bias.double()) < 2e-3
    residual = torch.randn(m, 128).half()
    out = residual.clone()
    returned = plan(x, p.data, p.scales, p.zeros, None, path=path, into=out)
    assert returned is out
    assert relative_error(out, residual.double() + x.double() @ w.t()) < 2e-3


def test_public_functions_and_the_custom_ops_agree():
    q, p = weight()
    x = torch.randn(2, 256).half()
    w = kernels.dequantize(q).double()
    eager = ops.quantized_matmul_rms(x, p, EPS)
    through_op = call_rms_op(x, p.data, p.scales, p.zeros, None, p.layout, EPS)
    assert torch.equal(eager, through_op)
    assert relative_error(eager, normalised(x) @ w.t()) < 2e-3
    residual = torch.randn(2, 128).half()
    first, second = residual.clone(), residual.clone()
    assert ops.quantized_matmul_add_(first, x, p) is first
    assert call_add_op(second, x, p.data, p.scales, p.zeros, None, p.layout) is second
    assert torch.equal(first, second)
    assert relative_error(first, residual.double() + x.double() @ w.t()) < 2e-3


def test_torch_compile_functionalises_the_in_place_add():
    """A norm-folded projection then a residual one, as in a decoder layer, compiled whole (AOTAutograd
    functionalises the in-place op)."""
    q1, p1 = weight(n=128, k=256)
    q2, p2 = weight(n=256, k=128)
    w1, w2 = kernels.dequantize(q1).double(), kernels.dequantize(q2).double()

    def layer(h: torch.Tensor) -> torch.Tensor:
        inner = ops.quantized_matmul_rms(h, p1, EPS)
        return ops.quantized_matmul_add_(h, inner, p2)

    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    h = (torch.randn(1, 256) * 2.0).half()
    inner = (normalised(h) @ w1.t()).half().double()
    expected = h.double() + inner @ w2.t()
    result = compiled(h.clone())
    assert torch.isfinite(result).all() and relative_error(result, expected) < 3e-3


def test_misuse_is_refused_with_clear_errors():
    q, p = weight()
    x = torch.randn(1, 256).half()
    with pytest.raises(ValueError, match="rms_eps"):
        ops.quantized_matmul_rms(x, p, 0.0)
    with pytest.raises(ValueError, match="expected rms_eps a positive float"):
        ops.quantized_matmul_rms(x, p, [EPS])  # not a float (nor hashable): the checked path says so
    with pytest.raises(ValueError, match="add into"):
        ops.quantized_matmul_add_(torch.zeros(1, 64).half(), x, p)
    with pytest.raises(ValueError, match="add into"):
        ops.quantized_matmul_add_(torch.zeros(1, 128), x, p)  # float32: not the activation dtype
    as_b = kernels.pack(q, layout=kernels.choose_layout("int4", 128, 256, 128, operand="b"))
    with pytest.raises(ValueError, match="A operand"):
        ops.quantized_matmul_rms(x, as_b, EPS)
    gated = kernels.pack(q, layout=kernels.choose_layout("int4", 128, 256, 128, operand="a", gated=True))
    with pytest.raises(ValueError, match="gated"):
        ops.quantized_matmul_add_(torch.zeros(1, 64).half(), x, gated)


def test_opcheck_passes_for_both_ops():
    """Schema, fake implementations and (for the in-place op) the declared mutation agree with the kernels."""
    _, p = weight()
    x = torch.randn(2, 256).half()
    layout_args = layout_arguments(p.layout)
    rms = torch.library.opcheck(
        torch.ops.anybit.quantized_matmul_rms.default, (x, p.data, p.scales, p.zeros, None, *layout_args, EPS)
    )
    assert all(value == "SUCCESS" for value in rms.values()), rms
    out = torch.randn(2, 128).half()
    arguments = (out, x, p.data, p.scales, p.zeros, None, *layout_args)
    add = torch.library.opcheck(torch.ops.anybit.quantized_matmul_add_.default, arguments)
    assert all(value == "SUCCESS" for value in add.values()), add


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")
@pytest.mark.parametrize("m", [1, 8, 16, 40])
def test_fused_ops_on_the_gpu_eager_and_in_a_cuda_graph(m):
    """The plan's fused launches (tuned on a scratch output, kept per M) and the dequantize path past 16
    rows, eager and replayed from a CUDA graph, against float64."""
    w = torch.randn(4096, 2048, device="cuda") * 0.02
    q = kernels.quantize(w, "int4", group_size=128)
    p = kernels.pack(q)
    dense = kernels.dequantize(q).double()
    x = (torch.randn(m, 2048, device="cuda") * 2.0).half()
    residual = torch.randn(m, 4096, device="cuda").half()
    expected_rms = normalised(x) @ dense.t()
    expected_add = residual.double() + x.double() @ dense.t()
    assert relative_error(ops.quantized_matmul_rms(x, p, EPS), expected_rms) < 2e-3
    out = residual.clone()
    ops.quantized_matmul_add_(out, x, p)
    assert relative_error(out, expected_add) < 2e-3
    static_out = residual.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        normed = ops.quantized_matmul_rms(x, p, EPS)
        ops.quantized_matmul_add_(static_out, x, p)
    static_out.copy_(residual)
    normed.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert relative_error(normed, expected_rms) < 2e-3
    assert relative_error(static_out, expected_add) < 2e-3
    # Later eager calls (through the launches bound at the first ones, up to 16 rows) on fresh inputs.
    for _ in range(2):
        x = (torch.randn(m, 2048, device="cuda") * 2.0).half()
        assert relative_error(ops.quantized_matmul_rms(x, p, EPS), normalised(x) @ dense.t()) < 2e-3
        out = residual.clone()
        ops.quantized_matmul_add_(out, x, p)
        assert relative_error(out, residual.double() + x.double() @ dense.t()) < 2e-3
    bound = [table[m] for table in ops.plan_of(p)._fused_bound.values() if m in table]
    assert len(bound) == (2 if m <= 16 else 0) and all(callable(launch) for launch in bound), bound


def test_opcheck_passes_for_the_gated_mlp_op():
    """anybit::gated_mlp_: schema, fake implementation and the declared mutation of the stream agree with the
    kernel (the interpreter), and ops.gated_mlp_ compiles into it."""
    from benchmarks import mlp_probe

    pair, down = mlp_probe.make_mlp("int4", seed=2, hidden=256, intermediate=256, device="cpu")
    stream = torch.randn(2, 256).half()
    arguments = (
        stream,
        pair.data,
        pair.scales,
        down.data,
        down.scales,
        *layout_arguments(pair.layout),
        *layout_arguments(down.layout),
        EPS,
    )
    result = torch.library.opcheck(torch.ops.anybit.gated_mlp_.default, arguments)
    assert all(value == "SUCCESS" for value in result.values()), result
    expected = ops.gated_mlp_(stream.clone(), pair, down, EPS)
    compiled = torch.compile(lambda s: ops.gated_mlp_(s, pair, down, EPS), fullgraph=True)
    assert torch.equal(compiled(stream.clone()), expected)
