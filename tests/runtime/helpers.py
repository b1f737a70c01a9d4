"""Hand-written kernels for the runtime tests (until generated ones are everywhere) and the GPU marker."""

from __future__ import annotations

import pytest

from anybit.cuda.kernel_source import CudaKernelSource, KernelParam
from anybit.dtypes import float32, int32
from anybit.ir.expr import Var, cdiv

AXPY = r"""
extern "C" __global__ void axpy(float a, const float* __restrict__ x, float* __restrict__ y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}
"""


def axpy_source(block: int = 128, **changes) -> CudaKernelSource:
    """y = a*x + y over n elements, one thread each: a scalar float, two pointers, a scalar int."""
    n = Var("n", int32)
    fields = dict(
        name="axpy",
        source=AXPY,
        params=(
            KernelParam("a", "scalar", float32),
            KernelParam("x", "pointer", float32),
            KernelParam("y", "pointer", float32),
            KernelParam("n", "scalar", int32),
        ),
        grid=(cdiv(n, block), 1, 1),
        block_threads=block,
        dynamic_shared_bytes=0,
        workspace_bytes=0,
        workspace_clean=False,
        alignment_requirements=(("x", 16), ("y", 16)),
    )
    fields.update(changes)
    return CudaKernelSource(**fields)


def gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


requires_gpu = pytest.mark.skipif(
    not gpu_available(),
    reason="needs an NVIDIA GPU "
    "(torch.cuda.is_available() "
    "is False); the GPU tier runs on the device machine via "
    "scripts/gpu_check.sh",
)
