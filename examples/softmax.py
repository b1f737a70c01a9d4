"""Row softmax over float32 with reductions; ragged row length: columns past ``n`` load as -inf (masked by the
bounds check of ``load_global``), so they add exp(-inf) = 0 to the sums and are never stored.

Run: ``python examples/softmax.py``.
"""

from __future__ import annotations

import numpy as np

import anybit
from anybit.layout import spatial


class Softmax(anybit.Script):
    """Each block normalises 4 rows; a row of up to ``block_n`` columns is spread over one warp."""

    def __init__(self, block_n: int = 64) -> None:
        super().__init__()
        self.block_n = block_n

    def __call__(
        self, x: anybit.ptr(anybit.float32), y: anybit.ptr(anybit.float32), m: anybit.int32, n: anybit.int32
    ):
        self.attrs.blocks = [(m + 3) // 4]
        self.attrs.warps = 4
        layout = spatial(4, 32).local(1, self.block_n // 32)
        gx = self.global_view(x, anybit.float32, [m, n])
        gy = self.global_view(y, anybit.float32, [m, n])
        row = self.blockIdx.x * 4
        values = self.load_global(gx, [row, 0], [4, self.block_n], layout=layout, other=float("-inf"))
        shifted = values - self.max(values, 1, keepdim=True)
        numerators = self.exp(shifted)
        self.store_global(gy, numerators / self.sum(numerators, 1, keepdim=True), [row, 0])


def run(m: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Softmax of a random [m, n] matrix on the interpreter; return (result, float64 reference)."""
    x = np.random.default_rng(seed).standard_normal((m, n)).astype(np.float32) * 3
    y = np.full((m, n), np.nan, dtype=np.float32)
    block_n = max(32, 1 << (n - 1).bit_length())
    anybit.interpret(Softmax(block_n), x, y, m, n)
    wide = x.astype(np.float64)
    reference = np.exp(wide - wide.max(1, keepdims=True))
    return y, reference / reference.sum(1, keepdims=True)


def main() -> None:
    for m, n in ((8, 64), (13, 50)):
        result, reference = run(m, n)
        error = np.abs(result - reference)
        print(
            f"softmax {m}x{n}: max abs error {error.max():.3g}, "
            f"relative error {np.linalg.norm(error) / np.linalg.norm(reference):.3g}"
        )


if __name__ == "__main__":
    main()
