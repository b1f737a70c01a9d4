"""bf16 activations as fp16 times a power of two per row and chunk: what lets a bf16 model use the fp16 loop.

The decode kernels' conversions into bf16 cost more than into fp16 (bf16's 7-bit mantissa holds one 4-bit
code a half where fp16's 10 bits take a shifted pair, and 8-bit codes go through f32): on the H200 the bf16
rows of the suite run 3–15% behind their fp16 twins (BENCHMARKS.md, thirty-third session). A bf16 value has 8
significant bits and fp16 11, so x · 2^−s in fp16 is exact wherever it lands in fp16's normal range: with s
chosen per row and chunk of K (the packing's ``k_chunk``) so that the chunk's largest |x| lands in
[2^14, 2^15) (:data:`TOP_EXPONENT`), every element within 2^28 of it converts exactly, smaller ones to fp16's
subnormals (2^−24 steps: 2^−38 of the largest), and nothing overflows. The chunk's products are then 2^s
times the fp16 loop's f32 partial sum, exact (:class:`~anybit.kernels.decode_half_x.DecodeMatmulHalfX`
multiplies each chunk's partial sum by its rows' factors before the scales).

A factor a chunk, not a row, because it needs no reduction across blocks: :class:`PrepareHalfX` is one pass
of independent blocks, each a run of a row's chunks (the thirty-third session's factor a row took a cluster
of 8 blocks and two passes over the row: 2.8 µs at K = 8192, 5.7 at K = 28672 on the H200, more than the fp16
loop saved on those shapes). :func:`prepare_half_x` is its torch reference. The factors are stored chunk by
chunk, :data:`FACTOR_ROWS` a chunk (rows past M: zeros), so that a decode block copies its rows' factors of
a chunk as whole 16-byte vectors with its x.
"""

from __future__ import annotations

import functools

import torch

import anybit
from anybit.dtypes import bfloat16, float16, float32, int32
from anybit.ir import cdiv
from anybit.kernels.checks import run_kernel
from anybit.layout import spatial

#: The exponent a chunk's largest |x| takes in fp16: [2^14, 2^15), below fp16's largest finite 65504.
TOP_EXPONENT = 14
#: Warps a block of the preparation; each thread converts one 16-byte vector of bf16.
WARPS = 4
VECTOR = 8  # bf16 elements in 16 bytes
#: Rows of the factors a chunk ([K / k_chunk, FACTOR_ROWS] f32): the decode route's largest M.
FACTOR_ROWS = 16
#: f32 exponent field values: the factor 2^(e − 127 − TOP_EXPONENT) of a largest |x| with exponent field e
#: is an f32 normal for e ≥ LOWEST_FIELD (chunks whose largest |x| is below 2^−112, zeros among them, are
#: scaled as if it were 2^−112: their fp16 copy then sits below 2^15 too).
LOWEST_FIELD = TOP_EXPONENT + 1


def chunk_exponents(x: torch.Tensor, k_chunk: int) -> torch.Tensor:
    """The f32 exponent field e of each chunk's largest |x| (at least :data:`LOWEST_FIELD`), int32
    [M, K / k_chunk]."""
    m, k = x.shape
    largest = x.float().abs().view(m, k // k_chunk, k_chunk).amax(dim=-1)
    field = (largest.view(torch.int32) >> 23) & 255
    return torch.clamp(field, min=LOWEST_FIELD)


def prepare_half_x(x: torch.Tensor, k_chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x · 2^−s in fp16 [M, K], 2^s in f32 [K / k_chunk, FACTOR_ROWS]) for bf16 x [M ≤ 16, K]: torch's form
    of :class:`PrepareHalfX`, s per row and chunk of ``k_chunk`` from its largest |x| (:data:`TOP_EXPONENT`);
    rows of the factors past M are zeros. Exact: x == half · factor for every element within 2^28 of its
    chunk's largest."""
    if x.dim() != 2 or x.dtype != torch.bfloat16 or not 1 <= x.shape[0] <= FACTOR_ROWS:
        raise ValueError(f"expected bf16 x [M ≤ {FACTOR_ROWS}, K], got {x.dtype} {list(x.shape)}")
    m, k = x.shape
    if k_chunk <= 0 or k % k_chunk:
        raise ValueError(f"expected K a multiple of k_chunk, got K = {k}, k_chunk = {k_chunk}")
    field = chunk_exponents(x, k_chunk)
    scale = ((127 + 127 + TOP_EXPONENT - field) << 23).view(torch.float32)
    half = (x.float().view(m, k // k_chunk, k_chunk) * scale[..., None]).to(torch.float16).view(m, k)
    factors = torch.zeros((k // k_chunk, FACTOR_ROWS), dtype=torch.float32, device=x.device)
    factors[:, :m] = ((field - TOP_EXPONENT) << 23).view(torch.float32).T
    return half, factors


class PrepareHalfX(anybit.Script):
    """bf16 x [M, K] → (x · 2^−s in fp16 [M, K], 2^s in f32 [K / k_chunk, FACTOR_ROWS]), s per row and chunk
    (see the module docstring).

    A block takes a run of a row's chunks, 32·warps 16-byte vectors (8 chunks of 128 with 4 warps), each
    thread one vector: one load round trip, the chunk's largest |x| across its k_chunk / 8 lanes, the fp16
    copy and the chunk's factor stored. Chunks past K are masked (K a multiple of k_chunk). A dependent
    launch: it waits for the kernel before it (which writes x) and lets the next one (the decode kernel,
    which loads its first weight bytes meanwhile) launch at once."""

    def __init__(self, k_chunk: int, warps: int = WARPS) -> None:
        super().__init__()
        if warps < 1 or warps > 32:
            raise ValueError(f"expected 1 to 32 warps, got {warps}")
        if k_chunk % VECTOR or (32 * warps * VECTOR) % k_chunk:
            raise ValueError(
                f"expected k_chunk a multiple of {VECTOR} dividing {32 * warps * VECTOR} (a block's bf16 "
                f"elements), got {k_chunk}"
            )
        self.k_chunk, self.warps = k_chunk, warps

    def __call__(
        self,
        x: anybit.ptr(anybit.bfloat16),
        half: anybit.ptr(anybit.float16),
        factors: anybit.ptr(anybit.float32),
        m: anybit.int32,
        k: anybit.int32,
    ):
        kc, warps = self.k_chunk, self.warps
        chunks = 32 * warps * VECTOR // kc  # a block's chunks
        self.attrs.blocks = [cdiv(k // kc, chunks), m]
        self.attrs.warps = warps
        self.assume_divisible(k, kc)
        self.wait_prior_grids()
        self.allow_dependent_grids()
        layout = spatial(1, chunks, kc // VECTOR).local(1, 1, VECTOR)
        gx = self.global_view(x, bfloat16, [m, k // kc, kc])
        gh = self.global_view(half, float16, [m, k // kc, kc])
        gf = self.global_view(factors, float32, [1, k // kc, FACTOR_ROWS])
        row, first = self.blockIdx.y, self.blockIdx.x * chunks
        tile = self.load_global(gx, [row, first, 0], [1, chunks, kc], layout=layout)
        largest = self.max(abs(self.cast(tile, float32)), 2, keepdim=True)
        field = self.maximum((self.view(largest, int32) >> 23) & 255, LOWEST_FIELD)
        scale = self.view((127 + 127 + TOP_EXPONENT - field) << 23, float32)
        self.store_global(gh, self.cast(self.cast(tile, float32) * scale, float16), [row, first, 0])
        self.store_global(gf, self.view((field - TOP_EXPONENT) << 23, float32), [0, first, row])


def new_factors(k: int, k_chunk: int, device) -> torch.Tensor:
    """A factors buffer [K / k_chunk, FACTOR_ROWS] f32 for :class:`PrepareHalfX`: zeros (the rows past M,
    which no launch writes, stay zeros: a decode block multiplies its rows past M, zero sums, by them)."""
    return torch.zeros((k // k_chunk, FACTOR_ROWS), dtype=torch.float32, device=device)


def prepare_half_x_on_device(
    x: torch.Tensor, k_chunk: int, out: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`prepare_half_x` by the :class:`PrepareHalfX` kernel (CUDA tensors on the GPU, CPU tensors on
    the interpreter); ``out``: (half [M, K] fp16, factors [K / k_chunk, FACTOR_ROWS] f32, rows past M zeros:
    :func:`new_factors`) to fill, else new ones, their rows of x poisoned first."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.dtype != torch.bfloat16:
        raise ValueError(f"expected bf16 x [M, K], got {getattr(x, 'dtype', type(x).__name__)}")
    m, k = x.shape
    if not 1 <= m <= FACTOR_ROWS:
        raise ValueError(f"expected 1 to {FACTOR_ROWS} rows of x (the factors' rows a chunk), got {m}")
    if k % k_chunk:
        raise ValueError(f"expected K a multiple of k_chunk {k_chunk} (a factor a chunk), got {k}")
    kernel = prepare_kernel(k_chunk)  # checks k_chunk
    x = x.contiguous()
    if out is None:
        factors = new_factors(k, k_chunk, x.device)
        factors[:, :m] = float("nan")
        out = (torch.full((m, k), float("nan"), dtype=torch.float16, device=x.device), factors)
    half, factors = out
    if (
        half.shape != (m, k)
        or half.dtype != torch.float16
        or factors.shape != (k // k_chunk, FACTOR_ROWS)
        or factors.dtype != torch.float32
    ):
        raise ValueError(
            f"expected out (fp16 [{m}, {k}], f32 [{k // k_chunk}, {FACTOR_ROWS}]), got ({half.dtype} "
            f"{list(half.shape)}, {factors.dtype} {list(factors.shape)})"
        )
    run_kernel(kernel, x, half, factors, m, k)
    return half, factors


@functools.cache
def prepare_kernel(k_chunk: int) -> PrepareHalfX:
    """The shared preparation kernel of one chunk width (one instance each: its compiled forms are cached
    with it)."""
    return PrepareHalfX(k_chunk)
