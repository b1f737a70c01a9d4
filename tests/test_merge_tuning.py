"""benchmarks/merge_tuning.py: tuning files merged, a later file's record winning; the suite's file valid."""

from __future__ import annotations

import json
import pathlib

import pytest

from anybit.runtime.autotune import TUNING_FORMAT, read_tuning_file
from benchmarks.merge_tuning import main, merge_tuning

SUITE_TUNING = pathlib.Path(__file__).resolve().parents[1] / "benchmarks/tunings/nvidia-h200-suite.json"


def _file(path: pathlib.Path, records: list[tuple[str, str, str, dict]]) -> pathlib.Path:
    data = {
        "format": TUNING_FORMAT,
        "records": [dict(kernel=k, gpu=g, bucket=b, config=c) for k, g, b, c in records],
    }
    path.write_text(json.dumps(data))
    return path


def test_a_later_file_wins_and_every_record_is_kept(tmp_path):
    first = _file(
        tmp_path / "a.json",
        [("K-1", "H200", "[1,8,8]", {"warps": 4}), ("K-1", "H200", "[4,8,8]", {"warps": 2})],
    )
    second = _file(
        tmp_path / "b.json", [("K-1", "H200", "[1,8,8]", {"warps": 8}), ("K-2", "H200", "[1,8,8]", {})]
    )
    merged = merge_tuning([first, second])
    assert merged["format"] == TUNING_FORMAT
    found = {(r["kernel"], r["bucket"]): r["config"] for r in merged["records"]}
    assert found == {
        ("K-1", "[1,8,8]"): {"warps": 8},
        ("K-1", "[4,8,8]"): {"warps": 2},
        ("K-2", "[1,8,8]"): {},
    }
    out = tmp_path / "out" / "merged.json"
    assert main([str(first), str(second), "--out", str(out)]) == 0
    written = read_tuning_file(out)  # a valid tuning file, the same records
    assert {(kernel, bucket): config for (kernel, _, bucket), config in written.items()} == found


def test_a_file_that_is_not_a_tuning_file_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"records": []}))
    with pytest.raises(ValueError, match="expected an anybit tuning file"):
        merge_tuning([bad])


def test_the_suites_tuning_file_is_valid():
    """The file the suite pins (BENCH_TUNING) reads as a tuning file of the H200's decode and path records."""
    records = read_tuning_file(SUITE_TUNING)
    assert len(records) > 500
    assert {gpu for _, gpu, _ in records} == {"NVIDIA H200|sm_90a"}
    assert any(kernel.startswith("TunedDecodeMatmulTransposed-") for kernel, _, _ in records)
