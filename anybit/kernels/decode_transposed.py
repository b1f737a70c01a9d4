"""The transposed decode kernel: y^T [N, M] = W [N, K] · x^T [K, M], the weight as the tensor-core A operand.

:class:`~anybit.kernels.decode.DecodeMatmul` feeds x as the m16 operand of ``mma.m16n8k16`` and the weight
as the n8 one, so at M = 1 fifteen of the sixteen rows of every ``mma`` are padding, and on the H200 the
tensor-core share is a fixed ~40 µs of a 57344 × 8192 layer whatever the weight's bits
(docs/notes/decode-kernel.md, fourth session). Here the weight is the m16 operand (packed with
``operand="a"``: each warp tile of W [8·NT, KC] is NT/2 × KC/16 A fragments) and x the n8 one, padded to
``rows`` = 8 (M ≤ 8) or 16 (M ≤ 16): half the ``mma`` calls at M ≤ 8, the same at M ≤ 16.

It is the decode kernel's program (the copy ring, split-K with ``arrive``, dependent launch, zero points
inside the conversion, group scales applied to each chunk's f32 partial sum) with the operand-order hooks
overridden: x is copied from a transposed view of global memory into a k-contiguous shared tile (swizzled
like the row-major one, dimensions swapped), the converted W^T tile is ``view``-ed through the permuted
layout as W (the same registers), scales, per-channel scales and bias are read as columns [block_n, 1], and
the accumulator [block_n, rows] (yᵀ) is stored through a transposed view of y.
"""

from __future__ import annotations

import torch

import anybit
from anybit.dtypes import float32, uint8
from anybit.ir import cdiv
from anybit.kernels.decode import RMS_ROWS, RMS_SHARED_BYTES, DecodeMatmul, float_exponents
from anybit.kernels.layout import PackedLayout
from anybit.layout import (
    XorSwizzle,
    local,
    permute,
    reduce,
    shared_core_matrices,
    shared_strided,
    spatial,
    unsqueeze,
)
from anybit.passes.layout_rules import mma_layouts


def transposed_x_layout(k_chunk: int, rows: int, element_bytes: int = 2):
    """Shared layout of x^T [k_chunk, rows] stored k-contiguous (row m of x is k_chunk contiguous elements),
    its 16-byte chunks XOR-swizzled by m as ``shared_swizzled`` does for the row-major tile, so the n8
    operand's loads of 8 rows m are bank-conflict free."""
    chunks = k_chunk * element_bytes // 16
    base = (16 // element_bytes).bit_length() - 1
    swizzles = ()
    for bits, shift in ((3, 0), (2, 1), (1, 2)):
        if chunks % (1 << bits) == 0:
            swizzles = (XorSwizzle(0, 1, shift, bits, base),)
            break
    return shared_strided([k_chunk, rows], [1, k_chunk], swizzles)


class DecodeMatmulTransposed(DecodeMatmul):
    """y = x @ W^T (+ bias) computed as y^T = W · x^T with the weight as the m16 tensor-core operand.

    Parameters as :class:`~anybit.kernels.decode.DecodeMatmul` (the layout packed with ``operand="a"``), and

    rows
        8 or 16: rows of x per block (the n of the ``mma``; M > rows takes more blocks along the grid's y).
    warps_along_k
        The block's warps split K instead of owning columns: the block covers one warp tile of columns
        (n_per_warp), each step takes one chunk a warp (``warps`` chunks), the warps multiply their own chunk
        (a batched ``dot``) and their partial sums are added through shared memory after the main loop —
        split-K's parallelism inside the block, without its partials' round trips through L2. K must be a
        multiple of k_chunk · warps · split. Zero points: each warp subtracts its own chunk's.
    wgmma
        The tensor cores read x^T straight from its ring slot (sm_90a ``wgmma``, the converted weights the A
        operand from registers: ``dot`` with b in shared memory), x's chunks copied in core-matrix form
        (:func:`~anybit.layout.shared_core_matrices`): no ``ldmatrix`` of x, one instruction per 16 rows
        of W and k-step for all of x's rows where ``mma.sync`` takes one per 8 rows of x. Warps a multiple
        of 4; not with warps along K, the bias after the dot, or bf16 activations with float weights.
    """

    def __init__(
        self,
        layout: PackedLayout,
        act_dtype: torch.dtype | anybit.DataType,
        *,
        rows: int = 8,
        warps_along_k: bool = False,
        wgmma: bool = False,
        **options,
    ) -> None:
        if layout.operand != "a":
            raise ValueError(
                "DecodeMatmulTransposed takes a weight packed as the A operand: "
                f"choose_layout(..., operand='a'), got operand {layout.operand!r}"
            )
        if rows not in (8, 16):
            raise ValueError(f"expected rows 8 or 16 (the n of mma.m16n8k16, once or twice), got {rows}")
        super().__init__(layout, act_dtype, **options)
        self.rows = rows
        self.warps_along_k = warps_along_k
        self.wgmma = wgmma
        lifted_x = float_exponents(layout.dtype, self.act).x
        if wgmma and (self.warps % 4 or warps_along_k or self.bias_after_dot or lifted_x):
            raise ValueError(
                "wgmma takes warps in groups of 4 owning their columns (not warps_along_k), the conversion's "
                "bias taken off in it (not bias_after_dot), and x as it is (not bf16 activations with float "
                f"weights); got {self.warps} warps, warps_along_k={warps_along_k}, "
                f"bias_after_dot={self.bias_after_dot}, {layout.dtype.name} with {self.act.name}"
            )

    @property
    def k_groups(self) -> int:
        """The warps when they split K (``warps_along_k``), else 1."""
        return self.warps if self.warps_along_k else 1

    @property
    def block_n(self) -> int:
        """Output columns per block: warps · n_per_warp, or one warp tile with ``warps_along_k``."""
        return self.layout.n_per_warp * (1 if self.warps_along_k else self.warps)

    @property
    def block_m(self) -> int:
        """Rows of x per block: the n of ``mma.m16n8k16`` (x is the B operand), once or twice."""
        return self.rows

    def _x_view(self, x, m, k):
        """x^T [K, M]: a transposed view of the row-major x; with K groups [K / k_chunk, k_chunk, M], so a
        step's chunks are one copy; for ``wgmma`` [K / 8, 8, M], the core-matrix form's shape."""
        if self.wgmma:
            return self.global_view(x, self.act, [k // 8, 8, m], strides=[8, 1, k])
        if self.k_groups > 1:
            kc = self.layout.k_chunk
            return self.global_view(x, self.act, [k // kc, kc, m], strides=[kc, 1, k])
        return self.global_view(x, self.act, [k, m], strides=[1, k])

    def _scales_view(self, scales, group_rows, n):
        """The scales^T [N, groups]: a transposed view, so a group's scales are a column. With K groups and
        group-wise scales, [groups, r, N, 1] with r = :attr:`_chunks_a_scale_row` and a stride of 0 along r:
        a step's k_groups scale columns, a group's repeated for each of its chunks, are one copy."""
        if self.k_groups > 1 and not self.layout.per_channel:
            r = self._chunks_a_scale_row
            return self.global_view(scales, self.io, [group_rows, r, n, 1], strides=[n, 0, 1, 1])
        return self.global_view(scales, self.io, [n, group_rows], strides=[1, n])

    @property
    def _zeros_by_k_group(self) -> bool:
        """Whether the zero points are read per K group (:meth:`_zeros_view`): with zero points subtracted in
        the conversion and the warps along K."""
        return self.k_groups > 1 and self.has_zeros and not self.zeros_after_dot

    def _zeros_view(self, zeros, group_rows, n):
        """With K groups, the zero-point rows as [groups, r, N] (stride 0 along r, as :meth:`_scales_view`
        does for the scale columns): a step's k_groups rows, a group's repeated for each of its chunks, are
        one copy; per channel, the one row repeated for every K group, [1, k_groups, N]."""
        if self._zeros_by_k_group:
            r = self.k_groups if self.layout.per_channel else self._chunks_a_scale_row
            return self.global_view(zeros, self.io, [group_rows, r, n], strides=[n, 0, 1])
        return super()._zeros_view(zeros, group_rows, n)

    def _zeros_ring(self):
        """With K groups and scale groups, the rows of a step's k_groups chunks, [stages, k_groups / r, r,
        block_n] (per channel the row is read once, before the main loop)."""
        if self._zeros_by_k_group and not self.layout.per_channel:
            r = self._chunks_a_scale_row
            return self.shared_tensor(self.io, [self.stages, self.k_groups // r, r, self.block_n])
        return super()._zeros_ring()

    def _load_zeros(self, slot):
        """A step's zero points; with K groups each warp's chunk's row side by side, [1, k_groups ·
        block_n]: the block tile's columns are the K groups' warp tiles."""
        zeros = self.load_shared(slot)
        if self._zeros_by_k_group:
            return self.view(zeros, shape=[1, self.k_groups * self.block_n])
        return zeros

    def _load_zero_row(self, gz, n0):
        """Per-channel zero points; with K groups the block's row once for each group, [1, k_groups ·
        block_n]."""
        if self._zeros_by_k_group:
            row = self.load_global(gz, [0, 0, n0], [1, self.k_groups, self.block_n])
            return self.view(row, shape=[1, self.k_groups * self.block_n])
        return super()._load_zero_row(gz, n0)

    @property
    def _chunks_a_scale_row(self) -> int:
        """Consecutive chunks of a step that share a scale row: group_size / k_chunk, at most k_groups."""
        return min(self.layout.group_size // self.layout.k_chunk, self.k_groups)

    def _gate(self, acc):
        """silu(gate) · up from yᵀ [block_n, rows] of a gated pair: each 16 rows of the block hold 8 gate
        rows then the 8 up rows of the same outputs (:func:`~anybit.kernels.interleave_gated`), which the mma
        accumulator keeps in one thread (rows g and g + 8 of an m16 tile), so the pairing is in registers:
        [block_n/16, 2, 8, rows], silu on the gate half, the product over the pair → yᵀ [block_n/2, rows]."""
        bn, rows = self.block_n, self.rows
        grouped = self.view(acc, shape=[bn // 16, 2, 8, rows])
        silu = self.div(grouped, self.add(self.exp(self.neg(grouped)), 1.0))
        is_gate = self.index([bn // 16, 2, 8, rows], 1) < 1  # (a helper is not transpiled: no tensor ==)
        picked = self.where(is_gate, silu, grouped)
        return self.view(self.prod(picked, 1), shape=[bn // 2, rows])

    def _y_view(self, y, m, n):
        """y^T [N, M]: a transposed view of the row-major y."""
        return self.global_view(y, self.io, [n, m], strides=[1, n])

    def _bias_view(self, bias, n):
        """The bias as a column [N, 1]."""
        return self.global_view(bias, self.io, [n, 1])

    def _x_ring(self):
        """The shared ring of x^T chunks [KC, rows], k-contiguous, swizzled (:func:`transposed_x_layout`);
        with K groups, a step's chunks [k_groups, KC, rows]."""
        kc, stages, kw = self.layout.k_chunk, self.stages, self.k_groups
        if self.wgmma:  # read by the tensor cores in place: core matrices, no swizzle
            layout = shared_core_matrices(kc, self.rows).prepend_dim(stages)
            return self.shared_tensor(self.act, [stages, kc // 8, 8, self.rows], layout=layout)
        layout = transposed_x_layout(kc, self.rows)
        if kw > 1:
            shape, layout = [stages, kw, kc, self.rows], layout.prepend_dim(kw).prepend_dim(stages)
        else:
            shape, layout = [stages, kc, self.rows], layout.prepend_dim(stages)
        return self.shared_tensor(self.act, shape, layout=layout)

    def _scales_ring(self):
        """The shared ring of scale columns [block_n, 1]; with K groups a step's k_groups columns, [rows,
        r, block_n, 1] (see :meth:`_scales_view`)."""
        if self.k_groups > 1 and not self.layout.per_channel:
            r = self._chunks_a_scale_row
            return self.shared_tensor(self.io, [self.stages, self.k_groups // r, r, self.block_n, 1])
        return self.shared_tensor(self.io, [self.stages, self.block_n, 1])

    def _x_operand(self, slot):
        """A step's x^T tile: its ring slot itself for ``wgmma``, else loaded into registers."""
        return slot if self.wgmma else self.load_shared(slot)

    def _load_scales(self, slot):
        """A step's scale columns; with K groups as [k_groups, block_n, 1], a group's for each chunk."""
        scales = self.load_shared(slot)
        if self.k_groups > 1:
            return self.view(scales, shape=[self.k_groups, self.block_n, 1])
        return scales

    def _new_accumulator(self):
        """A zero f32 [block_n, rows]: yᵀ, the mma's C; with K groups one a group, [k_groups, block_n,
        rows]."""
        if self.k_groups > 1:
            return self.register_tensor(float32, [self.k_groups, self.block_n, self.rows], init=0.0)
        return self.register_tensor(float32, [self.block_n, self.rows], init=0.0)

    def _dot(self, tile_x, weights, c) -> None:
        """c += W · x^T: the converted W^T tile viewed as W (same registers) is the A operand, x^T the B.
        With K groups the tile's warp tiles are the groups' chunks: W [k_groups, block_n, KC] times each
        group's x^T chunk (a batched dot)."""
        as_w = self.view(weights, layout=permute(weights.layout, (1, 0)))
        if self.k_groups > 1:
            as_w = self.view(as_w, shape=[self.k_groups, self.block_n, self.layout.k_chunk])
        self.dot(as_w, tile_x, c, out=c)

    def _sum_k_groups(self, acc):
        """The K groups' partial sums [k_groups, block_n, rows] added: through shared memory, into the
        accumulator layout of one warp's tile repeated over the groups (every warp then holds the sum, as
        the epilogue's loads and stores expect)."""
        kw, bn, rows = self.k_groups, self.block_n, self.rows
        table = self.shared_tensor(float32, [kw, bn, rows])
        self.store_shared(table, acc)
        self.sync()
        one_warp = mma_layouts(bn, rows, self.layout.k_chunk, self.act, 1)[2]
        layout = reduce(spatial(kw, 1, 1) * unsqueeze(one_warp, 0), [0])
        total = self.load_shared(table[0], layout=layout)
        for group in range(1, kw):
            total = total + self.load_shared(table[group], layout=layout)
        return total

    def _load_columns(self, tensor, n0):
        """This block's block_n entries of a per-channel row (scales^T [N, 1], bias) as [block_n, 1]."""
        return self.load_global(tensor, [n0, 0], [self.block_n, 1])

    def _store_y(self, gy, value, m0, n0) -> None:
        self.store_global(gy, value, [n0, m0])

    def _prefetch_y(self, gy, m0, n0):
        """Start copying this block's tile of yᵀ [block_n, rows] (rows past M: zeros) into shared memory,
        n-contiguous as y is: what ``accumulate`` adds, read at the end without a global round trip."""
        tile = self.shared_tensor(
            self.io,
            [self.block_n, self.rows],
            layout=shared_strided([self.block_n, self.rows], [1, self.block_n]),
        )
        self.copy_async(gy, tile, [n0, m0], in_bounds=(0,))
        return tile

    def _prior_y(self, prefetched):
        return self.load_shared(prefetched)

    @property
    def rms_from_shared(self) -> bool:
        """Whether the row RMS sums a shared copy of this block's ``rms_rows`` rows of x (copied with the
        first chunk, summed after the main loop: no load latency of its own) — while the copy takes at most
        :data:`RMS_SHARED_BYTES` (M ≤ 2 at K = 4096) — rather than reading x before the main loop."""
        if self.block_m != RMS_ROWS or self.rms_k is None:
            return False
        return self.rms_rows * self._rms_padded_k * self.act.nbits // 8 <= RMS_SHARED_BYTES

    @property
    def _rms_padded_k(self) -> int:
        """``rms_k`` rounded up to whole steps of 8 elements a thread."""
        threads = 32 * self.warps
        return cdiv(self.rms_k // 8, threads) * threads * 8

    @property
    def _rms_tile_rows(self) -> int:
        """Rows of x a row-RMS step reads: ``rms_rows`` in 8-row blocks, else 8 a pass."""
        return self.rms_rows if self.block_m == RMS_ROWS else RMS_ROWS

    def _rms_layout(self):
        """The row-RMS tile of x [r, threads, 8] (x viewed as [M, K/8, 8]; r rows, see ``_rms_tile_rows``):
        every thread holds 8 consecutive elements (16 bytes) of each row."""
        return local(self._rms_tile_rows, 1, 1).spatial(1, 32 * self.warps, 1).local(1, 1, 8)

    def _rms_start(self, x, m, k):
        """(x as [M, K/8, 8], steps, the shared table [rows, warps] of the warps' partial sums): the row
        RMS's start. Loads are bounds-checked, so K/8 need not be a multiple of the threads and rows past M
        read zeros without touching memory."""
        threads = 32 * self.warps
        table = self.shared_tensor(float32, [self.rows, self.warps])
        return self.global_view(x, self.act, [m, k // 8, 8]), cdiv(k // 8, threads), table

    def _copy_x_rows(self, gx_rows, m0):
        """Start copying this block's ``rms_rows`` rows of x [r, K/8 rounded up to whole steps, 8] into shared
        memory (past K and past M: zeros)."""
        rows = self._rms_tile_rows
        copy = self.shared_tensor(self.act, [rows, self._rms_padded_k // 8, 8])
        self.copy_async(gx_rows, copy, [m0, 0, 0], in_bounds=(2,))
        return copy

    def _rms_zeros(self):
        """Zeroed f32 sums of squares [r, threads, 1]: one a row a thread."""
        layout = reduce(self._rms_layout(), [2], keepdims=True)
        return self.register_tensor(float32, list(layout.shape), layout=layout, init=0.0)

    def _rms_load(self, gx_rows, row, step):
        """Step ``step``'s tile of x [r, threads, 8] from row ``row`` on, from global memory."""
        layout = self._rms_layout()
        return self.load_global(gx_rows, [row, step * 32 * self.warps, 0], list(layout.shape), layout=layout)

    def _rms_load_shared(self, x_rows, step):
        """Step ``step``'s tile of x [r, threads, 8] from the shared copy of the rows."""
        layout = self._rms_layout()
        return self.load_shared(x_rows, [0, step * 32 * self.warps, 0], list(layout.shape), layout=layout)

    def _rms_add(self, squares, tile):
        """``squares`` plus the squares of this thread's elements of each row of ``tile``, in f32."""
        value = self.cast(tile, float32)
        return squares + self.sum(value * value, 2, keepdim=True)

    def _rms_stash(self, table, squares, part) -> None:
        """Each warp's sums of its rows (shuffles over its lanes) into the table at rows 8·part …"""
        rows = self._rms_tile_rows
        by_warp = self.view(squares, shape=[rows, self.warps, 32])
        sums = self.view(self.sum(by_warp, 2, keepdim=True), shape=[rows, self.warps])
        self.store_shared(table, sums, [part * RMS_ROWS, 0])
        if self.block_m == RMS_ROWS and rows < RMS_ROWS:  # rows past rms_rows (past M) sum zeros, not garbage
            rest = RMS_ROWS - rows
            self.store_shared(table, self.register_tensor(float32, [rest, self.warps], init=0.0), [rows, 0])

    def _rms_finish(self, table, k):
        """[1, rows] f32: 1 / sqrt(mean_k x² + eps) per row (rows past M or rms_rows: 1 / sqrt(eps), never
        stored) from the warps' partial sums: a thread per row adds its row's (the other threads repeat it:
        a replicated mode), and the totals go through shared memory into the layout of the accumulator's
        columns."""
        rows, threads = self.rows, 32 * self.warps
        self.sync()
        per_row = reduce(spatial(threads // rows, rows, 1).local(1, 1, self.warps), [0])
        totals = self.view(
            self.sum(self.load_shared(table, layout=per_row), 1, keepdim=True), shape=[1, rows]
        )
        staged = self.shared_tensor(float32, [1, rows])
        self.store_shared(staged, totals)
        self.sync()
        return self.rsqrt(self.load_shared(staged) / k + self.rms_eps)

    def _partials(self, m, n):
        """The split-K workspace in yᵀ order: P slices [N, M'], [P·N, M'] f32 (M' whole row blocks)."""
        return self.global_tensor(float32, [self.split * n, cdiv(m, self.rows) * self.rows])

    def _store_partial(self, partials, acc, m, n, m0, n0) -> None:
        self.store_global(partials, acc, [self.blockIdx.z * n + n0, m0])

    def _load_partial(self, partials, index, m, n, m0, n0):
        """This block's tile of split ``index``'s partial sum (yᵀ order)."""
        return self.load_global(partials, [index * n + n0, m0], [self.block_n, self.rows])

    def _weight_view(self, weight, k, n):
        """With K groups, the packed weight as [K / k_chunk, N / n_per_warp · tile_bytes]: a step's chunks
        of one warp tile are one copy of k_groups rows."""
        if self.k_groups > 1:
            pl = self.layout
            return self.global_view(weight, uint8, [k // pl.k_chunk, n // pl.n_per_warp * pl.tile_bytes])
        return super()._weight_view(weight, k, n)

    def _copy_weight_tiles(self, gw, sw, chunk) -> None:
        """With K groups, chunks chunk … chunk + k_groups − 1 of this block's warp tile, a warp's each."""
        if self.k_groups > 1:
            if sw is not None:
                tile_bytes = self.layout.tile_bytes
                self.copy_async(gw, sw, [chunk, self.blockIdx.x * tile_bytes], in_bounds=True)
            return
        super()._copy_weight_tiles(gw, sw, chunk)

    def _load_weight_part(self, gw, chunk, part, first_byte):
        """With K groups, chunks chunk … chunk + k_groups − 1 of one part of this block's warp tile, a warp's
        each, straight into registers."""
        if self.k_groups > 1:
            return self.load_global(
                gw,
                [chunk, self.blockIdx.x * self.layout.tile_bytes + first_byte],
                [self.k_groups, part.tile_bytes],
                layout=part.block_byte_layout(self.k_groups),
                in_bounds=True,
            )
        return super()._load_weight_part(gw, chunk, part, first_byte)

    def _copy_group_rows(self, gs, gz, ss, sz, chunk, n0) -> None:
        """Start copying chunk ``chunk``'s scale column (transposed view) and zero-point row; with K groups,
        the columns of the step's k_groups chunks."""
        pl = self.layout
        if self.k_groups > 1:
            if not pl.per_channel:  # the step's rows, each repeated for its chunks (a zero stride): one copy
                row = chunk * pl.k_chunk // pl.group_size
                self.copy_async(gs, ss, [row, 0, n0, 0], in_bounds=True)
                if self.has_zeros:
                    self.copy_async(
                        gz, sz, [row, 0, n0, 0] if self.zeros_after_dot else [row, 0, n0], in_bounds=True
                    )
            return
        if not pl.per_channel:
            row = chunk * pl.k_chunk // pl.group_size
            self.copy_async(gs, ss, [n0, row], in_bounds=True)
            if self.has_zeros:  # a row for the conversion, or a column as the scales (zeros_after_dot)
                self.copy_async(gz, sz, [n0, row] if self.zeros_after_dot else [row, n0], in_bounds=True)

    def _copy_x(self, gx, sx, chunk, m0) -> None:
        """Start copying chunk ``chunk``'s columns of x^T; rows m of x past M are zero-filled (no read).

        Clamping them to row M − 1 instead (no bounds select per copy, 3–5 fewer main-loop instructions)
        made every block copy row M − 1 up to 8 times per chunk, and the H200 timed the same kernel and
        configuration slower the more rows were clamped: int4 57344×8192 at M = 1 / 2 / 4 / 8 took 68.8 /
        67.1 / 65.4 / 64.7 µs, float8_e4m3 126.7 / 125.0 / 122.9 / 120.3 µs."""
        if self.wgmma:
            self.copy_async(gx, sx, [chunk * self.layout.k_chunk // 8, 0, m0], in_bounds=(0, 1))
            return
        if self.k_groups > 1:
            self.copy_async(gx, sx, [chunk, 0, m0], in_bounds=(0, 1))
            return
        self.copy_async(gx, sx, [chunk * self.layout.k_chunk, m0], in_bounds=(0,))
