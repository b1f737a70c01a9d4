"""``view`` with both layouts given reinterprets the registers, even for a tile of the same shape: a square
register tile transposed for free (the transposed decode kernel's weight, W^T → W)."""

from __future__ import annotations

import torch

import anybit
from anybit.dtypes import float32
from anybit.layout import permute, spatial


class TransposeSquare(anybit.Script):
    """out = in^T for one [8, 8] float32 tile: loaded in one layout, viewed through its permutation."""

    def __call__(self, source: anybit.ptr(float32), out: anybit.ptr(float32)):
        self.attrs.blocks = [1]
        self.attrs.warps = 1
        layout = spatial(8, 4).local(1, 2)
        tile = self.load_global(self.global_view(source, float32, [8, 8]), [0, 0], [8, 8], layout=layout)
        transposed = self.view(tile, layout=permute(layout, (1, 0)))
        self.store_global(self.global_view(out, float32, [8, 8]), transposed, [0, 0])


def test_a_square_view_with_both_layouts_transposes():
    source = torch.randn(8, 8)
    out = torch.full((8, 8), float("nan"))
    anybit.interpret(TransposeSquare(), source, out)
    assert torch.equal(out, source.T)
