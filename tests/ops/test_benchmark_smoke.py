"""The benchmark's logic end to end on the CPU: small shapes on the interpreter, the timers and the anchors
replaced by stand-ins (the numbers mean nothing; the rows, checks, files and report must all be there)."""

from __future__ import annotations

import json
import types

import pytest
import torch

import anybit.ops
from benchmarks import matmul, matmul_cases


def run_once(fn, **_) -> float:
    fn()
    return 1.0


def run_each(calls, **_) -> float:
    for call in calls:
        call()
    return 2.0


def in_turns(calls, **_) -> tuple[list[float], str]:
    for call in calls:
        call()
    return [2.0] + [1.8] * (len(calls) - 1), "kernel"


def test_quick_run_on_the_cpu(monkeypatch, tmp_path):
    monkeypatch.setattr(matmul, "DEVICE", "cpu")
    small = (("8B o", 64, 256), ("70B o", 128, 256), ("70B gate_up", 256, 128))
    monkeypatch.setattr(matmul_cases, "SHAPES", small)
    monkeypatch.setattr(matmul, "graph_us", run_once)
    monkeypatch.setattr(matmul, "graph_and_kernel_us", lambda fn, **_: (run_once(fn), 0.5))
    monkeypatch.setattr(matmul, "eager_us", run_each)
    monkeypatch.setattr(matmul, "host_us", run_once)
    monkeypatch.setattr(matmul, "rotation_count", lambda nbytes: 2)
    monkeypatch.setattr(matmul, "interleaved_us", in_turns)
    monkeypatch.setattr(matmul, "cublas_call", lambda m, n, k, act: lambda: torch.zeros(m, n))
    monkeypatch.setattr(matmul, "gpu_description", lambda: "CPU (smoke test)")
    monkeypatch.setattr(
        matmul,
        "read_ceilings",
        lambda: {"candidates": {"stand-in": 4.0}, "best": "stand-in", "best_tb_s": 4.0},
    )
    monkeypatch.setattr(matmul, "compute_ceilings", lambda: {"cublas_fp16_tflops": 700.0})
    monkeypatch.setattr(
        matmul.CublasAnchors,
        "_measure",
        staticmethod(
            lambda m, n, k, act: {
                "anchor": f"cuBLAS {act}",
                "m": m,
                "n": n,
                "k": k,
                "act_dtype": act,
                "us": 3.0,
                "kernel_us": 1.5,
            }
        ),
    )
    monkeypatch.setattr(anybit.ops, "precompile_decode", lambda specialisations: {"compiled": 0, "failed": 0})
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    options = types.SimpleNamespace(
        quick=True,
        out=str(tmp_path),
        tuning=None,
        budget_s=600.0,
        layers="",
        types="",
        ms="",
        acts="",
        bytes_per_thread=None,
    )
    status = matmul.Run(options).run()
    results = json.loads((tmp_path / "matmul.json").read_text())
    failed = [row for row in results["rows"] if row.get("error") or not row.get("ok")]
    assert not failed, failed
    assert status == 0
    suites = [row["suite"] for row in results["rows"]]
    assert suites.count("decode") == 2 * (3 * 5 + 1) and suites.count("prefill") == 1
    prefill = next(row for row in results["rows"] if row["suite"] == "prefill")
    assert prefill["path"] == "dequantize" and prefill["m"] == 4096 and "dequantize_us" in prefill
    # Prefill speedups from our call and cuBLAS's timed in turns (2.0 µs ours, 1.8 µs cuBLAS's), not from
    # the anchors measured on their own.
    assert prefill["paired"]["us"] == 2.0 and prefill["paired"]["cublas_fp16_us"] == 1.8
    assert prefill["speedup_vs_cublas_fp16"] == pytest.approx(0.9)
    assert prefill["speedup_vs_cublas_fp16_basis"] == "paired kernel"
    decode = results["rows"][0]
    assert decode["path"] == "decode" and "host_us" in decode
    # Percentages and speedups from kernel times on both sides (0.5 µs ours, 1.5 µs cuBLAS's).
    assert decode["time_basis"] == "kernel" and decode["timed_us"] == 0.5 and decode["graph_us"] == 1.0
    assert decode["speedup_vs_cublas_fp16"] == 3.0 and decode["speedup_vs_cublas_fp16_basis"] == "kernel"
    assert decode["pct_of_read_ceiling"] == pytest.approx(2 * decode["pct_of_read_ceiling_events"])
    assert decode["bytes"] == matmul_cases.bytes_moved(1, 64, 256, 2, group_size=128, has_zeros=True)
    assert len(results["crossover"]) == 4 and all(
        r["decode_ok"] and r["dequantize_ok"] and r["dispatched_ok"] for r in results["crossover"]
    )
    # On the CPU a plain call follows the rule (no measurement): decode up to 16 rows, then dequantize.
    assert all(
        r["dispatched_path"] == ("decode" if r["m"] <= 16 else "dequantize") and r["dispatched_us"] == 1.0
        for r in results["crossover"]
    )
    int4 = [row for row in results["anchors"] if row["anchor"] == "torch._weight_int4pack_mm"]
    assert [row["m"] for row in int4] == [1, 16]  # on the CPU they fail (a CUDA op), and say so
    text = (tmp_path / "matmul.md").read_text()
    assert "### Decode" in text and "### Prefill" in text and "### Anchors" in text
    assert "| 2.0 / 1.8 |" in text  # the prefill row's times in turns
    assert (tmp_path / "matmul_roofline.png").exists() and (tmp_path / "tuning.json").exists()


def test_only_the_named_layers_and_types():
    todo = matmul_cases.layer_cases(quick=False)
    chosen = matmul_cases.only(todo, layers="70B gate_up, 70B down", types="int4,uint2")
    assert {(c.layer, c.dtype) for c in chosen} == {
        (layer, dtype) for layer in ("70B gate_up", "70B down") for dtype in ("int4", "uint2")
    }
    assert len(chosen) == 2 * 2 * len(matmul_cases.ACT_DTYPES)
    assert matmul_cases.only(todo) == todo
    with pytest.raises(ValueError, match=r"unknown layer \['70B up'\]; expected names from \['8B qkv'"):
        matmul_cases.only(todo, layers="70B up")
    with pytest.raises(ValueError, match=r"unknown dtype \['int9'\]"):
        matmul_cases.only(todo, types="int9")


def test_only_the_named_rows_and_activation_dtypes():
    todo = matmul_cases.layer_cases(quick=False)
    chosen = matmul_cases.only(todo, layers="70B o", acts="bfloat16", ms="16, 4096")
    assert {c.act_dtype for c in chosen} == {"bfloat16"} and len(chosen) == len(matmul_cases.TYPES)
    assert all(c.ms == (16, 4096) for c in chosen)
    # A case left without rows goes: the crossover sweeps 1…128, so M = 4096 keeps none of it.
    assert matmul_cases.only(matmul_cases.crossover_cases(quick=False), ms="4096") == []
    with pytest.raises(ValueError, match=r"unknown act_dtype \['float32'\]"):
        matmul_cases.only(todo, acts="float32")
    with pytest.raises(ValueError, match=r"expected --ms as comma-separated row counts"):
        matmul_cases.only(todo, ms="one")


def test_ncu_decode_cases_parse_and_reject_malformed_entries():
    from benchmarks import ncu_decode

    assert ncu_decode.parse_cases("int4:57344x8192:16,uint2:8192X8192:1") == [
        ("int4", 57344, 8192, 16),
        ("uint2", 8192, 8192, 1),
    ]
    assert len(ncu_decode.parse_cases(ncu_decode.DEFAULT_CASES)) == 7
    with pytest.raises(SystemExit, match="type:NxK:M"):
        ncu_decode.parse_cases("int4:57344:16")


@pytest.mark.parametrize("dependent", [True, False])
def test_the_launch_floor_chain_step_adds_one_on_the_interpreter(dependent):
    """benchmarks/launch_floor.py's kernel: y = x + 1 a tile a block; the dependent form carries the wait
    (so the runtime launches it as a dependent) and the plain one does not."""
    import numpy as np

    import anybit
    from anybit.runtime import compiler
    from benchmarks.launch_floor import TILE, ChainStep

    step = ChainStep(dependent, warps=4)
    x = np.random.default_rng().standard_normal(3 * TILE).astype(np.float32)
    y = np.full_like(x, np.nan)
    anybit.interpret(step, x, y, 3)
    np.testing.assert_array_equal(y, x + 1.0)
    source = compiler.generate_source(step.program(None, None, 3), "sm_90a")
    assert source.waits_for_prior_grids is dependent


def test_mlp_probe_runs_its_rows_at_a_small_size(monkeypatch):
    """benchmarks/mlp_probe.py's rows on the interpreter at a small size (each timed call run once instead):
    the fused MLP kernel's step on a residual stream is the folded model's two-kernel step (the ops it times
    against), for every variant of stages and split-K."""
    from benchmarks import mlp_probe

    timed = []
    run_once = lambda calls: timed.append([call() for call in calls]) or 1.0  # noqa: E731
    monkeypatch.setattr(mlp_probe, "graph_us_per_call", run_once)
    result = mlp_probe.run("int4", [2], 2, [(4, 1), (2, 2)], 1e12, shape=(256, 256), device="cpu")
    row = result["rows"][0]
    assert row["rel_error_vs_two_kernels"] < 2e-3 and len(timed) == 3
    assert {"two_kernels_us", "fused_4x1_us", "fused_2x2_us", "fused_best_us"} <= set(row)


def test_timing_floor_needs_a_gpu():
    from benchmarks.timing_floor import main

    if not torch.cuda.is_available():
        assert main(["--runs", "3"]) == 2
