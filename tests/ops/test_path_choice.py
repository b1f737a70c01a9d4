"""The measured path between decode_max_m and MEASURED_MAX_M rows: timed once, stored, exported, pinned."""

from __future__ import annotations

import pytest
import torch

import anybit.ops as ops
from anybit.ops import path_choice
from anybit.ops.path_choice import MEASURED_MAX_M, PathChooser
from anybit.ops.plan import WeightPlan
from anybit.runtime import autotune, device, timing

from .helpers import packed_weight, reference, relative_error

ARCH = "sm_90a"


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ANYBIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ANYBIT_AUTOTUNE", raising=False)
    autotune.clear_pinned()
    yield
    autotune.clear_pinned()


def test_the_faster_path_is_measured_once_and_kept_on_disk():
    calls = []

    def measure():
        calls.append(1)
        return {"decode": 0.03, "dequantize": 0.085}

    chooser = PathChooser("DecodeKernel-0123")
    assert chooser.choose([32, 8192, 8192], ARCH, measure) == "decode"
    assert chooser.choose([32, 8192, 8192], ARCH, measure) == "decode" and len(calls) == 1
    # Another process (a new chooser of the same kernel) reads the stored choice instead of timing.
    again = PathChooser("DecodeKernel-0123")
    assert again.choose([32, 8192, 8192], ARCH, lambda: pytest.fail("timed again")) == "decode"
    # Another bucket, another kernel: measured on their own.
    slower = {"decode": 0.112, "dequantize": 0.094}
    assert chooser.choose([128, 8192, 8192], ARCH, lambda: slower) == "dequantize"
    other = PathChooser("DecodeKernel-4567")
    assert other.identity != chooser.identity
    assert other.choose([32, 8192, 8192], ARCH, lambda: slower) == "dequantize"


def test_undecided_without_timing_and_nothing_stored(monkeypatch):
    chooser = PathChooser("DecodeKernel-89ab")
    assert chooser.choose([64, 4096, 4096], ARCH, None) is None  # e.g. during CUDA graph capture
    monkeypatch.setenv("ANYBIT_AUTOTUNE", "0")
    assert chooser.choose([64, 4096, 4096], ARCH, lambda: pytest.fail("timed with tuning off")) is None


def test_an_exported_choice_is_pinned_in_serving(tmp_path, monkeypatch):
    chooser = PathChooser("DecodeKernel-cdef")
    assert chooser.choose([32, 4096, 14336], ARCH, lambda: {"decode": 1.0, "dequantize": 2.0}) == "decode"
    assert autotune.export_tuning(tmp_path / "tuning.json") >= 1
    monkeypatch.setenv("ANYBIT_CACHE_DIR", str(tmp_path / "serving"))
    monkeypatch.setenv("ANYBIT_AUTOTUNE", "0")
    assert PathChooser("DecodeKernel-cdef").choose([32, 4096, 14336], ARCH, None) is None
    assert autotune.load_tuning(tmp_path / "tuning.json") >= 1
    assert PathChooser("DecodeKernel-cdef").choose([32, 4096, 14336], ARCH, None) == "decode"


def test_a_weight_plan_times_both_paths_on_its_arguments_and_keeps_the_faster(monkeypatch):
    """The plan's measurement (GPU-only in use) driven on the CPU: the decode path runs once before the
    timings (its own tuning), then both paths are timed on the call's arguments; the plan keeps the pick."""
    q, p = packed_weight("uint4", 64, 256)
    assert p.zeros is not None
    plan = WeightPlan(p.layout, torch.float16, torch.device("cpu"))
    x = torch.randn(24, 256, dtype=torch.float16)
    timed = []

    def fake_time(run, budget_ms):
        run()
        timed.append(budget_ms)
        return {1: 0.02, 2: 0.05}[len(timed)]  # decode first, then dequantize

    monkeypatch.setattr(timing, "time_cuda", fake_time)
    monkeypatch.setattr(device, "current_arch", lambda: ARCH)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    assert plan.measured_path(x, p.data, p.scales, p.zeros, None) == "decode"
    assert timed == [path_choice.PATH_BUDGET_MS] * 2
    assert plan._paths[(True, False, 24)] == "decode"
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    other = WeightPlan(p.layout, torch.float16, torch.device("cpu"))
    assert other.measured_path(x[:20], p.data, p.scales, p.zeros, None) == "decode"  # the same bucket, stored
    assert other.measured_path(x[:1].repeat(40, 1), p.data, p.scales, p.zeros, None) == "dequantize"
    assert (True, False, 40) not in other._paths  # undecided while capturing: measured on a later call
    y = ops.quantized_matmul(x, p)  # on the CPU, M > decode_max_m dequantizes (the rule, unmeasured)
    assert relative_error(y, reference(x, q)) < 1e-2


def test_the_measured_range_starts_above_the_decode_threshold():
    assert ops.decode_max_m() < MEASURED_MAX_M == 128


def test_a_call_in_the_measured_range_takes_the_kept_path(monkeypatch):
    q, p = packed_weight("int4", 64, 256)
    plan = WeightPlan(p.layout, torch.float16, torch.device("cpu"))
    plan.on_cuda = True  # the branch GPU weights take; the dequantize path then runs on the CPU tensors
    plan._paths[(False, False, 24)] = "dequantize"
    monkeypatch.setattr(plan, "measured_path", lambda *args: pytest.fail("measured again"))
    x = torch.randn(24, 256, dtype=torch.float16)
    y = plan(x, p.data, p.scales, None, None)
    assert not y.isnan().any() and relative_error(y, reference(x, q)) < 1e-2
