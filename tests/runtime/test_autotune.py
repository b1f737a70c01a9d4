"""Autotuning without a GPU: the space, buckets, candidate filtering with a fake timer, the cache, pinning."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pytest

import anybit
from anybit.runtime import autotune as tuning
from anybit.runtime import compiler
from anybit.runtime.autotune import TunedKernel, bucket_int, configurations, default_bucket, tune_space

from .helpers import AXPY, axpy_source


@anybit.autotune("block", [64, 128])
@anybit.autotune("stages", [1, 2, 3])
class Decorated(anybit.Script):
    def __init__(self, block: int, stages: int, flavour: str = "plain") -> None:
        super().__init__()
        self.block, self.stages, self.flavour = block, stages, flavour

    def __call__(self, x: anybit.ptr(anybit.float32), n: anybit.int32):
        self.attrs.blocks = [1]


def test_stacked_decorators_span_the_product_top_axis_slowest():
    assert tune_space(Decorated) == (("block", (64, 128)), ("stages", (1, 2, 3)))
    configs = configurations(tune_space(Decorated))
    assert configs[:2] == [{"block": 64, "stages": 1}, {"block": 64, "stages": 2}] and len(configs) == 6


def test_creating_without_tuned_arguments_gives_a_tuned_kernel():
    tuned = Decorated(flavour="fancy")
    assert isinstance(tuned, TunedKernel) and tuned.fixed == {"flavour": "fancy"} and len(tuned.configs) == 6
    partial = Decorated(block=64)
    assert isinstance(partial, TunedKernel)
    assert partial.configs == [{"stages": 1}, {"stages": 2}, {"stages": 3}]
    concrete = Decorated(128, stages=2)
    assert isinstance(concrete, Decorated) and (concrete.block, concrete.stages) == (128, 2)
    assert tuned.instance({"block": 64, "stages": 3}).stages == 3


@anybit.autotune("block", [64, 128])
class ForwardsOptions(anybit.Script):
    """A subclass taking its parent's arguments as ``**options`` (as the tuned decode kernels do)."""

    def __init__(self, flavour: str, **options) -> None:
        super().__init__()
        self.flavour, self.options = flavour, options

    def __call__(self, x: anybit.ptr(anybit.float32), n: anybit.int32):
        self.attrs.blocks = [1]


def test_tuned_arguments_given_through_keyword_options_count_as_given():
    assert isinstance(ForwardsOptions("plain", block=64), ForwardsOptions)  # block came in **options
    tuned = ForwardsOptions("plain", stages=2)
    assert isinstance(tuned, TunedKernel) and tuned.fixed == {"flavour": "plain", "stages": 2}
    assert tuned.instance({"block": 128}).options == {"stages": 2, "block": 128}


def test_decorator_rejects_mistakes():
    with pytest.raises(ValueError, match="at least one value"):
        anybit.autotune("block", [])
    with pytest.raises(ValueError, match="needs an __init__ parameter named 'blocks'"):
        anybit.autotune("blocks", [1])(Decorated)
    with pytest.raises(ValueError, match="'block' is autotuned twice"):
        anybit.autotune("block", [1])(Decorated)


def test_buckets():
    assert [bucket_int(v) for v in (1, 7, 32, 33, 64, 65, 1000)] == [1, 7, 32, 64, 64, 128, 1024]

    class Tensor:
        dtype, shape = "torch.float16", (3, 100)

    assert default_bucket((Tensor(), 40, 5, 2.0, True, "s")) == [
        ["float16", [3, 128]],
        64,
        5,
        "float",
        True,
        "str",
    ]


# -- tuning with a fake timer --------------------------------------------------------------------------------


@dataclass
class FakeProgram:
    block: int
    constants: tuple = ()


class FakeScript:
    """A stand-in Script: block 3 fails to build, block 5 does not compile, block 7 needs too much shared
    memory; the fake timer makes block 2 the fastest."""

    def __init__(self, block: int) -> None:
        self.block = block

    def __call__(self, a, x, y, n):  # the block program's signature (names the kernel's parameters)
        raise AssertionError("not launched on the CPU")

    def program(self, *args):
        if self.block == 3:
            raise ValueError("layout does not divide the tile")
        return FakeProgram(self.block)


def fake_generate(program: FakeProgram, arch: str):
    if program.block == 5:
        return axpy_source(source=AXPY.replace("a * x[i]", "a * missing[i]"))
    if program.block == 7:
        return axpy_source(dynamic_shared_bytes=1 << 20)
    return axpy_source(block=32 * program.block, source=AXPY + f"// block {program.block}\n")


def call_args(n: int) -> tuple:
    return (1.0, None, None, n)


FAKE_TIMES = {1: 3.0, 2: 1.0, 3: 0.1, 4: 2.0, 5: 0.1, 7: 0.1}


@pytest.fixture
def tuned(monkeypatch):
    monkeypatch.setattr(compiler, "generate_source", fake_generate)
    timed = []

    def timer(run, config):
        timed.append(config["block"])
        return FAKE_TIMES[config["block"]]

    space = (("block", (1, 2, 3, 4, 5, 7)),)
    monkeypatch.setattr(tuning, "tune_space", lambda cls: space)
    kernel = TunedKernel(FakeScript, timer=timer)
    kernel.timed = timed
    return kernel


def test_invalid_candidates_are_skipped_and_the_fastest_wins(tuned, caplog, private_cache):
    from anybit.runtime.device import current_arch, limits_for

    caplog.set_level(logging.INFO, logger="anybit")
    assert tuned.select(call_args(1000)) == {"block": 2}
    assert sorted(tuned.timed) == [1, 1, 2, 4]  # the first runnable candidate once more, discarded
    assert "{'block': 3}: build failed: ValueError: layout does not divide the tile" in caplog.text
    assert "{'block': 5}: compile failed: CompilationError" in caplog.text
    # The GPU key and the shared memory limit are the machine's ("no GPU|sm_90a" and the table's without one).
    arch = current_arch()
    limit = limits_for(arch).max_shared_memory_per_block
    assert f"{{'block': 7}}: 1048576 B shared memory > {limit} B per block" in caplog.text
    assert tuned.select(call_args(999)) == {"block": 2} and len(tuned.timed) == 4  # same bucket: no re-tuning
    files = list((private_cache / "tuning").glob("FakeScript-*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    record = stored["results"][tuning._gpu_key(arch)]['["float","NoneType","NoneType",1024]']
    assert record["config"] == {"block": 2} and record["milliseconds"] == 1.0
    assert {c["config"]["block"]: c["skipped"] is None for c in record["candidates"]} == {
        1: True,
        2: True,
        3: False,
        4: True,
        5: False,
        7: False,
    }


def test_close_finalists_are_timed_again_and_ranked_by_their_median(monkeypatch, private_cache):
    """A lucky first timing does not win: the candidates within 15% of the best are timed twice more,
    interleaved, and ranked by their medians; the others are timed once. The very first timing (0.5 for
    block 1) is a settling run and is thrown away."""
    monkeypatch.setattr(compiler, "generate_source", fake_generate)
    sequences = {1: [0.5, 0.90, 1.10, 1.12], 2: [1.00, 1.00, 0.99], 4: [1.02, 1.03, 1.01], 6: [2.0]}
    timed = []

    def timer(run, config):
        block = config["block"]
        timed.append(block)
        return sequences[block][sum(1 for b in timed if b == block) - 1]

    monkeypatch.setattr(tuning, "tune_space", lambda cls: (("block", (1, 2, 4, 6)),))
    kernel = TunedKernel(FakeScript, timer=timer)
    assert kernel.select(call_args(1000)) == {"block": 2}
    # the settling run, one round over all, then two interleaved rounds over the three finalists (6 is 2.2x
    # the best)
    assert timed == [1, 1, 2, 4, 6, 1, 2, 4, 1, 2, 4]


def test_a_finalist_that_fails_when_timed_again_is_skipped(monkeypatch, private_cache):
    """A launch failing in the second round disqualifies that configuration only, with its reason."""
    monkeypatch.setattr(compiler, "generate_source", fake_generate)
    calls = []

    def timer(run, config):
        calls.append(config["block"])
        if config["block"] == 1 and calls.count(1) > 2:  # after the settling run and the first round
            raise RuntimeError("launch timed out")
        return {1: 0.9, 2: 1.0, 4: 1.02}[config["block"]]

    monkeypatch.setattr(tuning, "tune_space", lambda cls: (("block", (1, 2, 4)),))
    kernel = TunedKernel(FakeScript, timer=timer)
    assert kernel.select(call_args(1000)) == {"block": 2}
    assert calls == [1, 1, 2, 4, 1, 2, 4, 2, 4]


class RowTuner(TunedKernel):
    """A tuner that times a row of launches and one launch alone (as the decode tuner does on the GPU)."""

    def timed_run(self, instance, args):
        return tuning.TimedRun(lambda: None, launches=4)

    def alone_run(self, instance, args):
        return tuning.TimedRun(lambda: None)


def row_tuner(monkeypatch, row_ms: dict, alone_ms: dict, timed: list) -> RowTuner:
    """A RowTuner over blocks 1, 2, 4, 6 whose rows take ``row_ms`` a launch and single launches
    ``alone_ms``; every timing is appended to ``timed`` as (block, "row" or "alone")."""
    monkeypatch.setattr(compiler, "generate_source", fake_generate)

    def timer(run, config):
        block, alone = config["block"], run.launches == 1
        timed.append((block, "alone" if alone else "row"))
        return alone_ms[block] if alone else row_ms[block] * run.launches

    monkeypatch.setattr(tuning, "tune_space", lambda cls: (("block", (1, 2, 4, 6)),))
    return RowTuner(FakeScript, timer=timer)


def test_ties_in_the_row_go_to_the_fastest_alone(monkeypatch, private_cache, tmp_path):
    """Candidates within TIE_WITHIN of the best row time (at most TIE_CANDIDATES) are timed once alone and
    the fastest alone wins; the record keeps both times. Block 6, 2% behind in the row, is not a tie."""
    assert tuning.TIE_WITHIN == 1.01 and tuning.TIE_CANDIDATES == 4
    timed: list = []
    row = {1: 1.000, 2: 1.004, 4: 1.009, 6: 1.02}
    kernel = row_tuner(monkeypatch, row, {1: 1.30, 2: 1.10, 4: 1.20, 6: 0.5}, timed)
    assert kernel.select(call_args(1000)) == {"block": 2}
    assert sorted(b for b, kind in timed if kind == "alone") == [1, 2, 4]
    stored = json.loads(next((private_cache / "tuning").glob("FakeScript-*.json")).read_text())
    (record,) = stored["results"].values()
    (record,) = record.values()
    alone = {c["config"]["block"]: c.get("alone_milliseconds") for c in record["candidates"]}
    assert alone == {1: 1.30, 2: 1.10, 4: 1.20, 6: None}
    assert record["config"] == {"block": 2} and record["milliseconds"] == pytest.approx(1.004)


def test_a_clear_row_winner_is_not_timed_alone(monkeypatch, private_cache):
    """No other candidate within TIE_WITHIN: the row's best wins without any timing alone, however fast
    another runs by itself; a plain TunedKernel (no alone_run) never times alone."""
    timed: list = []
    kernel = row_tuner(
        monkeypatch, {1: 1.0, 2: 1.05, 4: 1.2, 6: 2.0}, {1: 9.0, 2: 0.1, 4: 0.1, 6: 0.1}, timed
    )
    assert kernel.select(call_args(1000)) == {"block": 1}
    assert all(kind == "row" for _, kind in timed)
    assert TunedKernel.alone_run(kernel, None, ()) is None


class FailsAlone(dict):
    """Single-launch times where a block missing from the dict fails its launch."""

    def __missing__(self, block):
        raise RuntimeError(f"block {block} failed alone")


@pytest.mark.parametrize(
    "alone, winner",
    [({2: 1.5}, 2), ({}, 1)],
    ids=["one tie fails alone: the other wins", "every tie fails alone: the row's best"],
)
def test_a_tie_that_fails_alone_is_logged_and_left_out(monkeypatch, private_cache, caplog, alone, winner):
    """A tie whose single launch fails is logged and left out of the comparison alone (it ran in the row, so
    it stays a candidate); when every tie fails alone the row's best stands."""
    timed: list = []
    kernel = row_tuner(monkeypatch, {1: 1.0, 2: 1.001, 4: 3.0, 6: 3.0}, FailsAlone(alone), timed)
    caplog.set_level(logging.WARNING, logger="anybit")
    assert kernel.select(call_args(1000)) == {"block": winner}
    assert "{'block': 1} alone: RuntimeError: block 1 failed alone" in caplog.text


def test_disk_cache_is_reused_by_a_new_process(tuned, monkeypatch):
    tuned.select(call_args(100))
    again = TunedKernel(FakeScript, timer=lambda run, config: pytest.fail("tuned twice"))
    assert again.select(call_args(100)) == {"block": 2}


def test_all_candidates_invalid_is_an_error(monkeypatch):
    monkeypatch.setattr(compiler, "generate_source", fake_generate)
    monkeypatch.setattr(tuning, "tune_space", lambda cls: (("block", (3, 5)),))
    kernel = TunedKernel(FakeScript, timer=lambda run, config: 1.0)
    with pytest.raises(RuntimeError, match="no configuration of the space works"):
        kernel.select(call_args(10))


def test_autotune_off_uses_the_first_config(tuned, monkeypatch):
    monkeypatch.setenv("ANYBIT_AUTOTUNE", "0")
    assert tuned.select(call_args(10)) == {"block": 1} and tuned.timed == []


def test_export_and_load_pin_configurations(tuned, tmp_path, monkeypatch):
    tuned.select(call_args(100))
    exported = tmp_path / "tuning.json"
    assert tuning.export_tuning(exported) == 1
    records = json.loads(exported.read_text())["records"]
    assert records[0]["config"] == {"block": 2} and records[0]["kernel"] == tuned.identity
    # A fresh machine (empty cache) that must never tune: the pinned config is used.
    monkeypatch.setenv("ANYBIT_CACHE_DIR", str(tmp_path / "fresh"))
    monkeypatch.setenv("ANYBIT_AUTOTUNE", "0")
    records[0]["config"] = {"block": 4}
    exported.write_text(json.dumps({"format": 1, "records": records}))
    try:
        assert tuning.load_tuning(exported) == 1
        fresh = TunedKernel(FakeScript, timer=lambda run, config: pytest.fail("tuned on the hot path"))
        assert fresh.select(call_args(100)) == {"block": 4}
        assert fresh.select(call_args(5000)) == {"block": 1}  # unknown bucket, tuning off: the first config
    finally:
        tuning.clear_pinned()


def test_shipped_records_apply_after_the_pins_and_the_cache(tuned, tmp_path, monkeypatch):
    """A shipped tuning file's record is used where neither a pin nor the cache has one (no tuning); the
    cache and a pin win over it; ANYBIT_SHIPPED_TUNING=0 ignores it."""
    from anybit.runtime.device import current_arch

    gpu = tuning.gpu_key(current_arch())
    bucket = tuning.bucket_text(tuned.bucket(call_args(100)))
    shipped_dir = tmp_path / "shipped"
    shipped_dir.mkdir()
    record = {"kernel": tuned.identity, "gpu": gpu, "bucket": bucket, "config": {"block": 4}}
    (shipped_dir / "gpu.json").write_text(json.dumps({"format": 1, "records": [record]}))
    monkeypatch.setattr(tuning, "SHIPPED_TUNING_DIR", shipped_dir)
    tuning._shipped_records.cache_clear()
    try:
        fresh = TunedKernel(tuned.script_class, timer=lambda run, config: pytest.fail("tuned"), **tuned.fixed)
        assert fresh.select(call_args(100)) == {"block": 4}
        exported = tmp_path / "ran.json"  # a run's export holds the shipped records it ran
        assert tuning.export_tuning(exported) == 1
        assert json.loads(exported.read_text())["records"] == [record]
        monkeypatch.setenv(tuning.SHIPPED_TUNING_VARIABLE, "0")
        assert tuning.stored_config(tuned.identity, gpu, bucket) is None
        monkeypatch.delenv(tuning.SHIPPED_TUNING_VARIABLE)
        tuned.tune(call_args(100), arch=current_arch(), gpu=gpu, bucket=bucket)  # the cache: block 2
        assert tuning.stored_config(tuned.identity, gpu, bucket) == {"block": 2}
        pinned = tmp_path / "pinned.json"
        pinned.write_text(json.dumps({"format": 1, "records": [dict(record, config={"block": 1})]}))
        tuning.load_tuning(pinned)
        assert tuning.stored_config(tuned.identity, gpu, bucket) == {"block": 1}
    finally:
        tuning.clear_pinned()
        tuning._shipped_records.cache_clear()
        tuning._shipped_used.clear()


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="expected an anybit tuning file"):
        tuning.load_tuning(path)


def test_a_timed_run_of_several_launches_is_timed_a_launch(monkeypatch, private_cache):
    """A subclass's timed_run may make several launches (a row, as a model runs them): the stored time is
    the run's divided by its launches, and the ranking follows it."""
    from anybit.runtime.autotune import TimedRun

    monkeypatch.setattr(compiler, "generate_source", fake_generate)
    monkeypatch.setattr(tuning, "tune_space", lambda cls: (("block", (1, 2)),))

    class RowKernel(TunedKernel):
        def timed_run(self, instance, args):
            return TimedRun(lambda: None, launches=4 if instance.block == 1 else 1)

    kernel = RowKernel(FakeScript, timer=lambda run, config: {1: 8.0, 2: 3.0}[config["block"]])
    assert kernel.select(call_args(1000)) == {"block": 1}  # 8 ms for 4 launches beats 3 ms for one
    (record_file,) = (private_cache / "tuning").glob("FakeScript-*.json")
    (records,) = json.loads(record_file.read_text())["results"].values()
    assert next(iter(records.values()))["milliseconds"] == 2.0


class TwoRoundKernel(TunedKernel):
    """Blocks 1 and 4 first; then 2 (when 4 timed faster than 1); block 6 is never built."""

    def first_round(self, candidates, args):
        self.rounds = 0
        return [c for c in candidates if c.config["block"] in (1, 4)]

    def next_round(self, candidates, args):
        self.rounds += 1
        if self.rounds > 1:
            return []
        by_block = {c.config["block"]: c for c in candidates}
        by_block[6].skipped = "held back"
        return [by_block[2]] if by_block[4].milliseconds < by_block[1].milliseconds else []


def test_a_staged_tuning_builds_and_times_each_round_and_picks_over_all(monkeypatch, private_cache):
    """``first_round`` / ``next_round``: each round is built, compiled and timed before the next is asked
    for; the settling timing happens once; the fastest over every round wins, the finalists of all rounds
    timed again; a candidate never timed keeps its reason in the record."""
    built = []

    def generate(program, arch):
        built.append(program.block)
        return fake_generate(program, arch)

    monkeypatch.setattr(compiler, "generate_source", generate)
    times = {1: 3.0, 4: 2.0, 2: 1.9, 6: 0.1}
    timed = []

    def timer(run, config):
        timed.append(config["block"])
        return times[config["block"]]

    monkeypatch.setattr(tuning, "tune_space", lambda cls: (("block", (1, 2, 4, 6)),))
    kernel = TwoRoundKernel(FakeScript, timer=timer)
    assert kernel.select(call_args(1000)) == {"block": 2}
    assert sorted(built) == [1, 2, 4]  # block 6 never built
    # settling (block 1), round one, round two, then the finalists within 15%, fastest first, twice
    assert timed == [1, 1, 4, 2, 2, 4, 2, 4]
    files = list((private_cache / "tuning").glob("FakeScript-*.json"))
    record = json.loads(files[0].read_text())["results"]
    (buckets,) = record.values()
    (entry,) = buckets.values()
    assert {c["config"]["block"]: c["skipped"] for c in entry["candidates"]}[6] == "held back"
