"""Small kernels shared by the front-end and pass tests (module level, so their source is readable)."""

import anybit
from anybit import float16, float32, int6, int32, uint8
from anybit.ir import cdiv


class MatmulInt6(anybit.Script):
    """The paper's Fig. 2: fp16 activations x int6 weights pre-packed per [BK, BN] tile as uint8."""

    def __init__(self, block_m=16, block_n=8, block_k=16, warps=1):
        super().__init__()
        self.block_m, self.block_n, self.block_k, self.warps = block_m, block_n, block_k, warps

    def __call__(
        self,
        a_ptr: anybit.ptr(float16),
        b_ptr: anybit.ptr(uint8),
        scale_ptr: anybit.ptr(float16),
        c_ptr: anybit.ptr(float16),
        m: int32,
        n: int,
        k: int,
    ):
        bm, bn, bk = self.block_m, self.block_n, self.block_k
        self.attrs.blocks = [cdiv(m, bm), n // bn]
        self.attrs.warps = self.warps
        bi, bj = self.blockIdx
        ga = self.global_view(a_ptr, float16, [m, k])
        gb = self.global_view(b_ptr, uint8, [k // bk, n // bn, bk * bn * 6 // 8])
        gs = self.global_view(scale_ptr, float16, [1, n])
        gc = self.global_view(c_ptr, float16, [m, n])
        acc = self.register_tensor(float32, [bm, bn], init=0)
        for kk in self.range(k // bk, unroll=4):
            a = self.load_global(ga, [bi * bm, kk * bk], [bm, bk])
            packed = self.load_global(gb, [kk, bj, 0], [bk * bn * 6 // 8])
            b = self.view(packed, int6, shape=[bk, bn])
            acc = self.dot(a, self.cast(b, float16), acc)
        scale = self.load_global(gs, [0, bj * bn], [1, bn])
        out = self.cast(acc, float16) * scale
        self.store_global(gc, out, [bi * bm, bj * bn])


class Elementwise(anybit.Script):
    """out = exp(x) * 2 + x over tiles of a vector."""

    def __call__(self, x_ptr: anybit.ptr(float32), out_ptr: anybit.ptr(float32), n: int32, tile: int):
        self.attrs.blocks = [cdiv(n, tile)]
        self.attrs.warps = 2
        gx = self.global_view(x_ptr, float32, [n])
        go = self.global_view(out_ptr, float32, [n])
        x = self.load_global(gx, [self.blockIdx.x * tile], [tile])
        y = self.exp(x) * 2.0 + x
        self.store_global(go, y, [self.blockIdx.x * tile])
