"""A SiLU-gated MLP's decode step in one kernel: y += down(silu(x·gateᵀ) · (x·upᵀ)), in place.

At batch 1 a Llama layer's MLP is two decode kernels (the gated gate/up projection, then down with the
residual add), and the boundary between them — the second's wait for the first to complete, its ramp and
its tail — costs ~1–1.5 µs of a ~30 µs pair (H200, 2026-11-29). Here block b computes its slice of the
intermediate, h_b = silu(x·gate_bᵀ)·(x·up_bᵀ) (r = warps · n_per_warp / 2 outputs, the gated kernel's main
loop unchanged, the input RMSNorm folded in as there), and multiplies it straight into the down projection's
K slice [r·b, r·b + r): no block waits for another. Down's weight is packed as the A operand, so the slice
is one chunk (k_chunk = r) of every warp tile: the block walks down's N in tiles of warps · n_per_warp rows
through a copy ring, each tile's f32 product scaled by its group's scale column and added with
``atomic_add`` into an f32 workspace yᵀ [N, rows]. Every block arrives at each output tile's counter after
its add; the last to arrive adds the residual (y itself), rounds, stores y and zeroes the tile's workspace
for the next launch.

The f32 sums of the blocks' products arrive in whatever order the blocks finish: unlike split-K's fixed
order, two runs may differ in the last bit of an output (then one rounding to the activation dtype).
Weights without zero points (signed integer and float types), group-wise scales.
"""

from __future__ import annotations

import functools

import torch

import anybit
from anybit.dtypes import float32, int32, uint8
from anybit.ir import cdiv
from anybit.kernels.checks import check_tensor, run_kernel
from anybit.kernels.decode import weight_exponent
from anybit.kernels.decode_transposed import DecodeMatmulTransposed, transposed_x_layout
from anybit.kernels.launch import default_rows, kernel_layout, rms_options
from anybit.kernels.layout import PackedLayout
from anybit.kernels.packing import PackedWeight
from anybit.kernels.planes import decode_tile


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
        As :class:`~anybit.kernels.decode_transposed.DecodeMatmulTransposed` (no split-K, no warps along K:
        a block must hold its whole slice of the intermediate).
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
        self.attrs.blocks = [2 * n // bn, cdiv(m, rows), 1]
        self.attrs.warps = warps
        self.assume_divisible(k, kc)
        self.assume_divisible(n, bn // 2)
        self.assume_divisible(n_down, bn2)
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
        acc, inverse_rms, _ = self._main_loop(
            x, m, k, gx, gw, gs, gs, None, sx, sw, ss, sz, n0, m0, 0, k // kc
        )
        if self.rms_eps is not None:
            acc = acc * inverse_rms
        # h_b, rounded to the activation dtype as the two-kernel MLP stores it, into shared memory as the
        # x tile of the down projection's chunk b: k-contiguous [r, rows], swizzled as the x ring is.
        h = self.cast(self._gate(acc), act)
        # Phase 1's rings are done with (every warp past the barrier): phase 2's reuse their shared memory.
        self.sync()
        for ring in (sx, sw, ss, sz):
            self.free_shared(ring)
        sh = self.shared_tensor(act, [bn // 2, rows], layout=transposed_x_layout(bn // 2, rows))
        self.store_shared(sh, h)
        # Phase 2: down's chunk b (columns r·b … r·b + r) of every warp tile, a block tile of warps tiles a
        # step through an S-stage ring, with its scale column (one group: the slice lies in one).
        chunk = self.blockIdx.x
        tiles = n_down // bn2
        gw2 = self.global_view(down_weight, uint8, [n // dl.k_chunk, n_down // dl.n_per_warp, dl.tile_bytes])
        groups = n // dl.group_size
        gs2 = self.global_view(down_scales, act, [n_down, groups], strides=[1, n_down])
        group = chunk * dl.k_chunk // dl.group_size
        sw2 = self.shared_tensor(uint8, [stages, warps, dl.tile_bytes])
        ss2 = self.shared_tensor(act, [stages, bn2, 1])
        for stage in range(stages - 1):
            if stage < tiles:
                self.copy_async(gw2, sw2[stage], [chunk, stage * warps, 0], in_bounds=True)
                self.copy_async(gs2, ss2[stage], [stage * bn2, group], in_bounds=True)
            self.copy_async_commit_group()
        self.sync()  # h in shared memory for every warp
        tile_x = self.load_shared(sh)
        workspace = self.global_tensor(float32, [n_down, cdiv(m, rows) * rows], kept_clean=True)
        counters = self.global_tensor(int32, [cdiv(m, rows), tiles], kept_clean=True)
        gy = self._y_view(y, m, n_down)
        exponent = weight_exponent(dl.dtype, act)
        for step in self.range(tiles):
            self.copy_async_wait_group(stages - 2)
            self.sync()
            ahead = step + stages - 1
            slot = ahead % stages
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
            # The last block to add into this output tile finishes it: the residual added, one rounding,
            # the tile's workspace zeroed for the next launch.
            arrival = self.arrive(counters, [self.blockIdx.y, step], 2 * n // bn)
            if arrival == 2 * n // bn - 1:
                total = self.load_global(workspace, [step * bn2, m0], [bn2, rows])
                residual = self.cast(self.load_global(gy, [step * bn2, m0], [bn2, rows]), float32)
                self.store_global(gy, self.cast(total + residual, act), [step * bn2, m0])
                zeros = self.register_tensor(float32, [bn2, rows], init=0.0)
                self.store_global(workspace, zeros, [step * bn2, m0])


#: The cached :class:`DecodeGatedMLP` of one specialisation (same arguments).
gated_mlp_kernel = functools.lru_cache(maxsize=64)(DecodeGatedMLP)


def mlp_warps(gate_up: PackedLayout, down: PackedLayout) -> int:
    """The warps a :class:`DecodeGatedMLP` block needs so its intermediate slice is one chunk of down's K:
    2 · down.k_chunk / gate_up.n_per_warp."""
    return 2 * down.k_chunk // gate_up.n_per_warp


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
    """
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
    kernel = gated_mlp_kernel(
        kernel_layout(gate_up.layout),
        kernel_layout(down.layout),
        act,
        warps=warps,
        stages=stages,
        rows=rows,
        rms_eps=rms_eps,
        **(rms_options(m, rows, k) if rms_eps is not None else {}),
    )
    run_kernel(kernel, x2, gate_up.data, gate_up.scales, down.data, down.scales, y, m, intermediate, k, n)
    return y
