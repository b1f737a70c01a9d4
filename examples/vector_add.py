"""Vector addition ``z = x + y`` over float16, with a ragged last block handled by bounds checks.

Run: ``python examples/vector_add.py`` (CPU interpreter; no GPU needed).
"""

from __future__ import annotations

import numpy as np

import anybit
from anybit.layout import spatial


class VectorAdd(anybit.Script):
    """One block adds ``block_size`` elements: each of 128 threads holds ``block_size / 128`` of them."""

    def __init__(self, block_size: int = 512) -> None:
        super().__init__()
        self.block_size = block_size

    def __call__(
        self,
        x: anybit.ptr(anybit.float16),
        y: anybit.ptr(anybit.float16),
        z: anybit.ptr(anybit.float16),
        n: anybit.int32,
    ):
        self.attrs.blocks = [(n + self.block_size - 1) // self.block_size]
        self.attrs.warps = 4
        layout = spatial(128).local(self.block_size // 128)
        gx = self.global_view(x, anybit.float16, [n])
        gy = self.global_view(y, anybit.float16, [n])
        gz = self.global_view(z, anybit.float16, [n])
        start = self.blockIdx.x * self.block_size
        a = self.load_global(gx, [start], [self.block_size], layout=layout)
        b = self.load_global(gy, [start], [self.block_size], layout=layout)
        self.store_global(gz, a + b, [start])


def run(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Add two random vectors of length ``n`` on the interpreter; return (result, float64 reference)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float16)
    y = rng.standard_normal(n).astype(np.float16)
    z = np.full(n, np.nan, dtype=np.float16)  # poisoned: every element must be written
    anybit.interpret(VectorAdd(), x, y, z, n)
    return z, x.astype(np.float64) + y.astype(np.float64)


def main() -> None:
    for n in (1000, 4096):
        result, reference = run(n)
        error = np.abs(result.astype(np.float64) - reference)
        print(
            f"vector_add n={n}: max abs error {error.max():.3g}, "
            f"relative error {np.linalg.norm(error) / np.linalg.norm(reference):.3g}"
        )


if __name__ == "__main__":
    main()
