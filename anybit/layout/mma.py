"""Register layouts of tensor-core operands (``mma.sync``) and of ``ldmatrix`` results, for one warp.

Each layout is checked in ``tests/layout/test_mma.py`` against the fragment formulas of the PTX ISA
(``groupID = lane >> 2``, ``threadID_in_group = lane % 4``). Matrices are indexed (row, column): A is M x K,
B is K x N, C and D are M x N.
"""

from __future__ import annotations

from dataclasses import dataclass

from .primitives import column_local, column_spatial, local, spatial
from .register import RegisterLayout


@dataclass(frozen=True)
class MmaAtom:
    """One warp-level ``mma.sync`` shape: its PTX name and the layouts of its A, B and C/D operands."""

    name: str
    m: int
    n: int
    k: int
    a: RegisterLayout
    b: RegisterLayout
    c: RegisterLayout


# C/D accumulators of every m16n8 shape: rows groupID and groupID + 8, two adjacent columns per thread.
MMA_M16N8_C = local(2, 1).spatial(8, 4).local(1, 2)

# mma.sync.aligned.m16n8k8 with .f16/.bf16 inputs.
MMA_M16N8K8_F16_A = local(2, 1).spatial(8, 4).local(1, 2)
MMA_M16N8K8_F16_B = column_spatial(4, 8).local(2, 1)
MMA_M16N8K8_F16_C = MMA_M16N8_C

# mma.sync.aligned.m16n8k16 with .f16/.bf16 inputs (A .row, B .col, i.e. B stored K x N column-major).
MMA_M16N8K16_F16_A = column_local(2, 2).spatial(8, 4).local(1, 2)
MMA_M16N8K16_F16_B = local(2, 1).column_spatial(4, 8).local(2, 1)
MMA_M16N8K16_F16_C = MMA_M16N8_C

# mma.sync.aligned.m16n8k32 with .s8/.u8 inputs and .s32 accumulators.
MMA_M16N8K32_I8_A = column_local(2, 2).spatial(8, 4).local(1, 4)
MMA_M16N8K32_I8_B = local(2, 1).column_spatial(4, 8).local(4, 1)
MMA_M16N8K32_I8_C = MMA_M16N8_C

# mma.sync.aligned.m16n8k256 with .b1 inputs, .and.popc and .s32 accumulators: c += popc(a_row & b_column),
# i.e. the dot product of 0/1 values. The int8 fragments with 32 one-bit elements a register instead of 4.
MMA_M16N8K256_B1_A = column_local(2, 2).spatial(8, 4).local(1, 32)
MMA_M16N8K256_B1_B = local(2, 1).column_spatial(4, 8).local(32, 1)
MMA_M16N8K256_B1_C = MMA_M16N8_C

MMA_ATOMS: dict[str, MmaAtom] = {
    atom.name: atom
    for atom in (
        MmaAtom("m16n8k8.f16", 16, 8, 8, MMA_M16N8K8_F16_A, MMA_M16N8K8_F16_B, MMA_M16N8K8_F16_C),
        MmaAtom("m16n8k16.f16", 16, 8, 16, MMA_M16N8K16_F16_A, MMA_M16N8K16_F16_B, MMA_M16N8K16_F16_C),
        MmaAtom("m16n8k16.bf16", 16, 8, 16, MMA_M16N8K16_F16_A, MMA_M16N8K16_F16_B, MMA_M16N8K16_F16_C),
        MmaAtom("m16n8k32.s8", 16, 8, 32, MMA_M16N8K32_I8_A, MMA_M16N8K32_I8_B, MMA_M16N8K32_I8_C),
        MmaAtom("m16n8k32.u8", 16, 8, 32, MMA_M16N8K32_I8_A, MMA_M16N8K32_I8_B, MMA_M16N8K32_I8_C),
        MmaAtom("m16n8k256.b1", 16, 8, 256, MMA_M16N8K256_B1_A, MMA_M16N8K256_B1_B, MMA_M16N8K256_B1_C),
    )
}

# ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16: 8x8 matrices of 16-bit elements, one per 8 lanes
# of row addresses. Without .trans, lane t receives row t // 4, columns 2 * (t % 4) and 2 * (t % 4) + 1 of
# each matrix; with .trans it receives the transposed pair (rows 2 * (t % 4) + j, column t // 4). Register r
# holds matrix r. The x2 matrices are stacked vertically (16 x 8); the x4 matrices cover 16 x 16 with matrix
# r at block (r % 2, r // 2), the arrangement of the m16n8k16 A operand (and, with .trans, of two B tiles).
LDMATRIX_X1 = spatial(8, 4).local(1, 2)
LDMATRIX_X2 = local(2, 1).spatial(8, 4).local(1, 2)
LDMATRIX_X4 = column_local(2, 2).spatial(8, 4).local(1, 2)
LDMATRIX_X1_TRANS = spatial(4, 8, order=[1, 0]).local(2, 1)
LDMATRIX_X2_TRANS = local(2, 1).column_spatial(4, 8).local(2, 1)
LDMATRIX_X4_TRANS = column_local(2, 2).column_spatial(4, 8).local(2, 1)

LDMATRIX_LAYOUTS: dict[tuple[int, bool], RegisterLayout] = {
    (1, False): LDMATRIX_X1,
    (2, False): LDMATRIX_X2,
    (4, False): LDMATRIX_X4,
    (1, True): LDMATRIX_X1_TRANS,
    (2, True): LDMATRIX_X2_TRANS,
    (4, True): LDMATRIX_X4_TRANS,
}
