"""A decode kernel for 1-, 2- and 4-bit unsigned codes through the int8 tensor cores (a prototype).

The f16 route (:mod:`anybit.kernels.decode_transposed`) converts a pair of codes into an f16x2 register with
one ``lop3`` at best: for 1-bit codes that alone is 0.5 ALU-pipe instructions a weight, and uint1's loop
spends ~0.74 (SASS), more than 80% of the read ceiling leaves on a 57344 × 8192 layer
(docs/notes/decode-kernel.md, thirty-first session). Here the codes become int8 values code · 2^e, four a
``lop3`` (:func:`anybit.cuda.conversions.byte_field_word`: a shift, which nvcc may issue on the FMA pipe, and
a mask), and ``mma.m16n8k32`` multiplies them by x held as fixed point: each row of x and scale group g
rounded to X = round(x / r), |X| ≤ 8191 (r = max |x| / 8191), split exactly into two int8 planes
X = 128·H + L. A group's products come out as int32, exact:

    Σ_k x·(q − z)·s  ≈  s · (r · Σ_k X·q − z · r · Σ_k X),   Σ_k X·q = (128·Σ H·A + Σ L·A) / 2^e,  A = q·2^e

so the only rounding beside the output's is x's fixed point (2^-14 of the group's largest |x|).

Prototype scope (branch ``next/int8-route``, outside the dispatch until timed on the GPU:
``STEPS=int8_route``, ``benchmarks/int8_route.py``): unsigned 1-, 2- and 4-bit codes with zero points,
scale groups of one chunk (``group`` = k_chunk), M ≤ 16 (8 or 16 rows of x a block: x the n8 operand, one
tile or two), split-K whose last block adds the partial sums; x prepared by the :class:`PrepareX` kernel
(:func:`prepare_x` is its torch reference), the weight packed by numpy (:func:`pack_int8_route`). No ring
and no barrier: every warp loads its own weight bytes a chunk ahead and its x fragments (stored in fragment
order) and never meets the others. At M = 1 the group-columns form (``group_columns``) puts 8 scale groups
in the mma's 8 columns, so a group's int32 sums are scaled once every 8 chunks (:func:`column_order`,
:func:`prepare_x_columns`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

import anybit
from anybit.dtypes import float32, int8, int32, uint8
from anybit.kernels.layout import swap_least_local_mode
from anybit.kernels.quantize import QuantizedWeight
from anybit.layout import RegisterLayout, local, reduce, spatial, squeeze, unsqueeze
from anybit.layout.mma import MMA_M16N8K32_I8_A, MMA_M16N8K32_I8_B

#: x's fixed point: |X| ≤ X_MAX, split as 128·H + L with H, L int8.
X_MAX = 8191
#: Rows of x a block multiplies (the mma's n).
ROWS = 8


def code_exponent(nbits: int) -> int:
    """e of the int8 values code · 2^e: the codes' field at the top of a non-negative int8 (bits 7−n to 6)."""
    return 7 - nbits


def byte_fields(layout: RegisterLayout, nbits: int) -> RegisterLayout:
    """``layout`` (an int8 mma operand: 4 bytes a register, the least significant local mode) with the local
    order of every word of n-bit codes changed from (register, byte) to (byte, register), so that the four
    codes of each int8 register sit 8 bits apart in one 32-bit word of codes."""
    return swap_least_local_mode(layout, 4, 8 // nbits)


def warp_operand_layout(tiles: int, k_chunk: int) -> RegisterLayout:
    """One warp's weight tile as the int8 A operand: [16·tiles, k_chunk], ``tiles`` m16 tiles of N."""
    return local(tiles, k_chunk // 32) * MMA_M16N8K32_I8_A


def x_operand_layout(k_chunk: int, rows: int = ROWS) -> RegisterLayout:
    """One warp's x plane chunk as the int8 B operand: [k_chunk, rows] (x^T: k by row of x; rows 8 or 16,
    one n8 tile or two)."""
    return local(k_chunk // 32, rows // 8) * MMA_M16N8K32_I8_B


def x_byte_layout(k_chunk: int, rows: int = ROWS) -> RegisterLayout:
    """A warp's bytes of one x plane chunk [1, rows·k_chunk]: each lane's rows·k_chunk / 32 bytes (its B
    fragments in local order) as 16-byte vectors, a vector of every lane after another."""
    per_lane = k_chunk * rows // 32
    return local(1, per_lane // 16).spatial(1, 32).local(1, 16)


def replicated(layout: RegisterLayout, warps: int) -> RegisterLayout:
    """``layout`` held by every one of ``warps`` warps (each warp the same elements)."""
    return squeeze(reduce(spatial(warps, *[1] * layout.rank) * unsqueeze(layout, 0), [0], keepdims=True), [0])


def fragment_order(planes: torch.Tensor, k_chunk: int) -> torch.Tensor:
    """x planes int8 [2, rows, K] → bytes [K / k_chunk, 2, rows·k_chunk]: chunk c of plane p as a warp loads
    it with :func:`x_byte_layout` and views it as :func:`x_operand_layout` (lane l's fragments contiguous)."""
    rows, k = planes.shape[1:]
    operand = x_operand_layout(k_chunk, rows).map_array()  # [lane, local, (k, row)]
    places = x_byte_layout(k_chunk, rows).map_array()[..., 1]  # [lane, local]: the byte's place in the chunk
    chunks = planes.view(2, rows, k // k_chunk, k_chunk)
    picked = chunks[:, torch.from_numpy(operand[..., 1]), :, torch.from_numpy(operand[..., 0])]
    # picked: [lane, local, 2, chunks] (advanced indices first)
    out = torch.empty(k // k_chunk, 2, rows * k_chunk, dtype=torch.int8, device=planes.device)
    out[:, :, torch.from_numpy(places).reshape(-1)] = picked.reshape(-1, 2, k // k_chunk).permute(2, 1, 0)
    return out


def fixed_point(
    x: torch.Tensor, group: int, rows: int = ROWS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [M ≤ rows, K] in fixed point per row and scale group, rows past M zero: (planes int8 [2, rows, K], H
    and L of X = 128·H + L, |X| ≤ X_MAX; r [rows, K / group] f64, the group's largest |x| / X_MAX (1 where
    all are zero); X int32 [rows, K])."""
    m, k = x.shape
    xf = torch.zeros(rows, k, dtype=torch.float64, device=x.device)
    xf[:m] = x.double()
    groups = xf.view(rows, k // group, group)
    r = groups.abs().amax(-1, keepdim=True) / X_MAX
    r = torch.where(r > 0, r, torch.ones_like(r))
    fixed = torch.round(groups / r).clamp(-X_MAX, X_MAX).to(torch.int32)
    high = torch.div(fixed + 64, 128, rounding_mode="floor")
    low = fixed - 128 * high
    planes = torch.stack([high.view(rows, k), low.view(rows, k)]).to(torch.int8)
    return planes, r.squeeze(-1), fixed.view(rows, k)


def prepare_x(
    x: torch.Tensor, group: int, rows: int = ROWS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [M ≤ rows, K] as the kernel takes it: (the planes of :func:`fixed_point` in fragment order, int8
    [K / group, 2, rows·group] (:func:`fragment_order`); ``inverse`` [K / group, rows] f32: each group's r;
    ``sums`` [K / group, rows] f32: r·Σ X over the group). Rows past M are zero."""
    planes, r, fixed = fixed_point(x, group, rows)
    k = x.shape[1]
    inverse = r.t().contiguous().float()
    sums = (r * fixed.view(rows, k // group, group).sum(-1).double()).t().contiguous().float()
    return fragment_order(planes, group), inverse, sums


#: Scale groups a step of the group-columns form multiplies at once (the mma's 8 columns, M = 1).
COLUMN_GROUPS = 8


def column_order(k: int, group: int) -> np.ndarray:
    """The group-columns form's order of K: position p = group·u + 32·s + 4·b + i of each run of 8 groups
    (sub-chunk u, k32 step s, block b of 4 k, i) holds k = group·b + 16·u + 4·s + i of that run, so every k32
    step of every sub-chunk takes 4 k of each of the 8 groups, group b in rows 4b..4b+3 of the mma's B."""
    run = COLUMN_GROUPS * group
    position = np.arange(run)
    u, s, b, i = position // group, position % group // 32, position % 32 // 4, position % 4
    within = group * b + 16 * u + 4 * s + i
    return (np.arange(k // run)[:, None] * run + within[None, :]).reshape(-1)


def prepare_x_columns(x: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [1, K] for the group-columns form: (planes in fragment order as :func:`prepare_x`, of the B operand
    whose column j holds group j of each run of 8 in rows 4j..4j+3 of every k32 step (K in
    :func:`column_order`) and zeros elsewhere; ``inverse`` and ``sums`` [K / (8·group), 8]: r and r·Σ X of
    group 8·run + j in column j)."""
    if x.shape[0] != 1:
        raise ValueError(f"the group-columns form takes one row of x (M = 1), got {x.shape[0]}")
    k = x.shape[1]
    planes, r, fixed = fixed_point(x, group)
    order = torch.from_numpy(column_order(k, group)).to(x.device)
    block = (torch.arange(k, device=x.device) % 32) // 4  # the group (column) each position feeds
    columns = torch.zeros(2, ROWS, k, dtype=torch.int8, device=x.device)
    for j in range(COLUMN_GROUPS):
        columns[:, j] = torch.where(block == j, planes[:, 0, order], torch.zeros_like(planes[:, 0, order]))
    runs = k // (COLUMN_GROUPS * group)
    inverse = r[0].reshape(runs, COLUMN_GROUPS).float()
    sums = (r[0] * fixed[0].view(k // group, group).sum(-1).double()).reshape(runs, COLUMN_GROUPS).float()
    return fragment_order(columns, group), inverse, sums


def pack_int8_route(codes: torch.Tensor, nbits: int, tiles: int, k_chunk: int) -> torch.Tensor:
    """uint8 codes [N, K] (on any device) → bytes [K / k_chunk, N / (16·tiles), 32·bpt] in :func:`byte_fields`
    order: thread l of warp tile (c, t) holds, at bit i·n of its bpt bytes, the code its code layout's local i
    names; its 16-byte vectors strided by the warp's 512 bytes (the kernel's byte layout: each load
    instruction of a warp reads 512 contiguous bytes). Torch ops, so a large weight packs on the GPU."""
    n_rows, k = codes.shape
    rows = 16 * tiles
    layout = byte_fields(warp_operand_layout(tiles, k_chunk), nbits)
    coords = torch.from_numpy(layout.map_array()).to(codes.device)  # [lane, local, (row, column)]
    per_thread = coords.shape[1]
    bpt = per_thread * nbits // 8
    tiles_n, chunks = n_rows // rows, k // k_chunk
    view = codes.reshape(tiles_n, rows, chunks, k_chunk)
    picked = view[:, coords[..., 0], :, coords[..., 1]]  # [lane, local, tiles_n, chunks] (advanced first)
    picked = picked.permute(3, 2, 0, 1).to(torch.int32)  # [chunks, tiles_n, lane, local]
    per_byte = 8 // nbits
    shifts = torch.arange(per_byte, device=codes.device, dtype=torch.int32) * nbits
    packed = (picked.reshape(chunks, tiles_n, 32, bpt, per_byte) << shifts).sum(-1).to(torch.uint8)
    vector = min(16, bpt)
    packed = packed.reshape(chunks, tiles_n, 32, bpt // vector, vector).permute(0, 1, 3, 2, 4)
    return packed.reshape(chunks, tiles_n, 32 * bpt).contiguous()


class DecodeInt8(anybit.Script):
    """y [M ≤ rows, N] = x @ dequant(W)^T for unsigned ``nbits``-bit codes with zero points and scale groups
    of ``k_chunk``, through int8 ``mma`` (see the module docstring); ``rows`` 8 or 16 (the mma's n8 tiles)."""

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
    ) -> None:
        super().__init__()
        if rows not in (8, 16) or (group_columns and rows != 8):
            raise ValueError(f"expected 8 or 16 rows of x (8 with group_columns), got {rows}")
        if ahead < 1:
            raise ValueError(f"expected the weight bytes at least one chunk ahead, got ahead={ahead}")
        #: Chunks of weight bytes in flight ahead of the one converting (registers: ahead · bytes_per_thread).
        self.ahead = ahead
        self.rows = rows
        if nbits not in (1, 2, 4):
            raise ValueError(f"expected 1-, 2- or 4-bit unsigned codes, got {nbits} bits")
        act = anybit.dtype(act)
        if act.name not in ("float16", "bfloat16"):
            raise ValueError(f"expected float16 or bfloat16 activations, got {act.name}")
        if warps < 1 or warps > 32 or tiles < 1 or k_chunk % 128:
            raise ValueError(
                f"expected 1 to 32 warps, at least one m16 tile a warp and k_chunk a multiple of 128, got "
                f"warps={warps}, tiles={tiles}, k_chunk={k_chunk}"
            )
        if split < 1:
            raise ValueError(f"expected split ≥ 1 (blocks along K), got {split}")
        self.nbits, self.act, self.warps, self.tiles, self.k_chunk = nbits, act, warps, tiles, k_chunk
        #: Blocks along K: the last of a block column's splits to finish adds their partial sums.
        self.split = split
        #: M = 1 only: the mma's 8 columns carry 8 scale groups of the one row of x (:func:`column_order`,
        #: :func:`prepare_x_columns`): a group's int32 sums are scaled once every 8 chunks, not every chunk.
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
        operand = spatial(warps, 1) * warp_operand_layout(self.tiles, kc)
        codes_layout = spatial(warps, 1) * byte_fields(warp_operand_layout(self.tiles, kc), self.nbits)
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
        """A step's group sums as f32 [rows_n, 8], scaled: (X·A / 2^e · r − z · r·Σ X) · s, with r and r·Σ X
        from row ``row`` of ``gr``/``gc`` and the scales and zero points at ``scale_offsets`` (a column
        each, or 8 groups' columns in the group-columns form)."""
        width = COLUMN_GROUPS if self.group_columns else 1
        total = self.cast(sum_high * 128 + sum_low, float32)
        r = self.load_global(gr, [row, 0], [1, self.rows], in_bounds=True)
        c = self.load_global(gc, [row, 0], [1, self.rows], in_bounds=True)
        s = self.cast(self.load_global(gs, scale_offsets, [self.rows_n, width], in_bounds=True), float32)
        z = self.cast(self.load_global(gz, scale_offsets, [self.rows_n, width], in_bounds=True), float32)
        return (total * (r * 2.0**-e) - z * c) * s


@dataclass(frozen=True)
class Int8RouteWeight:
    """A weight packed for :class:`DecodeInt8`: ``data`` from :func:`pack_int8_route`, ``scales`` and
    ``zeros`` [K / k_chunk, N] in the activation dtype (the quantized weight's own)."""

    data: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    nbits: int
    n: int
    k: int
    tiles: int
    k_chunk: int
    group_columns: bool = False


def pack_for_int8_route(
    q: QuantizedWeight, *, tiles: int = 2, group_columns: bool = False
) -> Int8RouteWeight:
    """An unsigned 1-, 2- or 4-bit :class:`~anybit.kernels.QuantizedWeight` with zero points, packed for
    :class:`DecodeInt8` (scale groups of 128 or more, the kernel's k_chunk; N a multiple of 16·tiles); with
    ``group_columns``, K in :func:`column_order` for the M = 1 form (K a multiple of 8 groups)."""
    nbits = q.dtype.nbits
    if q.dtype.kind != "uint" or nbits not in (1, 2, 4) or q.zeros is None:
        raise ValueError(
            f"the int8 route takes unsigned 1-, 2- or 4-bit codes with zero points, got {q.dtype.name}"
            f"{' without zero points' if q.zeros is None else ''}"
        )
    if q.group_size % 128 or q.k % q.group_size or q.n % (16 * tiles):
        raise ValueError(
            f"the int8 route takes scale groups of a multiple of 128 and N a multiple of {16 * tiles} "
            f"(16·tiles), got group_size {q.group_size}, N = {q.n}, K = {q.k}"
        )
    codes = q.codes
    if group_columns:
        if q.k % (COLUMN_GROUPS * q.group_size):
            raise ValueError(
                f"the group-columns form takes K a multiple of {COLUMN_GROUPS} groups "
                f"({COLUMN_GROUPS * q.group_size}), got K = {q.k}"
            )
        codes = codes[:, torch.from_numpy(column_order(q.k, q.group_size)).to(codes.device)]
    data = pack_int8_route(codes, nbits, tiles, q.group_size)
    return Int8RouteWeight(
        data,
        q.scales,
        q.zeros,
        nbits,
        q.n,
        q.k,
        tiles,
        q.group_size,
        group_columns,
    )


def int8_route_matmul(
    x: torch.Tensor, weight: Int8RouteWeight, *, warps: int = 4, split: int = 1, ahead: int = 1
) -> torch.Tensor:
    """y [M, N] = x [M ≤ 16, K] @ dequant(W)^T through :class:`DecodeInt8` (x prepared by :class:`PrepareX`;
    8 rows of x a block up to M = 8, 16 beyond; weight bytes ``ahead`` chunks ahead; on CPU tensors the
    interpreter runs both kernels)."""
    m, k = x.shape
    if m > 2 * ROWS or k != weight.k or x.dtype != weight.scales.dtype:
        raise ValueError(
            f"expected x [M ≤ {2 * ROWS}, K = {weight.k}] in {weight.scales.dtype}, got {list(x.shape)} "
            f"{x.dtype}"
        )
    rows = ROWS if m <= ROWS else 2 * ROWS
    if weight.n % (warps * 16 * weight.tiles):
        raise ValueError(
            f"expected N = {weight.n} a multiple of warps·16·tiles = {warps * 16 * weight.tiles}; "
            "pass fewer warps"
        )
    planes, inverse, sums = prepare_x_on_device(
        x, weight.k_chunk, group_columns=weight.group_columns, rows=rows
    )
    y = torch.full((m, weight.n), float("nan"), dtype=x.dtype, device=x.device)
    kernel = kernel_for(
        weight.nbits, x.dtype, warps, weight.tiles, weight.k_chunk, split, weight.group_columns, rows, ahead
    )
    args = (weight.data, planes, inverse, sums, weight.scales, weight.zeros, y, m, weight.n, k)
    if x.is_cuda:
        from anybit.runtime.compiler import launch_script

        launch_script(kernel, args)
    else:
        anybit.interpret(kernel, *args)
    return y


@functools.lru_cache(maxsize=64)
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
    )


class PrepareX(anybit.Script):
    """x [M ≤ rows, K] as :class:`DecodeInt8` takes it, on the GPU: what :func:`prepare_x` (or, with
    ``group_columns``, :func:`prepare_x_columns`, M = 1) computes with torch — the fixed point per row and
    scale group (X = round(x · 8191 / m) in f32, m the group's largest |x|: one division a group), its two
    int8 planes in fragment order, r = m / 8191 and r·Σ X. One warp a chunk of K; with ``group_columns``
    a block a run of 8 groups, a warp each of its 8 sub-chunks, in one pass (a group's largest |x| across
    the warps). Each lane computes the very fragments it stores."""

    def __init__(self, act, *, k_chunk: int = 128, group_columns: bool = False, rows: int = ROWS) -> None:
        super().__init__()
        if rows not in (8, 16) or (group_columns and rows != 8):
            raise ValueError(f"expected 8 or 16 rows of x (8 with group_columns), got {rows}")
        self.act, self.k_chunk, self.group_columns, self.rows = (
            anybit.dtype(act),
            k_chunk,
            group_columns,
            rows,
        )

    def __call__(
        self,
        x: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        planes: anybit.ptr(anybit.int8),
        inverse: anybit.ptr(anybit.float32),
        sums: anybit.ptr(anybit.float32),
        m: anybit.int32,
        k: anybit.int32,
    ):
        kc, rows = self.k_chunk, self.rows
        step = COLUMN_GROUPS * kc if self.group_columns else kc
        self.attrs.blocks = [k // step]
        self.assume_divisible(k, step)
        # x is the previous kernel's output; the decode kernel after this one may start at once (it loads
        # its first weight bytes, then waits for this kernel to complete)
        self.wait_prior_grids()
        self.allow_dependent_grids()
        if self.group_columns:
            self._prepare_columns(x, planes, inverse, sums, k)
            return
        self.attrs.warps = 1
        operand = unsqueeze(x_operand_layout(kc, rows), 0)
        gx = self.global_view(x, self.act, [1, k, m], strides=[0, 1, k])  # x^T: rows past M read as zeros
        tile = self.cast(
            self.load_global(gx, [0, self.blockIdx.x * kc, 0], [1, kc, rows], layout=operand), float32
        )
        largest = self.max(abs(tile), 1, keepdim=True)  # [1, 1, rows]
        r, fixed, planes_of_x = self._fixed_point(tile, largest)
        gp = self.global_view(planes, int8, [k // kc, 2, rows * kc])
        for plane, values in enumerate(planes_of_x):
            as_bytes = self.view(
                self.cast(values, int8, layout=operand), int8, unsqueeze(x_byte_layout(kc, rows), 0)
            )
            self.store_global(gp, as_bytes, [self.blockIdx.x, plane, 0])
        total = self.sum(fixed, 1, keepdim=True)
        gr = self.global_view(inverse, float32, [k // kc, 1, rows])
        gc = self.global_view(sums, float32, [k // kc, 1, rows])
        self.store_global(gr, r, [self.blockIdx.x, 0, 0])
        self.store_global(gc, self.cast(total, float32) * r, [self.blockIdx.x, 0, 0])

    def _prepare_columns(self, x, planes, inverse, sums, k):
        """The group-columns form: a block a run of 8 groups (1024 k), a warp each of its 8 sub-chunks u,
        each lane 4 consecutive k of one group b in one k32 step s (s = 2·s1 + s0, b = 4·b1 + b0). Only the
        B operand's diagonal is written — group b's bytes of (u, s) go to lane 4·b + b % 4's register
        b // 4 — as plain strided stores: the planes' other bytes (zeros) are the caller's, written once
        (:func:`column_planes`)."""
        run = COLUMN_GROUPS * 128
        self.attrs.warps = COLUMN_GROUPS
        shape = [1, COLUMN_GROUPS, 2, 2, 2, 4, 4]  # [run, u, s1, s0, b1, b0, i]
        gx = self.global_view(x, self.act, [k // run, *shape[1:]], strides=[run, 16, 8, 4, 512, 128, 1])
        layout = spatial(1, COLUMN_GROUPS, 2, 2, 2, 4, 1) * local(1, 1, 1, 1, 1, 1, 4)
        tile = self.cast(
            self.load_global(gx, [self.blockIdx.x, 0, 0, 0, 0, 0, 0], shape, layout=layout), float32
        )
        largest = abs(tile)
        for dim in (6, 3, 2, 1):  # i, s0, s1, u: a group's largest |x| [1, 1, 1, 1, 2, 4, 1]
            largest = self.max(largest, dim, keepdim=True)
        r, fixed, planes_of_x = self._fixed_point(tile, largest)
        # byte (u, plane, s, b, i) of the run's planes: chunk u, plane, 16-byte vector s1 of lane 4·b + b0,
        # byte 8·s0 + 4·b1 + i of it (x_byte_layout of the B operand's fragments)
        gp = self.global_view(
            planes,
            int8,
            [k // run, COLUMN_GROUPS, 2, 2, 2, 2, 4, 4],
            strides=[COLUMN_GROUPS * 2048, 2048, 1024, 512, 8, 4 + 256, 16 * 4 + 16, 1],
        )
        for plane, values in enumerate(planes_of_x):
            as_bytes = self.view(self.cast(values, int8, layout=layout), layout=unsqueeze(layout, 2))
            self.store_global(gp, as_bytes, [self.blockIdx.x, 0, plane, 0, 0, 0, 0, 0])
        total = fixed
        for dim in (6, 3, 2, 1):
            total = self.sum(total, dim, keepdim=True)
        gr = self.global_view(inverse, float32, [k // run, 1, 1, 1, 2, 4, 1], strides=[8, 0, 0, 0, 4, 1, 0])
        gc = self.global_view(sums, float32, [k // run, 1, 1, 1, 2, 4, 1], strides=[8, 0, 0, 0, 4, 1, 0])
        self.store_global(gr, r, [self.blockIdx.x, 0, 0, 0, 0, 0, 0])
        self.store_global(gc, self.cast(total, float32) * r, [self.blockIdx.x, 0, 0, 0, 0, 0, 0])

    def _fixed_point(self, tile, largest):
        """(r, X, (H, L)) of an f32 tile and its groups' largest |x| m (broadcast): X = round(x · 8191 / m)
        (one division a group, then products: m's own quotient still rounds to 8191), r = m / 8191 (1 where
        a group is all zeros), H = (X + 64) >> 7 and L = X − 128·H."""
        positive = largest > 0.0
        r = self.where(positive, largest * (1.0 / X_MAX), 1.0)
        fixed = self.cast(tile * self.where(positive, X_MAX / largest, 1.0), int32)
        high = (fixed + 64) >> 7
        return r, fixed, (high, fixed - high * 128)


def column_planes(
    k: int, group: int = 128, device: torch.device | str = "cpu", fill: int = 0
) -> torch.Tensor:
    """The group-columns form's planes buffer [K / group, 2, 8·group] int8: zeros (``fill``) where the
    :class:`PrepareX` kernel writes nothing (the B operand off its diagonal); allocated once, reused."""
    return torch.full((k // group, 2, ROWS * group), fill, dtype=torch.int8, device=device)


def column_diagonal(planes: torch.Tensor) -> torch.Tensor:
    """The bytes of a :func:`column_planes` buffer that :class:`PrepareX` writes (a strided view)."""
    runs = planes.shape[0] // COLUMN_GROUPS
    return planes.as_strided(
        (runs, COLUMN_GROUPS, 2, 2, 2, 2, 4, 4), (COLUMN_GROUPS * 2048, 2048, 1024, 512, 8, 260, 80, 1)
    )


def prepare_x_on_device(
    x: torch.Tensor, group: int, *, group_columns: bool = False, rows: int = ROWS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`prepare_x` (or :func:`prepare_x_columns`) by the :class:`PrepareX` kernel: on CUDA tensors on
    the GPU, on CPU tensors on the interpreter. The outputs are poisoned before the run."""
    m, k = x.shape
    if m > rows or (group_columns and m != 1):
        raise ValueError(
            f"expected x [M ≤ {rows}, K] (M = 1 for the group-columns form), got {list(x.shape)}"
        )
    step = COLUMN_GROUPS * group if group_columns else group
    if k % step:
        raise ValueError(f"expected K a multiple of {step}, got {k}")
    if group_columns:  # zeros off the diagonal, the diagonal poisoned
        planes = column_planes(k, group, x.device)
        column_diagonal(planes).fill_(99)
    else:
        planes = torch.full((k // group, 2, rows * group), 99, dtype=torch.int8, device=x.device)
    inverse = torch.full((k // step, rows), float("nan"), dtype=torch.float32, device=x.device)
    sums = torch.full_like(inverse, float("nan"))
    kernel = prepare_kernel_for(x.dtype, group, group_columns, rows)
    args = (x.contiguous(), planes, inverse, sums, m, k)
    if x.is_cuda:
        from anybit.runtime.compiler import launch_script

        launch_script(kernel, args)
    else:
        anybit.interpret(kernel, *args)
    return planes, inverse, sums


@functools.lru_cache(maxsize=16)
def prepare_kernel_for(act: torch.dtype, group: int, group_columns: bool, rows: int = ROWS) -> PrepareX:
    """One :class:`PrepareX` a form (its compiled forms cached with it)."""
    return PrepareX(act, k_chunk=group, group_columns=group_columns, rows=rows)


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
    """Trace, generate and compile one fp16 :class:`DecodeInt8` configuration for ``arch`` (a build worker's
    job, :mod:`anybit.runtime.build_pool`; no GPU needed): its NVRTC output lands in the disk cache, where a
    launch of the same configuration finds it."""
    kernel = kernel_for(nbits, torch.float16, warps, tiles, 128, split, group_columns, rows, ahead)
    anybit.compile(kernel, *(None,) * 7, m, n, k, arch=arch)
    return 0
