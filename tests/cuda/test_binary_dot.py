"""``dot`` of uint1 operands: ``mma.m16n8k256`` with ``.and.popc`` (int32 sums of 0/1 products), on the
interpreter against numpy, compiled for sm_80 and sm_90a, and on the GPU bit for bit (skipped without one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cuda_support import requires_gpu, requires_nvrtc

import anybit
from anybit.dtypes import float32, int32, uint1


class BinaryDot(anybit.Script):
    """c [M, N] = a [M, K] @ b^T + 3 for 0/1 matrices stored one bit an element (b given as [N, K])."""

    def __init__(self, m: int, n: int, k: int, warps: int) -> None:
        super().__init__()
        self.m, self.n, self.k, self.warps = m, n, k, warps

    def __call__(self, a: anybit.ptr(anybit.uint8), b: anybit.ptr(anybit.uint8), c: anybit.ptr(anybit.int32)):
        m, n, k = self.m, self.n, self.k
        self.attrs.blocks = [1]
        self.attrs.warps = self.warps
        ga = self.global_view(a, uint1, [m, k])
        gb = self.global_view(b, uint1, [k, n], strides=[1, k])
        gc = self.global_view(c, int32, [m, n])
        acc = self.register_tensor(int32, [m, n], init=3)
        acc = self.dot(self.load_global(ga, [0, 0], [m, k]), self.load_global(gb, [0, 0], [k, n]), acc)
        self.store_global(gc, acc, [0, 0])


SHAPES = [(16, 8, 256, 1), (32, 16, 512, 2), (64, 24, 768, 4)]


def random_bits(rows: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, torch.Tensor]:
    """A random 0/1 matrix and its bits packed along K (element k at bit k % 8 of byte k // 8)."""
    bits = rng.integers(0, 2, (rows, k))
    return bits, torch.from_numpy(np.packbits(bits, axis=1, bitorder="little"))


def run(shape, device: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    m, n, k, warps = shape
    a, packed_a = random_bits(m, k, rng)
    b, packed_b = random_bits(n, k, rng)
    c = torch.full((m, n), -(2**31), dtype=torch.int32, device=device)  # poisoned
    kernel = BinaryDot(m, n, k, warps)
    if device == "cpu":
        anybit.interpret(kernel, packed_a, packed_b, c)
    else:
        kernel(packed_a.to(device), packed_b.to(device), c)
        torch.cuda.synchronize()
    return c.cpu().numpy(), a @ b.T + 3


@pytest.mark.parametrize("shape", SHAPES)
def test_binary_dot_on_the_interpreter(shape):
    got, expected = run(shape, "cpu", np.random.default_rng())
    np.testing.assert_array_equal(got, expected)


class FloatAccumulator(BinaryDot):
    """The same dot with a float32 accumulator, which the tensor cores do not have for integer operands."""

    def __call__(
        self, a: anybit.ptr(anybit.uint8), b: anybit.ptr(anybit.uint8), c: anybit.ptr(anybit.float32)
    ):
        self.attrs.blocks = [1]
        self.attrs.warps = self.warps
        ga = self.global_view(a, uint1, [self.m, self.k])
        gb = self.global_view(b, uint1, [self.k, self.n], strides=[1, self.k])
        acc = self.register_tensor(float32, [self.m, self.n], init=0.0)
        acc = self.dot(
            self.load_global(ga, [0, 0], [self.m, self.k]),
            self.load_global(gb, [0, 0], [self.k, self.n]),
            acc,
        )
        self.store_global(self.global_view(c, float32, [self.m, self.n]), acc, [0, 0])


def test_binary_dot_refuses_a_float_accumulator_and_partial_tiles():
    rng = np.random.default_rng()
    _, a = random_bits(16, 256, rng)
    _, b = random_bits(8, 256, rng)
    with pytest.raises(Exception, match="int32 accumulator for uint1 operands"):
        anybit.interpret(FloatAccumulator(16, 8, 256, 1), a, b, torch.zeros(16, 8))
    _, a = random_bits(16, 128, rng)
    _, b = random_bits(8, 128, rng)
    with pytest.raises(Exception, match=r"multiples of 16, 8, 256 \(mma.m16n8k256.b1\)"):
        anybit.interpret(BinaryDot(16, 8, 128, 1), a, b, torch.zeros(16, 8, dtype=torch.int32))


@requires_nvrtc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_binary_dot_compiles_to_the_popcount_mma(arch):
    compiled = anybit.compile(BinaryDot(32, 16, 512, 2), None, None, None, arch=arch)
    assert "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc" in compiled.ptx
    assert not compiled.resources.spills


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("shape", SHAPES)
def test_binary_dot_on_the_gpu(shape):
    got, expected = run(shape, "cuda", np.random.default_rng())
    np.testing.assert_array_equal(got, expected)
