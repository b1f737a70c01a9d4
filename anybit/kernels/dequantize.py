"""The dequantize kernel for prefill: a packed weight → the [N, K] weight in the activation dtype.

For M > 16 the matmul is compute-bound, so the weight is decoded once and handed to cuBLAS (digest §5.5).
Each warp reads one warp tile of the packed layout with vector loads (the same bytes, layout and ``view`` as
the decode kernel), casts to the activation dtype, subtracts the zero row and multiplies by the scale row,
and stores the tile into a transposed view of the output (the tile is a [KC, 8·NT] piece of W^T).

Precision: ``(q − z)`` is exact in float16/bfloat16 (integers below 256), and the product of two float16
(or two bfloat16) values is exact in float32, so one multiply in the activation dtype rounds exactly once:
the result equals ``round((q − z) · s)`` computed in float32.
"""

from __future__ import annotations

import torch

import anybit
from anybit.dtypes import uint8
from anybit.kernels.layout import PackedLayout


class DequantizeWeight(anybit.Script):
    """out [N, K] = (decode(W) − zeros) · scales, from a packed weight; one k-chunk of W warp tiles per block.

    Parameters
    ----------
    layout
        The packed layout (its type, k_chunk, n_per_warp and per-channel flag; N and K are run-time).
    act_dtype
        torch.float16 or torch.bfloat16 (or the anybit type).
    has_zeros
        Whether ``zeros`` is read (otherwise pass any act-dtype tensor).
    warps
        Warp tiles per block (adjacent along N); N must be a multiple of warps · n_per_warp.
    """

    def __init__(
        self,
        layout: PackedLayout,
        act_dtype: torch.dtype | anybit.DataType,
        *,
        has_zeros: bool = False,
        warps: int = 4,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.act = anybit.dtype(act_dtype)
        self.has_zeros = has_zeros
        self.warps = warps

    @property
    def block_n(self) -> int:
        """Output rows (weight rows n) per block: warps · n_per_warp."""
        return self.warps * self.layout.n_per_warp

    def __call__(
        self,
        weight: anybit.ptr(anybit.uint8),
        scales: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        zeros: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        out: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        n: anybit.int32,
        k: anybit.int32,
    ):
        pl, act, warps = self.layout, self.act, self.warps
        kc, bn = pl.k_chunk, self.block_n
        self.attrs.blocks = [k // kc, n // bn]
        self.attrs.warps = warps
        self.assume_divisible(k, kc)
        self.assume_divisible(n, bn)
        group_rows = 1 if pl.per_channel else k // pl.group_size
        gw = self.global_view(weight, uint8, [k // kc, n // pl.n_per_warp, pl.tile_bytes])
        gs = self.global_view(scales, act, [group_rows, n])
        gz = self.global_view(zeros, act, [group_rows, n])
        # W^T [K, N] over the row-major [N, K] output: tiles are stored as they sit in registers.
        gout = self.global_view(out, act, [k, n], strides=[1, k])
        chunk = self.blockIdx.x
        n0 = self.blockIdx.y * bn
        row = 0 if pl.per_channel else chunk * kc // pl.group_size
        tiles = [warps, pl.tile_bytes]
        raw = self.load_global(
            gw, [chunk, self.blockIdx.y * warps, 0], tiles, layout=pl.block_byte_layout(warps)
        )
        codes = self.view(raw, dtype=pl.dtype, layout=pl.block_tile_layout(warps))
        values = self.cast(codes, act)
        if self.has_zeros:
            values = values - self.load_global(gz, [row, n0], [1, bn])
        values = values * self.load_global(gs, [row, n0], [1, bn])
        self.store_global(gout, values, [chunk * kc, n0])
