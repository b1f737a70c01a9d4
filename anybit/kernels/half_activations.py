"""bf16 activations as fp16 times a power of two a row, or a row and chunk: what lets a bf16 model use the
fp16 decode loop.

The decode kernels' conversions into bf16 cost more than into fp16 (bf16's 7-bit mantissa holds one 4-bit
code a half where fp16's 10 bits take a shifted pair, and 8-bit codes go through f32): on the H200 the bf16
rows of the suite run 3–15% behind their fp16 twins (BENCHMARKS.md, thirty-third session). A bf16 value has 8
significant bits and fp16 11, so x · 2^−s in fp16 is exact wherever it lands in fp16's normal range: with s
chosen so that the largest |x| it covers lands in [2^14, 2^15) (:data:`TOP_EXPONENT`), every element within
2^28 of it converts exactly, smaller ones to fp16's subnormals (2^−24 steps: 2^−38 of the largest), and
nothing overflows. The products are then 2^s times the fp16 loop's f32 sums, exact
(:class:`~anybit.kernels.decode_half_x.DecodeMatmulHalfX`).

Two forms of s, each a kernel here and a form of the dispatch's route (:mod:`anybit.ops.half_choice`):

* **a factor a row** (``k_chunk=None``; :class:`PrepareHalfXRows`): factors [M]; the decode kernel
  multiplies its f32 sums once, before the bias. The row's largest |x| needs a reduction across the
  row: a cluster of :data:`CLUSTER` blocks and two passes over it (2.8 µs at K = 8192, 5.7 at K = 28672
  on the H200).
* **a factor a row and chunk of K** (``k_chunk``, the packing's; :class:`PrepareHalfX`): factors
  [K / k_chunk, :data:`FACTOR_ROWS`] (rows past M: zeros), stored chunk by chunk so that a decode block
  copies its rows' factors of a chunk as whole 16-byte vectors with its x; the decode kernel multiplies
  each chunk's partial sum by them. One pass of independent blocks (1.3–1.7 µs), but a multiply an
  accumulator a chunk in the loop, which long loops (57344×8192) pay for.

:func:`prepare_half_x` is the torch reference of both.
"""

from __future__ import annotations

import functools

import torch

import anybit
from anybit.dtypes import bfloat16, float16, float32, int32
from anybit.ir import cdiv
from anybit.kernels.checks import run_kernel
from anybit.layout import spatial

#: The exponent the largest |x| a factor covers takes in fp16: [2^14, 2^15), below fp16's largest 65504.
TOP_EXPONENT = 14
#: Warps a block of either preparation: the chunk form's threads convert one 16-byte vector of bf16 each.
WARPS = 4
VECTOR = 8  # bf16 elements in 16 bytes
#: The row form's blocks a row of x, one thread-block cluster: each takes 1/CLUSTER of the row, their largest
#: |x| meet in distributed shared memory (one block a row, 8 warps, took 3 µs at K = 8192 and 8 at K = 28672
#: on the H200: two passes over the row one load round trip after another); UNROLL steps of 16-byte vectors
#: a thread in flight.
CLUSTER = 8
UNROLL = 4
#: Rows of the chunk form's factors a chunk ([K / k_chunk, FACTOR_ROWS] f32): the decode route's largest M.
FACTOR_ROWS = 16
#: f32 exponent field values: the factor 2^(e − 127 − TOP_EXPONENT) of a largest |x| with exponent field e
#: is an f32 normal for e ≥ LOWEST_FIELD (rows or chunks whose largest |x| is below 2^−112, zeros among
#: them, are scaled as if it were 2^−112: their fp16 copy then sits below 2^15 too).
LOWEST_FIELD = TOP_EXPONENT + 1


def largest_exponents(x: torch.Tensor, k_chunk: int | None = None) -> torch.Tensor:
    """The f32 exponent field e of the largest |x| of each row (``k_chunk`` None: int32 [M]) or of each row
    and chunk (int32 [M, K / k_chunk]), at least :data:`LOWEST_FIELD`."""
    m, k = x.shape
    grouped = x.float().abs().view(m, 1 if k_chunk is None else k // k_chunk, -1)
    field = (grouped.amax(dim=-1).view(torch.int32) >> 23) & 255
    field = torch.clamp(field, min=LOWEST_FIELD)
    return field[:, 0] if k_chunk is None else field


def check_x(x, k_chunk: int | None) -> None:
    """Raise a ValueError naming what is wrong with bf16 ``x`` [M, K] for a preparation (``k_chunk``: the
    chunk form's; M ≤ :data:`FACTOR_ROWS` and K a multiple of it) — the row form: K in whole 16-byte
    vectors for each of the cluster's :data:`CLUSTER` blocks."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.dtype != torch.bfloat16:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected bf16 x [M, K], got {getattr(x, 'dtype', '')} {shape}")
    m, k = x.shape
    if k_chunk is None:
        if k % (VECTOR * CLUSTER):
            raise ValueError(
                f"expected K a multiple of {VECTOR * CLUSTER} (a cluster's {CLUSTER} blocks a row, 16-byte "
                f"vectors of bf16), got {k}"
            )
        return
    if not 1 <= m <= FACTOR_ROWS:
        raise ValueError(f"expected 1 to {FACTOR_ROWS} rows of x (the factors' rows a chunk), got {m}")
    if k_chunk <= 0 or k % k_chunk:
        raise ValueError(f"expected K a multiple of k_chunk {k_chunk} (a factor a chunk), got {k}")


def prepare_half_x(x: torch.Tensor, k_chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x · 2^−s in fp16 [M, K], 2^s in f32) for bf16 x [M, K]: torch's form of both preparations, s from the
    largest |x| it covers (:data:`TOP_EXPONENT`). ``k_chunk`` None: s a row, factors [M]
    (:class:`PrepareHalfXRows`); else s a row and chunk of ``k_chunk``, factors [K / k_chunk,
    :data:`FACTOR_ROWS`] with the rows past M zeros (:class:`PrepareHalfX`). Exact: x == half · factor for
    every element within 2^28 of the largest its factor covers."""
    check_x(x, k_chunk)
    m, k = x.shape
    field = largest_exponents(x, k_chunk)
    scale = ((127 + 127 + TOP_EXPONENT - field) << 23).view(torch.float32)
    factor = ((field - TOP_EXPONENT) << 23).view(torch.float32)
    if k_chunk is None:
        return (x.float() * scale[:, None]).to(torch.float16), factor
    half = (x.float().view(m, k // k_chunk, k_chunk) * scale[..., None]).to(torch.float16).view(m, k)
    factors = torch.zeros((k // k_chunk, FACTOR_ROWS), dtype=torch.float32, device=x.device)
    factors[:, :m] = factor.T
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


class PrepareHalfXRows(anybit.Script):
    """bf16 x [M, K] → (x · 2^−s in fp16 [M, K], 2^s in f32 [M]), s a row (see the module docstring).

    A cluster of :data:`CLUSTER` blocks a row, each block 1/CLUSTER of it: each thread reads 16-byte vectors
    of the block's part (:data:`UNROLL` steps unrolled, their loads in flight together) and keeps the
    largest |x| it saw; the block's largest goes to its shared memory, every block of the cluster takes the
    largest of the cluster's (distributed shared memory, between two cluster barriers), then reads its part
    again (from L1/L2) and stores its fp16 copy. K a multiple of 8 · CLUSTER (every packed weight's K is). A
    dependent launch, as :class:`PrepareHalfX`."""

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


def new_factors(m: int, k: int, k_chunk: int | None, device) -> torch.Tensor:
    """A factors buffer for a preparation: [M] f32 for the row form (``k_chunk`` None), else [K / k_chunk,
    :data:`FACTOR_ROWS`] f32 zeros (the rows past M, which no launch writes, stay zeros: a decode block
    multiplies its rows past M, zero sums, by them)."""
    if k_chunk is None:
        return torch.empty((m,), dtype=torch.float32, device=device)
    return torch.zeros((k // k_chunk, FACTOR_ROWS), dtype=torch.float32, device=device)


def prepare_half_x_on_device(
    x: torch.Tensor, k_chunk: int | None = None, out: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`prepare_half_x` by its kernel (:func:`prepare_kernel`; CUDA tensors on the GPU, CPU tensors on
    the interpreter); ``out``: (half [M, K] fp16, factors as :func:`new_factors` makes them) to fill, else
    new ones, x's rows of them poisoned first."""
    check_x(x, k_chunk)
    m, k = x.shape
    kernel = prepare_kernel(k_chunk)  # checks k_chunk
    x = x.contiguous()
    if out is None:
        factors = new_factors(m, k, k_chunk, x.device)
        factors[..., :m] = float("nan")
        out = (torch.full((m, k), float("nan"), dtype=torch.float16, device=x.device), factors)
    half, factors = out
    expected = new_factors(m, k, k_chunk, "meta").shape
    if (
        half.shape != (m, k)
        or half.dtype != torch.float16
        or factors.shape != expected
        or (factors.dtype != torch.float32)
    ):
        raise ValueError(
            f"expected out (fp16 [{m}, {k}], f32 {list(expected)}), got ({half.dtype} {list(half.shape)}, "
            f"{factors.dtype} {list(factors.shape)})"
        )
    run_kernel(kernel, x, half, factors, m, k)
    return half, factors


@functools.cache
def prepare_kernel(k_chunk: int | None = None) -> PrepareHalfX | PrepareHalfXRows:
    """The shared preparation kernel of one form: a factor a row (``k_chunk`` None) or a row and chunk of
    ``k_chunk`` (one instance each: its compiled forms are cached with it)."""
    return PrepareHalfXRows() if k_chunk is None else PrepareHalfX(k_chunk)
