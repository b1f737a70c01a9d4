"""Tensor-core operand layouts against the PTX ISA fragment formulas (warp-level mma.sync and ldmatrix)."""

from __future__ import annotations

import pytest

from anybit.layout import mma

# PTX ISA, "Matrix Fragments for mma.m16n8k*": groupID = %laneid >> 2, threadID_in_group = %laneid % 4.


def group(lane: int) -> int:
    return lane >> 2


def thread_in_group(lane: int) -> int:
    return lane % 4


def c_m16n8(lane: int, i: int) -> tuple[int, int]:
    """C/D of m16n8k8/k16/k32 (c0..c3): row = groupID (+8 for i >= 2), col = threadID_in_group*2 + (i & 1)."""
    row = group(lane) if i < 2 else group(lane) + 8
    return row, thread_in_group(lane) * 2 + (i & 0x1)


def a_m16n8k8_f16(lane: int, i: int) -> tuple[int, int]:
    """A of m16n8k8 .f16 (a0..a3): row = groupID (+8 for i >= 2), col = threadID_in_group*2 + (i & 1)."""
    row = group(lane) if i < 2 else group(lane) + 8
    return row, thread_in_group(lane) * 2 + (i & 0x1)


def b_m16n8k8_f16(lane: int, i: int) -> tuple[int, int]:
    """B of m16n8k8 .f16 (b0, b1): row = threadID_in_group*2 + i, col = groupID."""
    return thread_in_group(lane) * 2 + i, group(lane)


def a_m16n8k16_f16(lane: int, i: int) -> tuple[int, int]:
    """A of m16n8k16 .f16/.bf16 (a0..a7)."""
    row = group(lane) if i < 2 or 4 <= i < 6 else group(lane) + 8
    column = thread_in_group(lane) * 2 + (i & 0x1) + (8 if i >= 4 else 0)
    return row, column


def b_m16n8k16_f16(lane: int, i: int) -> tuple[int, int]:
    """B of m16n8k16 .f16/.bf16 (b0..b3): row = threadID_in_group*2 + (i & 1) (+8 if i >= 2), col = group."""
    row = thread_in_group(lane) * 2 + (i & 0x1) + (8 if i >= 2 else 0)
    return row, group(lane)


def a_m16n8k32_s8(lane: int, i: int) -> tuple[int, int]:
    """A of m16n8k32 .s8/.u8 (a0..a15)."""
    row = group(lane) if i < 4 or 8 <= i < 12 else group(lane) + 8
    column = thread_in_group(lane) * 4 + (i & 0x3) + (16 if i >= 8 else 0)
    return row, column


def b_m16n8k32_s8(lane: int, i: int) -> tuple[int, int]:
    """B of m16n8k32 .s8/.u8 (b0..b7): row = threadID_in_group*4 + (i & 3) (+16 for i >= 4), col = groupID."""
    row = thread_in_group(lane) * 4 + (i & 0x3) + (16 if i >= 4 else 0)
    return row, group(lane)


def a_m16n8k256_b1(lane: int, i: int) -> tuple[int, int]:
    """A of m16n8k256 .b1 (a0..a3, 32 elements each): row = groupID (+8 for registers 1 and 3), col =
    threadID_in_group*32 + (i & 31) (+128 for registers 2 and 3)."""
    register = i // 32
    row = group(lane) + (8 if register in (1, 3) else 0)
    return row, thread_in_group(lane) * 32 + (i & 31) + (128 if register >= 2 else 0)


def b_m16n8k256_b1(lane: int, i: int) -> tuple[int, int]:
    """B of m16n8k256 .b1 (b0, b1, 32 elements each): row = threadID_in_group*32 + (i & 31) (+128 for b1),
    col = groupID."""
    return thread_in_group(lane) * 32 + (i & 31) + (128 if i >= 32 else 0), group(lane)


def ldmatrix(lane: int, i: int, *, count: int, trans: bool) -> tuple[int, int]:
    """ldmatrix .m8n8 .b16: register r = i // 2 holds matrix r; lane gets row lane>>2, cols 2*(lane%4)+{0,1}
    (transposed with .trans). Matrices of .x2 are stacked vertically; .x4 ones sit at (r % 2, r // 2)."""
    matrix, j = divmod(i, 2)
    row, column = group(lane), thread_in_group(lane) * 2 + j
    if trans:
        row, column = column, row
    block_row, block_column = (matrix, 0) if count <= 2 else (matrix % 2, matrix // 2)
    return block_row * 8 + row, block_column * 8 + column


CASES = [
    (mma.MMA_M16N8K8_F16_A, (16, 8), 4, a_m16n8k8_f16),
    (mma.MMA_M16N8K8_F16_B, (8, 8), 2, b_m16n8k8_f16),
    (mma.MMA_M16N8K8_F16_C, (16, 8), 4, c_m16n8),
    (mma.MMA_M16N8K16_F16_A, (16, 16), 8, a_m16n8k16_f16),
    (mma.MMA_M16N8K16_F16_B, (16, 8), 4, b_m16n8k16_f16),
    (mma.MMA_M16N8K16_F16_C, (16, 8), 4, c_m16n8),
    (mma.MMA_M16N8K32_I8_A, (16, 32), 16, a_m16n8k32_s8),
    (mma.MMA_M16N8K32_I8_B, (32, 8), 8, b_m16n8k32_s8),
    (mma.MMA_M16N8K32_I8_C, (16, 8), 4, c_m16n8),
    (mma.MMA_M16N8K256_B1_A, (16, 256), 128, a_m16n8k256_b1),
    (mma.MMA_M16N8K256_B1_B, (256, 8), 64, b_m16n8k256_b1),
    (mma.MMA_M16N8K256_B1_C, (16, 8), 4, c_m16n8),
]
for count in (1, 2, 4):
    for trans in (False, True):
        shape = {1: (8, 8), 2: (16, 8), 4: (16, 16)}[count]

        def formula(lane, i, count=count, trans=trans):
            return ldmatrix(lane, i, count=count, trans=trans)

        CASES.append((mma.LDMATRIX_LAYOUTS[(count, trans)], shape, 2 * count, formula))


@pytest.mark.parametrize(("layout", "shape", "registers", "formula"), CASES)
def test_layout_matches_ptx_fragment_formula(layout, shape, registers, formula):
    assert layout.shape == shape
    assert (layout.num_threads, layout.local_size) == (32, registers)
    for lane in range(32):
        for i in range(registers):
            assert layout.logical(lane, i) == formula(lane, i), (lane, i)


def test_named_expressions_from_the_digest():
    assert repr(mma.MMA_M16N8K16_F16_C) == "local(2, 1).spatial(8, 4).local(1, 2)"
    assert repr(mma.MMA_M16N8K16_F16_A) == "column_local(2, 2).spatial(8, 4).local(1, 2)"
    assert repr(mma.MMA_M16N8K16_F16_B) == "local(2, 1).column_spatial(4, 8).local(2, 1)"
    assert mma.LDMATRIX_X4 == mma.MMA_M16N8K16_F16_A
    assert mma.LDMATRIX_X2_TRANS == mma.MMA_M16N8K16_F16_B


def test_atoms_table():
    atom = mma.MMA_ATOMS["m16n8k16.f16"]
    assert (atom.m, atom.n, atom.k) == (16, 8, 16)
    for atom in mma.MMA_ATOMS.values():
        assert atom.a.shape == (atom.m, atom.k)
        assert atom.b.shape == (atom.k, atom.n)
        assert atom.c.shape == (atom.m, atom.n)


def test_accumulator_supports_two_element_vector_stores():
    assert mma.MMA_M16N8_C.contiguous_local_run(1) == 2
    assert mma.MMA_M16N8K32_I8_A.contiguous_local_run(1) == 4
