"""Run helpers: launch the decode and dequantize kernels on torch tensors, with argument checks.

CUDA tensors launch on the GPU (compiled once per kernel specialisation, then cached); CPU tensors run on
the interpreter (small sizes: tests and debugging). Kernel instances are cached per specialisation, which
depends only on the weight type, the tile shape, the scale grouping and the options, not on N and K.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch

from anybit.kernels.checks import check_tensor, run_kernel
from anybit.kernels.decode import BLOCK_M, RMS_ROWS, DecodeMatmul
from anybit.kernels.decode_transposed import DecodeMatmulTransposed
from anybit.kernels.dequantize import MAX_STAGED, DequantizeWeight
from anybit.kernels.layout import PackedLayout
from anybit.kernels.packing import PackedWeight

#: Blocks a decode launch should have to keep the read bandwidth busy: two per SM of a 132-SM H200 (each
#: block keeps stages − 1 chunks of its warps' tiles in flight).
TARGET_BLOCKS = 264
#: The most blocks along K (split-K) the default configuration and the tuning space use.
MAX_SPLIT = 16


@dataclass(frozen=True)
class DecodeConfig:
    """Tunables of :class:`DecodeMatmul`: warps per block (the block covers warps · n_per_warp columns),
    pipeline stages and blocks along K (split-K); for a weight packed with ``operand="a"``
    (:class:`DecodeMatmulTransposed`) also the x rows per block (8 or 16) and whether the block's warps
    split K instead (``warps_along_k``: the block covers n_per_warp columns); whether split-K's partial
    sums meet in a thread-block cluster (``split_in_cluster``, sm_90, split ≤ 16); and whether the weights'
    conversion leaves its magic number for a second ``dot`` to take off (``bias_after_dot``: integer codes
    stored whole, without zero points; see :class:`DecodeMatmul`); and whether the tensor cores read x from
    its ring slot (``wgmma``, operand "a" only, warps in groups of 4; see :class:`DecodeMatmulTransposed`);
    and whether each thread's weight bytes go straight into registers a chunk ahead instead of through the
    shared-memory ring (``weights_in_registers``; see :class:`DecodeMatmul`)."""

    warps: int = 4
    stages: int = 4
    split: int = 1
    rows: int | None = None  # operand "a" only; None: 8 up to M = 8, else 16
    warps_along_k: bool = False  # operand "a" only
    split_in_cluster: bool = False  # split-K reduced in a thread-block cluster (sm_90, split ≤ 16)
    bias_after_dot: bool = False  # the conversion's magic number taken off by a second dot
    wgmma: bool = False  # operand "a" only: x read by wgmma from shared memory
    weights_in_registers: bool = False  # the weight bytes loaded into registers, not through the ring
    late_weight_loads: bool = False  # with weights_in_registers: the next chunk's loads after the conversion

    def block_columns(self, layout: PackedLayout) -> int:
        """Output columns a block of this configuration covers for ``layout``."""
        return layout.n_per_warp * (1 if self.warps_along_k else self.warps)


def kernel_layout(layout: PackedLayout) -> PackedLayout:
    """The layout with N and K replaced by the smallest shape of the same specialisation (cache key)."""
    if layout.per_channel:
        return dataclasses.replace(layout, n=layout.n_per_warp, k=layout.k_chunk, group_size=layout.k_chunk)
    return dataclasses.replace(layout, n=layout.n_per_warp, k=2 * layout.group_size)


def useful_split(
    layout: PackedLayout, m: int, warps: int, stages: int, split: int, target: int = TARGET_BLOCKS
) -> str | None:
    """Why ``split`` blocks along K do not help this launch (None when they may): each split runs at least
    two chunks, more than 4 stages only where a run is long enough to use them, and a split is only worth it
    while the grid with half as many splits has fewer than ``target`` blocks."""
    chunks = layout.k // layout.k_chunk
    if stages > 4 and chunks // split < stages:
        return f"runs of {chunks // split} chunks do not use {stages} stages (4 hold them)"
    if split == 1:
        return None
    if chunks // split < 2:
        return f"split {split} leaves runs of {chunks // split} chunk(s)"
    blocks = layout.n // (warps * layout.n_per_warp) * -(-m // BLOCK_M)
    if blocks * (split // 2) >= target:
        return f"{blocks} blocks · split {split // 2} already reach {target}"
    return None


def default_decode_config(layout: PackedLayout, m: int = 1) -> DecodeConfig:
    """The most warps (4, 2 or 1) whose block width divides N, 4 stages, and the smallest split-K (a power of
    two up to :data:`MAX_SPLIT`) that gives :data:`TARGET_BLOCKS` blocks for ``m`` rows (or the largest that
    :func:`useful_split` allows)."""
    warps = next(w for w in (4, 2, 1) if layout.n % (w * layout.n_per_warp) == 0)
    split = 1
    while split < MAX_SPLIT and useful_split(layout, m, warps, 4, 2 * split) is None:
        split *= 2
    if layout.operand == "a":
        return DecodeConfig(warps=warps, stages=4, split=split, rows=default_rows(m))
    return DecodeConfig(warps=warps, stages=4, split=split)


def default_rows(m: int) -> int:
    """x rows per block of the transposed kernel: 8 up to M = 8 (half the tensor-core work), else 16."""
    return 8 if m <= 8 else 16


@functools.cache
def decode_kernel(
    layout: PackedLayout,
    act_dtype: torch.dtype,
    has_zeros: bool,
    has_bias: bool,
    config: DecodeConfig,
    accumulate: bool = False,
    rms_eps: float | None = None,
    rms_rows: int | None = None,
    rms_k: int | None = None,
) -> DecodeMatmul:
    """The cached decode kernel of one specialisation (``layout`` as :func:`kernel_layout` gives):
    :class:`DecodeMatmul`, or :class:`DecodeMatmulTransposed` for a weight packed with ``operand="a"``
    (``accumulate``, ``rms_eps``, ``rms_rows`` and ``rms_k``: see :class:`DecodeMatmul`)."""
    options = dict(has_zeros=has_zeros, has_bias=has_bias, warps=config.warps, stages=config.stages)
    options.update(split_in_cluster=config.split_in_cluster, bias_after_dot=config.bias_after_dot)
    options.update(accumulate=accumulate, rms_eps=rms_eps, rms_rows=rms_rows, rms_k=rms_k)
    options.update(
        weights_in_registers=config.weights_in_registers, late_weight_loads=config.late_weight_loads
    )
    if layout.operand == "a":
        return DecodeMatmulTransposed(
            layout,
            act_dtype,
            rows=config.rows,
            split=config.split,
            warps_along_k=config.warps_along_k,
            wgmma=config.wgmma,
            **options,
        )
    return DecodeMatmul(layout, act_dtype, split=config.split, **options)


def rms_options(m: int, rows: int | None, k: int) -> dict:
    """``rms_rows`` and ``rms_k`` of a transposed decode kernel with the row RMS, for M rows of x [M, K] in
    blocks of ``rows``: the rows a block has (fewer than 8 only at M < 8; None, all, for 16-row blocks), so
    the row RMS sums no padding, and K, so x's rows may be copied into shared memory."""
    return {"rms_rows": min(m, RMS_ROWS) if rows == RMS_ROWS else None, "rms_k": k}


@functools.cache
def dequantize_kernel(
    layout: PackedLayout, act_dtype: torch.dtype, has_zeros: bool, warps: int
) -> DequantizeWeight:
    """The cached :class:`DequantizeWeight` of one specialisation."""
    return DequantizeWeight(layout, act_dtype, has_zeros=has_zeros, warps=warps)


def decode_matmul(
    x: torch.Tensor,
    p: PackedWeight,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    config: DecodeConfig | dict | None = None,
    *,
    accumulate: bool = False,
    rms_eps: float | None = None,
) -> torch.Tensor:
    """y = x @ W^T (+ bias) with the decode kernel (meant for M ≤ 16 rows; correct for any M).

    Parameters
    ----------
    x
        [..., K] activations in ``p.act_dtype``, on ``p``'s device (made contiguous).
    p
        The packed weight [N, K].
    bias
        Optional [N] in ``p.act_dtype``.
    out
        Optional contiguous [..., N] result tensor.
    config
        Warps, stages and split-K (a :class:`DecodeConfig` or a dict of its fields); default
        :func:`default_decode_config` for these M rows. N must be a multiple of warps · n_per_warp.
    accumulate
        Add the product to ``out`` (required then) in place: out += x @ W^T (+ bias), one rounding.
    rms_eps
        Normalise x's rows by their RMS first: (x / sqrt(mean_k x² + rms_eps)) @ W^T — a Llama RMSNorm whose
        weight was folded into W. Weights packed as the A operand only.

    Returns
    -------
    torch.Tensor
        [..., N] in ``p.act_dtype``; for a gated pair (``p.layout.gated``: gate and up rows interleaved by
        :func:`~anybit.kernels.interleave_gated`) [..., N/2] = silu(x @ gate^T) · (x @ up^T), with ``out``
        [..., N/2] and the ``bias`` [N] interleaved as the weight.
    """
    layout = p.layout
    n, k = layout.n, layout.k
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != k:
        raise ValueError(f"expected x [..., K={k}], got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype != p.act_dtype or x.device != p.device:
        raise ValueError(f"expected x {p.act_dtype} on {p.device}, got {x.dtype} on {x.device}")
    lead = tuple(x.shape[:-1])
    x2 = x.reshape(-1, k).contiguous()
    m = x2.shape[0]
    config = (
        DecodeConfig(**config) if isinstance(config, dict) else config or default_decode_config(layout, m)
    )
    for option in ("warps_along_k", "wgmma"):
        if getattr(config, option) and layout.operand != "a":
            raise ValueError(
                f"config {option}=True applies to weights packed with operand='a' (the transposed kernel); "
                f"this weight is packed as operand 'b': drop {option}"
            )
    if n % config.block_columns(layout):
        raise ValueError(
            f"expected N = {n} to be a multiple of the block's {config.block_columns(layout)} columns "
            f"(warps · n_per_warp = {config.warps} · {layout.n_per_warp})"
        )
    if layout.operand == "b" and config.rows is not None:
        raise ValueError(
            f"config rows={config.rows} applies to weights packed with operand='a' (the transposed kernel); "
            "this weight is packed as operand 'b': drop rows"
        )
    if layout.operand == "a" and config.rows is None:
        config = dataclasses.replace(config, rows=default_rows(m))
    width = n // 2 if layout.gated else n
    if accumulate and out is None:
        raise ValueError("accumulate=True adds the product to out: pass out (the tensor to add to)")
    if out is None:
        out = torch.empty((*lead, width), dtype=p.act_dtype, device=p.device)
    check_tensor("out", out, (*lead, width), p.act_dtype, p.device)
    if bias is not None:
        check_tensor("bias", bias, (n,), p.act_dtype, p.device)
    if m == 0:
        return out
    kernel = decode_kernel(
        kernel_layout(layout),
        p.act_dtype,
        p.zeros is not None,
        bias is not None,
        config,
        accumulate,
        rms_eps,
        **(rms_options(m, config.rows, k) if rms_eps is not None else {}),
    )
    zeros = p.zeros if p.zeros is not None else p.scales
    run_kernel(kernel, x2, p.data, p.scales, zeros, p.scales if bias is None else bias, out, m, n, k)
    return out


def dequantize_weight(p: PackedWeight, out: torch.Tensor | None = None) -> torch.Tensor:
    """The [N, K] weight ``(decode(W) − zeros) · scales`` in ``p.act_dtype`` (for prefill: then ``x @ w.T``).

    Parameters
    ----------
    p
        The packed weight.
    out
        Optional contiguous [N, K] result tensor in ``p.act_dtype`` on ``p``'s device.
    """
    layout = p.layout
    n, k = layout.n, layout.k
    if out is None:
        out = torch.empty((n, k), dtype=p.act_dtype, device=p.device)
    check_tensor("out", out, (n, k), p.act_dtype, p.device)
    # The most warps whose block divides N and whose staged chunk fits (wide warp tiles: fewer warps).
    warps = next(
        (
            w
            for w in (4, 2)
            if n % (w * layout.n_per_warp) == 0 and layout.k_chunk * w * layout.n_per_warp <= MAX_STAGED
        ),
        1,
    )
    kernel = dequantize_kernel(kernel_layout(layout), p.act_dtype, p.zeros is not None, warps)
    zeros = p.zeros if p.zeros is not None else p.scales
    run_kernel(kernel, p.data, p.scales, zeros, out, n, k)
    return out
