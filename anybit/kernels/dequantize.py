"""The dequantize kernel for prefill: a packed weight → the [N, K] weight in the activation dtype.

For M > 16 the matmul is compute-bound, so the weight is decoded once and handed to cuBLAS (digest §5.5).
The kernel only moves memory (it reads b/16 of what it writes), so it is written for bandwidth:

1. A block covers ``chunks`` consecutive k-chunks of ``warps`` adjacent warp tiles. It first issues every
   load (weight bytes with 16-byte vector loads where the packing allows, then the scale and zero rows), so
   several independent loads per thread are in flight at once.
2. Each chunk is decoded in the packed register layout (``view`` of the bytes in the tensor-core B layout,
   cast, ``− zeros``, ``· scales``), where a thread holds pairs of adjacent k of one row n. It is stored into
   a shared tile of W^T, [chunks · KC, warps · 8·NT], kept k-contiguous per row n with 8 elements of padding
   per row, which makes those 4-byte stores (or ``stmatrix``) bank-conflict free.
3. After one ``sync`` the tile is read back in a row-major layout where each thread holds 8 consecutive k of
   one row (16-byte shared loads) and written to the [N, K] output with 16-byte stores, 16 threads covering
   256 contiguous bytes of a row.

K need not be a multiple of ``chunks · KC``: the last block's surplus chunks read zeros and store nothing
(every global access is bounds-checked).

Precision: ``(q − z)`` is exact in float16/bfloat16 (integers below 256), and the product of two float16
(or two bfloat16) values is exact in float32, so one multiply in the activation dtype rounds exactly once:
the result equals ``round((q − z) · s)`` computed in float32.
"""

from __future__ import annotations

import math

import torch

import anybit
from anybit.dtypes import uint8
from anybit.ir import cdiv
from anybit.kernels.layout import WARP_THREADS, PackedLayout
from anybit.kernels.planes import decode_tile
from anybit.layout import RegisterLayout, local, shared_strided

# Elements of one 16-byte vector of float16/bfloat16.
VECTOR = 8
# Row padding of the shared tile (elements): keeps the rows 16-byte aligned and shifts consecutive rows by
# 4 banks, so the 8 rows n of a register-layout store hit distinct banks.
ROW_PADDING = 8
# Staged elements per block at most (chunks are halved until the tile fits): 32 KB of float16 plus padding.
MAX_STAGED = 16384
# k-chunks per block at most: 4 vector loads of 16 bytes in flight per thread for 4-bit weights.
MAX_CHUNKS = 4
# k of a row that one read-back tile covers at most: 16 threads × 8 k = 256 contiguous bytes.
READ_K = 128
# Elements per thread of one read-back tile at most (four 16-byte stores).
READ_ELEMENTS = 32


def default_chunks(layout: PackedLayout, warps: int) -> int:
    """The most k-chunks per block (4, 2 or 1) whose staged tile holds at most ``MAX_STAGED`` elements."""
    tile = layout.k_chunk * warps * layout.n_per_warp
    return next((c for c in (MAX_CHUNKS, 2, 1) if c * tile <= MAX_STAGED), 1)


def read_layout(k_extent: int, n_extent: int, threads: int) -> RegisterLayout:
    """Register layout of a [k_extent, n_extent] tile of W^T where each thread holds ``v`` consecutive k of
    one row n (v = 8 where the tile has that many elements per thread): k-vectors across consecutive
    threads, then rows n, then repeats over further rows. Coalesced, vectorised accesses of the [N, K] output.
    """
    per_thread = k_extent * n_extent // threads
    vector = math.gcd(VECTOR, per_thread, k_extent)
    threads_k = k_extent // vector
    threads_n = threads // threads_k
    assert threads_k * threads_n == threads and n_extent % threads_n == 0, (k_extent, n_extent, threads)
    return local(1, n_extent // threads_n).column_spatial(threads_k, threads_n).local(vector, 1)


class DequantizeWeight(anybit.Script):
    """out [N, K] = (decode(W) − zeros) · scales from a packed weight; ``chunks`` k-chunks of ``warps`` warp
    tiles per block, staged through shared memory for 16-byte global stores (see the module docstring).

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
    chunks
        k-chunks per block; default :func:`default_chunks`. K need only be a multiple of k_chunk.
    """

    def __init__(
        self,
        layout: PackedLayout,
        act_dtype: torch.dtype | anybit.DataType,
        *,
        has_zeros: bool = False,
        warps: int = 4,
        chunks: int | None = None,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.act = anybit.dtype(act_dtype)
        self.has_zeros = has_zeros
        self.warps = warps
        self.chunks = default_chunks(layout, warps) if chunks is None else chunks
        if self.chunks < 1:
            raise ValueError(f"expected chunks ≥ 1, got {self.chunks}")

    @property
    def block_n(self) -> int:
        """Output rows (weight rows n) per block: warps · n_per_warp."""
        return self.warps * self.layout.n_per_warp

    @property
    def block_k(self) -> int:
        """Output columns (k) per block: chunks · k_chunk."""
        return self.chunks * self.layout.k_chunk

    @property
    def read_shape(self) -> tuple[int, int]:
        """[k, n] of one read-back tile: up to ``READ_K`` k and ``READ_ELEMENTS`` elements per thread."""
        threads = WARP_THREADS * self.warps
        read_k = math.gcd(self.block_k, READ_K)
        read_n = min(self.block_n, max(1, READ_ELEMENTS * threads // read_k))
        return read_k, math.gcd(self.block_n, read_n)

    def __call__(
        self,
        weight: anybit.ptr(anybit.uint8),
        scales: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        zeros: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        out: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        n: anybit.int32,
        k: anybit.int32,
    ):
        pl, act, warps, chunks = self.layout, self.act, self.warps, self.chunks
        kc, bn, bk = pl.k_chunk, self.block_n, self.block_k
        self.attrs.blocks = [cdiv(k // kc, chunks), n // bn]
        self.attrs.warps = warps
        self.assume_divisible(k, kc)
        self.assume_divisible(n, bn)
        group_rows = 1 if pl.per_channel else k // pl.group_size
        gw = self.global_view(weight, uint8, [k // kc, n // pl.n_per_warp, pl.tile_bytes])
        gs = self.global_view(scales, act, [group_rows, n])
        gz = self.global_view(zeros, act, [group_rows, n])
        # W^T [K, N] over the row-major [N, K] output.
        gout = self.global_view(out, act, [k, n], strides=[1, k])
        staged = self.shared_tensor(act, [bk, bn], layout=shared_strided([bk, bn], [1, bk + ROW_PADDING]))
        first = self.blockIdx.x * chunks
        n0 = self.blockIdx.y * bn
        # A block's chunks share one scale row when a group spans them all (per-channel scales included).
        shared_row = pl.per_channel or pl.group_size % bk == 0
        # Every load first: chunks · bytes_per_thread / vector_bytes independent vector loads per thread
        # (per plane where the codes are stored as bit planes: each plane's bytes of the warp tiles).
        parts = ((pl, 0),)
        if pl.planar:
            parts = tuple(zip(pl.plane_layouts(), pl.plane_byte_offsets, strict=True))
        raws = []
        for c in range(chunks):
            raws.append(
                {
                    first_byte: self.load_global(
                        gw,
                        [first + c, self.blockIdx.y * warps, first_byte],
                        [warps, part.tile_bytes],
                        layout=part.block_byte_layout(warps),
                    )
                    for part, first_byte in parts
                }
            )
        zero_rows = []
        scale_rows = []
        for c in range(1 if shared_row else chunks):
            row = 0 if pl.per_channel else (first + c) * kc // pl.group_size
            if self.has_zeros:
                zero_row = self.load_global(gz, [row, n0], [1, bn])
                zero_rows.append(zero_row)
            scale_row = self.load_global(gs, [row, n0], [1, bn])
            scale_rows.append(scale_row)
        for c in range(chunks):
            r = 0 if shared_row else c
            zero = zero_rows[r] if self.has_zeros else None
            values = decode_tile(
                self, pl, warps, act, lambda part, first_byte, c=c: raws[c][first_byte], zero=zero
            )
            values = values * scale_rows[r]
            self.store_shared(staged, values, [c * kc, 0])
        self.sync()
        read_k, read_n = self.read_shape
        layout = read_layout(read_k, read_n, WARP_THREADS * warps)
        for i in range(bk // read_k):
            for j in range(bn // read_n):
                tile = self.load_shared(staged, [i * read_k, j * read_n], [read_k, read_n], layout=layout)
                self.store_global(gout, tile, [first * kc + i * read_k, n0 + j * read_n])
