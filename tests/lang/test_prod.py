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
