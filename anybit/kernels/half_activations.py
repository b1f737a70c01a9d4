"""bf16 activations as fp16 times a power of two per row: what lets a bf16 model use the fp16 decode loop.

The decode kernels' conversions into bf16 cost more than into fp16 (bf16's 7-bit mantissa holds one 4-bit
code a half where fp16's 10 bits take a shifted pair, and 8-bit codes go through f32): on the H200 the bf16
rows of the suite run 3–15% behind their fp16 twins (BENCHMARKS.md, thirty-third session). A bf16 value has 8
significant bits and fp16 11, so x · 2^−s in fp16 is exact wherever it lands in fp16's normal range: with s
chosen per row so that the row's largest |x| lands in [2^14, 2^15) (:data:`TOP_EXPONENT`), every element
within 2^28 of it converts exactly, smaller ones to fp16's subnormals (2^−24 steps: 2^−38 of the largest),
and nothing overflows. The product x · W is then 2^s · (x · 2^−s) · W: the fp16 kernel's f32 sum times the
row's factor 2^s, exact, before the bias (:class:`~anybit.kernels.decode_half_x.DecodeMatmulHalfX`).

:class:`PrepareHalfX` makes both in one small kernel (a block a row: the row's largest |x| by a block
reduction across a thread-block cluster, then its fp16 copy); :func:`prepare_half_x` is its torch reference.
"""

from __future__ import annotations

import functools

import torch

import anybit
from anybit.dtypes import bfloat16, float16, float32, int32
from anybit.ir import cdiv
from anybit.kernels.checks import run_kernel
from anybit.layout import spatial

#: The exponent the row's largest |x| takes in fp16: [2^14, 2^15), below fp16's largest finite 65504.
TOP_EXPONENT = 14
#: Blocks a row of x, one thread-block cluster: each takes 1/CLUSTER of the row, their largest |x| meet in
#: distributed shared memory (one block a row, 8 warps, took 3 µs at K = 8192 and 8 at K = 28672 on the
#: H200: two passes over the row one load round trip after another).
CLUSTER = 8
#: Warps a block; each thread reads 16-byte vectors, UNROLL steps of them in flight.
WARPS = 4
VECTOR = 8  # bf16 elements in 16 bytes
UNROLL = 4
#: f32 exponent field values: the factor 2^(e − 127 − TOP_EXPONENT) of a largest |x| with exponent field e
#: is an f32 normal for e ≥ LOWEST_FIELD (rows whose largest |x| is below 2^−112, zeros among them, are
#: scaled as if it were 2^−112: their fp16 copy then sits below 2^15 too).
LOWEST_FIELD = TOP_EXPONENT + 1


def row_exponents(x: torch.Tensor) -> torch.Tensor:
    """The f32 exponent field e of each row's largest |x| (at least :data:`LOWEST_FIELD`), as int32 [M]."""
    largest = x.float().abs().amax(dim=-1)
    field = (largest.view(torch.int32) >> 23) & 255
    return torch.clamp(field, min=LOWEST_FIELD)


def prepare_half_x(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x · 2^−s in fp16 [M, K], 2^s in f32 [M]) for bf16 x [M, K]: torch's form of :class:`PrepareHalfX`,
    s per row from its largest |x| (:data:`TOP_EXPONENT`). Exact: x == half · factor for every element within
    2^28 of its row's largest."""
    if x.dim() != 2 or x.dtype != torch.bfloat16:
        raise ValueError(f"expected bf16 x [M, K], got {x.dtype} {list(x.shape)}")
    field = row_exponents(x)
    scale = ((127 + 127 + TOP_EXPONENT - field) << 23).view(torch.float32)
    factor = ((field - TOP_EXPONENT) << 23).view(torch.float32)
    return (x.float() * scale[:, None]).to(torch.float16), factor


class PrepareHalfX(anybit.Script):
    """bf16 x [M, K] → (x · 2^−s in fp16 [M, K], 2^s in f32 [M]), s per row (see the module docstring).

    A cluster of :data:`CLUSTER` blocks a row, each block 1/CLUSTER of it: each thread reads 16-byte vectors
    of the block's part (:data:`UNROLL` steps unrolled, their loads in flight together) and keeps the
    largest |x| it saw; the block's largest goes to its shared memory, every block of the cluster takes the
    largest of the cluster's (distributed shared memory, between two cluster barriers), then reads its part
    again (from L1/L2) and stores its fp16 copy. K a multiple of 8 · CLUSTER (every packed weight's K is). A
    dependent launch: it waits for the kernel before it (which writes x) and lets the next one (the decode
    kernel, which loads its first weight bytes meanwhile) launch at once."""

    def __init__(self, warps: int = WARPS) -> None:
        super().__init__()
        if warps < 1 or warps > 32:
            raise ValueError(f"expected 1 to 32 warps, got {warps}")
        self.warps = warps

    def __call__(
        self,
        x: anybit.ptr(anybit.bfloat16),
        half: anybit.ptr(anybit.float16),
        factors: anybit.ptr(anybit.float32),
        m: anybit.int32,
        k: anybit.int32,
    ):
        warps = self.warps
        step = 32 * warps * VECTOR
        self.attrs.blocks = [CLUSTER, m]
        self.attrs.cluster = [CLUSTER, 1]
        self.attrs.warps = warps
        self.assume_divisible(k, VECTOR * CLUSTER)
        self.wait_prior_grids()
        self.allow_dependent_grids()
        part_k = k // CLUSTER
        layout = spatial(1, 1, 32 * warps).local(1, 1, VECTOR)
        gx = self.global_view(x, bfloat16, [m, CLUSTER, part_k], strides=[k, part_k, 1])
        row, part = self.blockIdx.y, self.blockIdx.x
        largest = self.register_tensor(float32, [1, 1, step], layout=layout, init=0.0)
        for index in self.range(cdiv(part_k, step), unroll=UNROLL):
            tile = self.load_global(gx, [row, part, index * step], [1, 1, step], layout=layout)
            largest = self.maximum(largest, abs(self.cast(tile, float32)))
        mine = self.shared_tensor(float32, [1, 1, 1])
        self.store_shared(mine, self.max(largest, 2, keepdim=True))
        self.cluster_sync()
        row_largest = self.load_shared(mine, rank=0)
        for rank in range(1, CLUSTER):
            row_largest = self.maximum(row_largest, self.load_shared(mine, rank=rank))
        self.cluster_sync()  # no block's shared memory goes while another reads it
        field = self.maximum((self.view(row_largest, int32) >> 23) & 255, LOWEST_FIELD)
        scale = self.view((127 + 127 + TOP_EXPONENT - field) << 23, float32)
        gh = self.global_view(half, float16, [m, CLUSTER, part_k], strides=[k, part_k, 1])
        for index in self.range(cdiv(part_k, step), unroll=UNROLL):
            tile = self.load_global(gx, [row, part, index * step], [1, 1, step], layout=layout)
            converted = self.cast(self.cast(tile, float32) * scale, float16)
            self.store_global(gh, converted, [row, part, index * step])
        gf = self.global_view(factors, float32, [1, 1, m])
        self.store_global(gf, self.view((field - TOP_EXPONENT) << 23, float32), [0, 0, row])


def prepare_half_x_on_device(
    x: torch.Tensor, out: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`prepare_half_x` by the :class:`PrepareHalfX` kernel (CUDA tensors on the GPU, CPU tensors on
    the interpreter); ``out``: (half [M, K] fp16, factors [M] f32) to fill, else new ones poisoned first."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.dtype != torch.bfloat16:
        raise ValueError(f"expected bf16 x [M, K], got {getattr(x, 'dtype', type(x).__name__)}")
    m, k = x.shape
    if k % (VECTOR * CLUSTER):
        raise ValueError(
            f"expected K a multiple of {VECTOR * CLUSTER} (a cluster's {CLUSTER} blocks a row, 16-byte "
            f"vectors of bf16), got {k}"
        )
    x = x.contiguous()
    if out is None:
        out = (
            torch.full((m, k), float("nan"), dtype=torch.float16, device=x.device),
            torch.full((m,), float("nan"), dtype=torch.float32, device=x.device),
        )
    half, factors = out
    if (
        half.shape != (m, k)
        or half.dtype != torch.float16
        or factors.dim() != 1
        or factors.shape[0] < m
        or factors.dtype != torch.float32
    ):
        raise ValueError(
            f"expected out (fp16 [{m}, {k}], f32 [≥ {m}]), got ({half.dtype} {list(half.shape)}, "
            f"{factors.dtype} {list(factors.shape)})"
        )
    run_kernel(prepare_kernel(), x, half, factors, m, k)
    return half, factors


@functools.cache
def prepare_kernel() -> PrepareHalfX:
    """The shared preparation kernel (one instance: its compiled forms are cached with it)."""
    return PrepareHalfX()
