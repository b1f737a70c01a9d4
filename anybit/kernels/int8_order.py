"""The int8 route's view of the packed weights: which k each int8 mma operand byte is, per code width.

The packed layouts (:class:`~anybit.kernels.PackedLayout`, operand "a") store a warp tile's codes in the
f16 A operand's order (``mma.m16n8k16``): lane (g, t) holds rows g and g + 8 and, each k16 step, k = 2t,
2t + 1, 2t + 8, 2t + 9 — pairs of codes 16 bits apart in a word for 2- and 4-bit codes (pair-interleaved),
in plain order for 1-bit ones. The int8 A operand (``mma.m16n8k32``) wants lane (g, t) to hold rows g and
g + 8 too, and 8 k of each k32 step: the same rows, and as many k. So the int8 route reads the same bytes
with its k relabelled: within a chunk, *logical* k' (the mma's) is a permutation of the binary digits of
actual k, chosen so that the four codes of every int8 register sit 8 bits apart in one word (a shift and a
``lop3`` make four int8 weights, :func:`anybit.cuda.conversions.byte_field_word`). x is stored in the same
logical order (:mod:`anybit.kernels.int8_activations`), so the products are unchanged.

Actual k of a chunk as binary digits (outer to inner; a word's span: one k16 step for 4-bit codes, two for
2-bit, four for 1-bit): ``w`` (the span), ``step``/``q`` (k16 steps within the span), ``a`` (k + 8),
``t`` (the lane's quad, k + 2t), ``b`` (k + 1, the two halves of an f16 pair).
"""

from __future__ import annotations

import functools

import numpy as np

from anybit.layout import RegisterLayout, local, permute, reshape
from anybit.layout.mma import MMA_M16N8K32_I8_A

#: Per code width: (the digits of actual k, inner sizes after the span digit ``w``), and the order the int8
#: operand's logical k' takes them in (outer to inner). The inner digits of k' are the byte of an int8
#: register (four k a register), then the lane quad t, then the register: see the module docstring.
K_DIGITS: dict[int, tuple[tuple[tuple[str, int], ...], tuple[str, ...]]] = {
    4: ((("step", 2), ("a", 2), ("t", 4), ("b", 2)), ("w", "step", "t", "b", "a")),
    2: ((("step", 2), ("a", 2), ("t", 4), ("b", 2)), ("w", "a", "t", "b", "step")),
    1: ((("q", 4), ("a", 2), ("t", 4), ("b", 2)), ("w", "a", "b", "t", "q")),
}


def check_code_width(nbits: int, k_chunk: int) -> None:
    """The widths the int8 route takes (1, 2, 4 bits) and chunks of whole word spans."""
    if nbits not in K_DIGITS:
        raise ValueError(f"the int8 route takes 1-, 2- and 4-bit codes, got {nbits} bits")
    span = _span(nbits)
    if k_chunk % span or k_chunk % 32:
        raise ValueError(
            f"the int8 route takes k_chunk a multiple of {max(span, 32)} for {nbits}-bit codes, got {k_chunk}"
        )


def _span(nbits: int) -> int:
    return int(np.prod([size for _, size in K_DIGITS[nbits][0]]))


def _digits(nbits: int, k_chunk: int) -> tuple[list[str], list[int], list[int]]:
    """(names, sizes) of actual k's digits in a chunk, and the permutation to the logical order."""
    check_code_width(nbits, k_chunk)
    inner, logical = K_DIGITS[nbits]
    names = ["w", *[name for name, _ in inner]]
    sizes = [k_chunk // _span(nbits), *[size for _, size in inner]]
    return names, sizes, [names.index(name) for name in logical]


@functools.lru_cache(maxsize=64)
def k_order(nbits: int, k_chunk: int) -> np.ndarray:
    """[k_chunk] int: the actual k (within a chunk) that logical k' of the int8 operand is."""
    _, sizes, perm = _digits(nbits, k_chunk)
    order = np.arange(k_chunk).reshape(sizes).transpose(perm).reshape(-1)
    order.setflags(write=False)
    return order


def k_strides(nbits: int, k_chunk: int) -> list[int]:
    """Actual-k strides of logical k's binary digits, most significant first: logical k' = Σ d_i 2^i sits at
    actual Σ d_i · stride_i (the relabelling is a permutation of binary digits)."""
    order = k_order(nbits, k_chunk)
    bits = k_chunk.bit_length() - 1
    strides = [int(order[1 << i]) for i in reversed(range(bits))]
    assert 1 << bits == k_chunk, "k_chunk a power of two"
    return strides


def operand_layout(tiles: int, k_chunk: int) -> RegisterLayout:
    """One warp's weight tile as the int8 A operand: [16·tiles, k_chunk] (logical k), ``tiles`` m16 tiles."""
    return local(tiles, k_chunk // 32) * MMA_M16N8K32_I8_A


@functools.lru_cache(maxsize=64)
def code_layout(nbits: int, tiles: int, k_chunk: int) -> RegisterLayout:
    """The codes of one warp tile [16·tiles, k_chunk] as a packed layout (operand "a", ``16·tiles`` rows a
    warp tile) stores them, in logical k: the same elements per lane as :func:`operand_layout`, each int8
    register's four codes 8 bits apart in one word."""
    from anybit.dtypes import dtype
    from anybit.kernels.layout import PackedLayout

    bpt = 16 * tiles * k_chunk * nbits // 8 // 32
    rows = 16 * tiles
    packed = PackedLayout(dtype(f"uint{nbits}"), rows, k_chunk, k_chunk, k_chunk, rows, bpt, "a")
    names, sizes, perm = _digits(nbits, k_chunk)
    actual = reshape(permute(packed.code_layout, (1, 0)), [rows, *sizes])  # [N, digits of actual k]
    return reshape(permute(actual, [0, *[1 + p for p in perm]]), [rows, k_chunk])
