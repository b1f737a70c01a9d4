"""Whether a bf16 decode call runs the fp16 loop (x as fp16 times a power of two a row, or a row and chunk),
decided by timing.

The decode kernels' conversions into bf16 cost more instructions than into fp16 (BENCHMARKS.md, thirty-third
session), so a bf16 call may run faster as x's fp16 copy and factors (one small kernel,
:mod:`anybit.kernels.half_activations`) followed by :class:`~anybit.kernels.decode_half_x.DecodeMatmulHalfX`
(the fp16 loop, bf16 scales and output) — or slower, where the weight's bf16 conversion is cheap or the
call is short enough that the extra kernel shows. The route has two forms (:data:`FORMS`): a factor a row
(its preparation a cluster reduction and two passes over x; the loop as fp16's) and a factor a row and
chunk (its preparation one pass, 1.4–1.7 µs on the H200 where the row form's took 2.8–5.7; a multiply an
accumulator a chunk in the loop). The chunk form won every M = 1 weight timed, the row form every one at
M = 16 (BENCHMARKS.md, thirty-seventh session), so the route takes the chunk form up to 8 rows of x and
the row form past them (:func:`route_form`). The first decode call of each (M bucket, N, K) of an eligible
bf16 weight (packed as the A operand, not a gated pair, without a folded norm or residual add) times the
tuned decode kernel against the route (:mod:`anybit.ops.route_choice`) and keeps the faster. The
route's decode configuration is the fp16 decode kernel's tuned one for the same shape (the same loop):
stored, pinned, or tuned then.
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

#: The route's forms, a route configuration's ``factors``: a factor a row of x, or a row and chunk.
FORMS = ("row", "chunk")
#: The most rows of x the chunk form is the route's form for: one 8-row block (its multiply an accumulator
#: a chunk is cheap there; the 16-row loop's twice the accumulators take the row form).
CHUNK_ROWS = 8


def eligible_forms(layout: PackedLayout, act_dtype: torch.dtype, m: int) -> list[str]:
    """The route's forms a plain decode call of ``m`` rows on a weight of ``layout`` may take (none unless
    bf16, packed as the A operand, not a gated pair, 1 ≤ m ≤ 16): the row form where K is in whole 16-byte
    vectors for each of its preparation's cluster blocks, the chunk form where a chunk of K is."""
    from anybit.kernels.half_activations import CLUSTER, VECTOR

    if act_dtype != torch.bfloat16 or layout.operand != "a" or layout.gated or not 1 <= m <= 16:
        return []
    fits = {"row": layout.k % (VECTOR * CLUSTER) == 0, "chunk": layout.k_chunk % VECTOR == 0}
    return [form for form in FORMS if fits[form]]


def route_form(layout: PackedLayout, act_dtype: torch.dtype, m: int) -> str | None:
    """The form the route takes for ``m`` rows (None: not eligible): the chunk form up to
    :data:`CHUNK_ROWS` rows, the row form past them — each where the other cannot take the call."""
    forms = eligible_forms(layout, act_dtype, m)
    preferred = "chunk" if m <= CHUNK_ROWS else "row"
    return preferred if preferred in forms else next(iter(forms), None)


def eligible(layout: PackedLayout, act_dtype: torch.dtype, m: int) -> bool:
    """Whether a plain decode call of ``m`` rows on a weight of ``layout`` may take the route in some form."""
    return route_form(layout, act_dtype, m) is not None


@functools.cache
def route_revision() -> str:
    """A hash of the route's kernels (not of the entry points around them): stored choices made with other
    kernels are not reused (the decode kernels' own revision is in the decode identity)."""
    from anybit.kernels.decode_half_x import DecodeMatmulHalfX
    from anybit.kernels.half_activations import PrepareHalfX, PrepareHalfXRows

    parts = (DecodeMatmulHalfX, PrepareHalfX, PrepareHalfXRows)
    source = "".join(inspect.getsource(part) for part in parts)
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
    """The route's launch of one decode configuration in one form (``factors``: a value of :data:`FORMS`):
    x's fp16 copy and factors by its preparation kernel into buffers kept here, then ``DecodeMatmulHalfX``."""

    PREPARE_PARAMETERS = ("x", "half", "factors", "m", "k")
    KERNEL_PARAMETERS = HALF_PARAMETERS

    def __init__(
        self,
        layout: PackedLayout,
        config: dict,
        has_zeros: bool,
        has_bias: bool,
        device,
        m: int,
        factors: str,
    ):
        from anybit.kernels.decode_half_x import DecodeMatmulHalfX
        from anybit.kernels.half_activations import new_factors, prepare_kernel

        if factors not in FORMS:
            raise ValueError(f"expected the route's factors one of {FORMS}, got {factors!r}")
        self.form = factors
        k_chunk = layout.k_chunk if factors == "chunk" else None
        self.half = torch.empty((m, layout.k), dtype=torch.float16, device=device)
        self.factors = new_factors(m, layout.k, k_chunk, device)  # the chunk form's rows past M stay zeros
        self.prepare = prepare_kernel(k_chunk)
        chunks = factors == "chunk"
        self.kernel = DecodeMatmulHalfX(layout, chunks, has_zeros=has_zeros, has_bias=has_bias, **config)

    def arguments(self, args: tuple) -> tuple[tuple, tuple]:
        x, weight, scales, zeros, bias, y, m, n, k = args
        prepare_args = (x, self.half, self.factors, m, k)
        return prepare_args, (self.half, weight, scales, zeros, bias, y, self.factors, m, n, k)
