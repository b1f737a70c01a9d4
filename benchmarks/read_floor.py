"""What a plain read of each target cell's bytes reaches: a floor for any kernel that must move them.

Issue #6 sets its decode targets as a share of the read ceiling, a rate measured on 4 GiB reads. A cell of
8192×8192 moves 10–70 MB, and a read that small does not reach that rate: the GPU must launch, fill the
memory pipeline and drain it, whoever reads. This probe times readers of exactly the bytes of each target
cell (``benchmarks.matmul_cases.bytes_moved``: weights, scales, zero points, x and y of the suite's row) as
the suite times its rows — captured in a CUDA graph, the L2 flushed before each replay, the kernels' device
time from the profiler — and keeps the fastest:

* torch's reductions: ``amax`` over float16 and ``sum`` over float32 of the same bytes;
* cuBLAS's fp16 GEMM at M = 16 and its GEMV at M = 1 over an fp16 weight of the same bytes ([N', 4096]);
* :class:`benchmarks.stream_read.StreamRead`, a VM kernel that does nothing but stream them (persistent
  blocks, 16-byte loads, the best of :data:`benchmarks.stream_read.CONFIGURATIONS`).

It measures the read ceiling in the same process (:func:`benchmarks.matmul_anchors.read_ceilings`).
``benchmarks/limits.py --reads`` puts the result beside each row.

Usage (GPU, repository root)::

    python benchmarks/read_floor.py [--out DIR]      # writes read_floor.json and read_floor.md
"""

from __future__ import annotations

import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402
from benchmarks import matmul_cases as cases  # noqa: E402
from benchmarks.matmul_anchors import read_ceilings  # noqa: E402
from benchmarks.matmul_report import DECODE_TARGETS  # noqa: E402
from benchmarks.stream_read import stream_reads  # noqa: E402

#: Rows of x of the target cells.
TARGET_MS = (1, 16)
#: K of the fp16 weight the cuBLAS readers multiply (N' = bytes / (2 · K) rows).
GEMM_K = 4096


def cell_bytes(dtype: str, n: int, k: int, m: int) -> int:
    """Bytes a suite row of ``dtype`` on N×K at M rows must move (unsigned types carry zero points)."""
    from anybit.dtypes import dtype as lookup

    return cases.bytes_moved(
        m, n, k, lookup(dtype).nbits, group_size=cases.GROUP_SIZE, has_zeros=dtype.startswith("uint")
    )


def cells() -> list[dict]:
    """Every target cell of the suite's types: type, N, K, M, bytes and the target (% of the ceiling)."""
    return [
        {"type": dtype, "n": n, "k": k, "m": m, "bytes": cell_bytes(dtype, n, k, m), "target_pct": target}
        for (n, k), target in DECODE_TARGETS.items()
        for dtype in cases.TYPES
        for m in TARGET_MS
    ]


def read_buffer(nbytes: int, device: str = "cuda") -> torch.Tensor:
    """A float16 buffer of at least ``nbytes`` bytes that is also whole float32 elements (random values)."""
    return torch.randn(2 * ((nbytes + 3) // 4), device=device, dtype=torch.float16)


def readers(buffer: torch.Tensor, nbytes: int) -> dict:
    """The reads of the first ``nbytes`` (a multiple of 4) of a :func:`read_buffer`: name → (call, the bytes
    it reads: ``nbytes``, or a little less for readers that take whole rows or tiles)."""
    found = {
        "amax_fp16": (lambda: torch.amax(buffer[: nbytes // 2]), nbytes),
        "sum_fp32": (lambda: torch.sum(buffer.view(torch.float32)[: nbytes // 4]), nbytes),
    }
    rows = nbytes // (2 * GEMM_K)
    if rows >= 8:  # cuBLAS reading an fp16 weight of (about) these bytes, as a GEMM at M = 16 and at M = 1
        weight = buffer[: rows * GEMM_K].view(rows, GEMM_K)
        for m in (16, 1):
            x = torch.randn(m, GEMM_K, device=buffer.device, dtype=torch.float16)
            call = lambda x=x: torch.nn.functional.linear(x, weight)  # noqa: E731
            found[f"cublas_fp16_m{m}"] = (call, 2 * rows * GEMM_K)
    found.update(stream_readers(buffer.view(torch.float32), nbytes))
    return found


def stream_readers(data: torch.Tensor, nbytes: int) -> dict:
    """:func:`~benchmarks.stream_read.stream_reads` of ``data`` (f32) on the GPU; none off it (the kernel's
    values are tested on the interpreter)."""
    return stream_reads(data, nbytes) if data.is_cuda else {}


def read_us(buffer: torch.Tensor, nbytes: int, runs: int) -> dict[str, float | None]:
    """Kernel µs of each reader over the first ``nbytes`` of ``buffer`` (L2 flushed before each replay),
    a reader of fewer bytes scaled up to ``nbytes`` at its rate."""
    found = {}
    for name, (read, read_bytes) in readers(buffer, nbytes).items():
        timing = harness.time_graph_kernels(harness.capture_graph(read), runs=runs)
        found[name] = None if timing is None else round(timing.median_us * nbytes / read_bytes, 2)
    return found


def measure(runs: int = 20) -> dict:
    """The ceiling and every target cell's read, as one record."""
    ceiling = read_ceilings()
    tb_s = ceiling["best_tb_s"]
    rows = cells()
    largest = max(row["bytes"] for row in rows)
    buffer = read_buffer(largest)
    by_size: dict[int, dict] = {}
    for row in rows:
        size = row["bytes"] - row["bytes"] % 4  # whole f32 elements; at most 3 bytes short
        if size not in by_size:
            by_size[size] = read_us(buffer, size, runs)
        times = [us for us in by_size[size].values() if us is not None]
        row["readers_us"] = by_size[size]
        if times:
            row["read_us"] = min(times)
            row["read_pct_of_ceiling"] = 100.0 * row["bytes"] / (row["read_us"] * 1e-6) / 1e12 / tb_s
    return {"gpu": harness.gpu_description(), "ceiling": ceiling, "runs": runs, "cells": rows}


def markdown(result: dict) -> str:
    """Per type (rows) and target cell (columns): the plain read's % of the ceiling, bold where it is below
    the cell's target; and how many cells that is."""
    columns = [(n, k, m) for (n, k) in DECODE_TARGETS for m in TARGET_MS]
    found = {(c["type"], c["n"], c["k"], c["m"]): c for c in result["cells"]}
    header = " | ".join(f"{n}×{k} M={m} (≥ {DECODE_TARGETS[n, k]}%)" for n, k, m in columns)
    lines = [
        "Plain read of each target cell's bytes (best of torch's amax fp16 / sum fp32, cuBLAS fp16 at "
        "M = 16 and 1 over a weight of those bytes, a VM streaming read; kernel time, L2 "
        f"flushed; read ceiling {result['ceiling']['best_tb_s']:.2f} TB/s in the same process), % of the "
        "ceiling; bold where the read itself is below the cell's target.",
        "",
        f"| type | {header} |",
        "|---|" + "---|" * len(columns),
    ]
    below = total = 0
    for dtype in dict.fromkeys(c["type"] for c in result["cells"]):
        parts = []
        for n, k, m in columns:
            cell = found.get((dtype, n, k, m))
            if cell is None or "read_pct_of_ceiling" not in cell:
                parts.append("–")
                continue
            total += 1
            short = cell["read_pct_of_ceiling"] < cell["target_pct"]
            below += short
            text = f"{cell['read_pct_of_ceiling']:.0f}% ({cell['read_us']:.1f} µs)"
            parts.append(f"**{text}**" if short else text)
        lines.append(f"| {dtype} | " + " | ".join(parts) + " |")
    lines += ["", f"{below} of {total} cells ask for more than a plain read of their bytes reaches."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write read_floor.json and read_floor.md under --out; 2 without a GPU."""

    def extra(parser) -> None:
        parser.add_argument("--runs", type=int, default=20, help="flushed replays a reader and size")

    options = harness.gpu_options(__doc__.splitlines()[0], argv, "benchmarks/read_floor.py", extra)
    if options is None:
        return 2
    result = measure(options.runs)
    text = markdown(result)
    print(text)
    if options.out is not None:
        harness.write_json(options.out, "read_floor.json", result)
        (options.out / "read_floor.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
