"""fp16 matmul C = A @ B on tensor cores (``dot``, f32 accumulation) with a multi-stage ``copy_async``
pipeline through swizzled shared memory and explicit ``sync``.

The tile sizes, warps and pipeline depth are compile-time parameters: the defaults are small enough for the
CPU interpreter; ``MatmulF16.FAST`` is the configuration the GPU benchmark runs at 4096³.

Run: ``python examples/matmul_f16.py``.
"""

from __future__ import annotations

import numpy as np

import anybit
from anybit.ir import cdiv
from anybit.layout import shared_swizzled


class MatmulF16(anybit.Script):
    """Each block computes a ``block_m`` × ``block_n`` tile of C over ``warps`` warps.

    Pipeline: ``stages`` shared-memory buffers of A and B tiles; while the tensor cores work on one, the
    copies of the next ``stages - 1`` are in flight. Layouts of the register tiles are inferred from ``dot``
    (the mma.m16n8k16 operand layouts tiled over the warps).
    """

    FAST = {"block_m": 128, "block_n": 128, "block_k": 32, "warps": 8, "stages": 4}

    def __init__(
        self, block_m: int = 16, block_n: int = 8, block_k: int = 16, warps: int = 1, stages: int = 2
    ):
        super().__init__()
        if stages < 2:
            raise ValueError(f"expected stages >= 2 (one buffer computes while the next loads), got {stages}")
        self.block_m, self.block_n, self.block_k = block_m, block_n, block_k
        self.warps, self.stages = warps, stages

    def __call__(
        self,
        a: anybit.ptr(anybit.float16),
        b: anybit.ptr(anybit.float16),
        c: anybit.ptr(anybit.float16),
        m: anybit.int32,
        n: anybit.int32,
        k: anybit.int32,
    ):
        bm, bn, bk, stages = self.block_m, self.block_n, self.block_k, self.stages
        self.attrs.blocks = [cdiv(m, bm), cdiv(n, bn)]
        self.attrs.warps = self.warps
        # Rows of A and B start 16-byte aligned when K and N are multiples of 8 halves: 16-byte cp.async.
        self.assume_divisible(k, 8)
        self.assume_divisible(n, 8)
        ga = self.global_view(a, anybit.float16, [m, k])
        gb = self.global_view(b, anybit.float16, [k, n])
        gc = self.global_view(c, anybit.float16, [m, n])
        sa = self.shared_tensor(
            anybit.float16, [stages, bm, bk], layout=shared_swizzled([bm, bk], 2).prepend_dim(stages)
        )
        sb = self.shared_tensor(
            anybit.float16, [stages, bk, bn], layout=shared_swizzled([bk, bn], 2).prepend_dim(stages)
        )
        m0 = self.blockIdx.x * bm
        n0 = self.blockIdx.y * bn
        acc = self.register_tensor(anybit.float32, [bm, bn], init=0.0)
        for stage in range(stages - 1):
            self.copy_async(ga, sa[stage], [m0, stage * bk])
            self.copy_async(gb, sb[stage], [stage * bk, n0])
            self.copy_async_commit_group()
        for step in self.range(cdiv(k, bk)):
            # Wait for this step's stage; the sync also tells every warp that the stage read in the previous
            # step is free, so the prefetch below may overwrite it. Past the end of K copies only zero-fill.
            self.copy_async_wait_group(stages - 2)
            self.sync()
            ahead = step + stages - 1
            self.copy_async(ga, sa[ahead % stages], [m0, ahead * bk])
            self.copy_async(gb, sb[ahead % stages], [ahead * bk, n0])
            self.copy_async_commit_group()
            tile_a = self.load_shared(sa[step % stages])
            tile_b = self.load_shared(sb[step % stages])
            self.dot(tile_a, tile_b, acc, out=acc)
        self.store_global(gc, self.cast(acc, anybit.float16), [m0, n0])


def run(m: int, n: int, k: int, seed: int = 0, **config) -> tuple[np.ndarray, np.ndarray]:
    """Multiply random fp16 matrices on the interpreter; return (result, float64 reference).

    ``n`` and ``k`` must be multiples of 8 (the kernel assumes it for 16-byte copies); ``m`` is free.
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((k, n)).astype(np.float16)
    c = np.full((m, n), np.nan, dtype=np.float16)
    anybit.interpret(MatmulF16(**config), a, b, c, m, n, k)
    return c, a.astype(np.float64) @ b.astype(np.float64)


def main() -> None:
    configs = [{}, {"block_m": 32, "block_n": 32, "block_k": 32, "warps": 4, "stages": 3}]
    for (m, n, k), config in zip(((32, 16, 64), (40, 40, 72)), configs, strict=True):
        result, reference = run(m, n, k, **config)
        error = np.abs(result.astype(np.float64) - reference)
        print(
            f"matmul_f16 {m}x{n}x{k} {config or 'default tiles'}: max abs error {error.max():.3g}, "
            f"relative error {np.linalg.norm(error) / np.linalg.norm(reference):.3g}"
        )


if __name__ == "__main__":
    main()
