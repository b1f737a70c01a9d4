"""bf16 calls through the fp16 loop via ``quantized_matmul`` on the GPU (skipped without one): the first
decode call of an M bucket measures the route against the bf16 decode kernel and keeps the faster; either
way the product matches float64, in eager calls and replayed from a CUDA graph."""

from __future__ import annotations

import pytest
import torch

import anybit.ops as ops
from anybit.ops import half_choice, route_choice
from anybit.ops.half_choice import HalfRouteLaunch
from anybit.ops.route_choice import DECODE_ROUTE
from anybit.ops.tuning import tuner_for
from anybit.runtime.autotune import Candidate

from .helpers import packed_weight, reference, relative_error, requires_gpu

pytestmark = [pytest.mark.gpu, requires_gpu]
BF16 = torch.bfloat16
TOLERANCE = 4e-3


def kept_launch(weight, m: int, has_bias: bool = False):
    """The launch quantized_matmul keeps for M rows of x."""
    return ops.plan_of(weight).decode_launch(m, has_zeros=weight.zeros is not None, has_bias=has_bias)


@pytest.mark.parametrize(("dtype", "m"), [("int4", 1), ("int8", 16), ("float6_e3m2", 5), ("uint3", 1)])
def test_the_first_call_measures_the_route_and_both_agree_with_float64(dtype, m):
    q, weight = packed_weight(dtype, 2048, 4096, act_dtype=BF16, device="cuda", seed=5)
    assert half_choice.eligible(weight.layout, BF16, m)
    x = (torch.randn(m, 4096, device="cuda") * 10).to(BF16)
    first = ops.quantized_matmul(x, weight)  # the decode kernel, then the measurement
    second = ops.quantized_matmul(x, weight)  # whichever measured faster
    torch.cuda.synchronize()
    for y in (first, second):
        assert torch.isfinite(y).all() and relative_error(y, reference(x, q)) <= TOLERANCE
    from anybit.ops.tuning import m_bucket
    from anybit.runtime.device import current_arch

    identity = tuner_for(weight.layout, BF16, weight.zeros is not None, False).identity
    chosen = half_choice.half_route_chooser(identity).choose(
        [m_bucket(m), 2048, 4096], current_arch(), lambda: pytest.fail("measured twice")
    )
    assert chosen["route"] in ("decode", "half")
    assert isinstance(kept_launch(weight, m), HalfRouteLaunch) == (chosen["route"] == "half")


@pytest.mark.parametrize(
    ("dtype", "m", "bias", "form"),
    [
        ("uint4", 2, False, "chunk"),
        ("int4", 16, True, "row"),
        ("float4_e2m1", 1, True, "chunk"),
        ("float6_e3m2", 12, False, "chunk"),
        ("uint5", 8, True, "row"),
    ],
)
def test_the_route_where_it_measures_faster(dtype, m, bias, form, monkeypatch):
    """With one form of the route measured fastest (the measurement stubbed: both forms are timed), calls
    take it: eager, and replayed from a CUDA graph with fresh x of other magnitudes (the factors made again
    each replay)."""

    def measure(decode_launch, routes, rows):  # (the int8 route's too: not for these weights and calls)
        configs = [config for config, _ in routes]
        assert [(config["route"], config["factors"]) for config in configs] == [
            ("half", "row"),
            ("half", "chunk"),
        ]
        times = {"row": 3.0, "chunk": 3.0, form: 1.0}
        return [
            Candidate(dict(DECODE_ROUTE), milliseconds=2.0),
            *(Candidate(dict(config), milliseconds=times[config["factors"]]) for config in configs),
        ]

    monkeypatch.setattr(route_choice, "measure", measure)
    q, weight = packed_weight(dtype, 1024, 2048, act_dtype=BF16, device="cuda", seed=13)
    b = torch.randn(1024, device="cuda").to(BF16) if bias else None
    x = torch.randn(m, 2048, device="cuda").to(BF16)
    ops.quantized_matmul(x, weight, b)
    launch = kept_launch(weight, m, bias)
    assert isinstance(launch, HalfRouteLaunch) and launch.form == form
    y = ops.quantized_matmul(x, weight, b)
    torch.cuda.synchronize()
    assert relative_error(y, reference(x, q, b)) <= TOLERANCE
    static_x = torch.empty(m, 2048, device="cuda", dtype=BF16)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = ops.quantized_matmul(static_x, weight, b)
    for magnitude in (1e-20, 1e20):
        static_x.copy_((torch.randn(m, 2048, device="cuda") * magnitude).to(BF16))
        static_y.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert relative_error(static_y, reference(static_x, q, b)) <= TOLERANCE
