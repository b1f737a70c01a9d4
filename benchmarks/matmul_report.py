"""The quantized-matmul benchmark's results as the markdown section BENCHMARKS.md keeps, and a roofline
plot; and several runs' results merged into one report (the full suite no longer fits one 10-minute device
call: run it in parts with ``--layers`` / ``--acts`` and merge them).

Usage (any machine, repository root)::

    python benchmarks/matmul_report.py --merge RUN1/matmul.json RUN2/matmul.json --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
from collections import defaultdict


def _number(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _speedup(value) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2f}×"


def _error(row: dict) -> str:
    if "relative_error" not in row:
        return "–"
    text = f"{row['relative_error']:.1e}"
    return text if row.get("ok", True) else f"**{text} WRONG**"


def _row_prefix(row: dict) -> str:
    shape = f"{row['n']}×{row['k']}"
    return f"| {row['layer']} | {shape} | {row['type']} | {row['act_dtype']} | {row.get('m', '–')} "


def _dispatched(row: dict) -> str:
    """A plain call's µs and path in a crossover row ("–" in rows written before it was measured)."""
    if "dispatched_us" not in row:
        return "–"
    return f"{_number(row['dispatched_us'])} ({row['dispatched_path']})"


def _failed(row: dict) -> str | None:
    return row.get("error")


def _timed(row: dict) -> float:
    """The µs a row's percentages and speedups use: its kernel time, or its event time in rows measured
    before kernel times were (or where the profiler gave none)."""
    return row.get("timed_us", row["graph_us"])


OPERAND_NOTES = {
    "a": " (weights packed as the A operand: the transposed decode kernel)",
    "b": " (weights packed as the B operand: the x-as-A decode kernel)",
}


def _tile_note(results: dict) -> str:
    """The packing's warp-tile widths: the width a run forced on every weight, or the rows whose default
    packing took a wider tile than the narrow one (rows from before widths were recorded: the narrow one)."""
    from anybit.kernels.layout import MAX_BYTES_PER_THREAD

    forced = results.get("max_bytes_per_thread")
    if forced is not None and forced != MAX_BYTES_PER_THREAD:
        return f", warp tiles of up to {forced} bytes a thread"
    rows = results.get("rows", [])
    wide = [r for r in rows if r.get("bytes_per_thread", 0) > MAX_BYTES_PER_THREAD]
    if not wide:
        return ""
    widths = "/".join(str(w) for w in sorted({r["bytes_per_thread"] for r in wide}))
    types = ", ".join(dict.fromkeys(r["type"] for r in wide))
    layers = ", ".join(dict.fromkeys(r["layer"] for r in wide))
    rows_word = "row" if len(wide) == 1 else "rows"
    return f"; {len(wide)} {rows_word} packed with {widths}-byte warp tiles by default ({types} on {layers})"


def _tuning_note(results: dict) -> list[str]:
    """A line saying the run's decode configurations were pinned from a tuning file (``--tuning``), if so:
    its rows were not tuned, and their first calls carry no tuning."""
    pinned = results.get("tuning_loaded")
    if not pinned:
        return []
    return [
        "",
        f"Tuning: {pinned} configurations pinned from a previous run's tuning file (`--tuning`): a row "
        "whose (weight, M bucket) it names was not tuned in this run, and its first call includes no tuning.",
    ]


def header(results: dict) -> list[str]:
    """GPU, date and ceilings."""
    ceilings = results.get("ceilings", {})
    read = ceilings.get("read", {})
    lines = [
        "## Quantized matmul (`anybit.ops.quantized_matmul`, `benchmarks/matmul.py`)",
        "",
        f"GPU: {results.get('gpu', '?')}  ",
        f"Date: {results.get('date', '?')}{' (quick subset)' if results.get('quick') else ''}  ",
        f"Group size {results.get('group_size', 128)}; scales (and zero points for uint types) in the "
        f"activation dtype; dispatch threshold M ≤ {results.get('decode_max_m', '?')} → decode kernel"
        f"{OPERAND_NOTES.get(results.get('operand', 'b'), '')}{_tile_note(results)}.  ",
        'Times: the call captured in a CUDA graph, L2 flushed before each replay, median. "µs": its '
        'kernels\' own device time (first start to last end, from the profiler); "events µs": CUDA events '
        "around each replay, which add the graph's launch and the event pair (~3.5–5 µs on the H200). "
        '"eager": wall clock per call over back-to-back eager calls (host + device). % of ceiling: bytes '
        "that must move (weights + scales + zeros + x + y) / µs / the read ceiling below (its kernel time "
        "too); × cuBLAS: both sides' kernel times — for prefill rows (M > 16) both timed in turns in one "
        'loop ("in turns": the two graphs replayed alternately, so that both meet the same clocks; a prefill '
        "GEMM runs into the GPU's power cap).",
        *_tuning_note(results),
        "",
        _ceilings_title(results),
        "",
        "| what | kernel time | CUDA events |",
        "|---|---|---|",
    ]
    kernel_rates = read.get("kernel_candidates", {})
    for name, rate in read.get("candidates", {}).items():
        best = " (best: the read ceiling)" if name == read.get("best") else ""
        kernel, events = (f"{_number(kernel_rates.get(name), 2)} TB/s", f"{_number(rate, 2)} TB/s")
        if read.get("basis", "events") == "kernel":
            kernel += best
        else:
            events += best
        lines.append(f"| {name} | {kernel} | {events} |")
    for key, label in (
        ("cublas_fp16_tflops", "cuBLAS fp16 GEMM 8192³"),
        ("cublas_bf16_tflops", "cuBLAS bf16 GEMM 8192³"),
    ):
        if key in ceilings:
            lines.append(f"| {label} | – | {_number(ceilings[key], 0)} TFLOP/s |")
    runs = results.get("merged_from", [])
    if runs and one_run(runs):
        lines += [
            "",
            f"One run ({runs[0]['run_id']}) in {len(runs)} parts measured side by side, one process per GPU "
            "of one host (`scripts/bench_gpus.sh`): every row measured once, its % and × from its own "
            "part's read ceiling and anchors; the ceilings above are the first part's.",
            "",
        ]
        lines += [
            "| part | started | rows measured | read ceiling | cuBLAS fp16 GEMM |",
            "|---|---|---|---|---|",
        ]
        for run in runs:
            lines.append(
                f"| {run['part']} | {run['date']} | {run['rows']} | {_number(run['read_tb_s'], 2)} TB/s "
                f"| {_number(run['cublas_fp16_tflops'], 0)} TFLOP/s |"
            )
    elif runs:
        lines += [
            "",
            f"Merged from {len(runs)} runs: a row measured by more than one is the latest run's; each "
            "row's % and × come from its own run's ceiling and anchors; the ceilings above are the first "
            "run's.",
            "",
        ]
        lines += ["| run started | rows measured | read ceiling | cuBLAS fp16 GEMM |", "|---|---|---|---|"]
        for run in runs:
            lines.append(
                f"| {run['date']} | {run['rows']} | {_number(run['read_tb_s'], 2)} TB/s "
                f"| {_number(run['cublas_fp16_tflops'], 0)} TFLOP/s |"
            )
    return lines


def one_run(runs: list[dict]) -> bool:
    """Whether merged results are the parts of one run (``scripts/bench_gpus.sh``: one id for all)."""
    ids = {run.get("run_id") for run in runs}
    return len(ids) == 1 and None not in ids


def _ceilings_title(results: dict) -> str:
    runs = results.get("merged_from")
    if not runs:
        return "### Ceilings (measured in this run)"
    return "### Ceilings (the first part's)" if one_run(runs) else "### Ceilings (the first run's)"


def _row_key(row: dict) -> tuple:
    return tuple(row.get(field) for field in ("suite", "layer", "type", "act_dtype", "m"))


def _with_row_widths(part: dict) -> dict:
    """A run's results as a run of the default packing where it forced the narrow width on every weight:
    its rows record that width (older runs, from before the width was recorded, packed every weight so)."""
    from anybit.kernels.layout import MAX_BYTES_PER_THREAD

    if part.get("max_bytes_per_thread") != MAX_BYTES_PER_THREAD:
        return part  # the default packing (rows record their widths, or predate it) or a forced wide one
    rows = [{"bytes_per_thread": MAX_BYTES_PER_THREAD, **row} for row in part.get("rows", [])]
    return {**part, "rows": rows, "max_bytes_per_thread": None}


def merge(parts: list[dict]) -> dict:
    """Several runs' results as one: a later run's row (suite, layer, type, activation dtype, M) replaces
    the same row of earlier runs, anchors likewise per (anchor, shape, M, dtype); each row keeps the
    percentages and speedups of its own run. The header keeps the first run's ceilings and lists every
    run's. The runs must be of one GPU, operand and group size, and either all pack with the default
    warp-tile widths or all force one width (the same)."""
    if not parts:
        raise ValueError("merge takes at least one run's results")
    parts = [_with_row_widths(part) for part in parts]
    for field in ("gpu", "operand", "group_size", "max_bytes_per_thread"):
        values = {str(part.get(field)) for part in parts}
        if len(values) > 1:
            raise ValueError(f"the runs differ in {field} ({sorted(values)}): merge runs of one setup only")
    merged = {key: value for key, value in parts[0].items() if key not in ("rows", "crossover", "anchors")}
    merged["max_bytes_per_thread"] = parts[0].get("max_bytes_per_thread")
    rows: dict[tuple, dict] = {}
    crossover: dict[tuple, dict] = {}
    anchors: dict[tuple, dict] = {}
    kept = []
    for part in parts:
        taken = 0
        for table, source in ((rows, part.get("rows", [])), (crossover, part.get("crossover", []))):
            for row in source:
                table[_row_key(row)] = row
                taken += 1
        for row in part.get("anchors", []):
            anchors[(row.get("anchor"), row.get("n"), row.get("k"), row.get("m"), row.get("act_dtype"))] = row
        ceilings = part.get("ceilings", {})
        kept.append(
            {
                "run_id": part.get("run_id"),
                "part": part.get("part"),
                "date": part.get("date", "?"),
                "rows": taken,
                "read_tb_s": ceilings.get("read", {}).get("best_tb_s"),
                "cublas_fp16_tflops": ceilings.get("cublas_fp16_tflops"),
            }
        )
    merged["rows"] = list(rows.values())
    merged["crossover"] = list(crossover.values())
    merged["anchors"] = sorted(anchors.values(), key=lambda r: (r["anchor"], r["n"], r["k"], r["m"]))
    measured = {key[1:4] for key in rows}
    merged["skipped"] = [
        skip
        for part in parts
        for skip in part.get("skipped", [])
        if (skip.get("layer"), skip.get("type"), skip.get("act_dtype")) not in measured
    ]
    merged["merged_from"] = kept
    if one_run(kept):
        counted = sum(len(part.get("rows", [])) + len(part.get("crossover", [])) for part in parts)
        if counted != len(rows) + len(crossover):
            raise ValueError(
                f"the parts of run {kept[0]['run_id']} measured some rows twice ({counted} rows, "
                f"{len(rows) + len(crossover)} distinct): split one run's parts by disjoint --acts/--layers"
            )
    return merged


def decode_table(rows: list[dict]) -> list[str]:
    """One line per decode row."""
    lines = [
        "",
        "| layer | N × K | type | act | M | µs | events µs | eager µs | TB/s | % of ceiling | × cuBLAS fp16 "
        "| × cuBLAS bf16 | rel. error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        prefix = _row_prefix(row)
        if _failed(row):
            lines.append(prefix + f"| failed: {_failed(row)} ||||||||")
            continue
        lines.append(
            prefix
            + f"| {_number(_timed(row))} | {_number(row['graph_us'])} | {_number(row.get('eager_us'))} "
            f"| {_number(row['tb_s'], 2)} "
            f"| {_number(row['pct_of_read_ceiling'], 0)}% | {_speedup(row['speedup_vs_cublas_fp16'])} "
            f"| {_speedup(row.get('speedup_vs_cublas_bf16'))} | {_error(row)} |"
        )
    return lines


def decode_summary(rows: list[dict]) -> list[str]:
    """Per type and M: median % of the ceiling and median speedup over cuBLAS fp16 across shapes."""
    groups: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for row in rows:
        if not _failed(row) and "graph_us" in row:
            groups[(row["type"], row["act_dtype"], row["m"])].append(row)
    if not groups:
        return []
    lines = [
        "",
        "Medians over the shapes, per type and M:",
        "",
        "| type | act | M | median % of ceiling | min–max % | median × cuBLAS fp16 | all correct |",
        "|---|---|---|---|---|---|---|",
    ]
    for (dtype, act, m), members in groups.items():
        percents = [r["pct_of_read_ceiling"] for r in members]
        speedups = [r["speedup_vs_cublas_fp16"] for r in members]
        lines.append(
            f"| {dtype} | {act} | {m} | {statistics.median(percents):.0f}% "
            f"| {min(percents):.0f}–{max(percents):.0f}% | {statistics.median(speedups):.2f}× "
            f"| {'yes' if all(r.get('ok') for r in members) else '**no**'} |"
        )
    return lines


#: The decode targets: (N, K) → the % of the read ceiling to reach at M = 1 and M = 16, every type.
DECODE_TARGETS = {(57344, 8192): 80, (8192, 28672): 80, (8192, 8192): 60}
#: The prefill target: at M = 4096, 4- and 8-bit types reach this × cuBLAS fp16.
PREFILL_TARGET = (4096, 0.9)


def targets_table(decode: list[dict], prefill: list[dict]) -> list[str]:
    """Per type and activation dtype: the decode targets' shapes at M = 1 and 16 (% of the read ceiling,
    bold where short) and prefill at M = 4096 (× cuBLAS fp16) for the 4- and 8-bit types."""
    shapes = list(DECODE_TARGETS)
    found = {
        (r["type"], r["act_dtype"], r["m"], r["n"], r["k"]): r
        for r in decode + prefill
        if not _failed(r) and "graph_us" in r
    }
    kinds = list(dict.fromkeys((r["type"], r["act_dtype"]) for r in decode))
    if not kinds:
        return []
    m_prefill, goal = PREFILL_TARGET
    columns = [f"{n}×{k} M={m} (≥ {DECODE_TARGETS[n, k]}%)" for n, k in shapes for m in (1, 16)]
    lines = [
        "",
        "### Targets",
        "",
        "% of the read ceiling on the target shapes, bold where below the target; prefill at "
        f"M = {m_prefill} as × cuBLAS fp16 (target ≥ {goal}× for 4- and 8-bit types).",
        "",
        "| type | act | " + " | ".join(columns) + f" | prefill M={m_prefill} |",
        "|---|---|" + "---|" * (len(columns) + 1),
    ]
    reached = total = 0
    for dtype, act in kinds:
        cells = []
        for n, k in shapes:
            for m in (1, 16):
                row = found.get((dtype, act, m, n, k))
                if row is None:
                    cells.append("–")
                    continue
                percent, total = row["pct_of_read_ceiling"], total + 1
                met = percent >= DECODE_TARGETS[n, k]
                reached += met
                cells.append(f"{percent:.0f}%" if met else f"**{percent:.0f}%**")
        measured = [r for (t, a, m, _, _), r in found.items() if (t, a, m) == (dtype, act, m_prefill)]
        prefill_cell = "–"
        if measured:
            speedups = [r["speedup_vs_cublas_fp16"] for r in measured]
            prefill_cell = f"{min(speedups):.2f}×–{max(speedups):.2f}×"
            if measured[0].get("nbits") in (4, 8) and min(speedups) < goal:
                prefill_cell = f"**{prefill_cell}**"
        lines.append(f"| {dtype} | {act} | " + " | ".join(cells) + f" | {prefill_cell} |")
    lines += ["", f"{reached} of {total} decode cells reach their target."]
    return lines


def prefill_table(rows: list[dict]) -> list[str]:
    """One line per prefill row."""
    lines = [
        "",
        "### Prefill (M > 16: dequantize + cuBLAS)",
        "",
        "| layer | N × K | type | act | M | µs | events µs | of which dequantize (events) µs | TFLOP/s "
        "| in turns: µs / cuBLAS fp16 µs | × cuBLAS fp16 | × cuBLAS bf16 | rel. error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        prefix = _row_prefix(row)
        if _failed(row):
            lines.append(prefix + f"| failed: {_failed(row)} ||||||||")
            continue
        lines.append(
            prefix + f"| {_number(_timed(row))} | {_number(row['graph_us'])} "
            f"| {_number(row.get('dequantize_us'))} "
            f"| {_number(row['tflops'], 0)} | {_paired(row)} "
            f"| {_speedup(row['speedup_vs_cublas_fp16'])} | {_speedup(row.get('speedup_vs_cublas_bf16'))} "
            f"| {_error(row)} |"
        )
    return lines


def _paired(row: dict) -> str:
    """A prefill row's call and cuBLAS fp16's timed in turns (the speedups' basis), else –."""
    paired = row.get("paired")
    if not paired or "cublas_fp16_us" not in paired:
        return "–"
    return f"{_number(paired['us'])} / {_number(paired['cublas_fp16_us'])}"


def recommended_threshold(crossover: list[dict]) -> int | None:
    """The largest M up to which the decode kernel was faster for every measured weight (None: no data)."""
    by_weight: dict[tuple, list[dict]] = defaultdict(list)
    for row in crossover:
        if not _failed(row):
            by_weight[(row["layer"], row["type"], row["act_dtype"])].append(row)
    if not by_weight:
        return None
    limits = []
    for rows in by_weight.values():
        best = 0
        for row in sorted(rows, key=lambda r: r["m"]):
            if row["faster"] != "decode":
                break
            best = row["m"]
        limits.append(best)
    return min(limits)


def crossover_table(crossover: list[dict]) -> list[str]:
    """Both paths over M, and the threshold they suggest."""
    if not crossover:
        return []
    lines = [
        "",
        "### Crossover: decode kernel vs dequantize + cuBLAS",
        "",
        "| layer | type | act | M | decode µs | dequantize + cuBLAS µs | faster "
        "| quantized_matmul µs (path) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in crossover:
        if _failed(row):
            lines.append(
                f"| {row['layer']} | {row['type']} | {row['act_dtype']} | {row.get('m')} | failed: "
                f"{_failed(row)} ||||"
            )
            continue
        lines.append(
            f"| {row['layer']} | {row['type']} | {row['act_dtype']} | {row['m']} "
            f"| {_number(row['decode_us'])} | {_number(row['dequantize_us'])} | {row['faster']} "
            f"| {_dispatched(row)} |"
        )
    threshold = recommended_threshold(crossover)
    if threshold is not None:
        lines += [
            "",
            f"The decode kernel is faster up to M = {threshold} on every weight measured "
            "(the dispatch threshold should not exceed it).",
        ]
    return lines


def anchors_table(anchors: list[dict], title: str = "same run") -> list[str]:
    """cuBLAS and torch int4 rows (``title``: where they come from)."""
    lines = [
        "",
        f"### Anchors ({title})",
        "",
        "| anchor | N × K | M | µs | events µs | TB/s (weight bytes) | rel. error |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in anchors:
        if "us" not in row:
            reason = row.get("skipped") or row.get("error") or "not measured"
            lines.append(f"| {row['anchor']} | {row['n']}×{row['k']} | {row['m']} | {reason} ||||")
            continue
        bits = 4 if "int4" in row["anchor"] else 16
        us = row.get("kernel_us", row["us"])
        rate = row["n"] * row["k"] * bits / 8 / (us * 1e-6) / 1e12
        lines.append(
            f"| {row['anchor']} | {row['n']}×{row['k']} | {row['m']} | {_number(row.get('kernel_us'))} "
            f"| {_number(row['us'])} | {_number(rate, 2)} | {_error(row)} |"
        )
    return lines


def host_summary(rows: list[dict]) -> list[str]:
    """Wall µs per eager call at M = 1 on the benchmark's layers (the host overhead alone is measured on a
    small layer by tests/ops/test_gpu_ops.py::test_eager_host_time_per_call)."""
    values = [row["host_us"] for row in rows if "host_us" in row]
    if not values:
        return []
    return [
        "",
        f"Time per eager call at M = 1, back to back (host and GPU overlap, so a call costs at least its "
        f"kernel): median {statistics.median(values):.1f} µs (min {min(values):.1f}, max {max(values):.1f}).",
    ]


def markdown(results: dict) -> str:
    """The whole section."""
    rows = results.get("rows", [])
    decode = [r for r in rows if r["suite"] == "decode"]
    prefill = [r for r in rows if r["suite"] == "prefill"]
    lines = header(results)
    lines += [
        "",
        "### Decode (M ≤ 16: the decode kernel; at M = 1 on 1-, 2- and 4-bit codes the int8 route, and bf16 "
        "rows through the fp16 loop, where measured faster)",
    ] + host_summary(decode)
    lines += decode_summary(decode) + targets_table(decode, prefill) + decode_table(decode)
    lines += prefill_table(prefill) + crossover_table(results.get("crossover", []))
    runs = results.get("merged_from")
    title = "same run"
    if runs:
        title = "each from the last part that measured it" if one_run(runs) else "each from the latest run"
    lines += anchors_table(results.get("anchors", []), title)
    skipped = results.get("skipped", [])
    if skipped:
        lines += ["", f"{len(skipped)} weights were not measured: {skipped[0]['reason']}."]
    return "\n".join(lines) + "\n"


def roofline(results: dict, path: pathlib.Path | str) -> None:
    """Achieved TFLOP/s against arithmetic intensity (FLOP per byte moved), under the measured roofs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ceilings = results["ceilings"]
    bandwidth = ceilings["read"]["best_tb_s"]
    peak = ceilings.get("cublas_fp16_tflops", 700.0)
    figure, axes = plt.subplots(figsize=(9, 6))
    intensities = [10 ** (i / 20) for i in range(-20, 81)]
    axes.plot(
        intensities,
        [min(peak, bandwidth * i) for i in intensities],
        color="black",
        linewidth=1.5,
        label=f"roofline: {bandwidth:.2f} TB/s read, {peak:.0f} TFLOP/s cuBLAS fp16",
    )
    colours = plt.get_cmap("viridis")
    for suite, marker in (("decode", "o"), ("prefill", "s")):
        for row in results.get("rows", []):
            if row["suite"] != suite or "tflops" not in row:
                continue
            axes.scatter(
                row["intensity_flop_per_byte"],
                row["tflops"],
                marker=marker,
                s=14,
                color=colours(row.get("nbits", 4) / 8),
                alpha=0.8,
            )
    for row in results.get("anchors", []):
        if "us" in row and row["anchor"].startswith("cuBLAS"):
            moved = 2 * (row["n"] * row["k"] + row["m"] * (row["k"] + row["n"]))
            flop = 2 * row["m"] * row["n"] * row["k"]
            us = row.get("kernel_us", row["us"])
            axes.scatter(flop / moved, flop / (us * 1e-6) / 1e12, marker="x", s=18, color="red", alpha=0.6)
    axes.scatter([], [], marker="o", color="grey", label="anybit decode (colour: bits)")
    axes.scatter([], [], marker="s", color="grey", label="anybit prefill (dequantize + cuBLAS)")
    axes.scatter([], [], marker="x", color="red", label="cuBLAS fp16/bf16")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("arithmetic intensity (FLOP per byte that must move)")
    axes.set_ylabel("achieved TFLOP/s")
    axes.set_title(f"Quantized matmul roofline — {results.get('gpu', '')}", fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Merge runs' ``matmul.json`` files into one and write its JSON, markdown and roofline plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merge", nargs="+", required=True, help="matmul.json files, earliest first")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="directory for the merged report")
    options = parser.parse_args(argv)
    results = merge([json.loads(pathlib.Path(path).read_text()) for path in options.merge])
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "matmul.json").write_text(json.dumps(results, indent=1, default=str))
    (options.out / "matmul.md").write_text(markdown(results))
    roofline(results, options.out / "matmul_roofline.png")
    kind = "parts of one run" if one_run(results["merged_from"]) else "runs"
    print(f"{len(results['rows'])} rows from {len(results['merged_from'])} {kind} → {options.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
