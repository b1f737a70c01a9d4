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


def _route_launches(weight, act_dtype, m: int) -> list:
    """A first call's candidates on the CPU: the fp16 loop's two forms (bf16), or every int8 configuration."""
    import torch

    from anybit.ops import half_choice, int8_choice

    config = {key: value for key, value in HALF.items() if key != "route"}
    cpu = torch.device("cpu")
    if act_dtype is torch.bfloat16:
        forms = half_choice.eligible_forms(weight, act_dtype, m)
        return [half_choice.HalfRouteLaunch(weight, config, True, False, cpu, m, form) for form in forms]
    configs = int8_choice.candidates(weight)
    return [int8_choice.Int8RouteLaunch(weight, act_dtype, config, True, cpu) for config in configs]


@pytest.mark.parametrize("act", ["bf16", "fp16"])
def test_a_first_calls_route_kernels_are_compiled_in_running_workers(act, monkeypatch):
    """A first call's route candidates (the fp16 loop's two forms; the int8 route's configurations and their
    shared preparation) are built side by side in the running build workers, each job and its reply through
    pickle as the pipes carry them, and registered under the program the launch would trace from the call's
    own tensors, so no launch compiles; with no workers running nothing is sent (starting them costs more)."""
    import pickle

    import torch

    import anybit
    from anybit.kernels import choose_layout
    from anybit.ops import route_choice
    from anybit.runtime import build_pool, compiler

    act_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[act]
    m, n, k = (4, 1024, 2048) if act == "bf16" else (1, 1024, 2048)
    weight = choose_layout(anybit.dtype("uint4"), n, k, 128)
    shaped = [(m, k), (n * k // 2,), (k // 128, n), (k // 128, n // 2), None, (m, n)]
    dtypes = [act_dtype, torch.uint8, act_dtype, torch.uint8, None, act_dtype]
    args = (*(torch.ones(s, dtype=d) if s else None for s, d in zip(shaped, dtypes, strict=True)), m, n, k)
    launches = _route_launches(weight, act_dtype, m)
    calls = [call for launch in launches for call in launch.calls(args)]
    distinct = {
        (id(script), tuple(a for a in call_args if not isinstance(a, torch.Tensor)))
        for script, call_args in calls
    }
    assert len(launches) >= 2 and len(distinct) >= 3, distinct
    monkeypatch.setattr("anybit.runtime.device.current_arch", lambda: ARCH)
    monkeypatch.setattr(build_pool, "running_workers", lambda: 0)
    assert route_choice.prebuild(launches, args) == 0
    sent = []

    def run_jobs(function, items, workers):  # what the workers would reply, through the pipes' pickling
        sent.append((len(items), workers))
        return [(True, pickle.loads(pickle.dumps(function(*pickle.loads(pickle.dumps(i)))))) for i in items]

    monkeypatch.setattr(build_pool, "running_workers", lambda: 16)
    monkeypatch.setattr(build_pool, "run_jobs", run_jobs)
    assert route_choice.prebuild(launches, args) == len(distinct)
    assert sent == [(len(distinct), len(distinct))]
    for script, call_args in calls:
        state = compiler._state_of(script)
        compiled = state.kernels[compiler._specialisation(call_args, state.binding, ARCH)]
        traced = compiler.generate_source(script.program(*call_args), ARCH)
        assert compiled.kernel_source.source == traced.source
    assert route_choice.prebuild(launches, args) == 0  # registered: nothing left to build
