"""The binary route's view of the packed weights: which bits of each thread's words feed which rows and k of
the binary tensor cores (``mma.m16n8k256 .and.popc``), per code width.

The packed layouts (operand "a") give lane (g, t) of a warp rows g and g + 8 of each m16 tile and, each k16
step, k = 2t, 2t + 1, 2t + 8, 2t + 9 of both rows: every 32-bit word a lane loads holds codes of two rows
(g and g + 8: the row bit η) and, for 2-bit codes, two bits of each code (β). The binary mma's A operand
wants a word of one row a register: lane (g, t) holds rows g (registers 0, 2) and g + 8 (1, 3), 32 k each.
So each word W goes in twice, ``W & mask[0][β]`` as row g's register and ``W & mask[1][β]`` as row g + 8's
(the other row's bits cleared), and the k each bit of the word stands for (the same for both rows) is the
slot's k: x's bits are stored at those slots (:mod:`anybit.kernels.popc_activations`), every code bit
meeting the x bits of its own k. A warp takes two m16 tiles (32 rows, the mma's two row tiles), a chunk of
128 k (one scale group), ``nbits`` k-steps of 256 slots a chunk; a 2-bit code's two bits are two masks, so
two products (β = 0, 1) added as C₀ + 2·C₁.

:func:`popc_view` derives all of this from :attr:`PackedLayout.code_layout` and checks it (every assumption
above is asserted on the layout itself, so a changed packing fails here, not in a wrong product).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from anybit.dtypes import dtype as resolve_dtype
from anybit.kernels.layout import PackedLayout

#: Code widths the binary route reads (codes stored whole: 1 bit, or 2 bits pair-interleaved).
WIDTHS: tuple[int, ...] = (1, 2)
#: k of a chunk (one scale group) and rows of a warp (two m16 tiles).
CHUNK = 128
WARP_ROWS = 32
#: Slots (k of the binary mma) a k-step.
STEP_SLOTS = 256


@dataclass(frozen=True)
class PopcView:
    """How one warp's packed words of a chunk feed the binary mma (see the module docstring).

    Attributes
    ----------
    nbits
        Code width (1 or 2): the k-steps a chunk and the products (one a code bit) a step.
    masks
        [2, nbits] uint32: ``masks[η, β]`` keeps the bits of row g + 8·η's codes' bit β of every word.
    slot_k
        [nbits, 256] int: the k (within the chunk) slot s of k-step κ stands for: the mma's slot
        s = 128·h + 32·t + i takes bit i of word 2κ + h of lane (g, t)'s words of each m16 tile.
    """

    nbits: int
    masks: np.ndarray
    slot_k: np.ndarray
    #: ``masks[1] == masks[0] << row_shift``: row g + 8's bits sit ``row_shift`` above row g's.
    row_shift: int

    @property
    def words_per_tile(self) -> int:
        """32-bit words of one m16 tile a lane loads a chunk (its bytes / 4)."""
        return 2 * self.nbits


def check_popc_route(layout: PackedLayout) -> None:
    """That the binary route can read a weight packed as ``layout`` (a warp taking two of its m16 tiles); a
    clear error otherwise."""
    problems = []
    if layout.dtype.kind != "uint" or layout.nbits not in WIDTHS:
        problems.append(f"unsigned 1- or 2-bit codes (got {layout.dtype.name})")
    if layout.operand != "a" or layout.gated or layout.planar:
        problems.append("the default packing (operand 'a', not gated, codes whole)")
    if layout.k_chunk != CHUNK or layout.group_size != CHUNK:
        problems.append(
            f"scale groups of one chunk of {CHUNK} (group_size {layout.group_size}, k_chunk {layout.k_chunk})"
        )
    if layout.n_per_warp % WARP_ROWS:
        problems.append(f"warp tiles of a multiple of {WARP_ROWS} rows (got {layout.n_per_warp})")
    if problems:
        raise ValueError("the binary route takes " + "; ".join(problems))


@functools.lru_cache(maxsize=8)
def popc_view(nbits: int) -> PopcView:
    """The :class:`PopcView` of ``nbits``-bit codes, derived from the packed code layout of a 32-row warp
    tile (two m16 tiles: a route warp's part of any packed warp tile, its bytes contiguous in each lane)."""
    if nbits not in WIDTHS:
        raise ValueError(f"the binary route takes 1- or 2-bit codes, got {nbits} bits")
    bpt = WARP_ROWS * CHUNK * nbits // 8 // 32
    part = PackedLayout(resolve_dtype(f"uint{nbits}"), WARP_ROWS, CHUNK, CHUNK, CHUNK, WARP_ROWS, bpt, "a")
    coords = part.code_layout.map_array()  # [lane, code, (k, n)]
    words = bpt // 4
    lanes = np.arange(32)
    g = lanes // 4
    # every bit of every lane's words: its code's (k, n) and the bit of the code
    bits = np.arange(32 * words)
    code, beta = bits // nbits, bits % nbits
    k = coords[:, code, 0].reshape(32, words, 32)
    n = coords[:, code, 1].reshape(32, words, 32)
    beta = np.broadcast_to(beta.reshape(words, 32), (32, words, 32))
    tile, rest = n // 16, n % 16
    eta = (rest - g[:, None, None]) // 8
    assert np.all(rest % 8 == g[:, None, None]), "lane (g, t) holds rows g and g + 8 of each m16 tile"
    tiles = words // (2 * nbits)
    assert tiles == 2 and np.all(tile == (np.arange(words) // (2 * nbits))[None, :, None]), (
        "a lane's words: those of m16 tile 0, then those of tile 1"
    )
    masks = np.zeros((2, nbits), dtype=np.uint64)
    for e in range(2):
        for b in range(nbits):
            selected = (eta == e) & (beta == b)
            word_masks = (selected * (1 << np.arange(32, dtype=np.uint64))).sum(-1)  # [lane, word]
            assert np.all(word_masks == word_masks[0, 0]), "the same bit positions in every word and lane"
            masks[e, b] = word_masks[0, 0]
    steps = nbits
    slot_k = np.zeros((steps, STEP_SLOTS), dtype=np.int64)
    for step in range(steps):
        for h in range(2):
            # word 2·step + h of each tile; its k must not depend on the tile, g, η or β (only on t and i)
            per_tile = [k[:, tile_index * 2 * nbits + 2 * step + h] for tile_index in range(2)]
            assert np.array_equal(per_tile[0], per_tile[1]), "both m16 tiles' words hold the same k"
            block = per_tile[0].reshape(8, 4, 32)  # [g, t, i]
            assert np.all(block == block[:1]), "a word's k does not depend on the lane's row group g"
            slot_k[step, 128 * h : 128 * h + 128] = block[0].reshape(-1)
    counts = np.bincount(slot_k.reshape(-1), minlength=CHUNK)
    assert np.all(counts == counts[0]) and counts.size == CHUNK, "every k of the chunk in as many slots"
    row_shift = 2
    assert np.all(masks[1] == masks[0] << np.uint64(row_shift)) and np.all(masks[0] < 2**31), (
        "row g + 8's bits two above row g's, row g's mask positive as an int32"
    )
    masks = masks.astype(np.uint32)
    masks.setflags(write=False)
    slot_k.setflags(write=False)
    return PopcView(nbits, masks, slot_k, row_shift)
