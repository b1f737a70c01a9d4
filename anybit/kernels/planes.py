"""A packed block tile's codes to weights, whole or from two bit planes (shared by the decode and the
dequantize kernels).

Codes of 3, 5 and 6 bits may be stored as two bit planes of 1, 2 and 4 bits (:attr:`PackedLayout.planes
<anybit.kernels.PackedLayout>`), each plane laid out as unsigned codes of its width are (2- and 4-bit planes
pair-interleaved, so are 1-bit planes): the two codes of every tensor-core pair then sit 16 bits apart in
one word of each plane, and one ``cast`` of both planes (``high=``) gathers each pair's bits with a shift
and a ``lop3`` per plane — no code straddles a byte or a word, as the same codes stored whole do. A top plane
whose codes' bits are spread (:attr:`PackedLayout.top_plane_stride`) is read as ``uint1`` [..., 2] in its
spread layout: one shift and one ``lop3`` a pair for its two bits.
"""

from __future__ import annotations

from collections.abc import Callable

import anybit
from anybit.dtypes import uint1
from anybit.kernels.layout import PackedLayout


def decode_tile(
    script: anybit.Script,
    layout: PackedLayout,
    warps: int,
    act: anybit.DataType,
    load_bytes: Callable[[PackedLayout, int], object],
    *,
    zero=None,
    exponent: int = 0,
    biased: bool = False,
):
    """The weights [KC, warps · n_per_warp] of one packed block tile in ``act``, in the tensor-core layout
    (:meth:`PackedLayout.block_tile_layout`).

    ``load_bytes(part, first_byte)``: the bytes [warps, part.tile_bytes] of the block tile's ``part`` — the
    layout itself (first byte 0) or one of its planes — in ``part.block_byte_layout(warps)``. ``zero``
    (optional, [1, warps · n_per_warp] in ``act``): zero points subtracted inside the conversion;
    ``exponent``: the weights times 2^exponent (see ``cast``), without zero points; ``biased``: the
    conversion's magic number left in (``cast(..., biased=True)``: whole integer codes, no zero points).
    """
    planes = {}
    if layout.planar:
        (low, high), (low_first, high_first) = layout.plane_layouts(), layout.plane_byte_offsets
        codes = script.view(load_bytes(low, low_first), dtype=low.dtype, layout=low.block_code_layout(warps))
        if layout.top_plane_stride > 1:  # each code's top bits [..., 2], spread where the cast puts them
            high_codes = script.view(
                load_bytes(high, high_first), dtype=uint1, layout=layout.top_plane_bits_layout(warps)
            )
        else:
            high_codes = script.view(
                load_bytes(high, high_first), dtype=high.dtype, layout=high.block_code_layout(warps)
            )
        planes = {"high": high_codes, "code_dtype": layout.dtype}
    else:
        codes = script.view(load_bytes(layout, 0), dtype=layout.dtype, layout=layout.block_code_layout(warps))
    weight_layout = layout.block_tile_layout(warps)
    if zero is not None:  # zero points are codes: subtracted inside the conversion, for free
        return script.cast(codes, act, subtract=zero, layout=weight_layout, **planes)
    if biased:
        return script.cast(codes, act, layout=weight_layout, biased=True, **planes)
    return script.cast(codes, act, layout=weight_layout, exponent=exponent, **planes)
