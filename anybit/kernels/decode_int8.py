"""A decode kernel for 1-, 2- and 4-bit unsigned codes through the int8 tensor cores, on the packed weights.

The f16 route (:mod:`anybit.kernels.decode_transposed`) converts a pair of codes into an f16x2 register with
one ``lop3`` at best: for 1-bit codes that alone is 0.5 ALU-pipe instructions a weight, and uint1's loop
spends ~0.74 (SASS), more than 80% of the read ceiling leaves on a 57344 × 8192 layer
(docs/notes/decode-kernel.md, thirty-first session). Here the codes become int8 values code · 2^e, four a
``lop3`` (:func:`anybit.cuda.conversions.byte_field_word`: a shift, which nvcc may issue on the FMA pipe, and
a mask), and ``mma.m16n8k32`` multiplies them by x held as fixed point
(:mod:`anybit.kernels.int8_activations`: X = round(x / r), |X| ≤ 8191, r = the group's largest |x| / 8191,
two int8 planes X = 128·H + L). A group's products come out as int32, exact:

    Σ_k x·(q − z)·s  ≈  s · (r · Σ_k X·q − z · r · Σ_k X),   Σ_k X·q = (128·Σ H·A + Σ L·A) / 2^e,  A = q·2^e

so the only rounding beside the output's is x's fixed point (2^-14 of the group's largest |x|).

The weight is the one :func:`~anybit.kernels.pack` makes (operand "a", codes stored whole): the int8 route
reads its bytes with k relabelled (:mod:`anybit.kernels.int8_order`), no second copy. A warp takes ``tiles``
m16 tiles (16·tiles rows), a divisor of the packing's: a packed warp tile's m16 tiles are contiguous runs of
its bytes. Scale groups of one chunk (group_size = k_chunk), zero points or none, M ≤ 16 (8 or 16 rows of x
a block: x the n8 operand, one tile or two), split-K whose last block adds the partial sums, weight bytes
``ahead`` chunks ahead in registers, no shared memory or barrier. At M = 1 the group-columns form puts 8
chunks' x in the mma's 8 columns, so their int32 sums are scaled once every 8 chunks.
"""

from __future__ import annotations

import functools

import torch

import anybit
from anybit.dtypes import float32, int8, int32, uint8
from anybit.kernels.checks import run_kernel
from anybit.kernels.int8_activations import (
    COLUMN_CHUNK,
    COLUMN_GROUPS,
    ROWS,
    column_planes,
    prepare_x_on_device,
    x_byte_layout,
    x_operand_layout,
)
from anybit.kernels.int8_order import check_code_width, code_layout, operand_layout
from anybit.kernels.layout import PackedLayout
from anybit.kernels.packing import PackedWeight
from anybit.layout import RegisterLayout, local, reduce, spatial, squeeze, unsqueeze


def code_exponent(nbits: int) -> int:
    """e of the int8 values code · 2^e: the codes' field at the top of a non-negative int8 (bits 7−n to 6)."""
    return 7 - nbits


def replicated(layout: RegisterLayout, warps: int) -> RegisterLayout:
    """``layout`` held by every one of ``warps`` warps (each warp the same elements)."""
    return squeeze(reduce(spatial(warps, *[1] * layout.rank) * unsqueeze(layout, 0), [0], keepdims=True), [0])


def check_int8_route(layout: PackedLayout, tiles: int) -> None:
    """That the int8 route can read a weight packed as ``layout`` with ``tiles`` m16 tiles a warp; a clear
    error otherwise."""
    problems = []
    if layout.dtype.kind != "uint" or layout.nbits not in (1, 2, 4):
        problems.append(f"unsigned 1-, 2- or 4-bit codes (got {layout.dtype.name})")
    if layout.operand != "a" or layout.gated or layout.planar:
        problems.append("the default packing (operand 'a', not gated, codes whole)")
    if layout.group_size != layout.k_chunk:
        problems.append(
            f"scale groups of one chunk (group_size {layout.group_size}, k_chunk {layout.k_chunk})"
        )
    packed_tiles = layout.n_per_warp // 16
    part_bytes = layout.bytes_per_thread * tiles // max(packed_tiles, 1)
    if packed_tiles % tiles or (tiles < packed_tiles and part_bytes % 16):
        # a warp's part of a packed warp tile must be whole 16-byte vectors of each thread: contiguous bytes
        problems.append(
            f"tiles dividing the packing's {packed_tiles} m16 tiles a warp in parts of whole 16-byte vectors "
            f"a thread (got tiles={tiles}: {part_bytes} bytes a thread)"
        )
    if problems:
        raise ValueError("the int8 route takes " + "; ".join(problems))
    check_code_width(layout.nbits, layout.k_chunk)


class DecodeInt8(anybit.Script):
    """y [M ≤ rows, N] = x @ dequant(W)^T for unsigned ``nbits``-bit codes (zero points or none) in scale
    groups of ``k_chunk``, through int8 ``mma`` on the packed weight's bytes (see the module docstring);
    ``rows`` 8 or 16 (the mma's n8 tiles)."""

    def __init__(
        self,
        nbits: int,
        act,
        *,
        warps: int = 4,
        tiles: int = 2,
        k_chunk: int = 128,
        split: int = 1,
        group_columns: bool = False,
        rows: int = ROWS,
        ahead: int = 1,
        has_zeros: bool = True,
    ) -> None:
        super().__init__()
        if rows not in (8, 16) or (group_columns and rows != 8):
            raise ValueError(f"expected 8 or 16 rows of x (8 with group_columns), got {rows}")
        if ahead < 1:
            raise ValueError(f"expected the weight bytes at least one chunk ahead, got ahead={ahead}")
        #: Chunks of weight bytes in flight ahead of the one converting (registers: ahead · bytes_per_thread).
        self.ahead = ahead
        self.rows = rows
        check_code_width(nbits, k_chunk)
        #: Whether the weight has zero points (without, the zeros pointer is not read).
        self.has_zeros = has_zeros
        act = anybit.dtype(act)
        if act.name not in ("float16", "bfloat16"):
            raise ValueError(f"expected float16 or bfloat16 activations, got {act.name}")
        if warps < 1 or warps > 32 or tiles < 1:
            raise ValueError(
                f"expected 1 to 32 warps and at least one m16 tile a warp, got warps={warps}, tiles={tiles}"
            )
        if split < 1:
            raise ValueError(f"expected split ≥ 1 (blocks along K), got {split}")
        self.nbits, self.act, self.warps, self.tiles, self.k_chunk = nbits, act, warps, tiles, k_chunk
        #: Blocks along K: the last of a block column's splits to finish adds their partial sums.
        self.split = split
        #: M = 1 only: the mma's 8 columns carry 8 chunks (scale groups) of the one row of x
        #: (:func:`~anybit.kernels.int8_activations.prepare_x_columns`): a group's int32 sums are scaled once
        #: every 8 chunks, not every chunk.
        self.group_columns = group_columns
        #: N rows a block multiplies (its warps' m16 tiles): N must be a multiple.
        self.rows_n = warps * 16 * tiles
        self.bytes_per_thread = 16 * tiles * k_chunk // 32 * nbits // 8

    def __call__(
        self,
        w: anybit.ptr(anybit.uint8),
        planes: anybit.ptr(anybit.int8),
        inverse: anybit.ptr(anybit.float32),
        sums: anybit.ptr(anybit.float32),
        scales: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        zeros: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        y: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        m: anybit.int32,
        n: anybit.int32,
        k: anybit.int32,
    ):
        warps, kc, bpt, rows_n, rows = self.warps, self.k_chunk, self.bytes_per_thread, self.rows_n, self.rows
        self.attrs.blocks = [n // rows_n, self.split]
        self.attrs.warps = warps
        self.assume_divisible(n, rows_n)
        step_chunks = COLUMN_GROUPS if self.group_columns else 1  # chunks a scaling step covers
        self.assume_divisible(k, kc * step_chunks)
        e = code_exponent(self.nbits)
        code_type = anybit.dtype(f"uint{self.nbits}")
        operand = spatial(warps, 1) * operand_layout(self.tiles, kc)
        codes_layout = spatial(warps, 1) * code_layout(self.nbits, self.tiles, kc)
        vector = min(16, bpt)
        byte_layout = spatial(warps, 1) * local(1, bpt // vector).spatial(1, 32).local(1, vector)
        tiles_n = n // (16 * self.tiles)
        gw = self.global_view(w, uint8, [k // kc * tiles_n, 32 * bpt])
        gx = self.global_view(planes, int8, [k // kc * 2, rows * kc])
        x_bytes = replicated(x_byte_layout(kc, rows), warps)
        x_operand = replicated(x_operand_layout(kc, rows), warps)
        gr = self.global_view(inverse, float32, [k // kc // step_chunks, rows])
        gc = self.global_view(sums, float32, [k // kc // step_chunks, rows])
        gs = self.global_view(scales, self.act, [n, k // kc], strides=[1, n])
        gz = self.global_view(zeros, self.act, [n, k // kc], strides=[1, n])
        gy = self.global_view(y, self.act, [n, m], strides=[1, n])
        runs = k // kc // step_chunks
        first = self.blockIdx.y * runs // self.split * step_chunks
        count = (self.blockIdx.y + 1) * runs // self.split * step_chunks - first
        n0 = self.blockIdx.x * rows_n
        acc = self.register_tensor(float32, [rows_n, rows], init=0.0)
        if self.group_columns:  # each group's int32 sums, over the 8 chunks of a step
            sums_high = self.register_tensor(int32, [rows_n, rows], init=0)
            sums_low = self.register_tensor(int32, [rows_n, rows], init=0)
        # The weight bytes ``ahead`` chunks ahead in registers (a queue of ahead + 1 buffers, the loop
        # unrolled as many times so that the compiler renames instead of moving): 1-bit codes are 8 bytes a
        # thread a chunk, too few in flight for the memory system with one chunk ahead. The first chunks
        # are loaded before waiting for the kernel that prepares x (they do not depend on it).
        queue = []
        for index in range(self.ahead):
            queue.append(self.register_tensor(uint8, [warps, 32 * bpt], layout=byte_layout))
            if index < count:
                self.assign(queue[index], self._load_chunk(gw, first + index, tiles_n, byte_layout))
        self.wait_prior_grids()
        self.allow_dependent_grids()
        for step in self.range(count, unroll=max(2, self.ahead)):
            chunk = first + step
            raw = self.register_tensor(uint8, [warps, 32 * bpt], layout=byte_layout)
            self.assign(raw, queue[0])
            for index in range(self.ahead - 1):
                self.assign(queue[index], queue[index + 1])
            if step + self.ahead < count:
                self.assign(queue[-1], self._load_chunk(gw, chunk + self.ahead, tiles_n, byte_layout))
            codes = self.view(raw, code_type, codes_layout)
            weights = self.cast(codes, int8, layout=operand, exponent=e)
            high = self.load_global(gx, [chunk * 2, 0], [1, rows * kc], layout=x_bytes, in_bounds=True)
            low = self.load_global(gx, [chunk * 2 + 1, 0], [1, rows * kc], layout=x_bytes, in_bounds=True)
            high, low = self.view(high, int8, x_operand), self.view(low, int8, x_operand)
            if self.group_columns:
                self.dot(weights, high, sums_high, out=sums_high)
                self.dot(weights, low, sums_low, out=sums_low)
                if step % COLUMN_GROUPS == COLUMN_GROUPS - 1:  # the step's 8 groups, one a column
                    run = chunk // COLUMN_GROUPS
                    acc += self._scaled(
                        sums_high, sums_low, gr, gc, gs, gz, run, [n0, run * COLUMN_GROUPS], e
                    )
                    self.assign(sums_high, self.register_tensor(int32, [rows_n, rows], init=0))
                    self.assign(sums_low, self.register_tensor(int32, [rows_n, rows], init=0))
            else:
                zero32 = self.register_tensor(int32, [rows_n, rows], init=0)
                sum_high = self.dot(weights, high, zero32)
                sum_low = self.dot(weights, low, zero32)
                acc += self._scaled(sum_high, sum_low, gr, gc, gs, gz, chunk, [n0, chunk], e)
        if self.group_columns:  # y = the sum of the groups' columns
            acc = self.sum(acc, 1, keepdim=True)
        if self.split > 1:
            acc = self._sum_splits(acc, n, n0)
        self.store_global(gy, self.cast(acc, self.act), [n0, 0])

    def _load_chunk(self, gw, chunk, tiles_n, byte_layout):
        """This block's warps' weight bytes of chunk ``chunk``."""
        return self.load_global(
            gw,
            [chunk * tiles_n + self.blockIdx.x * self.warps, 0],
            [self.warps, 32 * self.bytes_per_thread],
            layout=byte_layout,
            in_bounds=True,
        )

    @anybit.runtime_helper
    def _sum_splits(self, acc, n, n0):
        """Split-K's reduction without atomics on y or a fill before the launch: every split stores its
        partial sum into its slice of a workspace and arrives at its block column's counter; all but the
        last to arrive exit, and the last adds the partials in split order (the same sum whatever order the
        blocks ran in). The counter wraps back to 0 on the last arrival."""
        width = acc.shape[1]
        partials = self.global_tensor(float32, [self.split * n, width])
        counters = self.global_tensor(int32, [n // self.rows_n], kept_clean=True)
        self.store_global(partials, acc, [self.blockIdx.y * n + n0, 0])
        if self.arrive(counters, [self.blockIdx.x], self.split) < self.split - 1:
            self.exit()
        tiles = [self.load_global(partials, [s * n + n0, 0], [self.rows_n, width]) for s in range(self.split)]
        total = tiles[0]
        for tile in tiles[1:]:
            total = total + tile
        return total

    def _scaled(self, sum_high, sum_low, gr, gc, gs, gz, row, scale_offsets, e):
        """A step's group sums as f32 [rows_n, 8], scaled: (X·A / 2^e · r − z · r·Σ X) · s (z = 0 without zero
        points), with r and r·Σ X
        from row ``row`` of ``gr``/``gc`` and the scales and zero points at ``scale_offsets`` (a column
        each, or 8 groups' columns in the group-columns form)."""
        width = COLUMN_GROUPS if self.group_columns else 1
        total = self.cast(sum_high * 128 + sum_low, float32)
        r = self.load_global(gr, [row, 0], [1, self.rows], in_bounds=True)
        c = self.load_global(gc, [row, 0], [1, self.rows], in_bounds=True)
        s = self.cast(self.load_global(gs, scale_offsets, [self.rows_n, width], in_bounds=True), float32)
        if not self.has_zeros:
            return total * (r * 2.0**-e) * s
        z = self.cast(self.load_global(gz, scale_offsets, [self.rows_n, width], in_bounds=True), float32)
        return (total * (r * 2.0**-e) - z * c) * s


def int8_route_matmul(
    x: torch.Tensor,
    weight: PackedWeight,
    *,
    warps: int = 4,
    tiles: int = 2,
    split: int = 1,
    ahead: int = 1,
    group_columns: bool | None = None,
) -> torch.Tensor:
    """y [M, N] = x [M ≤ 16, K] @ dequant(W)^T through :class:`DecodeInt8` on a weight from
    :func:`~anybit.kernels.pack` (x prepared by :class:`~anybit.kernels.int8_activations.PrepareX`; 8 rows
    of x a block up to M = 8, 16 beyond; the group-columns form at M = 1 unless ``group_columns`` says
    otherwise). On CPU tensors the interpreter runs both kernels."""
    layout = weight.layout
    if x.dim() != 2 or x.shape[0] > 2 * ROWS or x.shape[1] != layout.k or x.dtype != weight.act_dtype:
        raise ValueError(
            f"expected x [M ≤ {2 * ROWS}, K = {layout.k}] in {weight.act_dtype}, got {list(x.shape)} "
            f"{x.dtype}"
        )
    if x.device != weight.device:
        raise ValueError(f"expected x on the weight's device {weight.device}, got {x.device}; move one")
    m, k = x.shape
    check_int8_route(layout, tiles)
    if layout.n % (warps * 16 * tiles):
        raise ValueError(
            f"expected N = {layout.n} a multiple of warps·16·tiles = {warps * 16 * tiles}; pass fewer warps"
        )
    columns_fit = m == 1 and layout.k_chunk == COLUMN_CHUNK and k % (COLUMN_GROUPS * COLUMN_CHUNK) == 0
    if group_columns is None:
        group_columns = columns_fit
    elif group_columns and not columns_fit:
        raise ValueError(
            f"the group-columns form takes M = 1, k_chunk {COLUMN_CHUNK} and K a multiple of "
            f"{COLUMN_GROUPS * COLUMN_CHUNK}; got M = {m}, k_chunk {layout.k_chunk}, K = {k}"
        )
    rows = ROWS if m <= ROWS else 2 * ROWS
    out = None
    if group_columns:
        runs = k // (COLUMN_GROUPS * COLUMN_CHUNK)
        inverse = torch.empty((runs, ROWS), dtype=torch.float32, device=x.device)
        out = (column_planes(k, COLUMN_CHUNK, x.device), inverse, torch.empty_like(inverse))
    planes, inverse, sums = prepare_x_on_device(
        x, layout.k_chunk, layout.nbits, group_columns=group_columns, rows=rows, out=out
    )
    y = torch.full((m, layout.n), float("nan"), dtype=x.dtype, device=x.device)
    has_zeros = weight.zeros is not None
    kernel = kernel_for(
        layout.nbits, x.dtype, warps, tiles, layout.k_chunk, split, group_columns, rows, ahead, has_zeros
    )
    zeros = weight.zeros if has_zeros else weight.scales
    args = (weight.data, planes, inverse, sums, weight.scales, zeros, y, m, layout.n, k)
    run_kernel(kernel, *args)
    return y


@functools.lru_cache(maxsize=256)
def kernel_for(
    nbits: int,
    act: torch.dtype,
    warps: int,
    tiles: int,
    k_chunk: int,
    split: int = 1,
    group_columns: bool = False,
    rows: int = ROWS,
    ahead: int = 1,
    has_zeros: bool = True,
) -> DecodeInt8:
    """One :class:`DecodeInt8` a configuration (its compiled forms cached with it)."""
    return DecodeInt8(
        nbits,
        act,
        warps=warps,
        tiles=tiles,
        k_chunk=k_chunk,
        split=split,
        group_columns=group_columns,
        rows=rows,
        ahead=ahead,
        has_zeros=has_zeros,
    )


def build_configuration(
    nbits: int,
    warps: int,
    tiles: int,
    split: int,
    group_columns: bool,
    ahead: int,
    rows: int,
    m: int,
    n: int,
    k: int,
    arch: str,
) -> int:
    """Trace, generate and compile one fp16 :class:`DecodeInt8` configuration (zero points) for ``arch`` (a
    build worker's job, :mod:`anybit.runtime.build_pool`; no GPU needed): its NVRTC output lands in the disk
    cache, where a launch of the same configuration finds it."""
    kernel = kernel_for(nbits, torch.float16, warps, tiles, 128, split, group_columns, rows, ahead)
    anybit.compile(kernel, *(None,) * 7, m, n, k, arch=arch)
    return 0
