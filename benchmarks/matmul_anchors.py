"""Ceilings and anchors of the quantized-matmul benchmark, measured in the same run as our kernels.

* Read ceiling: the best of a few streaming reads (torch amax and sum over 4 GiB of fp32, amax over 4 GiB of
  fp16, a cuBLAS fp16 GEMV over a 4 GiB weight, whose weight bytes / time is also a read rate, and the VM's
  own streaming read, :class:`benchmarks.stream_read.StreamRead`, best of its configurations), each
  timed by CUDA events and, captured in a CUDA graph, by its kernels' own device time (the profiler); the
  ceiling is the best kernel-time rate, as the rows it divides are kernel times.
* Compute ceiling: cuBLAS fp16 and bf16 GEMM at 8192³.
* Anchors: cuBLAS (``F.linear``) in fp16 and bf16 at every benchmarked shape, and torch's int4 kernel
  (``torch._weight_int4pack_mm``, uint4 with bf16 scales and zero points, group 128) where torch has it.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks.ceilings import cublas_tflops
from benchmarks.harness import capture_graph, time_cuda, time_graph_kernels
from benchmarks.matmul_timing import graph_and_kernel_us

GIB = 1 << 30


def _read_rates(fn, nbytes: int) -> tuple[float, float | None]:
    """TB/s of a read of ``nbytes`` done by ``fn``: by CUDA events around eager calls, and by the kernels'
    device time in a CUDA graph (None where the profiler gave no clean record); medians of 20, no flush
    (the buffer is far above L2)."""
    events = nbytes / (time_cuda(fn, runs=20, warmup=3, flush=False).median_us * 1e-6) / 1e12
    kernels = time_graph_kernels(capture_graph(fn), runs=20, flush=False)
    return events, None if kernels is None else nbytes / (kernels.median_us * 1e-6) / 1e12


def _reduction_rates(dtype: torch.dtype, reduce) -> tuple[float, float | None]:
    data = torch.randn(4 * GIB // (torch.finfo(dtype).bits // 8), device="cuda", dtype=dtype)  # 4 GiB
    return _read_rates(lambda: reduce(data), data.numel() * data.element_size())


def _stream_rates() -> tuple[float, float | None]:
    """The VM's streaming read of 4 GiB of f32 (:class:`~benchmarks.stream_read.StreamRead`): the best of
    its configurations by kernel time (by events where the profiler gave none)."""
    from benchmarks.stream_read import stream_reads

    data = torch.randn(GIB, device="cuda", dtype=torch.float32)  # 4 GiB, a whole number of every tile
    found = [_read_rates(call, nbytes) for call, nbytes in stream_reads(data, 4 * GIB).values()]
    return max(found, key=lambda rates: (rates[1] or 0.0, rates[0]))


def _gemv_rates() -> tuple[float, float | None]:
    weight = torch.randn(65536, 32768, device="cuda", dtype=torch.float16)  # 4 GiB
    x = torch.randn(1, 32768, device="cuda", dtype=torch.float16)
    return _read_rates(lambda: F.linear(x, weight), weight.numel() * 2)


def read_ceilings() -> dict:
    """TB/s of each streaming-read candidate by events and by kernel time, the best, and which it was.

    The ceiling (``best_tb_s``) is the best kernel-time rate when the profiler gave one for every
    candidate, else the best event-timed rate (``basis`` says which)."""
    measured = {
        "torch amax fp32 4 GiB": _reduction_rates(torch.float32, torch.amax),
        "torch sum fp32 4 GiB": _reduction_rates(torch.float32, torch.sum),
        "torch amax fp16 4 GiB": _reduction_rates(torch.float16, torch.amax),
        "cuBLAS fp16 GEMV 1x65536x32768 (weight bytes)": _gemv_rates(),
    }
    try:  # our own kernel: a failure to build or launch it is reported, not a lost run
        measured["anybit StreamRead f32 4 GiB (best configuration)"] = _stream_rates()
    except Exception as error:
        traceback.print_exc()
        failed = f"{type(error).__name__}: {error}"
    else:
        failed = None
    torch.cuda.empty_cache()
    record = best_read(
        {name: events for name, (events, _) in measured.items()},
        {name: kernels for name, (_, kernels) in measured.items()},
    )
    if failed is not None:
        record["stream_read_failed"] = failed
    return record


def best_read(events: dict[str, float], kernels: dict[str, float | None]) -> dict:
    """The read-ceiling record from each candidate's event-timed and kernel-timed TB/s."""
    basis = "kernel" if kernels and all(rate is not None for rate in kernels.values()) else "events"
    rates = kernels if basis == "kernel" else events
    best_name = max(rates, key=lambda name: rates[name])
    return {
        "candidates": events,
        "kernel_candidates": kernels,
        "basis": basis,
        "best_tb_s": rates[best_name],
        "best": best_name,
    }


def compute_ceilings() -> dict:
    """cuBLAS GEMM TFLOP/s at 8192³ in fp16 and bf16."""
    return {
        "cublas_fp16_tflops": cublas_tflops(8192, torch.float16),
        "cublas_bf16_tflops": cublas_tflops(8192, torch.bfloat16),
    }


def anchor_acts(act_dtype: str) -> tuple[tuple[str, str], ...]:
    """The cuBLAS anchors a row of ``act_dtype`` is compared with, as (dtype, short name): fp16 always (the
    issue's baseline), bf16 too for bf16 rows."""
    fp16 = ("float16", "fp16")
    return (fp16, ("bfloat16", "bf16")) if act_dtype == "bfloat16" else (fp16,)


def cublas_call(m: int, n: int, k: int, act_dtype: str) -> Callable[[], torch.Tensor]:
    """cuBLAS's [m, k] × [n, k]^T matmul (``F.linear``) in ``act_dtype`` on fresh random operands."""
    dtype = getattr(torch, act_dtype)
    weight = torch.randn(n, k, device="cuda", dtype=dtype)
    x = torch.randn(m, k, device="cuda", dtype=dtype)
    return lambda: F.linear(x, weight)


class CublasAnchors:
    """cuBLAS ``F.linear`` µs per (M, N, K, act dtype), measured once each (CUDA graph, L2 flushed): by
    events (``us``) and by its kernels' device time (``kernel_us``, where the profiler gave it)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int, int, str], dict] = {}

    def row(self, m: int, n: int, k: int, act_dtype: str) -> dict:
        """The anchor row of an [m, k] × [n, k]^T cuBLAS matmul in ``act_dtype`` (measured on first use)."""
        key = (m, n, k, act_dtype)
        if key not in self.rows:
            self.rows[key] = self._measure(m, n, k, act_dtype)
        return self.rows[key]

    @staticmethod
    def _measure(m: int, n: int, k: int, act_dtype: str) -> dict:
        row: dict = {"anchor": f"cuBLAS {act_dtype}", "m": m, "n": n, "k": k, "act_dtype": act_dtype}
        try:
            row["us"], kernel_us = graph_and_kernel_us(
                cublas_call(m, n, k, act_dtype), runs=30 if m > 16 else 100
            )
            if kernel_us is not None:
                row["kernel_us"] = kernel_us
        except Exception as error:  # an anchor that cannot run is recorded, not fatal
            row["error"] = f"{type(error).__name__}: {error}"
        return row


def int4pack_available() -> str | None:
    """None when ``torch._weight_int4pack_mm`` and its packing op exist for CUDA, else why not."""
    missing = [
        name
        for name in ("_convert_weight_to_int4pack", "_weight_int4pack_mm")
        if not hasattr(torch.ops.aten, name)
    ]
    if missing:
        return f"torch {torch.__version__} has no aten.{' / aten.'.join(missing)}"
    return None


def int4pack_weight(q, *, inner_k_tiles: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's tinygemm operands for an anybit uint4 weight with bf16 scales and zero points.

    tinygemm dequantizes ``(q − 8) · s + z'``; anybit ``(q − z) · s``; so ``z' = (8 − z) · s``. The codes
    [N, K] go in as uint8 [N, K/2], two per byte, the even k in the high nibble (torchao's convention).
    """
    codes = q.codes.to(torch.uint8)
    packed = (codes[:, ::2] << 4 | codes[:, 1::2]).contiguous()
    weight = torch.ops.aten._convert_weight_to_int4pack(packed, inner_k_tiles)
    scales = q.scales.float()
    zeros = q.zeros.float() if q.zeros is not None else torch.zeros_like(scales)
    shifted = (8.0 - zeros) * scales
    scale_and_zeros = torch.stack([scales, shifted], dim=-1).to(torch.bfloat16).contiguous()  # [K/g, N, 2]
    return weight, scale_and_zeros


def int4pack_rows(q, xs: dict[int, torch.Tensor], reference: torch.Tensor, rows: int) -> list[dict]:
    """``torch._weight_int4pack_mm`` at each M of ``xs`` (bf16): µs (graph, flushed) and relative error.

    ``reference`` is the float64 product of the first ``rows`` rows of the largest x with the dequantized
    weight.
    """
    n, k = q.codes.shape
    base = {"anchor": "torch._weight_int4pack_mm", "n": n, "k": k, "act_dtype": "bfloat16", "type": "uint4"}
    reason = int4pack_available()
    if reason is not None:
        return [{**base, "m": m, "skipped": reason} for m in xs]
    try:
        weight, scale_and_zeros = int4pack_weight(q)
    except Exception as error:
        return [{**base, "m": m, "error": f"{type(error).__name__}: {error}"} for m in xs]
    results = []
    for m, x in xs.items():
        row = {**base, "m": m}
        try:
            y = torch.ops.aten._weight_int4pack_mm(x, weight, q.group_size, scale_and_zeros)
            head = min(rows, m)
            row["relative_error"] = relative_error(y[:head], reference[:head])
            row["us"], kernel_us = graph_and_kernel_us(
                lambda x=x: torch.ops.aten._weight_int4pack_mm(x, weight, q.group_size, scale_and_zeros),
                runs=30 if m > 16 else 100,
            )
            if kernel_us is not None:
                row["kernel_us"] = kernel_us
        except Exception as error:
            row["error"] = f"{type(error).__name__}: {error}"
            row["traceback"] = traceback.format_exc(limit=3)
        results.append(row)
    return results


def relative_error(y: torch.Tensor, reference: torch.Tensor) -> float:
    """‖y − ref‖ / ‖ref‖ in float64 (NaN anywhere in y gives NaN)."""
    difference = y.double() - reference
    return float(torch.linalg.norm(difference) / torch.linalg.norm(reference))
