"""The bf16-through-fp16 route's choice (:mod:`anybit.ops.half_choice`): which calls may take it, its
choices apart from the int8 route's, and the fp16 decode configuration it runs (the choice's storing and
pinning: tests/ops/test_route_choice.py)."""

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


def layout(type_name: str, n: int = 8192, k: int = 8192, group: int = 128, **options):
    return choose_layout(anybit.dtype(type_name), n, k, group, **options)


def test_bf16_decode_calls_of_a_weights_packed_as_a_are_eligible():
    for m in (1, 7, 16):
        assert half_choice.eligible(layout("int4"), BF16, m)
    assert not half_choice.eligible(layout("int4"), torch.float16, 1)  # fp16 runs the fp16 loop already
    assert not half_choice.eligible(layout("int4"), BF16, 17)  # past the decode kernel's rows
    assert not half_choice.eligible(layout("int4", operand="b"), BF16, 1)  # the transposed kernel's only
    assert not half_choice.eligible(layout("int4", gated=True), BF16, 1)  # silu · up is the fused kernel's
    assert half_choice.eligible(layout("int4", k=8192 + 32, group=32), BF16, 1)  # any K: a factor a chunk


def test_each_form_takes_the_ks_it_can_prepare():
    """Both forms where K is in whole vectors for the row form's 8 cluster blocks; the chunk form alone
    where it is not (a factor a chunk needs only whole vectors a chunk); none where the route is not."""
    assert half_choice.eligible_forms(layout("int4"), BF16, 16) == ["row", "chunk"]
    assert half_choice.eligible_forms(layout("int4", k=8192 + 32, group=32), BF16, 1) == ["chunk"]
    assert half_choice.eligible_forms(layout("int4"), torch.float16, 1) == []


def test_the_routes_choices_are_kept_apart():
    """The int8 route's and this route's choices of one decode kernel have their own identities."""
    assert HalfRouteChooser("DecodeKernel-0123").identity != Int8RouteChooser("DecodeKernel-0123").identity
    assert HalfRouteChooser("DecodeKernel-0123").identity.startswith("QuantizedMatmulHalfRoute-")


def _decode_args(n: int = 1024, k: int = 1024, m: int = 1) -> tuple:
    """A bf16 decode launch's arguments (their values never read: nothing runs)."""
    shaped = [(m, k), (n * k // 2,), (k // 128, n), (k // 128, n), (n,), (m, n)]
    dtypes = [BF16, torch.uint8, BF16, BF16, BF16, BF16]
    return (*(torch.zeros(shape, dtype=dtype) for shape, dtype in zip(shaped, dtypes, strict=True)), m, n, k)


def _store(tuner, args: tuple, config: dict) -> None:
    bucket = bucket_text(decode_bucket(args))
    record = [Candidate(config, milliseconds=1.0)]
    autotune.store_tuned(tuner.identity, "decode", gpu_key(ARCH), bucket, record)


FP16_CONFIG = {"rows": 8, "warps": 2, "stages": 4, "split": 2, "warps_along_k": False}
BF16_CONFIG = {"rows": 8, "warps": 4, "stages": 3, "split": 1, "warps_along_k": False}


def _no_fp16_tuning(monkeypatch):
    """Make tuning the fp16 decode kernel fail the test (the tuner's own select), or stand for it."""
    from anybit.ops.tuning import DecodeTuner

    tuned = []

    def select(self, args):
        tuned.append(self.fixed["act_dtype"])
        return FP16_CONFIG

    monkeypatch.setattr(DecodeTuner, "select", select)
    return tuned


def test_the_route_runs_the_fp16_kernels_recorded_configuration(monkeypatch):
    """Where the fp16 decode kernel has a configuration recorded for the shape, the route runs it (whatever
    the bf16 kernel's), and nothing is tuned."""
    weight = layout("int4", n=1024, k=1024)
    args = _decode_args()
    monkeypatch.setattr("anybit.runtime.device.current_arch", lambda: ARCH)
    _store(tuner_for(weight, torch.float16, False, False), args, FP16_CONFIG)
    tuned = _no_fp16_tuning(monkeypatch)
    assert half_choice.fp16_config(weight, args, False, False, BF16_CONFIG) == FP16_CONFIG
    assert half_choice.fp16_config(weight, args, False, False, BF16_CONFIG, tune=True) == FP16_CONFIG
    assert tuned == []


def test_without_an_fp16_record_the_route_runs_the_bf16_configuration_unless_asked_to_tune(monkeypatch):
    """Nothing recorded for the fp16 kernel: the route takes the bf16 kernel's configuration (a first call
    tunes once, not twice); with ``ANYBIT_TUNE_HALF_ROUTE=1`` (or ``tune=True``) the fp16 kernel is tuned
    for it on the call's tensors read as fp16."""
    weight = layout("int4", n=1024, k=1024)
    args = _decode_args()
    monkeypatch.setattr("anybit.runtime.device.current_arch", lambda: ARCH)
    monkeypatch.delenv(half_choice.TUNE_ROUTE_VARIABLE, raising=False)
    tuned = _no_fp16_tuning(monkeypatch)
    assert not half_choice.tunes_route_configuration()
    assert half_choice.fp16_config(weight, args, False, False, BF16_CONFIG) == BF16_CONFIG
    assert tuned == []
    assert half_choice.fp16_config(weight, args, False, False, BF16_CONFIG, tune=True) == FP16_CONFIG
    assert tuned == [torch.float16]
    monkeypatch.setenv(half_choice.TUNE_ROUTE_VARIABLE, "1")
    assert half_choice.tunes_route_configuration()
    assert half_choice.fp16_config(weight, args, False, False, BF16_CONFIG) == FP16_CONFIG
    assert half_choice.fp16_config(weight, args, False, False, BF16_CONFIG, tune=False) == BF16_CONFIG
    assert tuned == [torch.float16, torch.float16]


def test_a_configuration_that_cannot_cover_n_gives_way_to_the_default():
    """The bf16 kernel's configuration, like a stored one, where its block columns do not divide N: the
    default decode configuration for M instead."""
    import dataclasses

    from anybit.kernels.launch import default_decode_config
    from anybit.ops.tuning import block_columns

    weight = layout("int4", n=1024 + 16, k=1024)
    wide = dict(BF16_CONFIG, warps=8)
    assert (1024 + 16) % block_columns(wide, weight)
    default = dataclasses.asdict(default_decode_config(weight, 1))
    assert half_choice.covering(weight, wide, 1, 1024 + 16) == default
    assert half_choice.covering(weight, BF16_CONFIG, 1, 1024) == BF16_CONFIG


def test_the_precompile_takes_the_bf16_record_where_the_fp16_kernel_has_none(monkeypatch):
    """What the precompile builds for a shape without an fp16 record: the bf16 kernel's recorded
    configuration (what the first call will run), or nothing where the route's configuration is tuned."""
    weight = layout("int4", n=1024, k=1024)
    args = _decode_args(m=16)
    monkeypatch.delenv(half_choice.TUNE_ROUTE_VARIABLE, raising=False)
    _store(tuner_for(weight, BF16, False, False), args, BF16_CONFIG)
    shape = (16, 1024, 1024)
    assert half_choice.route_configuration(weight, False, False, shape, ARCH) == BF16_CONFIG
    monkeypatch.setenv(half_choice.TUNE_ROUTE_VARIABLE, "1")
    assert half_choice.route_configuration(weight, False, False, shape, ARCH) is None
    _store(tuner_for(weight, torch.float16, False, False), args, FP16_CONFIG)
    assert half_choice.route_configuration(weight, False, False, shape, ARCH) == FP16_CONFIG


class _Launcher:
    """Stands for a compiled kernel's launcher: its parameters' names, and the launches it was given."""

    def __init__(self, names, launches):
        self.user_params = [type("Param", (), {"name": name})() for name in names]
        self.launch = launches.append


def test_a_routes_launch_compiles_both_kernels_once_then_launches_them_in_order(monkeypatch):
    """A route's launch (the preparation, then the route's kernel): the first call compiles and runs both,
    later calls launch the kept launchers with each kernel's arguments in its parameters' order."""
    from anybit.ops.route_choice import PreparedLaunch
    from anybit.runtime import compiler

    launched, compiled = [], []

    def launch_script(kernel, args):
        compiled.append((kernel, args))
        names = {"prepare": ("k", "x"), "kernel": ("y", "x", "n")}[kernel]  # the generator's own order
        return type("Compiled", (), {"launcher": _Launcher(names, launched)})()

    class Route(PreparedLaunch):
        PREPARE_PARAMETERS = ("x", "k")
        KERNEL_PARAMETERS = ("x", "y", "n")
        prepare, kernel = "prepare", "kernel"

        def arguments(self, args):
            x, y, n, k = args
            return (x, k), (x, y, n)

    monkeypatch.setattr(compiler, "launch_script", launch_script)
    route = Route()
    route(("x0", "y0", 3, 8))
    assert compiled == [("prepare", ("x0", 8)), ("kernel", ("x0", "y0", 3))] and not launched
    route(("x1", "y1", 3, 8))
    assert len(compiled) == 2 and launched == [(8, "x1"), ("y1", "x1", 3)]


def test_a_measured_route_is_kept_and_run_where_it_is_faster(monkeypatch):
    """The plan's route choice: the candidates timed against the decode launch (the measurement stubbed),
    the faster route made, run once (compiling it) and returned; the decode kernel's choice returns None."""
    from anybit.ops import route_choice
    from anybit.ops.plan import WeightPlan
    from anybit.ops.route_choice import RouteChooser

    monkeypatch.setattr("anybit.runtime.device.current_arch", lambda: ARCH)
    monkeypatch.setattr("anybit.ops.row_timing.row_arguments", lambda args, has_zeros: [args])
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)  # no CUDA here
    plan = WeightPlan(layout("int4", n=1024, k=1024), BF16, torch.device("cpu"))
    ran = []

    def route(config):
        return lambda args: ran.append((config["split"], args))

    for faster, chooser in (
        ("half", RouteChooser("Test-half", "half")),
        ("decode", RouteChooser("Test-d", "half")),
    ):

        def measure(decode_launch, routes, rows, faster=faster):
            ((config, launch),) = routes
            times = {"decode": 1.0, "half": 2.0} if faster == "decode" else {"decode": 2.0, "half": 1.0}
            return [
                Candidate(dict(DECODE_ROUTE), milliseconds=times["decode"]),
                Candidate(dict(config), milliseconds=times["half"]),
            ]

        monkeypatch.setattr(route_choice, "measure", measure)

        def candidates() -> list[dict]:
            return [{"route": "half", "split": 4}]

        found = plan._measured_route(chooser, [1, 1024, 1024], route, candidates, ("args",), None, False)
        if faster == "half":
            assert found is not None and ran == [(4, ("args",))]
        else:
            assert found is None and len(ran) == 1  # nothing more ran


@pytest.mark.parametrize("processes", [0, 2])
def test_precompile_compiles_both_forms_of_the_shapes_a_first_call_will_time(processes):
    """For a bf16 weight: both forms of a shape whose fp16 configuration is recorded and whose route is not
    chosen yet, compiled in build worker processes (or here, with none) into the disk cache where the
    route's launch finds them; a shape with a stored choice, or without a recorded fp16 configuration, is
    left to its first call."""
    from anybit.kernels.decode_half_x import DecodeMatmulHalfX
    from anybit.runtime.cache import cache_key, read_entry
    from anybit.runtime.compiler import generate_source

    weight = layout("int4", n=1024, k=1024)
    fp16_tuner = tuner_for(weight, torch.float16, False, False)
    config = {"rows": 8, "warps": 2, "stages": 4, "split": 2, "warps_along_k": False}
    for m in (1, 4):
        bucket = bucket_text([m, 1024, 1024])
        autotune.store_tuned(fp16_tuner.identity, "decode", gpu_key(ARCH), bucket, [Candidate(config, 1.0)])
    chooser = half_choice.half_route_chooser(tuner_for(weight, BF16, False, False).identity)
    chosen = bucket_text([4, 1024, 1024])
    autotune.store_tuned(
        chooser.identity, "route", gpu_key(ARCH), chosen, [Candidate(dict(DECODE_ROUTE), 1.0)]
    )
    shapes = [(1, 1024, 1024), (4, 1024, 1024), (16, 1024, 1024)]
    specialisation = (weight, BF16, False, False, shapes)
    counts = half_choice.precompile_routes([specialisation], arch=ARCH, processes=processes)
    assert counts == {"compiled": 2, "failed": 0}
    for chunks in (False, True):
        kernel = DecodeMatmulHalfX(weight, chunks, has_zeros=False, has_bias=False, **config)
        source = generate_source(kernel.program(*(None,) * 7, 1, 1024, 1024), ARCH)
        assert read_entry(cache_key(source.source, source.name, ARCH)) is not None
    assert half_choice.precompile_routes([(weight, torch.float16, False, False, shapes)], arch=ARCH) == {
        "compiled": 0,
        "failed": 0,
    }


def test_the_plans_route_candidates_take_the_bf16_configuration_without_an_fp16_record(monkeypatch):
    """What a bf16 first call times against the decode kernel: each eligible form in the configuration the
    bf16 kernel was given for this call, where the fp16 kernel has none recorded (nothing tuned)."""
    from anybit.ops.plan import WeightPlan

    monkeypatch.setattr("anybit.runtime.device.current_arch", lambda: ARCH)
    monkeypatch.delenv(half_choice.TUNE_ROUTE_VARIABLE, raising=False)
    tuned = _no_fp16_tuning(monkeypatch)
    plan = WeightPlan(layout("int4", n=1024, k=1024), BF16, torch.device("cpu"))
    timed = []

    def measured_route(chooser, bucket, route, candidates, args, decode_launch, has_zeros):
        timed.extend(candidates())
        return None

    monkeypatch.setattr(plan, "_measured_route", measured_route)
    args = _decode_args(m=4)
    assert plan._half_route(args, None, "DecodeKernel-0123", False, False, BF16_CONFIG) is None
    assert timed == [{"route": "half", "factors": form, **BF16_CONFIG} for form in half_choice.FORMS]
    assert tuned == []
