"""benchmarks/read_floor.py on the CPU: the cells it reads and its report (the timing needs a GPU)."""

from __future__ import annotations

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
    for name, read in read_floor.readers(buffer, size).items():
        value = read()
        first = buffer[: size // 2] if name == "amax_fp16" else buffer.view(torch.float32)[: size // 4]
        assert first.numel() * first.element_size() == size
        expected = torch.amax(first) if name == "amax_fp16" else torch.sum(first)
        assert torch.equal(value, expected)
