"""``self.prod``: the product over one dimension, as a Script writes it."""

from __future__ import annotations

import numpy as np

import anybit
from anybit.dtypes import float32


class PairProducts(anybit.Script):
    """out[i] = x[2i] · x[2i + 1] (a [64] vector viewed as [32, 2], reduced over the pairs)."""

    def __call__(self, x: anybit.ptr(float32), out: anybit.ptr(float32)):
        self.attrs.blocks = [1]
        self.attrs.warps = 1
        pairs = self.load_global(self.global_view(x, float32, [32, 2]), [0, 0], [32, 2])
        self.store_global(self.global_view(out, float32, [32]), self.prod(pairs, 1), [0])


def test_prod_over_pairs_on_the_interpreter():
    x = np.random.default_rng().standard_normal(64).astype(np.float32)
    out = np.full(32, np.nan, dtype=np.float32)
    anybit.interpret(PairProducts(), x, out)
    np.testing.assert_array_equal(out, x[0::2] * x[1::2])  # one rounding each, as float32 does it


class GatedRows(anybit.Script):
    """The fused gated projection's epilogue pattern: rows of 16 hold 8 gate rows then 8 up rows; out holds
    silu(gate) · up. A view with a new shape (layout inferred by reshaping), where, prod over the pair."""

    def __call__(self, x: anybit.ptr(float32), out: anybit.ptr(float32)):
        self.attrs.blocks = [1]
        self.attrs.warps = 4
        acc = self.load_global(self.global_view(x, float32, [64, 8]), [0, 0], [64, 8])
        grouped = self.view(acc, shape=[4, 2, 8, 8])
        silu = self.div(grouped, self.add(self.exp(self.neg(grouped)), 1.0))
        picked = self.where(self.index([4, 2, 8, 8], 1) == 0, silu, grouped)
        gated = self.view(self.prod(picked, 1), shape=[32, 8])
        self.store_global(self.global_view(out, float32, [32, 8]), gated, [0, 0])


def test_gated_rows_through_a_reshaping_view():
    x = np.random.default_rng().standard_normal((64, 8)).astype(np.float32)
    out = np.full((32, 8), np.nan, dtype=np.float32)
    anybit.interpret(GatedRows(), x, out)
    pairs = x.reshape(4, 2, 8, 8).astype(np.float64)
    gate, up = pairs[:, 0], pairs[:, 1]
    expected = (gate / (1 + np.exp(-gate)) * up).reshape(32, 8)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    from anybit.cuda import generate_cuda

    assert "__global__" in generate_cuda(GatedRows().program(None, None), arch="sm_90a").source
