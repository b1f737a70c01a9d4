"""The transposed decode kernel: y^T [N, M] = W [N, K] · x^T [K, M], the weight as the tensor-core A operand.

:class:`~anybit.kernels.decode.DecodeMatmul` feeds x as the m16 operand of ``mma.m16n8k16`` and the weight
as the n8 one, so at M = 1 fifteen of the sixteen rows of every ``mma`` are padding, and on the H200 the
tensor-core share is a fixed ~40 µs of a 57344 × 8192 layer whatever the weight's bits
(docs/notes/decode-kernel.md, fourth session). Here the weight is the m16 operand (packed with
``operand="a"``: each warp tile of W [8·NT, KC] is NT/2 × KC/16 A fragments) and x the n8 one, padded to
``rows`` = 8 (M ≤ 8) or 16 (M ≤ 16): half the ``mma`` calls at M ≤ 8, the same at M ≤ 16.

Everything else is the decode kernel's (the copy ring, split-K with ``arrive``, dependent launch, zero
points inside the conversion, group scales applied to each chunk's f32 partial sum), seen through the
transpose: x is copied from a transposed view of global memory into a k-contiguous shared tile (swizzled
like the row-major one, dimensions swapped), scales, per-channel scales and bias are read as columns
[8·NT·warps, 1], and the accumulator [block_n, rows] is stored through a transposed view of y.
"""

from __future__ import annotations

import torch

import anybit
from anybit.dtypes import float32, int32, uint8
from anybit.ir import cdiv
from anybit.kernels.decode import PARTIALS_IN_FLIGHT, DecodeMatmul
from anybit.kernels.layout import PackedLayout
from anybit.layout import XorSwizzle, permute, shared_strided


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

    Parameters as :class:`~anybit.kernels.decode.DecodeMatmul`, and

    rows
        8 or 16: rows of x per block (the n of the ``mma``; M > rows takes more blocks along the grid's y).
    """

    def __init__(
        self,
        layout: PackedLayout,
        act_dtype: torch.dtype | anybit.DataType,
        *,
        rows: int = 8,
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

    def __call__(
        self,
        x: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        weight: anybit.ptr(anybit.uint8),
        scales: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        zeros: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        bias: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        y: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        m: anybit.int32,
        n: anybit.int32,
        k: anybit.int32,
    ):
        pl, act, stages, warps, split, rows = (
            self.layout,
            self.act,
            self.stages,
            self.warps,
            self.split,
            self.rows,
        )
        kc, npw, bn = pl.k_chunk, pl.n_per_warp, self.block_n
        self.attrs.blocks = [n // bn, cdiv(m, rows), split]
        self.attrs.warps = warps
        self.assume_divisible(k, kc)
        self.assume_divisible(n, bn)
        group_rows = 1 if pl.per_channel else k // pl.group_size
        # x^T and y^T: transposed views of the row-major x [M, K] and y [M, N].
        gx = self.global_view(x, act, [k, m], strides=[1, k])
        gw = self.global_view(weight, uint8, [k // kc, n // npw, pl.tile_bytes])
        gs = self.global_view(scales, act, [n, group_rows], strides=[1, n])
        gz = self.global_view(zeros, act, [group_rows, n])
        gy = self.global_view(y, act, [n, m], strides=[1, n])
        sx = self.shared_tensor(
            act, [stages, kc, rows], layout=transposed_x_layout(kc, rows).prepend_dim(stages)
        )
        sw = self.shared_tensor(uint8, [stages, warps, pl.tile_bytes])
        ss = self.shared_tensor(act, [stages, bn, 1])
        sz = self.shared_tensor(act, [stages, 1, bn])
        byte_layout = pl.block_byte_layout(warps)
        weight_layout = pl.block_tile_layout(warps)  # W^T [KC, block_n]
        weight_a_layout = permute(weight_layout, (1, 0))  # the same registers as W [block_n, KC]: A operand
        code_layout = pl.block_code_layout(warps)
        n0 = self.blockIdx.x * bn
        m0 = self.blockIdx.y * rows
        first, count = 0, k // kc
        if split > 1:
            first = self.blockIdx.z * (k // kc) // split
            count = (self.blockIdx.z + 1) * (k // kc) // split - first
        acc = self.register_tensor(float32, [bn, rows], init=0.0)
        if pl.per_channel and self.has_zeros:
            zero_row = self.load_global(gz, [0, n0], [1, bn])
        for stage in range(stages - 1):
            if stage < count:
                self._copy_weights(gw, gs, gz, sw[stage], ss[stage], sz[stage], first + stage, n0)
        if self.dependent_launch:
            self.wait_prior_grids()
        for stage in range(stages - 1):
            if stage < count:
                self._copy_x(gx, sx[stage], first + stage, m0)
            self.copy_async_commit_group()
        for step in self.range(count):
            self.copy_async_wait_group(stages - 2)
            self.sync()
            ahead = step + stages - 1
            slot = ahead % stages
            if ahead < count:
                self._copy_chunk(
                    gx, gw, gs, gz, sx[slot], sw[slot], ss[slot], sz[slot], first + ahead, m0, n0
                )
            self.copy_async_commit_group()
            current = step % stages
            tile_x = self.load_shared(sx[current])  # x^T [KC, rows]: the n8 operand
            raw = self.load_shared(sw[current], layout=byte_layout)
            codes = self.view(raw, dtype=pl.dtype, layout=code_layout)
            if self.has_zeros:
                zero = zero_row if pl.per_channel else self.load_shared(sz[current])
                weights = self.cast(codes, act, subtract=zero, layout=weight_layout)
            else:
                weights = self.cast(codes, act, layout=weight_layout)
            weights_a = self.view(weights, layout=weight_a_layout)
            if pl.per_channel:
                self.dot(weights_a, tile_x, acc, out=acc)
            else:
                partial = self.register_tensor(float32, [bn, rows], init=0.0)
                self.dot(weights_a, tile_x, partial, out=partial)
                scale = self.cast(self.load_shared(ss[current]), float32)  # [block_n, 1]
                acc += partial * scale
        if self.dependent_launch:
            self.allow_dependent_grids()
        if split > 1:
            padded = cdiv(m, rows) * rows
            partials = self.global_tensor(float32, [split * n, padded])
            counters = self.global_tensor(int32, [cdiv(m, rows), n // bn], kept_clean=True)
            self.store_global(partials, acc, [self.blockIdx.z * n + n0, m0])
            arrival = self.arrive(counters, [self.blockIdx.y, self.blockIdx.x], split)
            if arrival < split - 1:
                self.exit()
            group = min(split, PARTIALS_IN_FLIGHT)
            acc = self._sum_partials_t(partials, 0, group, n, m0, n0)
            for first_part in self.range(group, split - split % group, group):
                acc = acc + self._sum_partials_t(partials, first_part, group, n, m0, n0)
            if split % group:
                acc = acc + self._sum_partials_t(partials, split - split % group, split % group, n, m0, n0)
        if pl.per_channel:
            acc = acc * self.cast(self.load_global(gs, [n0, 0], [bn, 1]), float32)
        if self.has_bias:
            gb = self.global_view(bias, act, [n, 1])
            acc = acc + self.cast(self.load_global(gb, [n0, 0], [bn, 1]), float32)
        self.store_global(gy, self.cast(acc, act), [n0, m0])

    def _sum_partials_t(self, partials, first, count, n, m0, n0):
        """Σ of split partials first … first + count − 1 (loads first, then the adds, in split order)."""
        tiles = [
            self.load_global(partials, [(first + j) * n + n0, m0], [self.block_n, self.rows])
            for j in range(count)
        ]
        total = tiles[0]
        for tile in tiles[1:]:
            total = total + tile
        return total

    def _copy_group_rows(self, gs, gz, ss, sz, chunk, n0) -> None:
        """Start copying chunk ``chunk``'s scale column (transposed view) and zero-point row."""
        pl = self.layout
        if not pl.per_channel:
            row = chunk * pl.k_chunk // pl.group_size
            self.copy_async(gs, ss, [n0, row], in_bounds=True)
            if self.has_zeros:
                self.copy_async(gz, sz, [row, n0], in_bounds=True)

    def _copy_x(self, gx, sx, chunk, m0) -> None:
        """Start copying chunk ``chunk``'s columns of x^T (rows m of x past M clamped to M − 1)."""
        self.copy_async(gx, sx, [chunk * self.layout.k_chunk, m0], in_bounds=(0,), clamp=(1,))
