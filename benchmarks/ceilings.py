"""The ceilings every result is compared with, measured in the same run: read bandwidth, cuBLAS GEMM."""

from __future__ import annotations

import torch

from benchmarks.harness import time_cuda


def read_bandwidth_bytes_per_s(gib: float = 4.0) -> float:
    """Best streaming read we can write with torch: a sum over a large fp32 buffer (bytes read / time)."""
    elements = int(gib * (1 << 30)) // 4
    data = torch.randn(elements, device="cuda", dtype=torch.float32)
    best = min(
        time_cuda(lambda: torch.amax(data), runs=30, flush=False).median_us,
        time_cuda(lambda: data.sum(), runs=30, flush=False).median_us,
    )
    return elements * 4 / (best * 1e-6)


def cublas_tflops(size: int = 8192, dtype: torch.dtype = torch.float16) -> float:
    """cuBLAS GEMM rate on random ``size``³ matrices, in TFLOP/s."""
    a = torch.randn(size, size, device="cuda", dtype=dtype)
    b = torch.randn(size, size, device="cuda", dtype=dtype)
    timing = time_cuda(lambda: a @ b, runs=20, flush=False)
    return 2 * size**3 / (timing.median_us * 1e-6) / 1e12
