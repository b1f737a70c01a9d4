"""The bf16-through-fp16 route's choice (:mod:`anybit.ops.half_choice`): which calls may take it, the choice
stored and pinned like the tuned configurations, and the fp16 decode configuration it runs."""

from __future__ import annotations

import pytest
import torch

import anybit
from anybit.kernels import choose_layout
from anybit.ops import half_choice
from anybit.ops.half_choice import HalfRouteChooser
from anybit.ops.int8_choice import Int8RouteChooser
from anybit.ops.route_choice import DECODE_ROUTE
from anybit.ops.tuning import decode_bucket, tuner_for
from anybit.runtime import autotune
from anybit.runtime.autotune import Candidate, bucket_text, gpu_key

ARCH = "sm_90a"
BF16 = torch.bfloat16


def layout(type_name: str, n: int = 8192, k: int = 8192, **options):
    return choose_layout(anybit.dtype(type_name), n, k, 128, **options)


def test_bf16_decode_calls_of_a_weights_packed_as_a_are_eligible():
    for m in (1, 7, 16):
        assert half_choice.eligible(layout("int4"), BF16, m)
    assert not half_choice.eligible(layout("int4"), torch.float16, 1)  # fp16 runs the fp16 loop already
    assert not half_choice.eligible(layout("int4"), BF16, 17)  # past the decode kernel's rows
    assert not half_choice.eligible(layout("int4", operand="b"), BF16, 1)  # the transposed kernel's only
    assert not half_choice.eligible(layout("int4", gated=True), BF16, 1)  # silu · up is the fused kernel's


def test_the_faster_route_is_measured_once_and_kept(tmp_path, monkeypatch):
    half = {"route": "half", "rows": 8, "warps": 4, "stages": 4, "split": 2, "warps_along_k": False}
    calls = []

    def measure():
        calls.append(1)
        return [
            Candidate(dict(DECODE_ROUTE), milliseconds=0.0978),
            Candidate(dict(half), milliseconds=0.0915),
        ]

    chooser = HalfRouteChooser("DecodeKernel-0123")
    assert chooser.choose([1, 57344, 8192], ARCH, measure) == half
    assert chooser.choose([1, 57344, 8192], ARCH, measure) == half and len(calls) == 1
    again = HalfRouteChooser("DecodeKernel-0123")  # another process reads the stored choice
    assert again.choose([1, 57344, 8192], ARCH, lambda: pytest.fail("timed again")) == half
    slower = [Candidate(dict(DECODE_ROUTE), milliseconds=0.0126), Candidate(dict(half), milliseconds=0.0141)]
    assert chooser.choose([16, 8192, 8192], ARCH, lambda: slower) == DECODE_ROUTE
    assert chooser.choose([4, 4096, 4096], ARCH, None) == DECODE_ROUTE  # cannot time: the decode kernel
    assert autotune.export_tuning(tmp_path / "tuning.json") >= 2
    monkeypatch.setenv("ANYBIT_CACHE_DIR", str(tmp_path / "serving"))
    monkeypatch.setenv("ANYBIT_AUTOTUNE", "0")
    assert autotune.load_tuning(tmp_path / "tuning.json") >= 2
    serving = HalfRouteChooser("DecodeKernel-0123")
    assert serving.choose([1, 57344, 8192], ARCH, lambda: pytest.fail("timed in serving")) == half


def test_the_routes_choices_are_kept_apart():
    """The int8 route's and this route's choices of one decode kernel have their own identities."""
    assert HalfRouteChooser("DecodeKernel-0123").identity != Int8RouteChooser("DecodeKernel-0123").identity
    assert HalfRouteChooser("DecodeKernel-0123").identity.startswith("QuantizedMatmulHalfRoute-")


def test_the_route_runs_the_fp16_kernels_configuration(monkeypatch):
    """The route's decode configuration is the fp16 decode kernel's, as recorded for the shape (tuning off:
    nothing is timed), the call's bf16 tensors standing in as fp16."""
    weight = layout("int4", n=1024, k=1024)
    tuner = tuner_for(weight, torch.float16, False, False)
    config = {"rows": 8, "warps": 2, "stages": 4, "split": 2, "warps_along_k": False}
    args = (
        torch.zeros(1, 1024, dtype=BF16),
        torch.zeros(1024 * 1024 // 2, dtype=torch.uint8),
        torch.zeros(8, 1024, dtype=BF16),
        torch.zeros(8, 1024, dtype=BF16),
        torch.zeros(8, 1024, dtype=BF16),
        torch.zeros(1, 1024, dtype=BF16),
        1,
        1024,
        1024,
    )
    monkeypatch.setenv("ANYBIT_AUTOTUNE", "0")
    bucket = bucket_text(decode_bucket(args))
    autotune.store_tuned(
        tuner.identity, "decode", gpu_key(ARCH), bucket, [Candidate(config, milliseconds=1.0)]
    )
    monkeypatch.setattr("anybit.runtime.device.current_arch", lambda: ARCH)
    assert half_choice.fp16_config(weight, args, False, False) == config
