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

import functools

import numpy as np
import torch

import anybit
from anybit.dtypes import float32, int32, uint1, uint8
from anybit.kernels.checks import run_kernel
from anybit.kernels.popc_order import CHUNK, STEP_SLOTS, popc_view
from anybit.layout import local, reduce, reshape
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
    """x [1, K] per scale group of 128, in f32 as :class:`PreparePopcX` computes it: (X int32 [K / 128, 128]
    = round(x · (X_MAX / m)), |X| ≤ X_MAX (m the group's largest |x|: one division a group, then products);
    r [K / 128] f32 = m · (1 / X_MAX), 1 where a group is all zeros)."""
    groups = x.float().view(-1, CHUNK)
    largest = groups.abs().amax(-1)
    positive = largest > 0
    ones = torch.ones_like(largest)
    r = torch.where(positive, largest * torch.tensor(1.0 / X_MAX, dtype=torch.float32), ones)
    quotient = torch.where(positive, torch.tensor(float(X_MAX), dtype=torch.float32) / largest, ones)
    return torch.round(groups * quotient[:, None]).clamp(-X_MAX, X_MAX).to(torch.int32), r


def prepare_popc_x(x: torch.Tensor, nbits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [1, K] as the binary route takes it for ``nbits``-bit codes (torch reference): (planes uint8
    [K / 128, nbits, 512]: each k-step's B operand in fragment order; ``inverse`` [K / 128] f32: each group's
    r; ``sums`` [K / 128] f32: r·Σ X over the group). On x's device; the bits are made on the CPU."""
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
    sums = r * fixed.sum(-1).float()
    return out.to(x.device), r, sums


class PreparePopcX(anybit.Script):
    """x [1, K] as :class:`~anybit.kernels.decode_popc.DecodePopc` takes it for ``nbits``-bit codes, on the
    GPU: what :func:`prepare_popc_x` computes with torch. One warp a chunk: each lane reads the x of its B
    fragments' slots (a strided view of x: :attr:`~anybit.kernels.popc_order.PopcView.slot_strides`), makes
    X in f32 and its bits of the planes its fragments hold (g and g + 8), and stores them as 16-byte vectors
    in fragment order; the group's largest |x| and Σ X stay within the warp."""

    def __init__(self, act, nbits: int) -> None:
        super().__init__()
        self.act, self.nbits = anybit.dtype(act), nbits
        self.strides = popc_view(nbits).slot_strides

    def __call__(
        self,
        x: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        planes: anybit.ptr(anybit.uint8),
        inverse: anybit.ptr(anybit.float32),
        sums: anybit.ptr(anybit.float32),
        k: anybit.int32,
    ):
        nbits = self.nbits
        self.attrs.blocks = [k // CHUNK]
        self.attrs.warps = 1
        self.assume_divisible(k, CHUNK)
        # x is the previous kernel's output; the decode kernel after this one may start at once (it loads
        # its first weight words, then waits for this kernel to complete)
        self.wait_prior_grids()
        self.allow_dependent_grids()
        operand = local(nbits, 1) * operand_layout()  # [slots, planes]
        slots = reduce(operand, [1], keepdims=True)  # [slots, 1]: each lane's slots, its planes dropped
        digits = [2] * len(self.strides)
        gx = self.global_view(x, self.act, [k // CHUNK, *digits, 1], strides=[CHUNK, *self.strides, 0])
        origin = [self.blockIdx.x, *[0] * (len(digits) + 1)]
        loaded = self.load_global(gx, origin, [1, *digits, 1], layout=reshape(slots, [1, *digits, 1]))
        values = self.view(self.cast(loaded, float32), layout=slots)  # [slots, 1]
        largest = self.max(abs(values), 0, keepdim=True)  # [1, 1]
        positive = largest > 0.0
        r = self.where(positive, largest * (1.0 / X_MAX), 1.0)
        fixed = self.cast(values * self.where(positive, X_MAX / largest, 1.0), int32)
        plane = self.index([STEP_SLOTS * nbits, PLANES], 1, layout=operand)
        bits = self.cast((fixed >> plane) & 1, uint1, layout=operand)
        as_bytes = self.view(bits, uint8, local(1, nbits).spatial(1, 32).local(1, 16))
        gp = self.global_view(planes, uint8, [k // CHUNK, nbits * STEP_BYTES])
        self.store_global(gp, as_bytes, [self.blockIdx.x, 0])
        # every k sits in 2·nbits slots: the slots' sum of X is 2·nbits times the group's
        total = self.cast(self.sum(fixed, 0, keepdim=True), float32) * (1.0 / (2 * nbits))
        gr = self.global_view(inverse, float32, [k // CHUNK, 1])
        gc = self.global_view(sums, float32, [k // CHUNK, 1])
        self.store_global(gr, r, [self.blockIdx.x, 0])
        self.store_global(gc, total * r, [self.blockIdx.x, 0])


@functools.lru_cache(maxsize=8)
def prepare_kernel_for(act: torch.dtype, nbits: int) -> PreparePopcX:
    """One :class:`PreparePopcX` a form (its compiled forms cached with it)."""
    return PreparePopcX(act, nbits)


def prepare_popc_x_on_device(
    x: torch.Tensor, nbits: int, out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`prepare_popc_x` by the :class:`PreparePopcX` kernel: on CUDA tensors on the GPU, on CPU tensors
    on the interpreter. ``out``: (planes, inverse, sums) to fill; without it, new ones, poisoned."""
    if x.dim() != 2 or x.shape[0] != 1 or x.shape[1] % CHUNK:
        raise ValueError(f"expected x [1, K] with K a multiple of {CHUNK}, got {list(x.shape)}")
    chunks = x.shape[1] // CHUNK
    if out is None:
        inverse = torch.full((chunks,), float("nan"), dtype=torch.float32, device=x.device)
        planes = torch.full((chunks, nbits, STEP_BYTES), 0xA5, dtype=torch.uint8, device=x.device)
        out = (planes, inverse, torch.full_like(inverse, float("nan")))
    run_kernel(prepare_kernel_for(x.dtype, nbits), x.contiguous(), *out, x.shape[1])
    return out
