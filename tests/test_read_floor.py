"""benchmarks/read_floor.py on the CPU: the cells it reads and its report (the timing needs a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import matmul_cases as cases
from benchmarks import read_floor
from benchmarks.matmul_report import DECODE_TARGETS


def test_cells_are_every_target_cell_with_the_suites_bytes():
    cells = read_floor.cells()
    assert len(cells) == len(DECODE_TARGETS) * len(cases.TYPES) * len(read_floor.TARGET_MS)
    found = {(c["type"], c["n"], c["k"], c["m"]): c for c in cells}
    # uint4 8192x8192 at M = 1: 4-bit codes, fp16 scales and zero points a group of 128, x and y.
    uint4 = found["uint4", 8192, 8192, 1]
    expected = 8192 * 8192 // 2 + 2 * (8192 // 128) * 8192 * 2 + 8192 * 2 + 8192 * 2
    assert uint4["bytes"] == expected and uint4["target_pct"] == 60
    # Signed types carry no zero points; M = 16 moves 16 rows of x and y.
    int4 = found["int4", 57344, 8192, 16]
    assert int4["bytes"] == 57344 * 8192 // 2 + (8192 // 128) * 57344 * 2 + 16 * (8192 + 57344) * 2
    assert int4["target_pct"] == 80


def test_the_report_marks_cells_whose_plain_read_misses_the_target():
    cells = [
        {
            "type": "int4",
            "n": 8192,
            "k": 8192,
            "m": 1,
            "target_pct": 60,
            "read_us": 14.0,
            "read_pct_of_ceiling": 55.4,
        },
        {
            "type": "int4",
            "n": 8192,
            "k": 8192,
            "m": 16,
            "target_pct": 60,
            "read_us": 12.0,
            "read_pct_of_ceiling": 64.6,
        },
        {"type": "int4", "n": 57344, "k": 8192, "m": 1, "target_pct": 80},  # no reading: a dash
    ]
    text = read_floor.markdown({"ceiling": {"best_tb_s": 4.38}, "cells": cells})
    assert "4.38 TB/s" in text
    # Columns in DECODE_TARGETS order (57344×8192, 8192×28672, 8192×8192), M = 1 then 16.
    assert "| int4 | – | – | – | – | **55% (14.0 µs)** | 65% (12.0 µs) |" in text
    assert "1 of 2 cells ask for more than a plain read of their bytes reaches." in text


def test_the_readers_read_exactly_the_cells_bytes():
    buffer = read_floor.read_buffer(1001, device="cpu")  # an odd size still views as whole float32
    assert buffer.numel() * 2 >= 1001 and buffer.numel() % 2 == 0
    size = 1000
    found = read_floor.readers(buffer, size)
    assert set(found) == {"amax_fp16", "sum_fp32"}  # no GEMM below 8 rows; the VM reader on the GPU only
    for name, (read, read_bytes) in found.items():
        value = read()
        first = buffer[: size // 2] if name == "amax_fp16" else buffer.view(torch.float32)[: size // 4]
        assert first.numel() * first.element_size() == size == read_bytes
        expected = torch.amax(first) if name == "amax_fp16" else torch.sum(first)
        assert torch.equal(value, expected)


def test_the_gemm_readers_read_an_fp16_weight_of_about_the_cells_bytes():
    """cuBLAS's readers multiply [M, GEMM_K] by a weight of whole rows of the buffer: they say how many
    bytes that is (at most a row short), and run to an [M, rows] product."""
    size = 9 * 2 * read_floor.GEMM_K + 100
    buffer = read_floor.read_buffer(size, device="cpu")
    found = read_floor.readers(buffer, size)
    for m in (16, 1):
        read, read_bytes = found[f"cublas_fp16_m{m}"]
        assert read_bytes == 9 * 2 * read_floor.GEMM_K and size - read_bytes < 2 * read_floor.GEMM_K
        product = read()
        assert product.shape == (m, 9) and torch.isfinite(product).all()


def test_the_stream_read_kernel_sums_its_blocks_tiles_on_the_interpreter():
    """Block b sums tiles b, b + grid, ... of the data (float64 reference), every block's total written."""
    import anybit
    from benchmarks.stream_read import StreamRead

    kernel = StreamRead(warps=2, vectors=2)
    tiles, grid = 7, 3
    data = np.random.default_rng(5).standard_normal(tiles * kernel.tile()).astype(np.float32)
    out = np.full(grid, np.nan, dtype=np.float32)
    anybit.interpret(kernel, data, out, data.size, grid)
    by_tile = data.reshape(tiles, -1).astype(np.float64)
    expected = [by_tile[block::grid].sum() for block in range(grid)]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="warps"):
        StreamRead(warps=0)
