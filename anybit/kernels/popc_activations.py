"""x for the binary route (:mod:`anybit.kernels.decode_popc`): 16-bit fixed point, as bit planes at the
weights' slots.

Each scale group of the one row of x is rounded to X = round(x · 32767 / m) (m the group's largest |x|),
|X| ≤ 32767, a 16-bit two's complement number: X = Σ_{p<15} 2^p·b_p − 2^15·b_15. Plane p of X, at the slots
of the binary mma's k-steps (:attr:`~anybit.kernels.popc_order.PopcView.slot_k`), is column p of the mma's B
operand: the mma's column p sums the weights' code bits whose x has bit p set, and the kernel adds the
columns with weights 2^p (−2^15 for the sign plane) once at the end. Stored in fragment order: each lane's B
fragments of a k-step (16 bytes) contiguous, as a warp loads them.
"""

from __future__ import annotations

import numpy as np
import torch

from anybit.kernels.popc_order import CHUNK, STEP_SLOTS, popc_view
from anybit.layout import local
from anybit.layout.mma import MMA_M16N8K256_B1_B

#: x's fixed point: |X| ≤ X_MAX, 16 planes (two's complement).
X_MAX = 32767
PLANES = 16
#: Bytes of one k-step's B operand (256 slots × 16 planes).
STEP_BYTES = STEP_SLOTS * PLANES // 8


def plane_weights() -> np.ndarray:
    """[16] f64: the weight of each plane (column) of X: 2^p, and −2^15 for the sign plane."""
    weights = 2.0 ** np.arange(PLANES)
    weights[-1] = -weights[-1]
    return weights


def operand_layout():
    """One k-step's B operand [256, 16] (slots by plane: the mma's two n8 tiles)."""
    return local(1, 2) * MMA_M16N8K256_B1_B


def fixed_point(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [1, K] per scale group of 128: (X int32 [K / 128, 128], |X| ≤ X_MAX; r [K / 128] f64, the group's
    largest |x| / X_MAX, 1 where all are zero)."""
    groups = x.double().view(-1, CHUNK)
    r = groups.abs().amax(-1) / X_MAX
    r = torch.where(r > 0, r, torch.ones_like(r))
    return torch.round(groups / r[:, None]).clamp(-X_MAX, X_MAX).to(torch.int32), r


def prepare_popc_x(x: torch.Tensor, nbits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [1, K] as the binary route takes it for ``nbits``-bit codes (torch reference): (planes uint8
    [K / 128, nbits, 512]: each k-step's B operand in fragment order; ``inverse`` [K / 128] f32: each group's
    r; ``sums`` [K / 128] f32: r·Σ X over the group)."""
    if x.dim() != 2 or x.shape[0] != 1 or x.shape[1] % CHUNK:
        raise ValueError(f"expected x [1, K] with K a multiple of {CHUNK}, got {list(x.shape)}")
    fixed, r = fixed_point(x)
    view = popc_view(nbits)
    coords = operand_layout().map_array()  # [lane, local bit, (slot, plane)]
    slot, plane = torch.from_numpy(coords[..., 0]), torch.from_numpy(coords[..., 1])
    chunks = fixed.shape[0]
    out = torch.empty(chunks, nbits, STEP_BYTES, dtype=torch.uint8)
    unsigned = fixed.cpu().to(torch.int64) & 0xFFFF
    for step in range(nbits):
        k_of_slot = torch.from_numpy(view.slot_k[step].copy())[slot]  # [lane, local bit]
        bits = (unsigned[:, k_of_slot] >> plane[None]) & 1  # [chunk, lane, local bit]
        packed = (bits.view(chunks, 32, -1, 8) << torch.arange(8)).sum(-1)  # [chunk, lane, byte]
        out[:, step] = packed.view(chunks, -1).to(torch.uint8)
    sums = r * fixed.double().sum(-1)
    return out.to(x.device), r.float(), sums.float()
