"""A one-row decode kernel for 1- and 2-bit unsigned codes on the binary tensor cores, on the packed weights.

The int8 route (:mod:`anybit.kernels.decode_int8`) still spends a ``lop3`` and a shift on every four weights
and an int8 ``mma`` on every 32 k of 16 rows, ~1.2 SASS instructions a weight for 1-bit codes. Here the
weight's bits go into ``mma.m16n8k256 .and.popc`` as they are: x in 16-bit fixed point, one bit plane per
column of the mma's B operand (:mod:`anybit.kernels.popc_activations`), and each word a lane loads masked
twice, once per row it holds (:mod:`anybit.kernels.popc_order`), so that column p of the product counts the
code bits whose x has bit p set. A chunk (one scale group, 128 k) of a warp's 32 rows is ``nbits`` k-steps
of two m16 tiles by two n8 tiles (16 planes): 4 binary ``mma`` and 8 ``lop3`` for 4096 1-bit weights. The
int32 column sums are scaled by each row's scale and the group's r every chunk; the planes' weights 2^p
(−2^15 for the sign plane) apply once at the end:

    Σ_k x·(q − z)·s  ≈  Σ_groups s · (r · Σ_p w_p · C_p − z · r · Σ_k X),   C_p = Σ_k q · bit_p(X)

so the only rounding besides the f32 sums and the output's is x's fixed point (2^-16 of the group's largest
|x|). One row of x (M = 1), scale groups of 128, zero points or none, split-K whose last block adds the
partial sums; no shared memory or barrier.
"""

from __future__ import annotations

import functools

import torch

import anybit
from anybit.dtypes import float32, int32, uint1, uint8, uint32
from anybit.kernels.checks import run_kernel
from anybit.kernels.decode_int8 import replicated
from anybit.kernels.packing import PackedWeight
from anybit.kernels.popc_activations import PLANES, STEP_BYTES, operand_layout, plane_weights, prepare_popc_x
from anybit.kernels.popc_order import CHUNK, WARP_ROWS, check_popc_route, popc_view
from anybit.lang.compute import elementwise
from anybit.layout import local, spatial
from anybit.layout.mma import MMA_M16N8K256_B1_A


class DecodePopc(anybit.Script):
    """y [1, N] = x @ dequant(W)^T for unsigned ``nbits``-bit codes (1 or 2; zero points or none) in scale
    groups of 128, through binary ``mma`` on the packed weight's bits (see the module docstring)."""

    def __init__(
        self, nbits: int, act, *, warps: int = 4, split: int = 1, ahead: int = 2, has_zeros: bool = True
    ) -> None:
        super().__init__()
        if ahead < 1:
            raise ValueError(f"expected the weight words at least one chunk ahead, got ahead={ahead}")
        #: Chunks of weight words in flight ahead of the one multiplying (registers: ahead · 16·nbits bytes).
        self.ahead = ahead
        self.order = popc_view(nbits)  # checks the width
        act = anybit.dtype(act)
        if act.name not in ("float16", "bfloat16"):
            raise ValueError(f"expected float16 or bfloat16 activations, got {act.name}")
        if warps < 1 or warps > 32 or split < 1:
            raise ValueError(f"expected 1 to 32 warps and split ≥ 1 (blocks along K), got {warps}, {split}")
        self.nbits, self.act, self.warps, self.split, self.has_zeros = nbits, act, warps, split, has_zeros
        #: N rows a block multiplies (32 a warp): N must be a multiple.
        self.rows_n = warps * WARP_ROWS
        self.bytes_per_thread = WARP_ROWS * CHUNK * nbits // 8 // 32

    def __call__(
        self,
        w: anybit.ptr(anybit.uint8),
        planes: anybit.ptr(anybit.uint8),
        inverse: anybit.ptr(anybit.float32),
        sums: anybit.ptr(anybit.float32),
        scales: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        zeros: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        y: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        n: anybit.int32,
        k: anybit.int32,
    ):
        warps, bpt, rows_n, nbits = self.warps, self.bytes_per_thread, self.rows_n, self.nbits
        self.attrs.blocks = [n // rows_n, self.split]
        self.attrs.warps = warps
        self.assume_divisible(n, rows_n)
        self.assume_divisible(k, CHUNK)
        vectors = bpt // 16  # a lane's 16-byte vectors a chunk: one an m16 tile
        byte_layout = spatial(warps, 1) * local(1, vectors).spatial(1, 32).local(1, 16)
        # each word twice (η = 0, 1: the rows g and g + 8 of its tile), in the A operand's register order
        word_layout = self._word_layout()
        masked_layout = spatial(warps, 1, 1) * local(1, vectors, 1).spatial(1, 32, 1).local(1, 4, 2)
        operand_a = spatial(warps, 1) * local(2, nbits) * MMA_M16N8K256_B1_A
        x_bytes = replicated(local(1, nbits).spatial(1, 32).local(1, 16), warps)
        operand_b = replicated(local(nbits, 1) * operand_layout(), warps)
        tiles_n = n // WARP_ROWS
        chunks = k // CHUNK
        gw = self.global_view(w, uint8, [chunks * tiles_n, 32 * bpt])
        gx = self.global_view(planes, uint8, [chunks, nbits * STEP_BYTES])
        gr = self.global_view(inverse, float32, [chunks, 1])
        gc = self.global_view(sums, float32, [chunks, 1])
        gs = self.global_view(scales, self.act, [n, chunks], strides=[1, n])
        gz = self.global_view(zeros, self.act, [n, chunks], strides=[1, n])
        gy = self.global_view(y, self.act, [n, 1], strides=[1, n])
        first = self.blockIdx.y * chunks // self.split
        count = (self.blockIdx.y + 1) * chunks // self.split - first
        n0 = self.blockIdx.x * rows_n
        # row g + 8's mask is row g's shifted (checked by popc_view); as uint32 (0xCCCCCCCC overflows int32)
        shift = self.cast(self.index([1, 1, 2], 2) * self.order.row_shift, uint32)
        masks = []
        for b in range(nbits):
            low = self.register_tensor(int32, [1, 1, 1], init=int(self.order.masks[0, b]))
            masks.append(self.cast(low, uint32) << shift)
        acc = self.register_tensor(float32, [rows_n, PLANES], init=0.0)
        zero_terms = self.register_tensor(float32, [rows_n, 1], init=0.0)
        # The weight words ``ahead`` chunks ahead in registers (a queue, the loop unrolled as many times so
        # that the compiler renames instead of moving): 16 bytes a lane a chunk are too few in flight for the
        # memory system with one chunk at a time. The first chunks are loaded before waiting for the kernel
        # that prepares x (they do not depend on it).
        queue = []
        for index in range(self.ahead):
            queue.append(self.register_tensor(uint32, [warps, 8 * bpt, 1], layout=word_layout))
            if index < count:
                self.assign(queue[index], self._load_words(gw, first + index, tiles_n, byte_layout))
        self.wait_prior_grids()
        self.allow_dependent_grids()
        for step in self.range(count, unroll=max(2, self.ahead)):
            chunk = first + step
            words = self.register_tensor(uint32, [warps, 8 * bpt, 1], layout=word_layout)
            self.assign(words, queue[0])
            for index in range(self.ahead - 1):
                self.assign(queue[index], queue[index + 1])
            if step + self.ahead < count:
                self.assign(queue[-1], self._load_words(gw, chunk + self.ahead, tiles_n, byte_layout))
            x_raw = self.load_global(gx, [chunk, 0], [1, nbits * STEP_BYTES], layout=x_bytes, in_bounds=True)
            x_planes = self.view(x_raw, uint1, operand_b)
            total = None
            for bit in range(nbits):
                masked = self.register_tensor(uint32, [warps, 8 * bpt, 2], layout=masked_layout)
                elementwise("and", (words, masks[bit]), out=masked)
                codes = self.view(masked, uint1, operand_a)
                counts = self.dot(codes, x_planes, self.register_tensor(int32, [rows_n, PLANES], init=0))
                total = counts if total is None else total + (counts << bit)
            r = self.load_global(gr, [chunk, 0], [1, 1], in_bounds=True)
            s = self.cast(self.load_global(gs, [n0, chunk], [rows_n, 1], in_bounds=True), float32)
            acc += self.cast(total, float32) * (s * r)
            if self.has_zeros:
                z = self.cast(self.load_global(gz, [n0, chunk], [rows_n, 1], in_bounds=True), float32)
                zero_terms += z * s * self.load_global(gc, [chunk, 0], [1, 1], in_bounds=True)
        column = self.index([1, PLANES], 1)
        weights = self.exp2(self.cast(column, float32)) * self.where(column == PLANES - 1, -1.0, 1.0)
        result = self.sum(acc * weights, 1, keepdim=True)
        if self.has_zeros:
            result = result - zero_terms
        if self.split > 1:
            result = self._sum_splits(result, n, n0)
        self.store_global(gy, self.cast(result, self.act), [n0, 0])

    def _load_words(self, gw, chunk, tiles_n, byte_layout):
        """This block's warps' weight words of chunk ``chunk``."""
        raw = self.load_global(
            gw,
            [chunk * tiles_n + self.blockIdx.x * self.warps, 0],
            [self.warps, 32 * self.bytes_per_thread],
            layout=byte_layout,
            in_bounds=True,
        )
        return self.view(raw, uint32, layout=self._word_layout())

    def _word_layout(self):
        """A block's weight words of a chunk [warps, 8·bpt, 1]: each lane's words in load order."""
        vectors = self.bytes_per_thread // 16
        return spatial(self.warps, 1, 1) * local(1, vectors, 1).spatial(1, 32, 1).local(1, 4, 1)

    @anybit.runtime_helper
    def _sum_splits(self, acc, n, n0):
        """Split-K's reduction: each split stores its partial sums, the last of a block column to arrive adds
        them in split order (as :class:`~anybit.kernels.decode_int8.DecodeInt8` does)."""
        partials = self.global_tensor(float32, [self.split * n, 1])
        counters = self.global_tensor(int32, [n // self.rows_n], kept_clean=True)
        self.store_global(partials, acc, [self.blockIdx.y * n + n0, 0])
        if self.arrive(counters, [self.blockIdx.x], self.split) < self.split - 1:
            self.exit()
        total = self.load_global(partials, [n0, 0], [self.rows_n, 1])
        for s in range(1, self.split):
            total = total + self.load_global(partials, [s * n + n0, 0], [self.rows_n, 1])
        return total


def popc_route_matmul(
    x: torch.Tensor, weight: PackedWeight, *, warps: int = 4, split: int = 1, ahead: int = 2
) -> torch.Tensor:
    """y [1, N] = x [1, K] @ dequant(W)^T through :class:`DecodePopc` on a weight from
    :func:`~anybit.kernels.pack` (x prepared by :func:`~anybit.kernels.popc_activations.prepare_popc_x`). On
    CPU tensors the interpreter runs the kernel."""
    layout = weight.layout
    if x.dim() != 2 or x.shape[0] != 1 or x.shape[1] != layout.k or x.dtype != weight.act_dtype:
        raise ValueError(
            f"expected x [1, K = {layout.k}] in {weight.act_dtype}, got {list(x.shape)} {x.dtype}"
        )
    if x.device != weight.device:
        raise ValueError(f"expected x on the weight's device {weight.device}, got {x.device}; move one")
    check_popc_route(layout)
    if layout.n % (warps * WARP_ROWS):
        raise ValueError(
            f"expected N = {layout.n} a multiple of warps·{WARP_ROWS} = {warps * WARP_ROWS}; pass fewer warps"
        )
    planes, inverse, sums = prepare_popc_x(x, layout.nbits)
    y = torch.full((1, layout.n), float("nan"), dtype=x.dtype, device=x.device)
    has_zeros = weight.zeros is not None
    kernel = kernel_for(layout.nbits, x.dtype, warps, split, ahead, has_zeros)
    zeros = weight.zeros if has_zeros else weight.scales
    run_kernel(kernel, weight.data, planes, inverse, sums, weight.scales, zeros, y, layout.n, layout.k)
    return y


@functools.lru_cache(maxsize=64)
def kernel_for(
    nbits: int, act: torch.dtype, warps: int, split: int = 1, ahead: int = 2, has_zeros: bool = True
) -> DecodePopc:
    """One :class:`DecodePopc` a configuration (its compiled forms cached with it)."""
    return DecodePopc(nbits, act, warps=warps, split=split, ahead=ahead, has_zeros=has_zeros)


__all__ = ["DecodePopc", "build_configuration", "kernel_for", "plane_weights", "popc_route_matmul"]


def build_configuration(nbits: int, warps: int, split: int, ahead: int, n: int, k: int, arch: str) -> int:
    """Trace, generate and compile one fp16 :class:`DecodePopc` configuration (zero points) for ``arch`` (a
    build worker's job, :mod:`anybit.runtime.build_pool`; no GPU needed): its NVRTC output lands in the disk
    cache, where a launch of the same configuration finds it."""
    kernel = kernel_for(nbits, torch.float16, warps, split, ahead, True)
    anybit.compile(kernel, *(None,) * 7, n, k, arch=arch)
    return 0
