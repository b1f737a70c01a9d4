"""The decode configuration goes through the autotune cache per (M bucket, N, K, type, GPU).

Without a GPU the whole selection runs except the timing: candidates compile with NVRTC, a fake timer ranks
them, the winner is stored, exported, pinned, and read back with tuning off.
"""

from __future__ import annotations

import json

import pytest
import torch

from anybit.kernels import choose_layout, pack, quantize
from anybit.kernels.launch import kernel_layout
from anybit.ops.tuning import (
    SMALL_WEIGHT_CLUSTER_SPLIT,
    SPLITS,
    STAGES,
    TUNE_BIAS_AFTER_DOT_VARIABLE,
    TUNE_SPLIT_IN_CLUSTER_VARIABLE,
    WARPS,
    DecodeTuner,
    decode_bucket,
    kernel_revision,
    m_bucket,
    tuner_for,
)
from anybit.runtime.autotune import bucket_text, export_tuning, load_tuning

from .helpers import packed_weight


def test_m_buckets():
    assert [m_bucket(m) for m in (1, 2, 3, 4, 5, 8, 9, 16, 17)] == [1, 2, 4, 4, 8, 8, 16, 16, 32]


def test_bucket_is_m_bucket_n_k():
    args = (None,) * 6 + (3, 4096, 14336)
    assert decode_bucket(args) == [4, 4096, 14336]


def test_one_tuner_per_specialisation_whatever_n_and_k():
    small = choose_layout("uint4", 64, 256, 128, operand="b")
    large = choose_layout("uint4", 4096, 4096, 128, operand="b")
    assert kernel_layout(small) == kernel_layout(large)
    assert tuner_for(small, torch.float16, True, False) is tuner_for(large, torch.float16, True, False)
    assert tuner_for(small, torch.float16, True, True) is not tuner_for(small, torch.float16, True, False)
    tuner = tuner_for(small, torch.float16, True, False)
    assert len(tuner.configs) == len(WARPS) * len(STAGES) * len(SPLITS)
    assert tuner.configs[0] == {"warps": 4, "stages": 4, "split": 1}
    assert tuner.fixed["revision"] == kernel_revision()


def test_the_revision_follows_the_conversions(monkeypatch):
    """Stored tunings name the kernel's source and the conversions it inlines: an edit of either retunes."""
    import inspect

    from anybit.cuda import conversions

    before = kernel_revision()
    real = inspect.getsource

    def edited(item):
        return real(item) + ("# an edit" if item is conversions else "")

    monkeypatch.setattr(inspect, "getsource", edited)
    kernel_revision.cache_clear()
    try:
        assert kernel_revision() != before
    finally:
        monkeypatch.undo()
        kernel_revision.cache_clear()
    assert kernel_revision() == before


def shape_args(m: int, n: int, k: int) -> tuple:
    return (None,) * 6 + (m, n, k)


def test_the_space_is_pruned_per_shape():
    """Blocks that do not divide N and split-K values that do not help are not built: few split candidates
    on a wide N (no small-weight variants: at most 12 builds), the split values up to about 528 blocks on a
    narrow one (with the small weights' 3-stage ring and clusters of two: at most 70)."""
    tuner = tuner_for(choose_layout("uint4", 8192, 8192, 128), torch.float16, True, False)
    for (m, n, k), splits, most in [
        ((1, 57344, 8192), {1, 2, 4}, 12),
        ((1, 8192, 8192), {1, 2, 4, 8, 16}, 70),
        ((16, 4096, 256), {1}, 12),
    ]:
        kept = [c for c in tuner.configs if tuner.not_tried(c, shape_args(m, n, k)) is None]
        assert {c["split"] for c in kept} == splits and len(kept) <= most
    assert tuner.unsuited({"warps": 4, "stages": 4, "split": 1}, shape_args(1, 96, 8192)).startswith("N = 96")
    along_k = {"rows": 8, "warps": 4, "stages": 4, "split": 1, "warps_along_k": True}
    assert tuner.unsuited(along_k, shape_args(1, 4096, 4096)) is None  # zero points too


def test_small_weights_also_try_a_3_stage_ring_and_clusters_of_two():
    """Weights of at most 2^26 elements (their launches' fixed costs a third of a call) try every
    configuration with 3 stages and each split 2 reduced in a cluster; larger weights never build them."""
    tuner = tuner_for(choose_layout("int4", 8192, 8192, 128), torch.float16, False, False)
    small = [c for c in tuner.configs if tuner.not_tried(c, shape_args(1, 8192, 8192)) is None]
    large = [c for c in tuner.configs if tuner.not_tried(c, shape_args(1, 57344, 8192)) is None]
    clustered = [c for c in small if c.get("split_in_cluster")]
    assert clustered and all(c["split"] == SMALL_WEIGHT_CLUSTER_SPLIT for c in clustered)
    assert {
        "rows": 8,
        "warps": 4,
        "stages": 3,
        "split": 2,
        "warps_along_k": True,
        "split_in_cluster": True,
    } in small
    assert any(c["stages"] == 3 and not c.get("split_in_cluster") for c in small)
    assert not any(c["stages"] == 3 or c.get("split_in_cluster") for c in large)
    ringed = {"rows": 8, "warps": 4, "stages": 3, "split": 1, "warps_along_k": False}
    assert "small weights" in tuner.not_tried(ringed, shape_args(1, 57344, 8192))
    assert len(small) == len({bucket_text(c) for c in small})  # each configuration once


def test_warps_along_k_join_the_transposed_space_where_the_steps_divide_k():
    """Signed and float weights also try their warps along K (a block of one warp tile of columns): where
    K's chunks make whole steps of warps · split (two at least), and the split still adds blocks."""
    layout = choose_layout("int4", 4096, 4096, 128)
    tuner = tuner_for(layout, torch.float16, False, False)
    chunks = 4096 // layout.k_chunk
    kept = [c for c in tuner.configs if tuner.unsuited(c, shape_args(1, 4096, 4096)) is None]
    along = [c for c in kept if c["warps_along_k"]]
    assert along and all(chunks % (c["warps"] * c["split"]) == 0 for c in along)
    assert all(chunks // (c["warps"] * c["split"]) >= 2 for c in along)
    assert not any(c["warps"] == 7 for c in along)  # 7 does not divide the chunks
    reason = tuner.unsuited(
        {"rows": 8, "warps": 8, "stages": 4, "split": 4, "warps_along_k": True}, shape_args(1, 4096, 1024)
    )
    assert "not whole runs of 2+ steps of warps · split = 32" in reason
    # A stored configuration from before the axis existed is built with its first value (False).
    old = tuner.instance({"rows": 8, "warps": 2, "stages": 4, "split": 1})
    assert not old.warps_along_k and old.block_n == 2 * layout.n_per_warp
    assert "do not use 6 stages" in tuner.unsuited(
        {"warps": 4, "stages": 6, "split": 8}, shape_args(1, 128, 4096)
    )


def decode_args(p, m: int) -> tuple:
    x = torch.randn(m, p.layout.k).half()
    y = torch.empty(m, p.layout.n, dtype=torch.float16)
    return (x, p.data, p.scales, p.zeros, p.scales, y, m, p.layout.n, p.layout.k)


def _warps_only_tuner(p) -> DecodeTuner:
    """A tuner of ``p``'s uint4 specialisation with stages and split fixed: one axis (warps), three NVRTC
    compiles."""
    return DecodeTuner(
        layout=kernel_layout(p.layout),
        act_dtype=torch.float16,
        has_zeros=True,
        has_bias=False,
        revision="test",
        stages=4,
        split=1,
    )


def test_selection_compiles_ranks_stores_exports_and_pins(monkeypatch, tmp_path):
    _, p = packed_weight("uint4", 256, 256, operand="b")  # 32-column warp tiles: 1 to 8 warps divide N
    tuner = _warps_only_tuner(p)
    timed = []

    def fake_timer(run, config):
        timed.append(config["warps"])
        return {2: 1.0, 4: 2.0, 8: 4.0}[config["warps"]]

    tuner.timer = fake_timer
    assert tuner.select(decode_args(p, 3)) == {"warps": 2}
    assert sorted(timed) == [2, 4, 4, 8]  # 4 twice: the first candidate also settles the GPU
    records = list((tmp_path / "anybit-cache" / "tuning").glob("TunedDecodeMatmul-*.json"))
    assert len(records) == 1
    stored = json.loads(records[0].read_text())["results"]
    (gpu,) = stored
    assert list(stored[gpu]) == ["[4,256,256]"]
    # Built once per configuration: a new bucket only times.
    assert tuner.select(decode_args(p, 16)) == {"warps": 2} and len(timed) == 8
    exported = tmp_path / "tuning.json"
    assert export_tuning(exported) == 2
    # Tuning off: a fresh tuner of the same identity reads the stored winner without timing anything.
    monkeypatch.setenv("ANYBIT_AUTOTUNE", "0")
    fresh = _warps_only_tuner(p)
    fresh.timer = lambda run, config: pytest.fail("tuned with ANYBIT_AUTOTUNE=0")
    assert fresh.select(decode_args(p, 3)) == {"warps": 2}
    assert fresh.select(decode_args(p, 1)) == {"warps": 4}  # nothing stored for M=1: the first config
    # A pinned configuration wins.
    data = json.loads(exported.read_text())
    for record in data["records"]:
        record["config"] = {"warps": 8}
    exported.write_text(json.dumps(data))
    assert load_tuning(exported) == 2
    pinned = _warps_only_tuner(p)
    assert pinned.select(decode_args(p, 3)) == {"warps": 8}


def test_precompile_takes_the_recorded_configuration_of_a_shape(tmp_path):
    """A shape whose M bucket has a pinned (or cached, or shipped) configuration builds only that one — an
    opt-in variant outside the space included — while a shape without a record builds all it keeps."""
    from anybit.ops import tuning
    from anybit.runtime import autotune

    layout = choose_layout("int4", 8192, 8192, 128, operand="a")
    tuner = tuning.decode_tuner(kernel_layout(layout), torch.float16, False, False)
    shapes = [(1, 8192, 8192), (16, 8192, 8192)]

    def built(of_shapes):
        found = tuning._configurations_to_build([(layout, torch.float16, False, False, of_shapes)], "sm_90a")
        return sorted(bucket_text(config) for *_, config in found)

    everything, at_16 = built(shapes), built(shapes[1:])
    chosen = dict(rows=8, warps=4, stages=4, split=2, warps_along_k=False, bias_after_dot=True)
    assert chosen not in tuner.configs and tuner.accepts(chosen)
    record = {
        "kernel": tuner.identity,
        "gpu": autotune.gpu_key("sm_90a"),
        "bucket": bucket_text(decode_bucket((None,) * 6 + shapes[0])),
        "config": chosen,
    }
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps({"format": autotune.TUNING_FORMAT, "records": [record]}))
    try:
        assert load_tuning(pins) == 1
        assert tuner.recorded(shapes[0], "sm_90a") == chosen
        assert tuner.recorded(shapes[1], "sm_90a") is None
        assert built(shapes) == sorted(at_16 + [bucket_text(chosen)])
        assert len(built(shapes)) < len(everything)
    finally:
        autotune.clear_pinned()


@pytest.mark.parametrize("processes", [1, 2])
def test_precompile_builds_every_kept_configuration_and_the_tuner_reuses_them(tmp_path, processes):
    """Built here or in spawned processes, every configuration the shape keeps lands in the compile cache
    and in the shared tuner, which then does not build it again."""
    from anybit.ops.tuning import decode_tuner, precompile_decode
    from anybit.runtime.autotune import bucket_text

    layout = kernel_layout(choose_layout("uint2", 1024, 1024, 128))
    shapes = [(1, 1024, 1024)]
    counts = precompile_decode(
        [(layout, torch.float16, True, False, shapes)], arch="sm_90a", processes=processes
    )
    tuner = decode_tuner(layout, torch.float16, True, False)
    kept = [config for config in tuner.configs if tuner.unsuited(config, (None,) * 6 + shapes[0]) is None]
    assert counts["compiled"] == len(kept) > 2 and counts["failed"] == 0
    assert counts["processes"] == processes
    for config in kept:
        program, source = tuner.built(config, (), "sm_90a")  # kept: no new build
        assert (bucket_text(config), "sm_90a") in tuner._built
        assert source.name and "__global__" in source.source
    entries = list((tmp_path / "anybit-cache" / "kernels").glob("*.cubin-entry"))
    assert len(entries) == len(kept)  # one compiled kernel per configuration, in the shared cache


def test_precompile_configurations_builds_stage_counts_outside_the_tuning_space(tmp_path):
    """The sweeps' explicit configurations (8 stages: not in STAGES) are built once and kept by the shared
    tuner; asking again builds nothing."""
    from anybit.ops.tuning import STAGES, decode_tuner, precompile_configurations

    assert 8 not in STAGES
    layout = choose_layout("int4", 1024, 1024, 128)
    configs = [dict(rows=8, warps=4, stages=8, split=1), dict(rows=8, warps=2, stages=6, split=2)]
    specialisation = (layout, torch.float16, False, False)
    counts = precompile_configurations(specialisation, configs, arch="sm_90a", processes=1)
    assert counts == {"compiled": 2, "failed": 0, "processes": 1}
    tuner = decode_tuner(kernel_layout(layout), torch.float16, False, False)
    assert all(tuner.has_built(config, "sm_90a") for config in configs)
    assert not tuner.has_built(dict(rows=8, warps=8, stages=8, split=1), "sm_90a")
    again = precompile_configurations(specialisation, configs, arch="sm_90a", processes=1)
    assert again["compiled"] == 0


def test_ready_registers_a_kept_build_for_launch_script(tmp_path):
    """``DecodeTuner.ready`` hands ``launch_script`` the compiled kernel of a precompiled configuration,
    so launching it neither traces nor compiles again."""
    from anybit.ops.tuning import decode_tuner, precompile_configurations
    from anybit.runtime.compiler import _specialisation, _state_of
    from anybit.runtime.device import current_arch

    layout = choose_layout("int4", 1024, 1024, 128)
    config = dict(rows=8, warps=4, stages=6, split=2)
    precompile_configurations((layout, torch.float16, False, False), [config], processes=1)
    tuner = decode_tuner(kernel_layout(layout), torch.float16, False, False)
    packed = pack(quantize(torch.randn(1024, 1024), "int4", group_size=128), layout=layout)
    x = torch.randn(1, 1024, dtype=torch.float16)
    y = torch.empty(1, 1024, dtype=torch.float16)
    args = (x, packed.data, packed.scales, packed.scales, packed.scales, y, 1, 1024, 1024)
    instance = tuner.ready(config, args)
    state = _state_of(instance)
    compiled = state.kernels[_specialisation(args, state.binding, current_arch())]
    assert compiled.arch == current_arch() and compiled.program is not None
    with pytest.raises(RuntimeError, match="build failed"):
        tuner.ready(dict(rows=8, warps=4, stages=1, split=1), args)


def test_sweep_space_replaces_warp_and_stage_counts_and_keeps_the_splits():
    from anybit.ops.tuning import SPLITS, decode_tuner

    tuner = decode_tuner(kernel_layout(choose_layout("int4", 1024, 1024, 128)), torch.float16, False, False)
    assert tuner.sweep_space() == tuner.base_configs
    space = tuner.sweep_space(warps=(7, 14), stages=(4, 8))
    assert {(c["warps"], c["stages"]) for c in space} == {(7, 4), (7, 8), (14, 4), (14, 8)}
    assert {c["split"] for c in space} == set(SPLITS)
    assert len(space) == len({tuple(sorted(c.items())) for c in space})


def test_sweep_space_replaces_the_split_counts_and_an_odd_split_builds():
    """``splits`` replaces the space's split-K counts (the probes' grids that fill the last wave), and a
    split that is not a power of two builds (runs of uneven length)."""
    tuner = tuner_for(choose_layout("uint3", 57344, 8192, 128), torch.float16, True, False)
    space = tuner.sweep_space(warps=(4,), splits=(3, 7))
    assert {c["split"] for c in space} == {3, 7} and {c["warps"] for c in space} == {4}
    assert len(space) == len({tuple(sorted(c.items())) for c in space})
    config = next(c for c in space if c["split"] == 7 and not c.get("warps_along_k"))
    program, _ = tuner.built(config, (None,) * 6 + (1, 57344, 8192), "sm_90a")
    assert str(program.grid[-1]) == "7"


def test_the_transposed_kernel_tries_more_resident_warps_at_16_rows():
    """7- and 8-warp blocks of 16 rows come once more with 3 stages and registers capped for 3 blocks an SM;
    nothing else does, the sweeps leave them out, and a variant builds with its launch bound."""
    from anybit.ops.tuning import OCCUPANCY_VARIANT, OCCUPANCY_WARPS

    tuner = tuner_for(choose_layout("int4", 57344, 8192, 128), torch.float16, False, False)
    variants = [config for config in tuner.configs if config.get("min_blocks")]
    small = [config for config in tuner.configs if bucket_text(config) in tuner._small_weight_only]
    in_registers = [config for config in tuner.configs if config.get("weights_in_registers")]
    assert len(tuner.configs) == len(tuner.base_configs) + len(variants) + len(small) + len(in_registers)
    assert variants
    assert all(c["rows"] == 16 and c["warps"] in OCCUPANCY_WARPS for c in variants)
    assert all(c["stages"] == OCCUPANCY_VARIANT["stages"] for c in variants)
    assert {c["split"] for c in variants} == {c["split"] for c in tuner.base_configs}
    assert not any(c.get("min_blocks") for c in tuner.sweep_space())
    kept = [c for c in variants if tuner.unsuited(c, shape_args(16, 57344, 8192)) is None]
    assert kept and all(tuner.unsuited(c, shape_args(1, 57344, 8192)) for c in variants)
    program, source = tuner.built(kept[0], (None,) * 6 + (16, 57344, 8192), "sm_90a")
    assert program.min_blocks == 3 and f"__launch_bounds__({32 * kept[0]['warps']}, 3)" in source.source
    b_tuner = tuner_for(choose_layout("int4", 57344, 8192, 128, operand="b"), torch.float16, False, False)
    assert b_tuner.configs == b_tuner.base_configs


def test_split_k_in_a_cluster_is_left_out_of_the_space_but_builds_when_asked():
    """The tuner times split-K reduced in a cluster only for small weights' split 2 (more splits measured
    slower); a configuration that asks for it (pinned, or ``DecodeConfig``) builds with its cluster shape,
    and one that cannot take it says why."""
    tuner = tuner_for(choose_layout("int4", 4096, 14336, 128), torch.float16, False, False)
    args = shape_args(1, 4096, 14336)
    clustered = [config for config in tuner.configs if config.get("split_in_cluster")]
    assert clustered and all(config["split"] == 2 for config in clustered)
    assert all(tuner.not_tried(config, shape_args(1, 57344, 8192)) for config in clustered)
    # ... but not unsuited for being a cluster: a record or a pin naming one runs on any weight
    assert not any(
        "small weights" in (tuner.unsuited(c, shape_args(1, 57344, 8192)) or "") for c in clustered
    )
    config = {"warps": 4, "stages": 4, "split": 4, "split_in_cluster": True}
    assert tuner.unsuited(config, args) is None
    program, source = tuner.built(config, (None,) * 6 + args[6:], "sm_90a")
    assert program.cluster == (1, 1, 4)
    assert "__cluster_dims__(1, 1, 4)" in source.source
    assert "a cluster reduces 2 to 16 splits" in tuner.unsuited(dict(config, split=32), args)


def test_split_k_in_a_cluster_joins_the_space_when_asked(monkeypatch):
    """``ANYBIT_TUNE_SPLIT_IN_CLUSTER=1``: every configuration of 2 to 16 splits once more, reduced in a
    cluster (past 8 blocks the H200's non-portable clusters); 1 split is not repeated. The sweep's space takes
    the same variants on request."""
    layout = choose_layout("int4", 4096, 14336, 128)
    plain = DecodeTuner(
        layout=kernel_layout(layout), act_dtype=torch.float16, has_zeros=False, has_bias=False, revision="t"
    )
    monkeypatch.setenv(TUNE_SPLIT_IN_CLUSTER_VARIABLE, "1")
    asked = DecodeTuner(
        layout=kernel_layout(layout), act_dtype=torch.float16, has_zeros=False, has_bias=False, revision="t"
    )
    added = asked.configs[len(plain.configs) :]
    assert asked.configs[: len(plain.configs)] == plain.configs
    expected = [
        dict(c, split_in_cluster=True)
        for c in plain.configs
        if c["split"] in (2, 4, 8, 16) and not c.get("split_in_cluster")
    ]
    assert added == [c for c in expected if c not in plain.configs] and added
    assert not any(asked.not_tried(c, shape_args(1, 57344, 8192)) is None and c["stages"] == 3 for c in added)
    assert plain.sweep_space(split_in_cluster=True) == plain.sweep_space() + [
        dict(c, split_in_cluster=True) for c in plain.sweep_space() if c["split"] in (2, 4, 8, 16)
    ]
    built = asked.built(added[0], (None,) * 6 + shape_args(1, 4096, 14336)[6:], "sm_80")
    assert isinstance(built, str) and "need sm_90" in built  # an older GPU skips the variant, saying why


def test_sweeps_add_bias_after_dot_where_the_weights_take_it():
    """``sweep_space(bias_after_dot=True)``: each configuration once more with the conversion's bias taken
    off by a second dot, for integer codes below 8 bits stored whole (zero points with scale groups: they
    come off after the dot too); the tuner says why not for the others."""
    signed = tuner_for(choose_layout("int4", 4096, 4096, 128), torch.float16, False, False)
    plain = signed.sweep_space()
    assert signed.sweep_space(bias_after_dot=True) == plain + [dict(c, bias_after_dot=True) for c in plain]
    config = dict(plain[0], bias_after_dot=True)
    assert signed.unsuited(config, shape_args(1, 4096, 4096)) is None
    grouped = tuner_for(choose_layout("uint4", 4096, 4096, 128), torch.float16, True, False)
    assert grouped.sweep_space(bias_after_dot=True) == grouped.sweep_space() + [
        dict(c, bias_after_dot=True) for c in grouped.sweep_space()
    ]
    per_channel = tuner_for(choose_layout("uint4", 4096, 4096, -1), torch.float16, True, False)
    assert per_channel.sweep_space(bias_after_dot=True) == per_channel.sweep_space()
    bytes_ = tuner_for(choose_layout("int8", 4096, 4096, 128), torch.float16, False, False)
    assert bytes_.sweep_space(bias_after_dot=True) == bytes_.sweep_space()  # nothing to save at 8 bits
    reason = per_channel.unsuited(
        dict(per_channel.sweep_space()[0], bias_after_dot=True), shape_args(1, 4096, 4096)
    )
    assert "zero points with groups" in reason


def test_bias_after_dot_joins_the_space_when_asked(monkeypatch):
    """``ANYBIT_TUNE_BIAS_AFTER_DOT=1``: each configuration of 8 rows once more with the bias taken off by a
    second dot, for weights that take it (zero points with scale groups too); none for 8-bit codes."""
    monkeypatch.setenv(TUNE_BIAS_AFTER_DOT_VARIABLE, "1")
    layout = kernel_layout(choose_layout("int4", 4096, 4096, 128))
    asked = DecodeTuner(layout=layout, act_dtype=torch.float16, has_zeros=False, has_bias=False, revision="t")
    added = [c for c in asked.configs if c.get("bias_after_dot")]
    plain = [c for c in asked.configs if not c.get("bias_after_dot")]
    assert added == [dict(c, bias_after_dot=True) for c in plain if c["rows"] == 8]
    zero_layout = kernel_layout(choose_layout("uint4", 4096, 4096, 128))
    zeros = DecodeTuner(
        layout=zero_layout, act_dtype=torch.float16, has_zeros=True, has_bias=False, revision="t"
    )
    assert [c for c in zeros.configs if c.get("bias_after_dot")] == [
        dict(c, bias_after_dot=True) for c in zeros.configs if c["rows"] == 8 and not c.get("bias_after_dot")
    ]
    byte_layout = kernel_layout(choose_layout("uint8", 4096, 4096, 128))
    bytes_ = DecodeTuner(
        layout=byte_layout, act_dtype=torch.float16, has_zeros=True, has_bias=False, revision="t"
    )
    assert not any(c.get("bias_after_dot") for c in bytes_.configs)


def test_a_tuner_builds_its_candidates_in_build_workers(monkeypatch):
    """The configurations a tuning is about to time are built and compiled in build worker processes
    (tracing is Python: one core otherwise), with the same CUDA a build in this process gives."""
    from anybit.ops import tuning
    from anybit.runtime.autotune import Candidate

    monkeypatch.setenv("ANYBIT_BUILD_PROCESSES", "2")
    monkeypatch.setattr(tuning, "PARALLEL_BUILD_MINIMUM", 4)
    calls = []
    build_in_processes = tuning._build_in_processes

    def spy(todo, arch, workers):
        calls.append((len(todo), workers))
        return build_in_processes(todo, arch, workers)

    monkeypatch.setattr(tuning, "_build_in_processes", spy)
    tuning.decode_tuner.cache_clear()  # a tuner with nothing built yet
    layout = kernel_layout(choose_layout("int3", 1024, 1024, 128))
    tuner = tuner_for(layout, torch.float16, False, False, accumulate=True)
    args = (None,) * 6 + (1, 1024, 1024)
    candidates = [Candidate(dict(config)) for config in tuner.configs]
    tuner._build(candidates, args, "sm_90a")
    kept = [candidate for candidate in candidates if not candidate.skipped]
    assert len(kept) >= 4 and calls == [(len(kept), 2)]
    here = DecodeTuner(**tuner.fixed)  # a tuner of the same kernel, building in this process
    for candidate in kept[:3]:
        program, source = candidate.compiled
        assert source.source == here.built(candidate.config, args, "sm_90a")[1].source
        assert program.name == here.built(candidate.config, args, "sm_90a")[0].name
    tuning.decode_tuner.cache_clear()


def test_without_tuning_the_first_configuration_that_suits_the_shape_runs(monkeypatch):
    """``ANYBIT_AUTOTUNE=0`` with nothing stored: M = 16 takes the first 16-row configuration, not the
    space's first (8 rows, which would read the weight twice)."""
    from anybit.ops import tuning

    monkeypatch.setenv("ANYBIT_AUTOTUNE", "0")
    tuning.decode_tuner.cache_clear()
    layout = kernel_layout(choose_layout("int4", 2048, 2048, 128))
    tuner = tuner_for(layout, torch.float16, False, False)
    for m in (1, 16):
        args = (None,) * 6 + (m, 2048, 2048)
        config = tuner.untuned(args)
        assert tuner.unsuited(config, args) is None
        assert config["rows"] == (8 if m <= 8 else 16)
    assert tuner.configs[0]["rows"] == 8
    tuning.decode_tuner.cache_clear()


def test_build_workers_hand_back_their_compiles(monkeypatch):
    """A worker's NVRTC result comes back with its build: with the disk cache off, this process still
    compiles none of them again."""
    from anybit.ops import tuning
    from anybit.runtime import cache

    monkeypatch.setenv("ANYBIT_CACHE", "0")
    tuning.decode_tuner.cache_clear()
    layout = kernel_layout(choose_layout("uint2", 1024, 1024, 128))
    counts = tuning.precompile_decode(
        [(layout, torch.float16, True, False, [(1, 1024, 1024)])], arch="sm_90a", processes=2
    )
    assert counts["processes"] == 2 and counts["compiled"] > 2 and counts["failed"] == 0

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again in the tuning process")

    monkeypatch.setattr(cache, "compile_cubin", no_compiling)
    from anybit.runtime.compiler import compile_source

    tuner = tuning.decode_tuner(layout, torch.float16, True, False)
    shape = (None,) * 6 + (1, 1024, 1024)
    for config in tuner.configs:
        if tuner.unsuited(config, shape) is None:
            program, source = tuner.built(config, (), "sm_90a")
            assert compile_source(source, arch="sm_90a", program=program).compile_result.cubin
    tuning.decode_tuner.cache_clear()


def test_every_configuration_of_the_space_traces_for_every_benchmark_type():
    """Each configuration the tuner would build for M = 1 and M = 16 on an 8192 × 8192 weight of every type
    the benchmark measures traces into a program: a configuration that cannot (8 warps on one 16-column warp
    tile with split-K divided by zero until 2026-11-29) only shows up as a "build failed" log line while
    tuning, one candidate fewer."""
    from anybit.ops import tuning
    from benchmarks.matmul_cases import TYPES

    shapes = [(1, 8192, 8192), (16, 8192, 8192)]
    for dtype in TYPES:
        layout = choose_layout(dtype, 8192, 8192, 128, operand="a")
        specialisation = (layout, torch.float16, dtype.startswith("uint"), False, shapes)
        for *key, config in tuning._configurations_to_build([specialisation]):
            try:
                tuning.decode_tuner(*key).instance(config).program()
            except Exception as error:
                pytest.fail(f"{dtype} {config}: {type(error).__name__}: {error}")


def test_wide_tiles_below_eight_bits_also_try_shorter_rings():
    """Weights packed with wide warp tiles (up to 128 bytes a thread: large 5- and 6-bit weights) add each
    configuration again with the shorter rings of its rows (WIDE_TILE_RINGS); 8-bit wide tiles, narrow tiles
    and the B packing do not; the variants are configurations the tuner accepts and builds."""
    from anybit.ops.tuning import WIDE_TILE_RINGS, takes_wide_tile_ring

    wide = choose_layout("uint5", 57344, 8192, 128)
    assert wide.bytes_per_thread == 80 and takes_wide_tile_ring(wide)  # 5-bit codes under the 128-byte cap
    tuner = tuner_for(wide, torch.float16, True, False)
    extra = [
        c
        for c in tuner.configs
        if c not in tuner.base_configs
        and not c.get("min_blocks")
        and not c.get("weights_in_registers")
        and not tuner._small_weight_variant(c)
    ]
    eight_rows = [c for c in tuner.base_configs if c["rows"] == 8]
    sixteen_rows = [c for c in tuner.base_configs if c["rows"] == 16]
    assert eight_rows and sixteen_rows
    assert extra == [
        dict(c, **ring)
        for rows, configs in ((8, eight_rows), (16, sixteen_rows))
        for ring in WIDE_TILE_RINGS[rows]
        for c in configs
    ]
    assert {rows: [ring["stages"] for ring in rings] for rows, rings in WIDE_TILE_RINGS.items()} == {
        8: [3, 2],
        16: [2, 3],
    }
    assert all(tuner.accepts(c) for c in extra)
    assert len({bucket_text(c) for c in tuner.configs}) == len(tuner.configs)  # each configuration once
    for m, rows in ((1, 8), (16, 16)):
        kept = [
            c for c in extra if c["rows"] == rows and tuner.unsuited(c, shape_args(m, 57344, 8192)) is None
        ]
        assert kept, rows
        for config in (kept[0], kept[-1]):
            program, source = tuner.built(config, (None,) * 6 + (m, 57344, 8192), "sm_90a")
            assert program is not None and source.source
            assert tuner.instance(config).stages == config["stages"]
    for layout in (
        choose_layout("int8", 57344, 8192, 128),  # wide, but 8-bit codes: already at the ceiling
        choose_layout("uint5", 8192, 8192, 128),  # below 2^27 weights: narrow tiles
        choose_layout("float4_e2m1", 57344, 8192, 128),  # 4-bit: narrow tiles
        choose_layout("uint5", 57344, 8192, 128, operand="b"),
    ):
        assert not takes_wide_tile_ring(layout), layout
    narrow = tuner_for(choose_layout("int6", 8192, 8192, 128), torch.float16, False, False)
    ringed = [c for c in narrow.configs if c["rows"] == 8 and c["stages"] == 3]
    assert all(narrow._small_weight_variant(c) for c in ringed)  # the small weights' ring only


def test_decode_ties_are_broken_by_one_launch_alone_on_the_gpu_only(monkeypatch):
    """The decode tuner times a GPU launch's candidates in a row and breaks the row's ties by one launch by
    itself (a single run of the plain launch); for arguments it does not time in a row (CPU tensors, other
    signatures) there is nothing to break ties with."""
    import types

    import anybit.runtime.compiler as compiler_module

    tuner = tuner_for(choose_layout("int4", 8192, 8192, 128), torch.float16, False, False)
    instance = tuner.instance(tuner.configs[0])
    cpu = (torch.zeros(1, 8192, dtype=torch.float16), torch.zeros(4, dtype=torch.uint8)) + (None,) * 4
    assert tuner.alone_run(instance, cpu + (1, 8192, 8192)) is None
    assert tuner.alone_run(instance, (None, None)) is None
    launched = []
    monkeypatch.setattr(
        compiler_module, "launch_script", lambda script, args: launched.append((script, args))
    )
    gpu_weight = types.SimpleNamespace(is_cuda=True)
    args = (None, gpu_weight, None, None, None, None, 1, 8192, 8192)
    run = tuner.alone_run(instance, args)
    assert run.launches == 1
    run()
    assert launched == [(instance, args)]


def test_weights_below_eight_bits_also_try_weights_in_registers():
    """Each 16-row configuration of a weight below 8 bits (its shorter rings included, not the occupancy
    variants) is tried again with the weight bytes loaded straight into registers, and each 8-row one too for
    wide tiles; 4-bit codes stored whole without zero points also with late loads; 8-bit codes and the B
    packing are not; the variants build and run."""
    from anybit.ops.tuning import LATE_LOAD_BITS, REGISTER_WEIGHT_ROWS, takes_wide_tile_ring

    for type_name in ("int4", "uint5", "uint4"):
        layout = choose_layout(type_name, 57344, 8192, 128)
        zeros = type_name[0] == "u"
        tuner = tuner_for(layout, torch.float16, zeros, False)
        plain = [
            c
            for c in tuner.configs
            if not c.get("weights_in_registers") and not tuner._small_weight_variant(c)
        ]
        rows = {REGISTER_WEIGHT_ROWS, 8} if takes_wide_tile_ring(layout) else {REGISTER_WEIGHT_ROWS}
        expected = [
            dict(c, weights_in_registers=True) for c in plain if c["rows"] in rows and not c.get("min_blocks")
        ]
        if layout.dtype.nbits == LATE_LOAD_BITS and not zeros:
            expected += [
                dict(c, weights_in_registers=True, late_weight_loads=True)
                for c in plain
                if c["rows"] == REGISTER_WEIGHT_ROWS and not c.get("min_blocks")
            ]
        in_registers = [c for c in tuner.configs if c.get("weights_in_registers")]
        assert in_registers == expected and len(expected) > 4
        assert (type_name == "uint5") == any(c["rows"] == 8 for c in in_registers)  # wide tiles only
        assert (type_name == "int4") == any(c.get("late_weight_loads") for c in in_registers)
        assert all(tuner.accepts(c) for c in in_registers)
        assert len({bucket_text(c) for c in tuner.configs}) == len(tuner.configs)
        for kept in ([c for c in in_registers if c["rows"] == r] for r in sorted(rows)):
            m = 16 if kept[0]["rows"] == 16 else 1
            config = next(c for c in reversed(kept) if tuner.unsuited(c, shape_args(m, 57344, 8192)) is None)
            program, source = tuner.built(config, (None,) * 6 + (m, 57344, 8192), "sm_90a")
            assert program is not None and source.source
            instance = tuner.instance(config)
            assert instance.weights_in_registers
            assert instance.late_weight_loads == bool(config.get("late_weight_loads"))
    for layout in (
        choose_layout("int8", 57344, 8192, 128),
        choose_layout("int4", 57344, 8192, 128, operand="b"),
    ):
        tuner = tuner_for(layout, torch.float16, False, False)
        assert not any(c.get("weights_in_registers") for c in tuner.configs)


def test_a_row_is_made_again_for_other_arguments(monkeypatch):
    """The decode tuner is shared by every shape of one specialisation: a row timed for one weight is not
    replayed for the next one's arguments (the row's launches would read the first weight)."""
    from anybit.ops import row_timing

    class OnTheGpu:  # stands for a CUDA tensor: timed_run only asks where it lives
        is_cuda = True

    made = []
    monkeypatch.setattr(row_timing, "row_arguments", lambda args, has_zeros: made.append(args) or [args])
    monkeypatch.setattr(row_timing, "graph_row", lambda launch, rows: rows)
    layout = choose_layout("int4", 1024, 1024, 128, operand="a")
    tuner = tuner_for(layout, torch.float16, False, False)
    first = (OnTheGpu(), OnTheGpu(), None, None, None, None, 1, 1024, 1024)
    second = (first[0], OnTheGpu(), None, None, None, None, 1, 2048, 1024)
    assert tuner.timed_run(None, first) == [first]
    assert tuner.timed_run(None, first) == [first]  # the same arguments: the same row, not made again
    assert tuner.timed_run(None, second) == [second]
    assert made == [first, second]


def staged_candidates(type_name: str, n: int, k: int, m: int):
    """The fp16 decode tuner of a weight's default packing, its candidates and a launch's shape arguments."""
    from anybit.ops import tuning
    from anybit.runtime.autotune import Candidate

    layout = choose_layout(type_name, n, k, 128, act_dtype=torch.float16)
    tuner = tuning.tuner_for(layout, torch.float16, False, False)
    return tuner, [Candidate(dict(config)) for config in tuner.configs], (None,) * 6 + (m, n, k)


def test_a_large_space_is_tuned_in_two_rounds(monkeypatch):
    """float6_e2m3 8192×28672 at 16 rows (wide tiles: 167 configurations suit it): the first round times
    one ring depth a family (3 stages where the family has them), the second the other depths of the four
    fastest families; the rest are marked, and nothing comes after. ``ANYBIT_TUNE_EXHAUSTIVE=1`` times all
    in one round."""
    import random

    from anybit.ops import tuning

    monkeypatch.delenv(tuning.TUNE_EXHAUSTIVE_VARIABLE, raising=False)
    tuner, candidates, args = staged_candidates("float6_e2m3", 8192, 28672, 16)
    tried = [c for c in candidates if tuner.not_tried(c.config, args) is None]
    assert len(tried) == 167 > tuning.STAGED_ABOVE
    first = tuner.first_round(candidates, args)
    families = {}
    for candidate in tried:
        families.setdefault(tuning.ring_family(candidate.config), []).append(candidate)
    assert len(first) == len(families) == 63
    assert {tuning.ring_family(c.config) for c in first} == set(families)
    for candidate in first:
        members = families[tuning.ring_family(candidate.config)]
        if len(members) > 1:
            assert candidate.config["stages"] == tuning.STAGED_FIRST_STAGES
    generator = random.Random(7)
    for candidate in first:
        candidate.milliseconds = generator.uniform(0.05, 0.1)
    fastest = sorted(
        (c for c in first if len(families[tuning.ring_family(c.config)]) > 1), key=lambda c: c.milliseconds
    )
    chosen = {tuning.ring_family(c.config) for c in fastest[: tuning.STAGED_FAMILIES]}
    second = tuner.next_round(candidates, args)
    assert len(second) == 2 * tuning.STAGED_FAMILIES
    assert {tuning.ring_family(c.config) for c in second} == chosen
    assert not set(map(id, second)) & set(map(id, first))
    held = [c for c in tried if c not in first and c not in second]
    assert len(held) == 167 - 71 and all(c.skipped.startswith("staged tuning") for c in held)
    assert tuner.next_round(candidates, args) == []
    not_suited = [c for c in candidates if c not in tried]
    assert all(c.skipped.startswith("not for this shape") for c in not_suited)

    monkeypatch.setenv(tuning.TUNE_EXHAUSTIVE_VARIABLE, "1")
    _, candidates, _ = staged_candidates("float6_e2m3", 8192, 28672, 16)
    assert len(tuner.first_round(candidates, args)) == 167
    assert tuner.next_round(candidates, args) == []


@pytest.mark.parametrize("type_name, n, k, m", [("int4", 57344, 8192, 16), ("uint4", 4096, 4096, 1)])
def test_a_space_of_at_most_staged_above_is_tuned_in_one_round(monkeypatch, type_name, n, k, m):
    """Spaces without the wide tiles' rings (43 and 60 configurations here) are timed whole."""
    from anybit.ops import tuning

    monkeypatch.delenv(tuning.TUNE_EXHAUSTIVE_VARIABLE, raising=False)
    tuner, candidates, args = staged_candidates(type_name, n, k, m)
    first = tuner.first_round(candidates, args)
    assert 0 < len(first) <= tuning.STAGED_ABOVE
    assert first == [c for c in candidates if tuner.not_tried(c.config, args) is None]
    assert tuner.next_round(candidates, args) == []
