"""A SiLU-gated MLP's decode step in one kernel: y += down(silu(x·gateᵀ) · (x·upᵀ)), in place.

At batch 1 a Llama layer's MLP is two decode kernels (the gated gate/up projection, then down with the
residual add), and the boundary between them — the second's wait for the first to complete, its ramp and
its tail — costs ~1–1.5 µs of a ~30 µs pair (H200, 2026-11-29). Here block b computes its slice of the
intermediate, h_b = silu(x·gate_bᵀ)·(x·up_bᵀ) (r = warps · n_per_warp / 2 outputs, the gated kernel's main
loop unchanged, the input RMSNorm folded in as there), and multiplies it straight into the down projection's
K slice [r·b, r·b + r): no block waits for another. Down's weight is packed as the A operand, so the slice
is one chunk (k_chunk = r) of every warp tile: the block walks down's N in tiles of warps · n_per_warp rows
through a copy ring, each tile's f32 product scaled by its group's scale column and added with
``atomic_add`` into an f32 workspace yᵀ [N, M]. Every block arrives once, after all its adds; the last to
arrive adds the residual (y itself) to the sums, rounds, stores y and zeroes the workspace for the next
launch.

The f32 sums of the blocks' products arrive in whatever order the blocks finish: unlike split-K's fixed
order, two runs may differ in the last bit of an output (then one rounding to the activation dtype).
Weights without zero points (signed integer and float types), group-wise scales.

Measured slower than the two kernels (H200, 2026-11-29: int4 Llama-3-8B MLP 40.6 µs against 32.0 at
M = 1, 173 against 56 at M = 16): 112 slices of 128 are 112 blocks, one an SM, so a fifth of the GPU idles
and each SM streams its 786 KB alone, and every block adds 4096·M f32 atomics. Kept as an opt-in
experiment (docs/quantized-matmul.md).
"""

from __future__ import annotations

import functools

import torch

import anybit
from anybit.cuda.generate import generate_cuda
from anybit.dtypes import float32, int32, uint8
from anybit.ir import cdiv
from anybit.ir.expr import minimum
from anybit.kernels.checks import check_tensor, run_kernel
from anybit.kernels.decode import RMS_SHARED_BYTES, weight_exponent
from anybit.kernels.decode_transposed import DecodeMatmulTransposed, transposed_x_layout
from anybit.kernels.launch import default_rows, kernel_layout, rms_options
from anybit.kernels.layout import PackedLayout
from anybit.kernels.packing import PackedWeight
from anybit.kernels.planes import decode_tile
from anybit.runtime.device import DeviceLimits, device_limits


class DecodeGatedMLP(DecodeMatmulTransposed):
    """y += down(silu(x·gateᵀ)·(x·upᵀ)) for M ≤ 16 rows per block (see the module docstring).

    Parameters
    ----------
    gate_up
        The gated pair's layout (gate and up rows interleaved, packed as the A operand, ``gated=True``).
    down
        The down projection's layout (packed as the A operand); its k_chunk must be r = warps ·
        gate_up.n_per_warp / 2, the intermediate outputs a block computes.
    act_dtype
        torch.float16 or torch.bfloat16.
    warps, stages, rows
        As :class:`~anybit.kernels.decode_transposed.DecodeMatmulTransposed` (no warps along K: a block
        must hold its whole slice of the intermediate).
    split
        Blocks along gate/up's K (split-K in phase 1, twice or more the blocks for the same SMs): each adds
        its partial sum through the workspace, the last of a slice's blocks continues with phase 2.
    rms_eps, rms_rows, rms_k
        The input RMSNorm folded into gate/up (see :class:`~anybit.kernels.decode.DecodeMatmul`).

    Launch arguments: ``x`` [M, K] (the residual stream), the gate/up ``weight`` and ``scales``, the down
    ``down_weight`` and ``down_scales``, ``y`` [M, N_down] (the residual stream again: the product is added to
    it in place), ``m``, ``n`` (the intermediate size: gate/up has 2n interleaved rows, down n columns),
    ``k`` (K of gate/up), ``n_down`` (down's N).
    """

    def __init__(
        self,
        gate_up: PackedLayout,
        down: PackedLayout,
        act_dtype: torch.dtype | anybit.DataType,
        *,
        warps: int = 8,
        stages: int = 4,
        rows: int = 8,
        split: int = 1,
        rms_eps: float | None = None,
        rms_rows: int | None = None,
        rms_k: int | None = None,
    ) -> None:
        if not gate_up.gated:
            raise ValueError("expected the gate/up layout of a gated pair (choose_layout(..., gated=True))")
        if down.operand != "a" or down.gated:
            raise ValueError("expected down packed as the A operand (choose_layout(..., operand='a'))")
        if any(layout.dtype.is_integer and not layout.dtype.is_signed for layout in (gate_up, down)):
            raise ValueError(
                "DecodeGatedMLP takes weights without zero points (signed integer and float types), got "
                f"{gate_up.dtype.name} and {down.dtype.name}; run the two projections' kernels instead"
            )
        if gate_up.per_channel or down.per_channel:
            raise ValueError(
                "DecodeGatedMLP takes group-wise scales; with per-channel scales run the two kernels instead"
            )
        super().__init__(
            gate_up,
            act_dtype,
            rows=rows,
            warps=warps,
            stages=stages,
            split=split,
            rms_eps=rms_eps,
            rms_rows=rms_rows,
            rms_k=rms_k,
        )
        self.down = down
        slice_outputs = self.block_n // 2
        if down.k_chunk != slice_outputs:
            raise ValueError(
                f"expected down's k_chunk ({down.k_chunk}) to be the intermediate outputs a block computes, "
                f"warps · n_per_warp / 2 = {warps} · {gate_up.n_per_warp} / 2 = {slice_outputs}: choose "
                f"warps = {2 * down.k_chunk // gate_up.n_per_warp}"
            )
        if down.group_size % down.k_chunk:
            raise ValueError(
                f"expected down's group size ({down.group_size}) to be a multiple of its k_chunk "
                f"({down.k_chunk}): a block's slice must lie in one scale group"
            )

    @property
    def down_block_n(self) -> int:
        """Rows of down's output a phase-2 step covers: warps · down.n_per_warp."""
        return self.warps * self.down.n_per_warp

    @property
    def shared_bytes(self) -> tuple[int, int]:
        """(phase 1's shared memory, phase 2's) in bytes: the gate/up copy ring (weights, x, scale and zero
        rows) with the row RMS's copy of x, then down's ring (weights, scale columns) with the h tile."""
        pl, dl, stages, rows, bn = self.layout, self.down, self.stages, self.block_m, self.block_n
        element = self.act.nbits // 8
        ring = stages * (self.warps * pl.tile_bytes + (pl.k_chunk * rows + 2 * bn) * element)
        rms_copy = RMS_SHARED_BYTES if self.rms_eps is not None else 0
        down_ring = stages * (self.warps * dl.tile_bytes + self.down_block_n * element)
        return ring + rms_copy, down_ring + bn // 2 * rows * element

    @property
    def down_copied_first(self) -> bool:
        """Whether down's rings are separate from phase 1's (both fit EARLY_DOWN_SHARED_BYTES), so its first
        tiles are copied before phase 1; else they reuse phase 1's memory and are copied after it."""
        # With split-K only one block of a slice's split runs phase 2: the others' copies would be wasted.
        return self.split == 1 and sum(self.shared_bytes) <= EARLY_DOWN_SHARED_BYTES

    def _down_rings(self):
        """Phase 2's copy rings: down's block tiles [S, warps, tile_bytes] and scale columns [S, bn2, 1]."""
        stages, dl = self.stages, self.down
        weights = self.shared_tensor(uint8, [stages, self.warps, dl.tile_bytes])
        return weights, self.shared_tensor(self.act, [stages, self.down_block_n, 1])

    @anybit.runtime_helper
    def _copy_down_prologue(self, gw2, gs2, sw2, ss2, chunk, group, tiles, commit_each: bool) -> None:
        """Start copying down's first S−1 block tiles (of ``tiles``) and their scale columns: a commit group
        each (the ring's usual accounting) or one for all (the loop's waits cover a single older group)."""
        warps, bn2 = self.warps, self.down_block_n
        for stage in range(self.stages - 1):
            if stage < tiles:
                self.copy_async(gw2, sw2[stage], [chunk, stage * warps, 0], in_bounds=True)
                self.copy_async(gs2, ss2[stage], [stage * bn2, group], in_bounds=True)
            if commit_each:
                self.copy_async_commit_group()
        if not commit_each:
            self.copy_async_commit_group()

    def __call__(
        self,
        x: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        weight: anybit.ptr(anybit.uint8),
        scales: anybit.ptr(self.act),  # noqa: F821
        down_weight: anybit.ptr(anybit.uint8),
        down_scales: anybit.ptr(self.act),  # noqa: F821
        y: anybit.ptr(self.act),  # noqa: F821
        m: anybit.int32,
        n: anybit.int32,
        k: anybit.int32,
        n_down: anybit.int32,
    ):
        pl, dl, act, stages, warps = self.layout, self.down, self.act, self.stages, self.warps
        kc, bn, rows, bn2 = pl.k_chunk, self.block_n, self.block_m, self.down_block_n
        self.attrs.blocks = [2 * n // bn, cdiv(m, rows), self.split]
        self.attrs.warps = warps
        self.assume_divisible(k, kc)
        self.assume_divisible(n, bn // 2)
        self.assume_divisible(n_down, bn2)
        # Phase 2's view of down: chunk b (columns r·b … r·b + r) of every warp tile, a block tile of warps
        # tiles a step, with its scale column (one group: the slice lies in one).
        chunk = self.blockIdx.x
        tiles = n_down // bn2
        gw2 = self.global_view(down_weight, uint8, [n // dl.k_chunk, n_down // dl.n_per_warp, dl.tile_bytes])
        gs2 = self.global_view(down_scales, act, [n_down, n // dl.group_size], strides=[1, n_down])
        group = chunk * dl.k_chunk // dl.group_size
        if self.down_copied_first:
            # Down's first S−1 block tiles copied before anything else (one commit group, older than every
            # one of phase 1's: its waits cover it), so phase 2 starts on tiles already in shared memory.
            sw2, ss2 = self._down_rings()
            self._copy_down_prologue(gw2, gs2, sw2, ss2, chunk, group, tiles, commit_each=False)
        # Phase 1: this block's 2·r interleaved gate/up rows over all of K — the gated kernel's loop.
        gx = self._x_view(x, m, k)
        gw = self._weight_view(weight, k, 2 * n)
        gs = self._scales_view(scales, k // pl.group_size, 2 * n)
        sx = self._x_ring()
        sw = self.shared_tensor(uint8, [stages, warps, pl.tile_bytes])
        ss = self._scales_ring()
        sz = self.shared_tensor(act, [stages, 1, bn])
        n0 = self.blockIdx.x * bn
        m0 = self.blockIdx.y * rows
        first, count = 0, k // kc
        if self.split > 1:  # this block's run of K: split z's share, as the decode kernel cuts it
            first = self.blockIdx.z * (k // kc) // self.split
            count = (self.blockIdx.z + 1) * (k // kc) // self.split - first
        acc, inverse_rms, _ = self._main_loop(
            x, m, k, gx, gw, gs, gs, None, sx, sw, ss, sz, n0, m0, first, count
        )
        if self.split > 1:  # the last of the slice's blocks goes on with the sum, the others exit
            acc = self._sum_splits(acc, m, 2 * n, m0, n0)
        if self.rms_eps is not None:
            acc = acc * inverse_rms
        # h_b, rounded to the activation dtype as the two-kernel MLP stores it, into shared memory as the
        # x tile of the down projection's chunk b: k-contiguous [r, rows], swizzled as the x ring is.
        h = self.cast(self._gate(acc), act)
        if not self.down_copied_first:
            # Phase 1's rings are done with (every warp past the barrier): phase 2's reuse their memory.
            self.sync()
            for ring in (sx, sw, ss, sz):
                self.free_shared(ring)
            sw2, ss2 = self._down_rings()
            self._copy_down_prologue(gw2, gs2, sw2, ss2, chunk, group, tiles, commit_each=True)
        sh = self.shared_tensor(act, [bn // 2, rows], layout=transposed_x_layout(bn // 2, rows))
        self.store_shared(sh, h)
        self.sync()  # h in shared memory for every warp
        tile_x = self.load_shared(sh)
        # The workspace holds yᵀ's M real rows only: the adds of rows past M fall outside it (skipped).
        workspace = self.global_tensor(float32, [n_down, m], kept_clean=True)
        counters = self.global_tensor(int32, [cdiv(m, rows)], kept_clean=True)
        gy = self._y_view(y, m, n_down)
        exponent = weight_exponent(dl.dtype, act)
        for step in self.range(tiles):
            ahead, slot = self._ring_step(step)
            if ahead < tiles:
                self.copy_async(gw2, sw2[slot], [chunk, ahead * warps, 0], in_bounds=True)
                self.copy_async(gs2, ss2[slot], [ahead * bn2, group], in_bounds=True)
            self.copy_async_commit_group()
            current = step % stages
            weights = decode_tile(
                self,
                dl,
                warps,
                act,
                lambda part, first_byte, tile=sw2[current]: self._tile_bytes(tile, part, first_byte, dl),
                exponent=exponent,
            )
            product = self.register_tensor(float32, [bn2, rows], init=0.0)
            self._dot(tile_x, weights, product)
            scale = self.cast(self.load_shared(ss2[current]), float32, exponent=-exponent)
            self.atomic_add(workspace, product * scale, [step * bn2, m0])
        # One arrival a block, after all its adds (an arrival is a round trip: one a tile would serialise
        # sixteen). The last block of the row block finishes y's rows of it, a row at a time in runs of
        # FINISH_COLUMNS: the residual added, one rounding, the workspace zeroed for the next launch.
        arrival = self.arrive(counters, [self.blockIdx.y], 2 * n // bn)
        if arrival == 2 * n // bn - 1:
            zeros = self.register_tensor(float32, [FINISH_COLUMNS, 1], init=0.0)
            for row in self.range(m0, minimum(m0 + rows, m)):
                for start in self.range(0, n_down, FINISH_COLUMNS):
                    total = self.load_global(workspace, [start, row], [FINISH_COLUMNS, 1])
                    residual = self.load_global(gy, [start, row], [FINISH_COLUMNS, 1])
                    self.store_global(gy, self.cast(total + self.cast(residual, float32), act), [start, row])
                    self.store_global(workspace, zeros, [start, row])


#: Shared memory a block may take for both phases' rings side by side (else phase 2 reuses phase 1's): of
#: the H200's 227 KB a block, room left for the reductions' scratch and the runtime's own.
EARLY_DOWN_SHARED_BYTES = 200 * 1024
#: Columns of a row of y the last block finishes a step (a Llama-3-8B row of 4096 in one: 16 f32 a thread
#: at 8 warps).
FINISH_COLUMNS = 4096


#: The cached :class:`DecodeGatedMLP` of one specialisation (same arguments).
gated_mlp_kernel = functools.lru_cache(maxsize=64)(DecodeGatedMLP)

#: Shared memory left for what the generated code declares statically (a few flags) besides the plan's.
STATIC_SHARED_RESERVE = 1024


def mlp_warps(gate_up: PackedLayout, down: PackedLayout) -> int:
    """The warps a :class:`DecodeGatedMLP` block needs so its intermediate slice is one chunk of down's K:
    2 · down.k_chunk / gate_up.n_per_warp."""
    return 2 * down.k_chunk // gate_up.n_per_warp


@functools.lru_cache(maxsize=64)
def planned_shared_bytes(kernel: DecodeGatedMLP, arch: str = "sm_90a") -> int:
    """The dynamic shared memory ``kernel``'s generated code asks for (its rings as the planner places them:
    more than :attr:`DecodeGatedMLP.shared_bytes` where phase 2's rings do not fit phase 1's freed space)."""
    return generate_cuda(kernel.program(), arch=arch).dynamic_shared_bytes


def fitting_mlp_kernel(
    gate_up: PackedLayout,
    down: PackedLayout,
    act: torch.dtype,
    *,
    rows: int,
    stages: int,
    split: int,
    rms_eps: float | None,
    rms: dict,
    limits: DeviceLimits | None,
) -> DecodeGatedMLP:
    """The fused MLP kernel with the deepest copy ring of at most ``stages`` whose block fits the shared
    memory ``limits`` allow a block (None: no limit, for the interpreter). Wide down tiles (128 bytes a
    thread, the default for 70B-sized 6- and 8-bit downs) double phase 2's ring: 4 stages of an 8-bit one
    need ~400 KB, 2 stages ~200 KB of the H200's 227 KB.

    Raises
    ------
    ValueError
        If ``stages`` is below 2, or even a 2-stage ring does not fit (with the bytes it needs and the fixes).
    """
    if stages < 2:
        raise ValueError(f"expected stages >= 2 (one tile computes while the next loads), got {stages}")
    warps = mlp_warps(gate_up, down)
    needs = []
    for depth in range(stages, 1, -1):
        kernel = gated_mlp_kernel(
            kernel_layout(gate_up),
            kernel_layout(down),
            act,
            warps=warps,
            stages=depth,
            rows=rows,
            split=split,
            rms_eps=rms_eps,
            **rms,
        )
        if limits is None:
            return kernel
        needs.append(planned_shared_bytes(kernel, limits.arch))
        if needs[-1] + STATIC_SHARED_RESERVE <= limits.max_shared_memory_per_block:
            return kernel
    raise ValueError(
        f"the fused MLP's block needs {needs[-1]} B of shared memory even with a 2-stage copy ring, "
        f"{limits.arch} allows {limits.max_shared_memory_per_block} B: pack down with narrower warp tiles "
        "(choose_layout(..., max_bytes_per_thread=64)) or run the two projections' kernels"
    )


def check_mlp_shapes(gate_up: PackedLayout, down: PackedLayout, warps: int) -> None:
    """Raise a ValueError naming the multiple a shape misses: the intermediate in whole block slices
    (warps · n_per_warp / 2 outputs) and down's N in whole phase-2 tiles (warps · down.n_per_warp rows)."""
    if not 1 <= warps <= 32 or 2 * down.k_chunk != warps * gate_up.n_per_warp:
        raise ValueError(
            f"down's k_chunk ({down.k_chunk}) must be a whole number of half gate/up warp tiles "
            f"({gate_up.n_per_warp // 2} outputs), at most 32 warps"
        )
    slice_rows, tile_rows = warps * gate_up.n_per_warp, warps * down.n_per_warp
    if gate_up.n % slice_rows or down.n % tile_rows:
        raise ValueError(
            f"expected the intermediate size ({gate_up.n // 2}) a multiple of {slice_rows // 2} and down's N "
            f"({down.n}) a multiple of {tile_rows} (the fused kernel's {warps}-warp blocks); run the two "
            "projections' kernels instead"
        )


def decode_gated_mlp_(
    y: torch.Tensor,
    x: torch.Tensor,
    gate_up: PackedWeight,
    down: PackedWeight,
    *,
    rms_eps: float | None = None,
    stages: int = 4,
    split: int = 1,
) -> torch.Tensor:
    """y += down(silu(x'·gateᵀ) · (x'·upᵀ)) in place, in one kernel (:class:`DecodeGatedMLP`), with x' = x,
    or x's rows divided by their RMS (sqrt(mean x² + rms_eps)) when ``rms_eps`` is given (an RMSNorm whose
    weight was folded into gate/up). Returns ``y``.

    Parameters
    ----------
    y
        [..., N] contiguous, in the weights' activation dtype: the residual stream (it may be ``x`` itself).
    x
        [..., K] with the same leading dimensions (made contiguous).
    gate_up
        The gated pair [2I, K] (gate and up rows interleaved by :func:`~anybit.kernels.interleave_gated`),
        packed with ``gated=True``.
    down
        [N, I], packed as the A operand with k_chunk = the slice a block computes (int4: 128 with 8 warps).
    stages, split
        The kernel's copy ring and gate/up's split-K (see :class:`DecodeGatedMLP`); the ring is made
        shallower where ``stages`` would not fit the device's shared memory (:func:`fitting_mlp_kernel`).
    """
    for name, weight in (("gate_up", gate_up), ("down", down)):
        if not isinstance(weight, PackedWeight):
            raise TypeError(
                f"expected {name} to be a PackedWeight (anybit.kernels.pack), got {type(weight).__name__}"
            )
    act, device = gate_up.act_dtype, gate_up.device
    if down.act_dtype != act or down.device != device:
        raise ValueError(
            f"expected gate_up and down for the same activations and device, got {act} on {device} and "
            f"{down.act_dtype} on {down.device}"
        )
    intermediate, k = gate_up.layout.n // 2, gate_up.layout.k
    n = down.layout.n
    if down.layout.k != intermediate:
        raise ValueError(
            f"expected down [N, I] with I = {intermediate} (gate/up's outputs), got K = {down.layout.k}"
        )
    if gate_up.zeros is not None or down.zeros is not None:
        raise ValueError("the fused MLP takes weights without zero points (signed integer and float types)")
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != k:
        raise ValueError(f"expected x [..., K={k}], got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype != act or x.device != device:
        raise ValueError(f"expected x {act} on {device}, got {x.dtype} on {x.device}")
    warps = mlp_warps(gate_up.layout, down.layout)
    check_mlp_shapes(gate_up.layout, down.layout, warps)
    lead = tuple(x.shape[:-1])
    check_tensor("y", y, (*lead, n), act, device)
    x2 = x.reshape(-1, k).contiguous()
    m = x2.shape[0]
    if m == 0:
        return y
    rows = default_rows(m)
    limits = None if x2.device.type == "cpu" else device_limits(x2.device.index)
    kernel = fitting_mlp_kernel(
        gate_up.layout,
        down.layout,
        act,
        rows=rows,
        stages=stages,
        split=split,
        rms_eps=rms_eps,
        rms=rms_options(m, rows, k) if rms_eps is not None else {},
        limits=limits,
    )
    run_kernel(kernel, x2, gate_up.data, gate_up.scales, down.data, down.scales, y, m, intermediate, k, n)
    return y
