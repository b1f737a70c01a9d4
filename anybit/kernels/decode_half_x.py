"""The decode kernel for bf16 activations through the fp16 loop: x as fp16 times a power of two a row, or a
row and chunk.

:class:`DecodeMatmulHalfX` is :class:`~anybit.kernels.decode_transposed.DecodeMatmulTransposed` with fp16 as
the activation dtype of its loop (x's ring, the weights' conversion, the ``mma``) and bf16 as the dtype of
everything else (scales, zero points, bias, y: read and written as they are; the zero points, small
integers, become fp16 before the conversion subtracts them). Its x is :func:`~anybit.kernels.
half_activations.prepare_half_x`'s fp16 copy x · 2^−s with the factors 2^s, in either form: a factor a
row (the block's f32 sum times its rows' factors once, before the bias) or a row and chunk
(``chunk_factors``: each chunk's factors travel in the copy ring with its x, and the chunk's f32 partial
sum is multiplied by them before the scales). Both exact (powers of two), the sum rounded once to bf16. So
a bf16 model gets the fp16 conversions (one shift a pair of 4-bit codes less, 8-bit codes without f32) for
one small kernel before: which form, if either, is faster for a weight is measured
(:mod:`anybit.ops.half_choice`).
"""

from __future__ import annotations

import torch

import anybit
from anybit.dtypes import float32
from anybit.kernels.checks import run_kernel
from anybit.kernels.decode_transposed import DecodeMatmulTransposed
from anybit.kernels.half_activations import FACTOR_ROWS, prepare_half_x_on_device
from anybit.kernels.launch import DecodeConfig, default_decode_config, default_rows
from anybit.kernels.packing import PackedWeight

#: The kernel's parameters in order (the decode kernel's with the rows' factors before M, N and K).
HALF_PARAMETERS = ("x", "weight", "scales", "zeros", "bias", "y", "factors", "m", "n", "k")


class DecodeMatmulHalfX(DecodeMatmulTransposed):
    """y [M, N] bf16 = (x16 [M, K] fp16 · factors) @ W^T (+ bias), the weight packed as the A operand; the
    factors f32 [M], one a row of x, or with ``chunk_factors`` [K / k_chunk, FACTOR_ROWS], one a row of x and
    chunk (rows past M: zeros).

    Options as :class:`~anybit.kernels.decode_transposed.DecodeMatmulTransposed` (any decode configuration:
    rows, warps, stages, split, warps along K, ...), without the folds: no row RMS (x is scaled), no
    residual add, no gated pair."""

    def __init__(self, layout, chunk_factors: bool = False, **options) -> None:
        folded = [name for name in ("rms_eps", "accumulate") if options.get(name)]
        if folded or layout.gated:
            raise ValueError(
                "DecodeMatmulHalfX multiplies x by a factor per row (or row and chunk): it takes no row RMS, "
                f"residual add or gated pair (got {', '.join(folded) or 'a gated pair'}); use "
                "DecodeMatmulTransposed"
            )
        super().__init__(layout, torch.float16, io_dtype=torch.bfloat16, **options)
        self.chunk_factors = chunk_factors
        if chunk_factors and self.block_m > FACTOR_ROWS:
            raise ValueError(f"expected at most {FACTOR_ROWS} rows of x a block, got {self.block_m}")

    def __call__(
        self,
        x: anybit.ptr(anybit.float16),
        weight: anybit.ptr(anybit.uint8),
        scales: anybit.ptr(anybit.bfloat16),
        zeros: anybit.ptr(anybit.bfloat16),
        bias: anybit.ptr(anybit.bfloat16),
        y: anybit.ptr(anybit.bfloat16),
        factors: anybit.ptr(anybit.float32),
        m: anybit.int32,
        n: anybit.int32,
        k: anybit.int32,
    ):
        self._factors = (factors, m, k)  # viewed with the ring or after the loop: the body sets the grid
        self._program(x, weight, scales, zeros, bias, y, m, n, k)

    def _row_factors(self, acc, m0):
        """The block's yᵀ [block_n, rows] times its rows' factors 2^s (the row form; rows past M: zeros,
        never stored)."""
        if self.chunk_factors:
            return acc
        factors, m, _ = self._factors
        gf = self.global_view(factors, float32, [1, m])
        return acc * self.load_global(gf, [0, m0], [1, self.rows])

    def _factors_ring(self):
        """The chunk form's ring: a step's factors [k_groups, 1, rows] a slot (a chunk's row of them for each
        K group); the factors' global view [K / k_chunk, 1, FACTOR_ROWS] made with it. None for the row
        form."""
        if not self.chunk_factors:
            return None
        factors, _, k = self._factors
        self._factors_view = self.global_view(factors, float32, [k // self.layout.k_chunk, 1, FACTOR_ROWS])
        return self.shared_tensor(float32, [self.stages, self.k_groups, 1, self.rows])

    def _copy_factors(self, slot, chunk, m0) -> None:
        """Chunks ``chunk`` … ``chunk + k_groups − 1``'s factors of rows m0 … m0 + rows − 1: whole rows of
        the padded factors (:data:`~anybit.kernels.half_activations.FACTOR_ROWS`), no bounds to check."""
        self.copy_async(self._factors_view, slot, [chunk, 0, m0], in_bounds=True)

    def _times_factors(self, partial, slot):
        """The partial sum yᵀ [block_n, rows] (with K groups [k_groups, block_n, rows]) times its chunk's
        factors, a column a row of x."""
        factors = self.load_shared(slot)
        if self.k_groups > 1:
            return partial * factors
        return partial * self.view(factors, shape=[1, self.rows])


def half_x_matmul(
    x: torch.Tensor,
    p: PackedWeight,
    bias: torch.Tensor | None = None,
    *,
    config: DecodeConfig | dict | None = None,
    chunk_factors: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """y = x @ W^T (+ bias) for bf16 x [M ≤ 16, K] through the fp16 loop: x's fp16 copy and factors
    (:func:`~anybit.kernels.half_activations.prepare_half_x_on_device`: a factor a row, or with
    ``chunk_factors`` a row and chunk of the packing's ``k_chunk``), then :class:`DecodeMatmulHalfX` in
    ``config`` (a :class:`~anybit.kernels.launch.DecodeConfig` or a dict of the kernel's options; default: the
    decode kernel's default for M). CUDA tensors on the GPU, CPU tensors on the interpreter; ``out`` [M, N]
    bf16."""
    layout = p.layout
    if p.act_dtype != torch.bfloat16 or layout.operand != "a":
        raise ValueError(
            f"half_x_matmul takes a bf16 weight packed as the A operand, got {p.act_dtype} packed as "
            f"operand {layout.operand!r}"
        )
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != layout.k or not 1 <= x.shape[0] <= 16:
        raise ValueError(f"expected x [M ≤ 16, K={layout.k}], got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype != torch.bfloat16 or x.device != p.device:
        raise ValueError(f"expected x bf16 on {p.device}, got {x.dtype} on {x.device}")
    m = x.shape[0]
    # A dict may name any option of the kernel (a tuned configuration's min_blocks too)
    options = dict(config if isinstance(config, dict) else vars(config or default_decode_config(layout, m)))
    options["rows"] = options.get("rows") or default_rows(m)
    kernel = DecodeMatmulHalfX(
        layout, chunk_factors, has_zeros=p.zeros is not None, has_bias=bias is not None, **options
    )
    half, factors = prepare_half_x_on_device(x, layout.k_chunk if chunk_factors else None)
    y = out if out is not None else torch.empty((m, layout.n), dtype=torch.bfloat16, device=x.device)
    zeros = p.scales if p.zeros is None else p.zeros
    bias_arg = p.scales if bias is None else bias
    run_kernel(kernel, half, p.data, p.scales, zeros, bias_arg, y, factors, m, layout.n, layout.k)
    return y
