"""Shared-memory layouts, swizzles and bank conflicts of ldmatrix / cp.async access patterns."""

from __future__ import annotations

import numpy as np
import pytest

from anybit.layout import (
    LayoutError,
    SharedLayout,
    XorSwizzle,
    bank_conflicts,
    cp_async_addresses,
    ldmatrix_addresses,
    ldmatrix_x4_origins,
    shared_column_major,
    shared_padded,
    shared_row_major,
    shared_strided,
    shared_swizzled,
    wavefronts,
)

from .layout_helpers import value, var

FP16 = 2


def test_row_and_column_major_offsets():
    row = shared_row_major(4, 8)
    assert row.offset((2, 3)) == 19 and row.size == 32
    column = shared_column_major(4, 8)
    assert column.offset((2, 3)) == 14 and column.size == 32
    np.testing.assert_array_equal(row.offsets_array(), np.arange(32).reshape(4, 8))


def test_padded_rows():
    padded = shared_padded((4, 8), 2)
    assert padded.strides == (10, 1)
    assert padded.offset((1, 0)) == 10
    assert padded.size == 38


@pytest.mark.parametrize("shape", [(64, 64), (64, 32), (32, 16), (16, 128), (2, 64, 64), (8, 24)])
def test_swizzle_is_a_permutation_of_chunks(shape):
    layout = shared_swizzled(shape, FP16)
    offsets = layout.offsets_array()
    assert sorted(offsets.ravel().tolist()) == list(range(layout.size))
    assert np.all(offsets[..., 1::2] == offsets[..., 0::2] + 1)  # chunks stay contiguous
    chunks = offsets[..., 0::8]
    assert np.all(chunks % 8 == 0)


def test_offsets_are_symbolic_capable():
    layout = shared_swizzled((64, 64), FP16)
    expression = layout.offset((var("r"), var("c")))
    for r in range(64):
        for c in range(64):
            assert value(expression, {"r": r, "c": c}) == layout.offset((r, c))


@pytest.mark.parametrize("layout", [shared_row_major(64, 64), shared_swizzled((64, 64), FP16)])
def test_prepend_dim_stacks_stages(layout):
    staged = layout.prepend_dim(3)
    assert staged.shape == (3, 64, 64) and staged.size == 3 * layout.size
    assert staged.offset((2, 5, 17)) == 2 * layout.size + layout.offset((5, 17))


def test_bank_conflict_counting_basics():
    assert bank_conflicts([4 * lane for lane in range(32)]) == 0
    assert bank_conflicts([0] * 32) == 0  # one word broadcast
    assert bank_conflicts([128 * lane for lane in range(32)]) == 31
    assert bank_conflicts([8 * lane for lane in range(32)]) == 1  # two-way conflict
    assert wavefronts([16 * lane for lane in range(32)], 16) == 4  # four quarter-warp phases
    assert bank_conflicts([16 * lane for lane in range(32)], 16) == 0
    assert bank_conflicts([128 * lane for lane in range(8)], 16) == 7
    assert bank_conflicts([None] * 8 + [16 * lane for lane in range(8)], 16) == 0
    with pytest.raises(LayoutError, match="aligned"):
        bank_conflicts([2], 4)
    with pytest.raises(LayoutError, match="access_bytes"):
        bank_conflicts([0], 3)


def ldmatrix_conflicts(layout: SharedLayout, shape: tuple[int, int]) -> list[int]:
    """Conflicts of every ldmatrix.x4 over the tile (all 16 x 32-byte blocks)."""
    rows, columns = shape
    result = []
    for row in range(0, rows, 16):
        for column in range(0, columns, 16):
            addresses = ldmatrix_addresses(layout, FP16, ldmatrix_x4_origins(row, column, FP16))
            result.append(bank_conflicts(addresses, 16))
    return result


def test_row_major_fp16_tile_has_ldmatrix_conflicts():
    conflicts = ldmatrix_conflicts(shared_row_major(64, 64), (64, 64))
    assert all(count == 4 * 7 for count in conflicts)  # each 8-row matrix hits one group of 4 banks


@pytest.mark.parametrize("shape", [(64, 64), (64, 32), (32, 16), (64, 128), (32, 96), (32, 48)])
def test_swizzled_fp16_tiles_are_ldmatrix_conflict_free(shape):
    assert set(ldmatrix_conflicts(shared_swizzled(shape, FP16), shape)) == {0}


@pytest.mark.parametrize("shape", [(64, 64), (64, 32), (32, 16), (64, 128)])
def test_unswizzled_tiles_with_wide_rows_conflict(shape):
    assert max(ldmatrix_conflicts(shared_row_major(*shape), shape)) > 0


def test_padding_also_avoids_ldmatrix_conflicts():
    assert set(ldmatrix_conflicts(shared_padded((64, 64), 8), (64, 64))) == {0}


@pytest.mark.parametrize("make", [lambda s: shared_row_major(*s), lambda s: shared_swizzled(s, FP16)])
@pytest.mark.parametrize("shape", [(64, 64), (64, 32), (32, 16)])
def test_cp_async_row_chunks_are_conflict_free(make, shape):
    layout = make(shape)
    chunks = shape[0] * shape[1] // 8
    for first in range(0, chunks, 32):
        assert bank_conflicts(cp_async_addresses(layout, FP16, first_chunk=first), 16) == 0


def test_int8_swizzle_uses_16_element_chunks():
    layout = shared_swizzled((64, 128), 1)
    assert layout.swizzles == (XorSwizzle(dim=1, by_dim=0, shift=0, bits=3, base=4),)
    for row in range(0, 64, 16):
        for column in range(0, 128, 32):
            origins = [(row + 8 * (j % 2), column + 16 * (j // 2)) for j in range(4)]
            assert bank_conflicts(ldmatrix_addresses(layout, 1, origins), 16) == 0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: shared_row_major(0, 4), "positive"),
        (lambda: shared_swizzled((64, 4), FP16), "16-byte chunks"),
        (lambda: shared_swizzled((64,), FP16), "rank >= 2"),
        (lambda: shared_swizzled((64, 64), 3), "element_bytes"),
        (lambda: shared_strided((4, 4), (4,)), "expected 2 strides"),
        (lambda: shared_strided((4, 12), (12, 1), [XorSwizzle(1, 0, 0, 3, 1)]), "multiple of 16"),
        (lambda: shared_padded((4, 4), -1), "non-negative"),
        (lambda: shared_row_major(4, 4).offset((1,)), "rank 2"),
    ],
)
def test_shared_errors(build, message):
    with pytest.raises(LayoutError, match=message):
        build()
