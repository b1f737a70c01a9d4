"""Gated pairs of projections (a gated MLP's gate and up) in one weight, for a fused SiLU · up epilogue.

The decode kernel's ``gated`` epilogue (``DecodeMatmul(gated=True)``, the transposed kernel) computes
y = silu(x @ gate^T) · (x @ up^T) without writing either product: each block of 16 weight rows holds 8 rows
of ``gate`` and then the same 8 rows of ``up``, so the tensor-core accumulator keeps the two values of one
output in one thread (rows g and g + 8 of an m16 tile). These functions make and undo that row order.
"""

from __future__ import annotations

import torch

#: Rows of gate, then of up, in each interleaved block of 2 · GATED_ROWS weight rows.
GATED_ROWS = 8


def interleave_gated(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """[2I, ...] from ``gate`` and ``up`` [I, ...]: rows 16j..16j+7 are gate's 8j..8j+7, rows 16j+8..16j+15
    up's (I a multiple of 8). Works for weights [I, K] and per-row vectors (bias [I])."""
    if gate.shape != up.shape:
        raise ValueError(f"gate and up must have the same shape, got {list(gate.shape)} and {list(up.shape)}")
    rows = gate.shape[0]
    if rows % GATED_ROWS:
        raise ValueError(
            f"a gated pair needs a multiple of {GATED_ROWS} rows a projection (the epilogue pairs them in "
            f"blocks of {GATED_ROWS}), got {rows}; pad the intermediate size"
        )
    rest = gate.shape[1:]
    blocks = (rows // GATED_ROWS, GATED_ROWS, *rest)
    pairs = torch.stack((gate.reshape(blocks), up.reshape(blocks)), dim=1)
    return pairs.reshape(2 * rows, *rest)


def split_gated(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`interleave_gated`: (gate, up) from the interleaved [2I, ...]."""
    if weight.shape[0] % (2 * GATED_ROWS):
        raise ValueError(
            f"an interleaved gated weight has a multiple of {2 * GATED_ROWS} rows, got {weight.shape[0]}"
        )
    rest = weight.shape[1:]
    pairs = weight.reshape(weight.shape[0] // (2 * GATED_ROWS), 2, GATED_ROWS, *rest)
    half = weight.shape[0] // 2
    return pairs[:, 0].reshape(half, *rest), pairs[:, 1].reshape(half, *rest)


def gated_reference(products: torch.Tensor) -> torch.Tensor:
    """silu(gate) · up from the products of x with an interleaved weight [..., 2I] (float64 reference or
    the dequantize path's epilogue), [..., I]."""
    *lead, n = products.shape
    pairs = products.reshape(*lead, n // (2 * GATED_ROWS), 2, GATED_ROWS)
    gate, up = pairs[..., 0, :], pairs[..., 1, :]
    return (torch.nn.functional.silu(gate) * up).reshape(*lead, n // 2)
