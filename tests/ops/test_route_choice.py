"""A measured route's choice (:mod:`anybit.ops.route_choice`), the same for the int8 route and the bf16
route through the fp16 loop: timed once and kept on disk, the decode kernel where nothing can be timed, and
an exported choice pinned in serving."""

from __future__ import annotations

import pytest

from anybit.ops.half_choice import HalfRouteChooser
from anybit.ops.int8_choice import Int8RouteChooser
from anybit.ops.route_choice import DECODE_ROUTE
from anybit.runtime import autotune
from anybit.runtime.autotune import Candidate

ARCH = "sm_90a"
HALF = {"route": "half", "rows": 8, "warps": 4, "stages": 4, "split": 2, "warps_along_k": False}
ROUTES = [(Int8RouteChooser, {"route": "int8", "warps": 4, "tiles": 2, "split": 2}), (HalfRouteChooser, HALF)]


@pytest.mark.parametrize(("chooser_class", "route"), ROUTES)
def test_the_faster_route_is_measured_once_and_kept_on_disk(chooser_class, route):
    calls = []

    def measure():
        calls.append(1)
        return [Candidate(dict(DECODE_ROUTE), milliseconds=0.049), Candidate(dict(route), milliseconds=0.034)]

    chooser = chooser_class("DecodeKernel-0123")
    assert chooser.choose([1, 57344, 8192], ARCH, measure) == route
    assert chooser.choose([1, 57344, 8192], ARCH, measure) == route and len(calls) == 1
    again = chooser_class("DecodeKernel-0123")  # another process reads the stored choice
    assert again.choose([1, 57344, 8192], ARCH, lambda: pytest.fail("timed again")) == route
    slower = [Candidate(dict(DECODE_ROUTE), milliseconds=0.0126), Candidate(dict(route), milliseconds=0.0132)]
    assert chooser.choose([1, 8192, 8192], ARCH, lambda: slower) == DECODE_ROUTE


@pytest.mark.parametrize(("chooser_class", "route"), ROUTES)
def test_the_decode_kernel_without_timing_and_nothing_stored(chooser_class, route, monkeypatch):
    chooser = chooser_class("DecodeKernel-89ab")
    assert chooser.choose([1, 4096, 4096], ARCH, None) == DECODE_ROUTE  # e.g. during CUDA graph capture
    monkeypatch.setenv("ANYBIT_AUTOTUNE", "0")
    assert chooser.choose([1, 4096, 4096], ARCH, lambda: pytest.fail("timed with tuning off")) == DECODE_ROUTE


@pytest.mark.parametrize(("chooser_class", "route"), ROUTES)
def test_an_exported_choice_is_pinned_in_serving(chooser_class, route, tmp_path, monkeypatch):
    chooser = chooser_class("DecodeKernel-cdef")
    assert chooser.choose([1, 8192, 28672], ARCH, lambda: [Candidate(dict(route), milliseconds=1.0)]) == route
    assert autotune.export_tuning(tmp_path / "tuning.json") >= 1
    monkeypatch.setenv("ANYBIT_CACHE_DIR", str(tmp_path / "serving"))
    monkeypatch.setenv("ANYBIT_AUTOTUNE", "0")
    assert autotune.load_tuning(tmp_path / "tuning.json") >= 1
    serving = chooser_class("DecodeKernel-cdef")
    assert serving.choose([1, 8192, 28672], ARCH, lambda: pytest.fail("timed in serving")) == route
