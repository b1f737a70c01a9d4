"""``self.dot(a, b, c)`` with ``b`` in shared memory in core-matrix form: the tensor cores read b there
(sm_90a ``wgmma``, A from registers). Checked on the interpreter against float64, its CUDA for the
instructions it must use, its errors, and on the GPU against float64."""

from __future__ import annotations

import numpy as np
import pytest

import anybit
from anybit import bfloat16, float16, float32
from anybit.ir import KernelDefinitionError
from anybit.ir.errors import VerificationError
from anybit.layout import shared_core_matrices, shared_row_major


class SharedDot(anybit.Script):
    """c [M, N] = a [M, K] @ b [K, N] + c0, b staged in shared memory in core-matrix form (``layout``)."""

    def __init__(self, m: int, n: int, k: int, warps: int, dtype=float16, layout=None) -> None:
        super().__init__()
        self.m, self.n, self.k, self.warps, self.dtype = m, n, k, warps, dtype
        self.layout = layout or shared_core_matrices(k, n)

    def __call__(self, a: anybit.ptr(self.dtype), b: anybit.ptr(self.dtype), c: anybit.ptr(float32)):  # noqa: F821
        self.attrs.blocks = [1]
        self.attrs.warps = self.warps
        m, n, k = self.m, self.n, self.k
        ga = self.global_view(a, self.dtype, [m, k])
        gb = self.global_view(b, self.dtype, [k // 8, 8, n], strides=[8 * n, n, 1])  # b [K, N] row-major
        gc = self.global_view(c, float32, [m, n])
        sb = self.shared_tensor(self.dtype, [k // 8, 8, n], layout=self.layout)
        self.store_shared(sb, self.load_global(gb, [0, 0, 0], [k // 8, 8, n]))
        self.sync()
        acc = self.load_global(gc, [0, 0], [m, n])  # c0: the product is added to it
        self.dot(self.load_global(ga, [0, 0], [m, k]), sb, acc, out=acc)
        self.store_global(gc, acc, [0, 0])


# (M, N, K, warps, dtype): 4 warps of 16 or 32 rows each, 8 warps (two warpgroups), N = 8 and 16
CASES = [
    (64, 8, 16, 4, float16),
    (128, 16, 64, 4, float16),
    (256, 16, 128, 8, bfloat16),
    (128, 8, 32, 8, float16),
]


def _operands(m, n, k, dtype):
    rng = np.random.default_rng()
    cast = np.float16 if dtype is float16 else np.float32
    a = rng.standard_normal((m, k)).astype(cast)
    b = rng.standard_normal((k, n)).astype(cast)
    c = rng.standard_normal((m, n)).astype(np.float32)
    return a, b, c


@pytest.mark.parametrize(("m", "n", "k", "warps", "dtype"), CASES)
def test_the_interpreter_multiplies_b_from_shared_memory(m, n, k, warps, dtype):
    a, b, c0 = _operands(m, n, k, float16)  # the interpreter takes float16 arrays (bf16: through torch below)
    if dtype is bfloat16:
        pytest.importorskip("torch")
        import torch

        a, b = (torch.from_numpy(t.astype(np.float32)).to(torch.bfloat16) for t in (a, b))
        c = torch.from_numpy(c0.copy())
        anybit.interpret(SharedDot(m, n, k, warps, dtype), a, b, c)
        expected = a.double().numpy() @ b.double().numpy() + c0
        np.testing.assert_allclose(c.numpy(), expected, rtol=1e-5, atol=1e-4)
        return
    c = c0.copy()
    anybit.interpret(SharedDot(m, n, k, warps, dtype), a, b, c)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64) + c0, rtol=1e-5, atol=1e-4)


def test_it_compiles_to_wgmma_with_a_from_registers():
    from anybit.runtime import compiler

    program = SharedDot(128, 16, 64, 4).program(None, None, None)
    source = compiler.generate_source(program, "sm_90a").source
    assert source.count("wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16") == 2 * 4  # 2 tiles × 4 k-steps
    assert "wgmma.fence.sync.aligned" in source and "wgmma.wait_group.sync.aligned 0" in source
    assert "mma.sync" not in source
    compiled = anybit.compile(SharedDot(128, 16, 64, 4), None, None, None, arch="sm_90a")
    assert compiled.resources.stack_frame_bytes == 0


def test_bad_operands_are_named():
    with pytest.raises(VerificationError, match="warps a multiple of 4"):
        SharedDot(64, 8, 16, 2).program(None, None, None)
    with pytest.raises(VerificationError, match="core-matrix form"):
        SharedDot(64, 8, 16, 4, layout=shared_row_major(2, 8, 8)).program(None, None, None)

    class WrongShape(anybit.Script):
        def __call__(self, a: anybit.ptr(float16)):
            self.attrs.blocks = [1]
            self.attrs.warps = 4
            x = self.register_tensor(float16, [64, 16], init=0.0)
            sb = self.shared_tensor(float16, [16, 8])
            self.dot(x, sb, self.register_tensor(float32, [64, 8], init=0.0))

    with pytest.raises(KernelDefinitionError, match=r"b \[K/8, 8, N\] in shared memory"):
        WrongShape().program(None)


@pytest.mark.gpu
@pytest.mark.parametrize(("m", "n", "k", "warps", "dtype"), CASES)
def test_b_from_shared_memory_on_the_gpu(m, n, k, warps, dtype):
    torch = _cuda_torch()
    act = torch.float16 if dtype is float16 else torch.bfloat16
    a = torch.randn(m, k, device="cuda").to(act)
    b = torch.randn(k, n, device="cuda").to(act)
    c0 = torch.randn(m, n, device="cuda")
    c = c0.clone()
    SharedDot(m, n, k, warps, dtype)(a, b, c)
    expected = a.double() @ b.double() + c0.double()
    torch.testing.assert_close(c.double(), expected, rtol=1e-5, atol=1e-4)


def _cuda_torch():
    """torch, where a GPU is visible (else the test is skipped)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    return torch
