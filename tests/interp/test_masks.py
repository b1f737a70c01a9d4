"""Explicit masks on loads and stores, written through the front end and run on the interpreter."""

import numpy as np

import anybit
from anybit import boolean, float32, int32


class MaskedCopy(anybit.Script):
    """y[i] = x[i] where keep[i], else y keeps its value; masked-off loads read ``other``."""

    def __call__(
        self,
        x: anybit.ptr(float32),
        keep: anybit.ptr(boolean),
        y: anybit.ptr(float32),
        z: anybit.ptr(float32),
        n: int32,
    ):
        self.attrs.blocks = [anybit.ir.cdiv(n, 64)]
        self.attrs.warps = 1
        start = self.blockIdx.x * 64
        gx, gy, gz = (self.global_view(p, float32, [n]) for p in (x, y, z))
        mask = self.load_global(self.global_view(keep, boolean, [n]), [start], [64])
        values = self.load_global(gx, [start], [64], mask=mask, other=-7.0)
        self.store_global(gy, values, [start], mask=mask)
        self.store_global(gz, values, [start])


def test_masked_loads_read_other_and_masked_stores_skip():
    rng = np.random.default_rng()
    n = 150  # ragged: the last block is partly out of bounds as well
    x = rng.standard_normal(n).astype(np.float32)
    keep = rng.random(n) < 0.5
    y = np.full(n, np.nan, dtype=np.float32)
    z = np.full(n, np.nan, dtype=np.float32)
    anybit.interpret(MaskedCopy(), x, keep, y, z, n)
    np.testing.assert_array_equal(y[keep], x[keep])
    assert np.isnan(y[~keep]).all()  # masked stores wrote nothing
    np.testing.assert_array_equal(z, np.where(keep, x, np.float32(-7.0)))
