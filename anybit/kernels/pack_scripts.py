"""The VM programs that pack natural weight codes into the packed layout and back (one warp per warp tile).

Packing loads the codes of one warp tile of W^T (a transposed, strided view of the [N, K] codes) straight
into the stored code layout (the tensor-core layout, pair-interleaved for 2- and 4-bit types and 1-bit
planes), narrows each code to ``uint<b>`` (the bits are the code, whatever the weight type: a float's or a
signed int's bits are its code), ``view``s the thread's bits as bytes in the byte layout and stores them.
Unpacking is the same in reverse. A planar layout runs the programs once per plane
(:mod:`anybit.kernels.packing`), each on a ``plane=True`` tile; a top plane whose codes' bits are spread
(:attr:`~anybit.kernels.PackedLayout.top_plane_stride`) goes through ``uint1`` [..., 2] in the spread bit
layout (:func:`~anybit.kernels.layout.spread_bits_layout`), the layout the kernels' casts read it in.
"""

from __future__ import annotations

import functools

import anybit
from anybit.dtypes import DataType, uint1, uint8
from anybit.kernels.layout import PackedLayout, spread_bits_layout
from anybit.layout import unsqueeze


def _bits_type(nbits: int) -> DataType:
    return anybit.dtype(f"uint{nbits}")


class _TileProgram(anybit.Script):
    """A packing program's tile: one warp tile of ``nbits``-bit codes (``plane``: one plane of a planar
    layout; ``stride`` > 1: a 2-bit top plane with each code's bits that far apart in its word)."""

    def __init__(
        self,
        nbits: int,
        k_chunk: int,
        n_per_warp: int,
        operand: str = "b",
        plane: bool = False,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if stride != 1 and (nbits != 2 or not plane):
            raise ValueError(f"a bit stride spreads a 2-bit plane's codes, got {nbits} bits, plane={plane}")
        self.stride = stride
        self.tile = PackedLayout(
            _bits_type(nbits),
            n_per_warp,
            k_chunk,
            k_chunk,
            k_chunk,
            n_per_warp,
            k_chunk * n_per_warp * nbits // 256,
            operand,
            plane=plane,  # a plane's 1-bit codes are pair-interleaved (PackedLayout.interleaved)
        )


class PackWeight(_TileProgram):
    """codes uint8 [N, K] → packed bytes [K/KC, N/(8·NT), 32·bpt]; grid = one 1-warp block per warp tile."""

    def __call__(self, codes: anybit.ptr(uint8), packed: anybit.ptr(uint8), n: anybit.int32, k: anybit.int32):
        tile = self.tile
        kc, npw = tile.k_chunk, tile.n_per_warp
        self.attrs.blocks = [k // kc, n // npw]
        self.attrs.warps = 1
        # W^T [K, N] over the row-major [N, K] codes: the B operand without a transpose pass.
        gcodes = self.global_view(codes, uint8, [k, n], strides=[1, k])
        gpacked = self.global_view(packed, uint8, [k // kc, n // npw, tile.tile_bytes])
        chunk, column = self.blockIdx.x, self.blockIdx.y
        natural = self.load_global(gcodes, [chunk * kc, column * npw], [kc, npw], layout=tile.code_layout)
        if self.stride > 1:  # each code's two bits [..., 2] in the spread layout
            spread = spread_bits_layout(tile.code_layout, 2, self.stride)
            column_codes = self.view(natural, layout=unsqueeze(tile.code_layout, 2))
            which = self.index([kc, npw, 2], 2, layout=spread)
            bits = self.cast(self.where(which < 1, column_codes & 1, column_codes >> 1), uint1)
        else:
            bits = natural if tile.nbits == 8 else self.cast(natural, tile.dtype)
        as_bytes = self.view(bits, dtype=uint8, layout=tile.byte_layout)
        self.store_global(gpacked, as_bytes, [chunk, column, 0])


class UnpackWeight(_TileProgram):
    """The inverse of :class:`PackWeight`: packed bytes → codes uint8 [N, K]."""

    def __call__(self, packed: anybit.ptr(uint8), codes: anybit.ptr(uint8), n: anybit.int32, k: anybit.int32):
        tile = self.tile
        kc, npw = tile.k_chunk, tile.n_per_warp
        self.attrs.blocks = [k // kc, n // npw]
        self.attrs.warps = 1
        gcodes = self.global_view(codes, uint8, [k, n], strides=[1, k])
        gpacked = self.global_view(packed, uint8, [k // kc, n // npw, tile.tile_bytes])
        chunk, column = self.blockIdx.x, self.blockIdx.y
        as_bytes = self.load_global(gpacked, [chunk, column, 0], [tile.tile_bytes], layout=tile.byte_layout)
        if self.stride > 1:  # the spread bits [..., 2] summed back into codes
            spread = spread_bits_layout(tile.code_layout, 2, self.stride)
            bits = self.cast(self.view(as_bytes, dtype=uint1, layout=spread), uint8)
            which = self.index([kc, npw, 2], 2, layout=spread)
            natural = self.sum(self.where(which < 1, bits, bits << 1), 2)
        else:
            bits = self.view(as_bytes, dtype=tile.dtype, layout=tile.code_layout)
            natural = bits if tile.nbits == 8 else self.cast(bits, uint8)
        self.store_global(gcodes, natural, [chunk * kc, column * npw])


@functools.cache
def pack_script(
    nbits: int, k_chunk: int, n_per_warp: int, operand: str = "b", plane: bool = False, stride: int = 1
) -> PackWeight:
    """The (cached) packing program for one tile shape and operand (``plane``: one plane of a planar layout,
    :attr:`~anybit.kernels.PackedLayout.plane`; ``stride``: its top plane's bit spacing)."""
    return PackWeight(nbits, k_chunk, n_per_warp, operand, plane, stride)


@functools.cache
def unpack_script(
    nbits: int, k_chunk: int, n_per_warp: int, operand: str = "b", plane: bool = False, stride: int = 1
) -> UnpackWeight:
    """The (cached) unpacking program for one tile shape and operand (``plane``, ``stride``: as for
    pack_script)."""
    return UnpackWeight(nbits, k_chunk, n_per_warp, operand, plane, stride)
