"""benchmarks/limits.py: occupancy, the issue-time model, the bound of a row, and the report, on the CPU."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import limits


def test_blocks_per_sm_takes_the_tightest_sm90_limit():
    # 8 warps, 82 registers (88 allocated a thread: 22528 a block), 86 KB: registers and shared memory
    # both allow 2 (the eighth session's int4 M = 16 kernel, Nsight Compute: theoretical occupancy 25%).
    found = limits.blocks_per_sm(82, 8, 86016)
    assert found == {"registers": 2, "shared": 2, "warps": 8, "blocks": 32, "resident": 2}
    assert limits.limiting_resource(found) == "registers+shared"
    # 7 warps, 65 registers, 69 KB: 3 blocks by shared memory (the int4 M = 4 kernel: 33%).
    assert limits.blocks_per_sm(65, 7, 69120)["resident"] == 3
    assert limits.blocks_per_sm(24, 2, 1024)["resident"] == 32  # the block limit
    assert limits.blocks_per_sm(40, 2, 1024)["resident"] == 25  # 2560 registers a block


def test_issue_time_model_and_bounds():
    # 57344 x 8192 int4 at M = 1: 128 weights a thread, 259 loop instructions, one 8-row block.
    us = limits.issue_us(57344, 8192, 1, 8, 128, 259, 1980.0)
    assert us == pytest.approx(57344 * 8192 / (32 * 128) * 259 / 528 / 1980.0)
    assert limits.issue_us(57344, 8192, 16, 8, 128, 259, 1980.0) == pytest.approx(2 * us)  # two row blocks
    assert limits.classify(85.0, 10.0, 60.0) == "memory"
    assert limits.classify(60.0, 40.0, 70.0) == "issue"
    assert limits.classify(60.0, 20.0, 70.0) == "latency"
    # A row within 90% of the rate of a plain read of its own bytes is memory-bound whatever its share of
    # the 4 GiB ceiling (a small weight's read does not reach that rate).
    assert limits.classify(60.0, 20.0, 70.0, read=63.0) == "memory"
    assert limits.classify(60.0, 20.0, 70.0, read=62.9) == "latency"


def test_tensor_time_and_what_a_missed_target_cell_is_past():
    # 57344 x 8192 at M = 16 in 16-row blocks, 128 weights a thread, 32 mma a loop pass: 3.67 M mma.sync.
    us = limits.tensor_us(57344, 8192, 16, 16, 128, 32, 1980.0)
    assert us == pytest.approx(57344 * 8192 / (32 * 128) * 32 / (132 * limits.MMA_SYNC_PER_SM_CYCLE) / 1980.0)
    assert 23.0 < us < 25.0  # the twentieth session's ~24 µs of mma.sync
    cell = {"n": 57344, "k": 8192, "m": 16, "memory_us": 16.6, "issue_us": 27.5, "tensor_us": us}
    facts = limits.target_floor(dict(cell, pct_of_read_ceiling=25.0, read_us=18.6))
    assert facts["need_us"] == pytest.approx(16.6 / 0.8) and facts["floor"] == "tensor"  # read 18.6 < 20.75
    assert limits.target_floor(dict(cell, pct_of_read_ceiling=25.0, read_us=21.0))["floor"] == "read"
    assert limits.target_floor(dict(cell, pct_of_read_ceiling=25.0, tensor_us=1.0))["floor"] == "issue"
    assert (
        limits.target_floor(dict(cell, pct_of_read_ceiling=70.0, memory_us=55.0, tensor_us=1.0))["floor"]
        is None
    )
    assert limits.target_floor(dict(cell, pct_of_read_ceiling=81.0)) == {
        "target_pct": 80,
        "need_us": pytest.approx(16.6 / 0.8),
        "met": True,
    }
    assert limits.target_floor(dict(cell, m=4, pct_of_read_ceiling=25.0)) == {}  # not a target row
    assert limits.target_floor(dict(cell, n=4096, k=4096, pct_of_read_ceiling=25.0)) == {}


def test_the_summary_names_the_cells_within_reach():
    def cell(type_name, timed, need, floor=None, met=False):
        return {
            "type": type_name,
            "act_dtype": "float16",
            "n": 8192,
            "k": 8192,
            "m": 1,
            "graph_us": timed,
            "timed_us": timed,
            "need_us": need,
            "met": met,
            "floor": floor,
        }

    entries = [
        cell("int8", 10.0, 11.0, met=True),
        cell("uint4", 10.4, 10.0),  # 1.04x: within reach
        cell("uint3", 15.0, 10.0),
        cell("uint1", 30.0, 10.0, floor="read"),
        {"type": "int4", "m": 4},  # not a target cell
    ]
    (text,) = limits.targets_summary(entries)
    assert text.startswith("Target cells: 1 of 4 met; of the 3 missed, past a floor")
    assert "1 the read floor" in text and "the other 2 are the kernel's gap, 1 of them within 5%" in text
    assert "(uint4 float16 8192×8192 M = 1)" in text and "median missed cell takes 1.50×" in text
    assert "the worst 3.00×" in text
    assert limits.targets_summary([{"type": "int4", "m": 4}]) == []


def suite(tmp_path, records):
    row = {
        "suite": "decode",
        "type": "int4",
        "act_dtype": "float16",
        "n": 8192,
        "k": 8192,
        "m": 1,
        "graph_us": 16.2,
        "pct_of_read_ceiling": 49.0,
        "ideal_us": 7.9,
    }
    other = dict(row, n=4096, k=4096)  # not a target shape: left out unless --all
    (tmp_path / "matmul.json").write_text(json.dumps({"operand": "a", "rows": [row, other]}))
    (tmp_path / "tuning.json").write_text(json.dumps({"format": 1, "records": records}))
    return row


def test_a_row_is_rebuilt_with_the_warp_tile_it_was_packed_with():
    """The layout limits.py rebuilds is the row's, not today's default: a run forcing a width, a row that
    recorded its width, and a row from before widths were recorded (packed with the narrow default)."""
    from anybit.kernels import choose_layout

    default_run = {"max_bytes_per_thread": None}
    assert limits.width_cap({"max_bytes_per_thread": 128}, {"bytes_per_thread": 64}) == 128
    assert limits.width_cap(default_run, {"bytes_per_thread": 96}) == 128
    assert limits.width_cap(default_run, {"bytes_per_thread": 48}) == 64
    assert limits.width_cap({}, {}) == 64
    for dtype, width in (("int6", 96), ("int6", 48), ("uint5", 80), ("uint3", 48), ("uint1", 32)):
        cap = limits.width_cap(default_run, {"bytes_per_thread": width})
        assert choose_layout(dtype, 57344, 8192, 128, max_bytes_per_thread=cap).bytes_per_thread == width


def test_a_row_without_its_tuning_record_says_so(tmp_path, capsys):
    suite(tmp_path, [])
    assert limits.main([str(tmp_path)]) == 0
    entries = json.loads((tmp_path / "limits.json").read_text())
    assert len(entries) == 1 and "no tuning record" in entries[0]["missing"]
    assert "Bounds: missing 1" in (tmp_path / "limits.md").read_text()
    assert limits.main([str(tmp_path / "absent")]) == 1
    assert "not found" in capsys.readouterr().out


def has_nvdisasm() -> bool:
    try:
        limits.nvdisasm()
    except SystemExit:
        return False
    return True


@pytest.mark.skipif(not has_nvdisasm(), reason="needs nvdisasm (the [sass] extra, or on PATH)")
def test_a_tuned_row_is_compiled_and_read_from_sass(tmp_path):
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    from anybit.kernels import choose_layout
    from anybit.ops.tuning import tuner_for

    tuner = tuner_for(choose_layout("int4", 8192, 8192, 128), torch.float16, False, False)
    config = {"rows": 8, "warps": 4, "stages": 4, "split": 4}
    # The weights in registers loaded a chunk ahead: the loop unrolled twice, two chunks' weights a pass.
    other = {"rows": 8, "warps": 2, "stages": 4, "split": 4, "weights_in_registers": True}
    records = [
        {"kernel": tuner.identity, "gpu": "H200", "bucket": "[1,8192,8192]", "config": config},
        {"kernel": tuner.identity, "gpu": "H200", "bucket": "[1,4096,4096]", "config": other},
    ]
    suite(tmp_path, records)
    assert limits.main([str(tmp_path), "--all", "--processes", "2"]) == 0  # two configurations: the pool
    entries = json.loads((tmp_path / "limits.json").read_text())
    assert [entry["config"] for entry in entries] == [config, other]
    assert entries[1]["blocks_per_sm"]["warps"] == 32  # 2-warp blocks
    assert entries[1]["weights_per_thread"] == 256 and 1.5 < entries[1]["loop_per_weight"] < 3.0
    found = entries[0]
    assert found["config"] == config and found["registers"] > 0 and found["weights_per_thread"] == 128
    assert 1.5 < found["loop_per_weight"] < 3.0 and found["hmma"] >= 8
    assert found["bound"] == "latency" and 0 < found["occupancy_pct"] <= 100


@pytest.mark.skipif(not has_nvdisasm(), reason="needs nvdisasm (the [sass] extra, or on PATH)")
def test_a_plain_read_of_the_rows_bytes_goes_beside_it(tmp_path):
    """--reads puts read_floor.py's plain read of the row's type, shape and M beside it, counts the row
    memory-bound when it runs within 90% of that read's rate, and adds the column to the report."""
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    from anybit.kernels import choose_layout
    from anybit.ops.tuning import tuner_for

    tuner = tuner_for(choose_layout("int4", 8192, 8192, 128), torch.float16, False, False)
    config = {"rows": 8, "warps": 4, "stages": 4, "split": 4}
    suite(tmp_path, [{"kernel": tuner.identity, "gpu": "H200", "bucket": "[1,8192,8192]", "config": config}])
    cell = {"type": "int4", "n": 8192, "k": 8192, "m": 1, "read_us": 15.1, "read_pct_of_ceiling": 52.3}
    other = dict(cell, m=16, read_us=99.0)  # another M: not this row's
    reads = tmp_path / "read_floor.json"
    reads.write_text(json.dumps({"cells": [other, cell]}))
    assert limits.main([str(tmp_path), "--reads", str(reads)]) == 0
    (entry,) = json.loads((tmp_path / "limits.json").read_text())
    assert entry["read_us"] == 15.1 and entry["read_pct_of_ceiling"] == 52.3
    assert entry["bound"] == "memory"  # 16.2 µs measured against a 15.1 µs read: 93% of its rate
    text = (tmp_path / "limits.md").read_text()
    assert "plain read µs (% of ceiling)" in text and "| 15.1 (52%) |" in text
    assert "of a plain read of its bytes" in text
    # A target cell (8192 x 8192 at M = 1, 60%) at 49%: it needs 7.9 / 0.6 µs, less than the read takes.
    assert entry["target_pct"] == 60 and not entry["met"] and entry["need_us"] == pytest.approx(7.9 / 0.6)
    assert entry["floor"] == "read" and 0 < entry["tensor_us"] < entry["issue_us"]
    assert "| tensor µs |" in text and "Target cells: 0 of 1 met" in text and "1 the read floor" in text


def test_chunks_a_main_loop_pass_handles():
    from benchmarks.sass_counts import chunks_per_pass

    assert chunks_per_pass({"rows": 16}) == 1
    assert chunks_per_pass({"rows": 16, "weights_in_registers": True}) == 2  # two buffers, unrolled twice
    assert chunks_per_pass({"weights_in_registers": True, "late_weight_loads": True}) == 1  # one buffer


@pytest.mark.skipif(not has_nvdisasm(), reason="needs nvdisasm (the [sass] extra, or on PATH)")
def test_a_row_the_int8_route_ran_is_read_from_its_kernel(tmp_path):
    """A one-row uint2 row whose dispatch chose the int8 route: its configuration and SASS are the route's
    (``DecodeInt8``: IMMA, two chunks of 32 × 128 weights a warp a loop pass), not the decode kernel's."""
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    from anybit.kernels import choose_layout
    from anybit.ops.int8_choice import int8_route_chooser
    from anybit.ops.tuning import tuner_for

    tuner = tuner_for(choose_layout("uint2", 8192, 8192, 128), torch.float16, True, False)
    decode = {"rows": 8, "warps": 4, "stages": 4, "split": 4}
    route = {"route": "int8", "warps": 4, "tiles": 2, "split": 8}
    records = [
        {"kernel": tuner.identity, "gpu": "H200", "bucket": "[1,8192,8192]", "config": decode},
        {
            "kernel": int8_route_chooser(tuner.identity).identity,
            "gpu": "H200",
            "bucket": "[1,8192,8192]",
            "config": route,
        },
    ]
    row = suite(tmp_path, records)
    matmul = json.loads((tmp_path / "matmul.json").read_text())
    for entry in matmul["rows"]:
        entry["type"] = "uint2"
    (tmp_path / "matmul.json").write_text(json.dumps(matmul))
    assert row and limits.main([str(tmp_path)]) == 0
    (entry,) = json.loads((tmp_path / "limits.json").read_text())
    assert entry["config"] == route and entry["hmma"] == 32  # 2 tiles × 4 k32 steps × 2 planes × 2 chunks
    assert entry["weights_per_thread"] == 256 and 0.5 < entry["loop_per_weight"] < 2.0
    assert "int8 route: 4 warps, 2 tiles, split 8" in (tmp_path / "limits.md").read_text()


@pytest.mark.skipif(not has_nvdisasm(), reason="needs nvdisasm (the [sass] extra, or on PATH)")
def test_a_bf16_row_the_fp16_loop_ran_is_read_from_that_loop(tmp_path):
    """A bf16 int8 row whose dispatch ran it through the fp16 loop (the half route): its configuration is the
    route's and its SASS the fp16 kernel's (8-bit codes into fp16 without f32: fewer instructions a weight
    than the bf16 kernel's)."""
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    from anybit.kernels import choose_layout
    from anybit.ops.half_choice import half_route_chooser
    from anybit.ops.tuning import tuner_for

    tuner = tuner_for(choose_layout("int8", 8192, 8192, 128), torch.bfloat16, False, False)
    decode = {"rows": 8, "warps": 4, "stages": 4, "split": 4}
    route = {"route": "half", "rows": 8, "warps": 4, "stages": 4, "split": 4}
    records = [{"kernel": tuner.identity, "gpu": "H200", "bucket": "[1,8192,8192]", "config": decode}]
    suite(tmp_path, records)
    matmul = json.loads((tmp_path / "matmul.json").read_text())
    for entry in matmul["rows"]:
        entry.update(type="int8", act_dtype="bfloat16")
    (tmp_path / "matmul.json").write_text(json.dumps(matmul))
    assert limits.main([str(tmp_path)]) == 0
    (native,) = json.loads((tmp_path / "limits.json").read_text())
    chosen = {"kernel": half_route_chooser(tuner.identity).identity, "gpu": "H200", "bucket": "[1,8192,8192]"}
    records.append(dict(chosen, config=route))
    (tmp_path / "tuning.json").write_text(json.dumps({"format": 1, "records": records}))
    assert limits.main([str(tmp_path)]) == 0
    (entry,) = json.loads((tmp_path / "limits.json").read_text())
    assert entry["config"] == route and entry["loop_per_weight"] < native["loop_per_weight"]
    assert "fp16 loop, a factor a row: 8, 4, 4, 4" in (tmp_path / "limits.md").read_text()
