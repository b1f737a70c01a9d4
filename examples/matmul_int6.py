"""The paper's running example: fp16 activations × low-bit weights (int6 by default, any 1-8-bit type).

The weight W [K, N] of type ``wtype`` (n bits) is pre-packed per [BK, BN] tile into uint8 bytes so that
each thread's bits are contiguous (digest §4.3): in the tensor-core B layout every thread holds 8 weights =
n bytes, laid out as uint8 ``local(n / g).spatial(32).local(g)`` with g = gcd(n, 16). The packing step is
itself an anybit program (:class:`PackWeight`): it loads each natural tile in the B layout and stores the
bytes with ``view``. The kernel loads the bytes as uint8, ``view``s them back as ``wtype`` in the B layout,
``cast``s to f16, scales per output column and accumulates with ``dot``.

Run: ``python examples/matmul_int6.py``.
"""

from __future__ import annotations

import math

import numpy as np

import anybit
from anybit.layout import local
from anybit.layout.mma import MMA_M16N8_C, MMA_M16N8K16_F16_A, MMA_M16N8K16_F16_B

BM, BN, BK = 16, 8, 32
A_LAYOUT = local(1, 2) * MMA_M16N8K16_F16_A  # [16, 32]: two k-steps of the m16n8k16 A operand
B_LAYOUT = local(2, 1) * MMA_M16N8K16_F16_B  # [32, 8]: 8 weights per thread


def byte_layout(nbits: int):
    """The uint8 layout with the same bits per thread as ``B_LAYOUT`` holding ``nbits``-bit weights."""
    per_thread = B_LAYOUT.local_size * nbits // 8
    inner = math.gcd(per_thread, 16)
    return local(per_thread // inner).spatial(32).local(inner)


class PackWeight(anybit.Script):
    """Re-lay a packed [K, N] weight into per-tile bytes [K/BK, N/BN, BK·BN·n/8] (one block per tile)."""

    def __init__(self, wtype: anybit.DataType) -> None:
        super().__init__()
        self.wtype = wtype

    def __call__(
        self, w: anybit.ptr(anybit.uint8), out: anybit.ptr(anybit.uint8), k: anybit.int32, n: anybit.int32
    ):
        self.attrs.blocks = [k // BK, n // BN]
        self.attrs.warps = 1
        tile_bytes = BK * BN * self.wtype.nbits // 8
        gw = self.global_view(w, self.wtype, [k, n])
        gout = self.global_view(out, anybit.uint8, [k // BK, n // BN, tile_bytes])
        tile = self.load_global(gw, [self.blockIdx.x * BK, self.blockIdx.y * BN], [BK, BN], layout=B_LAYOUT)
        as_bytes = self.view(tile, dtype=anybit.uint8, layout=byte_layout(self.wtype.nbits))
        self.store_global(gout, as_bytes, [self.blockIdx.x, self.blockIdx.y, 0])


class MatmulLowBit(anybit.Script):
    """C [M, N] = A [M, K] @ (dequantized W [K, N] · scale [N]), fp16 in and out, f32 accumulation."""

    def __init__(self, wtype: anybit.DataType) -> None:
        super().__init__()
        self.wtype = wtype

    def __call__(
        self,
        a: anybit.ptr(anybit.float16),
        b: anybit.ptr(anybit.uint8),
        scale: anybit.ptr(anybit.float16),
        c: anybit.ptr(anybit.float16),
        m: anybit.int32,
        n: anybit.int32,
        k: anybit.int32,
    ):
        self.attrs.blocks = [(m + BM - 1) // BM, n // BN]
        self.attrs.warps = 1
        tile_bytes = BK * BN * self.wtype.nbits // 8
        ga = self.global_view(a, anybit.float16, [m, k])
        gb = self.global_view(b, anybit.uint8, [k // BK, n // BN, tile_bytes])
        gs = self.global_view(scale, anybit.float16, [1, n])
        gc = self.global_view(c, anybit.float16, [m, n])
        m0 = self.blockIdx.x * BM
        column = self.blockIdx.y
        scales = self.load_global(gs, [0, column * BN], [1, BN], layout=B_LAYOUT.reduce([0], keepdims=True))
        acc = self.register_tensor(anybit.float32, [BM, BN], layout=MMA_M16N8_C, init=0.0)
        for step in self.range(k // BK):
            tile_a = self.load_global(ga, [m0, step * BK], [BM, BK], layout=A_LAYOUT)
            raw = self.load_global(gb, [step, column, 0], [tile_bytes], layout=byte_layout(self.wtype.nbits))
            weights = self.view(raw, dtype=self.wtype, layout=B_LAYOUT)
            scaled = self.cast(weights, anybit.float16) * scales
            self.dot(tile_a, scaled, acc, out=acc)
        self.store_global(gc, self.cast(acc, anybit.float16), [m0, column * BN])


def random_weight(wtype: anybit.DataType, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random codes of ``wtype``, shape [k, n]; codes of inf/NaN or of magnitudes above 64 (float8) become 0,
    so that the fp16 output cannot overflow."""
    codes = rng.integers(0, 1 << wtype.nbits, (k, n)).astype(np.uint8)
    values = anybit.dtypes.decode(codes, wtype)
    keep = np.isfinite(values) & (np.abs(np.nan_to_num(values)) <= 64)
    return np.where(keep, codes, 0).astype(np.uint8)


def run(wtype: anybit.DataType, m: int, n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pack a random weight and multiply on the interpreter; return (result, float64 reference)."""
    rng = np.random.default_rng(seed)
    codes = random_weight(wtype, k, n, rng)
    natural = anybit.dtypes.pack(codes, wtype)
    tiled = np.full((k // BK) * (n // BN) * BK * BN * wtype.nbits // 8, 0xEE, dtype=np.uint8)
    anybit.interpret(PackWeight(wtype), natural, tiled, k, n)
    weight = anybit.dtypes.decode(codes, wtype)
    scale = ((rng.random(n) + 0.5) / max(1.0, float(np.abs(weight).max()))).astype(np.float16)
    a = rng.standard_normal((m, k)).astype(np.float16)
    c = np.full((m, n), np.nan, dtype=np.float16)
    anybit.interpret(MatmulLowBit(wtype), a, tiled, scale, c, m, n, k)
    reference = a.astype(np.float64) @ (weight * scale.astype(np.float64))
    return c, reference


def main() -> None:
    for wtype in (anybit.int6, anybit.uint4, anybit.float4_e2m1, anybit.int3):
        result, reference = run(wtype, 20, 16, 64)
        error = np.abs(result.astype(np.float64) - reference)
        print(
            f"matmul f16 x {wtype.name} 20x16x64: max abs error {error.max():.3g}, "
            f"relative error {np.linalg.norm(error) / np.linalg.norm(reference):.3g}"
        )


if __name__ == "__main__":
    main()
