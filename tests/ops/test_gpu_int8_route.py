"""The int8 route through ``quantized_matmul`` on the GPU (skipped without one): the first one-row call
measures it against the decode kernel and keeps the faster; either way the product matches float64, in
eager calls and replayed from a CUDA graph."""

from __future__ import annotations

import pytest
import torch

import anybit.ops as ops
from anybit.ops import int8_choice, route_choice
from anybit.ops.int8_choice import Int8RouteLaunch
from anybit.ops.route_choice import DECODE_ROUTE
from anybit.runtime.autotune import Candidate

from .helpers import packed_weight, reference, relative_error, requires_gpu

pytestmark = [pytest.mark.gpu, requires_gpu]
TOLERANCE = {torch.float16: 1e-3, torch.bfloat16: 4e-3}


def one_row_launch(weight):
    """The launch quantized_matmul keeps for one row of x without bias."""
    return ops.plan_of(weight).decode_launch(1, has_zeros=weight.zeros is not None, has_bias=False)


@pytest.mark.parametrize("dtype", ["uint1", "uint2", "uint4"])
@pytest.mark.parametrize("act", [torch.float16, torch.bfloat16])
def test_the_first_one_row_call_measures_the_route_and_both_agree_with_float64(dtype, act):
    q, weight = packed_weight(dtype, 2048, 4096, act_dtype=act, device="cuda", seed=7)
    assert int8_choice.eligible(weight.layout, act, 1, has_bias=False)
    x = torch.randn(1, 4096, device="cuda").to(act)
    first = ops.quantized_matmul(x, weight)  # the decode kernel, then the measurement
    second = ops.quantized_matmul(x, weight)  # the route measured faster
    torch.cuda.synchronize()
    for y in (first, second):
        assert torch.isfinite(y).all() and relative_error(y, reference(x, q)) <= TOLERANCE[act]
    # the kept launch is the route the first call measured faster, and that choice is stored
    from anybit.ops.tuning import tuner_for
    from anybit.runtime.device import current_arch

    tuner = tuner_for(weight.layout, act, True, False)
    chosen = int8_choice.int8_route_chooser(tuner.identity).choose(
        [1, 2048, 4096], current_arch(), lambda: pytest.fail("measured twice")
    )
    assert chosen["route"] in ("decode", "int8")
    assert isinstance(one_row_launch(weight), Int8RouteLaunch) == (chosen["route"] == "int8")


@pytest.mark.parametrize("dtype", ["uint1", "uint2", "uint4"])
def test_the_int8_route_where_it_measures_faster(dtype, monkeypatch):
    """With the int8 configuration measured faster (the measurement stubbed), calls take it: eager, and
    replayed from a CUDA graph with fresh x; without zero points too."""
    chosen = {}

    def measure(decode_launch, routes, rows):
        config = routes[0][0]
        chosen["config"] = config
        return [Candidate(dict(DECODE_ROUTE), milliseconds=2.0), Candidate(dict(config), milliseconds=1.0)]

    monkeypatch.setattr(route_choice, "measure", measure)
    q, weight = packed_weight(dtype, 1024, 2048, device="cuda", seed=11)
    x = torch.randn(1, 2048, device="cuda").half()
    ops.quantized_matmul(x, weight)
    assert isinstance(one_row_launch(weight), Int8RouteLaunch) and chosen["config"]["route"] == "int8"
    y = ops.quantized_matmul(x, weight)
    torch.cuda.synchronize()
    assert relative_error(y, reference(x, q)) <= TOLERANCE[torch.float16]
    static_x = torch.randn(1, 2048, device="cuda").half()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = ops.quantized_matmul(static_x, weight)
    for _ in range(2):
        static_x.copy_(torch.randn(1, 2048, device="cuda").half())
        static_y.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert relative_error(static_y, reference(static_x, q)) <= TOLERANCE[torch.float16]
    zeros_free = type(weight)(weight.data, weight.scales, None, weight.layout, weight.act_dtype)
    q_free = type(q)(q.codes, q.dtype, q.group_size, q.scales, None)
    y = ops.quantized_matmul(x, zeros_free)
    assert isinstance(one_row_launch(zeros_free), Int8RouteLaunch)
    assert relative_error(y, reference(x, q_free)) <= TOLERANCE[torch.float16]
