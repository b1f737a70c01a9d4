"""The quantized-matmul benchmark's CPU parts: its cases, byte model, markdown, roofline and CLI entry."""

from __future__ import annotations

import math

from anybit.cli import main as cli_main
from benchmarks import matmul_cases as cases
from benchmarks.matmul import build_parser
from benchmarks.matmul_report import main as report_main
from benchmarks.matmul_report import markdown, merge, recommended_threshold, roofline, targets_table


def test_suites_cover_the_brief():
    full = cases.layer_cases(quick=False)
    assert len(full) == 8 * 14 * 2 and all(c.ms == (1, 4, 16, 512, 4096) for c in full)
    assert {cases.suite_of(m) for m in full[0].ms} == {"decode", "prefill"}
    quick = cases.layer_cases(quick=True)
    assert len(quick) == 3 * 5 + 1
    assert sum(m > 16 for c in quick for m in c.ms) == 1  # one prefill row
    assert {c.act_dtype for c in quick} == {"float16", "bfloat16"}
    assert all(c.ms == cases.CROSSOVER_MS for c in cases.crossover_cases(quick=False))


def test_bytes_that_must_move():
    # int4 8192 × 8192, group 128, fp16 scales, no zeros, M = 1: 32 MiB + 1 MiB scales + x + y.
    moved = cases.bytes_moved(1, 8192, 8192, 4, group_size=128, has_zeros=False)
    assert moved == 8192 * 8192 // 2 + 64 * 8192 * 2 + 8192 * 2 + 8192 * 2
    assert cases.bytes_moved(1, 8192, 8192, 4, group_size=128, has_zeros=True) == moved + 64 * 8192 * 2
    assert cases.weight_bytes(8, 128, 3) == 384


def results() -> dict:
    row = {
        "suite": "decode",
        "layer": "70B o",
        "n": 8192,
        "k": 8192,
        "type": "uint4",
        "act_dtype": "bfloat16",
        "m": 1,
        "nbits": 4,
        "graph_us": 10.0,
        "kernel_us": 8.0,
        "timed_us": 8.0,
        "time_basis": "kernel",
        "eager_us": 14.0,
        "host_us": 7.5,
        "tb_s": 3.5,
        "pct_of_read_ceiling": 80.0,
        "speedup_vs_cublas_fp16": 3.0,
        "speedup_vs_cublas_bf16": 2.9,
        "relative_error": 1e-3,
        "ok": True,
        "tflops": 13.0,
        "intensity_flop_per_byte": 3.9,
    }
    prefill = {
        **row,
        "suite": "prefill",
        "m": 4096,
        "graph_us": 900.0,
        "dequantize_us": 60.0,
        "tflops": 600.0,
        "intensity_flop_per_byte": 2000.0,
        "speedup_vs_cublas_fp16": 0.9,
    }
    for key in ("kernel_us", "timed_us", "time_basis"):  # as rows measured before kernel times were
        del prefill[key]
    crossover = [
        {
            "suite": "crossover",
            "layer": "70B o",
            "type": "uint4",
            "act_dtype": "float16",
            "m": m,
            "decode_us": d,
            "dequantize_us": q,
            "faster": "decode" if d <= q else "dequantize",
        }
        for m, d, q in ((8, 10.0, 60.0), (16, 12.0, 61.0), (32, 70.0, 62.0))
    ]
    return {
        "gpu": "NVIDIA H200",
        "date": "2026-11-28",
        "group_size": 128,
        "decode_max_m": 16,
        "ceilings": {
            "read": {
                "candidates": {"torch amax fp32 4 GiB": 4.31},
                "kernel_candidates": {"torch amax fp32 4 GiB": 4.35},
                "basis": "kernel",
                "best": "torch amax fp32 4 GiB",
                "best_tb_s": 4.35,
            },
            "cublas_fp16_tflops": 742.0,
            "cublas_bf16_tflops": 760.0,
        },
        "rows": [row, prefill, {**row, "m": 4, "error": "RuntimeError: boom"}],
        "crossover": crossover,
        "anchors": [
            {"anchor": "cuBLAS float16", "m": 1, "n": 8192, "k": 8192, "us": 45.9, "kernel_us": 42.0},
            {"anchor": "torch._weight_int4pack_mm", "m": 1, "n": 8192, "k": 8192, "skipped": "no such op"},
        ],
        "skipped": [],
    }


def test_markdown_has_every_section_and_no_placeholders():
    text = markdown(results())
    for heading in ("### Ceilings", "### Decode", "### Prefill", "### Crossover", "### Anchors"):
        assert heading in text
    assert "| 4.35 TB/s (best: the read ceiling) | 4.31 TB/s |" in text and "742 TFLOP/s" in text
    # µs (kernel time), events µs, eager µs, then the figures from the kernel time.
    assert (
        "| 70B o | 8192×8192 | uint4 | bfloat16 | 1 | 8.0 | 10.0 | 14.0 | 3.50 | 80% | 3.00× | 2.90× |"
        in text
    )
    assert "| 70B o | 8192×8192 | uint4 | bfloat16 | 4096 | 900.0 | 900.0 | 60.0 |" in text  # events only
    assert "| cuBLAS float16 | 8192×8192 | 1 | 42.0 | 45.9 | 3.20 |" in text
    assert "failed: RuntimeError: boom" in text and "no such op" in text
    assert "faster up to M = 16" in text and "median 7.5 µs" in text
    assert "nan" not in text.lower()


def test_targets_table_marks_what_falls_short():
    """Each target shape's cell at M = 1 and 16, bold below its target (80% on the two large shapes, 60% on
    8192×8192); missing cells are dashes; prefill below 0.9× cuBLAS fp16 is bold for 4- and 8-bit types."""
    base = results()["rows"][0]
    decode = [
        {**base, "n": 57344, "k": 8192, "pct_of_read_ceiling": 81.2},
        {**base, "n": 57344, "k": 8192, "m": 16, "pct_of_read_ceiling": 79.6},
        {**base, "n": 8192, "k": 8192, "pct_of_read_ceiling": 61.0},
        {**base, "n": 8192, "k": 8192, "m": 16, "error": "RuntimeError: boom"},
    ]
    prefill = [
        {**base, "suite": "prefill", "m": 4096, "n": n, "speedup_vs_cublas_fp16": speedup}
        for n, speedup in ((8192, 0.85), (4096, 1.1))
    ]
    lines = targets_table(decode, prefill)
    (row,) = [line for line in lines if line.startswith("| uint4 | bfloat16 |")]
    assert row == "| uint4 | bfloat16 | 81% | **80%** | – | – | 61% | – | **0.85×–1.10×** |"
    assert lines[-1] == "2 of 3 decode cells reach their target."
    assert "### Targets" in markdown(results())


def test_the_header_names_the_packing():
    """Runs packed either way say which kernel the decode rows measure (older results without the field
    were packed as B)."""
    assert "A operand: the transposed decode kernel" in markdown({**results(), "operand": "a"})
    assert "B operand: the x-as-A decode kernel" in markdown({**results(), "operand": "b"})
    assert "B operand" in markdown({key: value for key, value in results().items() if key != "operand"})


def test_the_header_says_when_the_tuning_was_pinned():
    """A run given a tuning file (``--tuning``) says so: its rows were not tuned in the run."""
    assert "configurations pinned from a previous run's tuning file" not in markdown(results())
    text = markdown({**results(), "tuning_loaded": 561})
    assert "Tuning: 561 configurations pinned from a previous run's tuning file (`--tuning`)" in text


def test_recommended_threshold():
    assert recommended_threshold(results()["crossover"]) == 16
    assert recommended_threshold([]) is None


def test_roofline_png(tmp_path):
    path = tmp_path / "roofline.png"
    roofline(results(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_options_and_cli_entry(capsys):
    options = build_parser().parse_args(["--quick", "--out", "x"])
    assert options.quick and options.out == "x" and math.isclose(options.budget_s, 0.0)
    assert options.operand == "a" and build_parser().parse_args(["--operand", "b"]).operand == "b"
    try:
        cli_main(["bench", "--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    help_text = capsys.readouterr().out
    assert "--quick" in help_text and "--operand" in help_text
    for option in ("--ms", "--acts", "--bytes-per-thread"):
        assert option in help_text


def test_a_run_packs_with_the_warp_tile_width_it_is_given(monkeypatch):
    """``--bytes-per-thread 128``: every weight of the run (and its warm-up compile) packed with twice the
    columns a warp where the type allows, and the report's header says so."""
    import types

    from anybit.kernels import choose_layout
    from benchmarks import matmul

    calls = []
    monkeypatch.setattr(matmul, "Weight", lambda case, operand, width: calls.append((operand, width)))
    monkeypatch.setattr(matmul, "gpu_description", lambda: "CPU (test)")
    case = cases.Case("layers", "70B o", 8192, 8192, "int6", "float16", (1,))
    base = dict(quick=False, out="x", budget_s=0.0, operand="a")
    wide = matmul.Run(types.SimpleNamespace(**base, bytes_per_thread=128))
    plain = matmul.Run(types.SimpleNamespace(**base, bytes_per_thread=None))
    assert wide.layout_of(case).n_per_warp == 2 * plain.layout_of(case).n_per_warp
    assert plain.layout_of(case) == choose_layout("int6", 8192, 8192, 128, operand="a")
    assert plain.results["max_bytes_per_thread"] is None  # the default: choose_layout's width per weight
    assert "warp tiles of up to 128 bytes a thread" in markdown({**results(), "max_bytes_per_thread": 128})
    assert "warp tiles" not in markdown(results())
    wide.run_case(case)  # the stand-in Weight is None: the row records the failure, the packing was asked for
    assert calls == [("a", 128)] and "error" in wide.results["rows"][0]


def test_merge_takes_each_weight_from_the_latest_run_that_measured_it(tmp_path):
    import json

    import pytest

    first, second = results(), results()
    second["date"] = "2026-11-29"
    second["ceilings"]["read"]["best_tb_s"] = 4.4
    fresh = {**second["rows"][0], "timed_us": 7.0, "pct_of_read_ceiling": 91.0}
    other = {**second["rows"][0], "layer": "8B o", "n": 4096, "k": 4096}
    second["rows"], second["crossover"] = [fresh, other], []
    second["anchors"] = [{**first["anchors"][0], "us": 40.0, "kernel_us": 38.0}]
    merged = merge([first, second])
    # The row the second run measured again replaces the first run's; the first run's other rows (its
    # prefill and M = 4 rows) and crossover stay; anchors are taken per shape from the latest run.
    assert merged["rows"] == [fresh, *first["rows"][1:], other]
    assert merged["crossover"] == first["crossover"]
    assert [a.get("kernel_us") for a in merged["anchors"]] == [38.0, None]
    assert merged["ceilings"] == first["ceilings"]
    assert [(run["date"], run["rows"]) for run in merged["merged_from"]] == [
        ("2026-11-28", 6),
        ("2026-11-29", 2),
    ]
    text = markdown(merged)
    assert "Merged from 2 runs:" in text and "| 2026-11-29 | 2 | 4.40 TB/s | 742 TFLOP/s |" in text
    assert "| 70B o | 8192×8192 | uint4 | bfloat16 | 1 | 7.0 |" in text
    with pytest.raises(ValueError, match="the runs differ in gpu"):
        merge([first, {**second, "gpu": "NVIDIA H100"}])
    with pytest.raises(ValueError, match="the runs differ in max_bytes_per_thread"):
        merge([{**first, "max_bytes_per_thread": 64}, {**second, "max_bytes_per_thread": 128}])
    # Runs that forced the narrow width on every weight merge with default runs, their rows say the width.
    narrow = merge([first, {**second, "max_bytes_per_thread": 64}])
    assert len(narrow["rows"]) == 4 and narrow["max_bytes_per_thread"] is None
    assert narrow["rows"][0]["bytes_per_thread"] == 64
    wide_row = {**other, "type": "int6", "bytes_per_thread": 128}
    text = markdown(merge([first, {**second, "rows": [wide_row]}]))
    assert "1 row packed with 128-byte warp tiles by default (int6 on 8B o)" in text
    for index, part in enumerate((first, second)):
        (tmp_path / f"run{index}.json").write_text(json.dumps(part))
    out = tmp_path / "merged"
    assert (
        report_main(["--merge", str(tmp_path / "run0.json"), str(tmp_path / "run1.json"), "--out", str(out)])
        == 0
    )
    assert json.loads((out / "matmul.json").read_text())["rows"] == merged["rows"]
    assert (out / "matmul.md").exists() and (out / "matmul_roofline.png").exists()


def test_merge_of_one_runs_parts_says_so_and_refuses_overlaps():
    import pytest

    first, second = results(), results()
    for index, part in enumerate((first, second)):
        part["run_id"], part["part"] = "run-20261129T190000Z", f"{index}: {('float16', 'bfloat16')[index]}"
    second["rows"] = [{**row, "act_dtype": "float16"} for row in second["rows"]]
    second["crossover"] = []
    merged = merge([first, second])
    assert len(merged["rows"]) == len(first["rows"]) + len(second["rows"])
    text = markdown(merged)
    assert "One run (run-20261129T190000Z) in 2 parts measured side by side" in text
    assert "### Ceilings (the first part's)" in text and "Merged from" not in text
    assert "| 1: bfloat16 | 2026-11-28 |" in text
    assert "### Anchors (each from the last part that measured it)" in text
    # Two parts of one run that measured the same row are a mistake in how the run was split.
    with pytest.raises(ValueError, match="measured some rows twice"):
        merge([first, {**second, "rows": first["rows"]}])
    # Runs without a shared id stay a merge of runs.
    assert "Merged from 2 runs" in markdown(merge([first, {**second, "run_id": None}]))
