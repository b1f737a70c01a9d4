"""benchmarks/int8_route.py on the CPU: its configurations and one probe row run on the interpreter (the
timing needs a GPU)."""

from __future__ import annotations

from anybit.kernels.decode_int8 import build_configuration
from benchmarks import int8_route


def test_configurations_divide_the_weight_and_keep_runs_of_four_chunks():
    for warps, tiles, split, columns, ahead in int8_route.configurations("uint2", 8192, 8192):
        assert 8192 % (warps * 16 * tiles) == 0
        assert (8192 // 1024 // split >= 1) if columns else (8192 // 128 // split >= 4)
        assert ahead in int8_route.AHEAD
    assert (4, 2, 8, False, 2) in int8_route.configurations("uint1", 57344, 8192)
    assert (4, 1, 8, True, 1) in int8_route.configurations("uint2", 57344, 8192)  # a quarter packed tile
    assert not any(tiles == 1 for _, tiles, *_ in int8_route.configurations("uint1", 57344, 8192))
    assert not any(columns for *_, columns, _ in int8_route.configurations("uint4", 57344, 8192, m=4))
    assert all(split <= 2 for _, _, split, *_ in int8_route.configurations("uint4", 256, 1024))


def test_a_probe_row_checks_every_configuration_against_float64():
    calls = []

    def timer(call, graph=True):  # every timed call runs once (on the interpreter)
        calls.append(call())
        return 10.0

    row = int8_route.probe("uint2", 256, 1024, 1, 4.0, device="cpu", timer=timer)
    assert row["configs"] and all(entry["error"] < 1e-3 for entry in row["configs"])
    # x's preparation and the kernel timed together, for each form's best configuration
    assert row["best_total"]["total_us"] == 10.0 and row["int8_total_pct"] == row["int8_pct"]
    assert len(calls) == 2 + 2 + len(row["configs"]) + 2  # quantized_matmul timed twice (one discarded)
    assert {entry["group_columns"] for entry in row["configs"]} == {False, True}
    assert row["quantized_matmul_error"] < 1e-3
    assert row["best"]["us"] == 10.0 and row["int8_pct"] == row["quantized_matmul_pct"]
    # bytes that must move: 2-bit codes, fp16 scales and zero points a group of 128, x and y
    assert row["bytes"] == 256 * 1024 // 4 + 2 * (1024 // 128) * 256 * 2 + 1024 * 2 + 256 * 2


def test_a_probe_row_at_sixteen_rows():
    row = int8_route.probe("uint4", 128, 512, 16, 4.0, device="cpu", timer=lambda call, graph=True: 5.0)
    assert row["configs"] and all(
        entry["error"] < 1e-3 and not entry["group_columns"] for entry in row["configs"]
    )
    assert row["prepare_x_columns_us"] is None


def test_every_build_job_makes_a_kernel(tmp_path, monkeypatch):
    """A build worker's job compiles what the probe launches (here in this process, for sm_90a)."""
    monkeypatch.setenv("ANYBIT_CACHE_DIR", str(tmp_path))
    assert build_configuration(2, 4, 2, 2, False, 2, 16, 16, 256, 1024, "sm_90a") == 0
    assert build_configuration(1, 4, 2, 1, True, 4, 8, 1, 256, 1024, "sm_90a") == 0
