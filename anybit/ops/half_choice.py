"""Whether a bf16 decode call runs the fp16 loop (x as fp16 times a power of two a row), decided by timing.

The decode kernels' conversions into bf16 cost more instructions than into fp16 (BENCHMARKS.md, thirty-third
session), so a bf16 call may run faster as :class:`~anybit.kernels.half_activations.PrepareHalfX` (x's fp16
copy and each row's factor, one small kernel) followed by
:class:`~anybit.kernels.decode_half_x.DecodeMatmulHalfX` (the fp16 loop, bf16 scales and output) — or
slower, where the weight's bf16 conversion is cheap or the call is short enough that the extra kernel
shows. So the first decode call of each (M bucket, N, K) of an eligible bf16 weight (packed as the A
operand, not a gated pair, without a folded norm or residual add) times the tuned decode kernel against
that route (:mod:`anybit.ops.route_choice`) and keeps the faster. The route's decode configuration is the
fp16 decode kernel's tuned one for the same shape (the same loop): stored, pinned, or tuned then.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect

import torch

from anybit.kernels.decode_half_x import HALF_PARAMETERS
from anybit.kernels.layout import PackedLayout
from anybit.ops.route_choice import PreparedLaunch, RouteChooser


def eligible(layout: PackedLayout, act_dtype: torch.dtype, m: int) -> bool:
    """Whether a plain decode call of ``m`` rows on a weight of ``layout`` may take the route (chunks of K in
    whole 16-byte vectors of bf16: the preparation's factor a row and chunk)."""
    from anybit.kernels.half_activations import VECTOR

    if act_dtype != torch.bfloat16 or layout.operand != "a" or layout.gated or not 1 <= m <= 16:
        return False
    return layout.k_chunk % VECTOR == 0


@functools.cache
def route_revision() -> str:
    """A hash of the route's two kernels (not of the entry points around them): stored choices made with
    other kernels are not reused (the decode kernels' own revision is in the decode identity)."""
    from anybit.kernels.decode_half_x import DecodeMatmulHalfX
    from anybit.kernels.half_activations import PrepareHalfX

    source = "".join(inspect.getsource(part) for part in (DecodeMatmulHalfX, PrepareHalfX))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


class HalfRouteChooser(RouteChooser):
    """The measured route per (M bucket, N, K, GPU) of one bf16 decode specialisation (``decode_identity``:
    its tuner's kernel identity)."""

    def __init__(self, decode_identity: str) -> None:
        digest = hashlib.sha256((decode_identity + route_revision()).encode()).hexdigest()[:16]
        super().__init__(f"QuantizedMatmulHalfRoute-{digest}", "half")


def half_route_chooser(decode_identity: str) -> HalfRouteChooser:
    """The shared :class:`HalfRouteChooser` of one decode specialisation."""
    from anybit.ops.path_choice import shared_chooser

    return shared_chooser(HalfRouteChooser, decode_identity)


def fp16_config(layout: PackedLayout, args: tuple, has_zeros: bool, has_bias: bool) -> dict:
    """The fp16 decode kernel's configuration for the launch ``args`` (the decode arguments of a bf16
    call): recorded, pinned or tuned now. Tuning times the fp16 kernel on the call's own tensors with the
    bf16 ones read as fp16 (the same bytes: timing does not depend on their values)."""
    from anybit.kernels.launch import default_decode_config
    from anybit.ops.tuning import block_columns, tuner_for

    x, weight, scales, zeros, bias, y, m, n, k = args
    as_half = [t.view(torch.float16) for t in (x, scales, zeros, bias)]
    standing = (
        as_half[0],
        weight,
        as_half[1],
        as_half[2],
        as_half[3],
        torch.empty_like(y, dtype=torch.float16),
    )
    config = tuner_for(layout, torch.float16, has_zeros, has_bias).select((*standing, m, n, k))
    if n % block_columns(config, layout):
        return dataclasses.asdict(default_decode_config(layout, m))
    return dict(config)


class HalfRouteLaunch(PreparedLaunch):
    """The route's launch of one decode configuration: x's fp16 copy and factors by ``PrepareHalfX`` into
    buffers kept here, then ``DecodeMatmulHalfX``."""

    PREPARE_PARAMETERS = ("x", "half", "factors", "m", "k")
    KERNEL_PARAMETERS = HALF_PARAMETERS

    def __init__(self, layout: PackedLayout, config: dict, has_zeros: bool, has_bias: bool, device, m: int):
        from anybit.kernels.decode_half_x import DecodeMatmulHalfX
        from anybit.kernels.half_activations import new_factors, prepare_kernel

        self.half = torch.empty((m, layout.k), dtype=torch.float16, device=device)
        self.factors = new_factors(layout.k, layout.k_chunk, device)  # rows past M stay zeros
        self.prepare = prepare_kernel(layout.k_chunk)
        self.kernel = DecodeMatmulHalfX(layout, has_zeros=has_zeros, has_bias=has_bias, **config)

    def arguments(self, args: tuple) -> tuple[tuple, tuple]:
        x, weight, scales, zeros, bias, y, m, n, k = args
        prepare_args = (x, self.half, self.factors, m, k)
        return prepare_args, (self.half, weight, scales, zeros, bias, y, self.factors, m, n, k)
