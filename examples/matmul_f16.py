"""fp16 matmul C = A @ B with tensor-core ``dot`` (f32 accumulation), a two-stage ``copy_async`` pipeline
through shared memory, and explicit ``sync``.

Run: ``python examples/matmul_f16.py``.
"""

from __future__ import annotations

import numpy as np

import anybit
from anybit.layout.mma import MMA_M16N8_C, MMA_M16N8K16_F16_A, MMA_M16N8K16_F16_B

BM, BN, BK = 16, 8, 16


class MatmulF16(anybit.Script):
    """One warp computes a BM×BN tile of C; A and B tiles stream through two shared-memory stages."""

    def __call__(
        self,
        a: anybit.ptr(anybit.float16),
        b: anybit.ptr(anybit.float16),
        c: anybit.ptr(anybit.float16),
        m: anybit.int32,
        n: anybit.int32,
        k: anybit.int32,
    ):
        self.attrs.blocks = [(m + BM - 1) // BM, (n + BN - 1) // BN]
        self.attrs.warps = 1
        ga = self.global_view(a, anybit.float16, [m, k])
        gb = self.global_view(b, anybit.float16, [k, n])
        gc = self.global_view(c, anybit.float16, [m, n])
        sa = self.shared_tensor(anybit.float16, [2, BM, BK])
        sb = self.shared_tensor(anybit.float16, [2, BK, BN])
        m0 = self.blockIdx.x * BM
        n0 = self.blockIdx.y * BN
        acc = self.register_tensor(anybit.float32, [BM, BN], layout=MMA_M16N8_C, init=0.0)
        self.copy_async(ga, sa[0], [m0, 0])
        self.copy_async(gb, sb[0], [0, n0])
        self.copy_async_commit_group()
        for step in self.range((k + BK - 1) // BK):
            # Prefetch the next stage (past the end of K it only zero-fills), then wait for this one.
            self.copy_async(ga, sa[(step + 1) % 2], [m0, (step + 1) * BK])
            self.copy_async(gb, sb[(step + 1) % 2], [(step + 1) * BK, n0])
            self.copy_async_commit_group()
            self.copy_async_wait_group(1)
            self.sync()
            tile_a = self.load_shared(sa[step % 2], layout=MMA_M16N8K16_F16_A)
            tile_b = self.load_shared(sb[step % 2], layout=MMA_M16N8K16_F16_B)
            self.dot(tile_a, tile_b, acc, out=acc)
            self.sync()
        self.store_global(gc, self.cast(acc, anybit.float16), [m0, n0])


def run(m: int, n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Multiply random fp16 matrices on the interpreter; return (result, float64 reference)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((k, n)).astype(np.float16)
    c = np.full((m, n), np.nan, dtype=np.float16)
    anybit.interpret(MatmulF16(), a, b, c, m, n, k)
    return c, a.astype(np.float64) @ b.astype(np.float64)


def main() -> None:
    for m, n, k in ((32, 16, 64), (20, 12, 40)):
        result, reference = run(m, n, k)
        error = np.abs(result.astype(np.float64) - reference)
        print(
            f"matmul_f16 {m}x{n}x{k}: max abs error {error.max():.3g}, "
            f"relative error {np.linalg.norm(error) / np.linalg.norm(reference):.3g}"
        )


if __name__ == "__main__":
    main()
