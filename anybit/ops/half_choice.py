"""Whether a bf16 decode call runs the fp16 loop (x as fp16 times a power of two a row, or a row and chunk),
decided by timing.

The decode kernels' conversions into bf16 cost more instructions than into fp16 (BENCHMARKS.md, thirty-third
session), so a bf16 call may run faster as x's fp16 copy and factors (one small kernel,
:mod:`anybit.kernels.half_activations`) followed by :class:`~anybit.kernels.decode_half_x.DecodeMatmulHalfX`
(the fp16 loop, bf16 scales and output) — or slower, where the weight's bf16 conversion is cheap or the
call is short enough that the extra kernel shows. The route has two forms (:data:`FORMS`): a factor a row
(its preparation a cluster reduction and two passes over x; the loop as fp16's) and a factor a row and
chunk (its preparation one pass, 1.3–1.7 µs on the H200 where the row form's took 2.8–5.7; a multiply an
accumulator a chunk in the loop). Which is faster depends on the weight (on the H200 the chunk form on
8192×28672 and 8192×8192, where x's copy is a large part of the call, the row form on 57344×8192, where the
loop is: BENCHMARKS.md, thirty-seventh session), so the first decode call of each (M bucket, N, K) of an
eligible bf16 weight (packed as the A operand, not a gated pair, without a folded norm or residual add)
times the tuned decode kernel against both forms (:mod:`anybit.ops.route_choice`) and keeps the fastest.
The route's decode configuration is the fp16 decode kernel's for the same shape (the same loop) where one is
recorded (pinned, cached or shipped); where none is, the bf16 kernel's own tuned configuration, so that a
first call tunes once and not twice (an fp16 tuning can take as long as the bf16 one: float6_e2m3's space
keeps ~170 configurations a shape). ``ANYBIT_TUNE_HALF_ROUTE=1`` (the benchmarks set it) tunes the fp16
kernel for it instead, as offline tuning wants.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import os

import torch

from anybit.kernels.decode_half_x import HALF_PARAMETERS
from anybit.kernels.layout import PackedLayout
from anybit.ops.route_choice import PreparedLaunch, RouteChooser

#: The route's forms, a route configuration's ``factors``: a factor a row of x, or a row and chunk.
FORMS = ("row", "chunk")


def eligible_forms(layout: PackedLayout, act_dtype: torch.dtype, m: int) -> list[str]:
    """The route's forms a plain decode call of ``m`` rows on a weight of ``layout`` may take (none unless
    bf16, packed as the A operand, not a gated pair, 1 ≤ m ≤ 16): the row form where K is in whole 16-byte
    vectors for each of its preparation's cluster blocks, the chunk form where a chunk of K is."""
    from anybit.kernels.half_activations import CLUSTER, VECTOR

    if act_dtype != torch.bfloat16 or layout.operand != "a" or layout.gated or not 1 <= m <= 16:
        return []
    fits = {"row": layout.k % (VECTOR * CLUSTER) == 0, "chunk": layout.k_chunk % VECTOR == 0}
    return [form for form in FORMS if fits[form]]


def eligible(layout: PackedLayout, act_dtype: torch.dtype, m: int) -> bool:
    """Whether a plain decode call of ``m`` rows on a weight of ``layout`` may take the route in some form."""
    return bool(eligible_forms(layout, act_dtype, m))


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


#: The environment variable that has the route's configuration tuned on the fp16 decode kernel where none is
#: recorded (``"1"``), rather than taken from the bf16 kernel's (:func:`fp16_config`).
TUNE_ROUTE_VARIABLE = "ANYBIT_TUNE_HALF_ROUTE"


def tunes_route_configuration() -> bool:
    """Whether a first call without a recorded fp16 configuration tunes one for the route
    (``ANYBIT_TUNE_HALF_ROUTE=1``) rather than take the bf16 kernel's."""
    return os.environ.get(TUNE_ROUTE_VARIABLE, "0") == "1"


def fp16_config(
    layout: PackedLayout,
    args: tuple,
    has_zeros: bool,
    has_bias: bool,
    decode_config: dict,
    *,
    tune: bool | None = None,
) -> dict:
    """The route's decode configuration for the launch ``args`` (the decode arguments of a bf16 call): the
    fp16 decode kernel's where one is recorded for the shape (pinned, cached or shipped); else, with
    ``tune`` (default :func:`tunes_route_configuration`), the fp16 kernel tuned now on the call's own tensors
    with the bf16 ones read as fp16 (the same bytes: timing does not depend on their values); else
    ``decode_config``, the bf16 decode kernel's configuration for this call (the same loop and layout)."""
    from anybit.ops.tuning import tuner_for
    from anybit.runtime.device import current_arch

    x, weight, scales, zeros, bias, y, m, n, k = args
    tuner = tuner_for(layout, torch.float16, has_zeros, has_bias)
    config = tuner.recorded((m, n, k), current_arch())
    if config is None and not (tunes_route_configuration() if tune is None else tune):
        config = decode_config
    if config is None:
        as_half = [t.view(torch.float16) for t in (x, scales, zeros, bias)]
        standing = (
            as_half[0],
            weight,
            as_half[1],
            as_half[2],
            as_half[3],
            torch.empty_like(y, dtype=torch.float16),
        )
        config = tuner.select((*standing, m, n, k))
    return covering(layout, config, m, n)


def covering(layout: PackedLayout, config: dict, m: int, n: int) -> dict:
    """``config``, or the default decode configuration for M where a stored one cannot cover N (its block
    columns do not divide N)."""
    from anybit.kernels.launch import default_decode_config
    from anybit.ops.tuning import block_columns

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


def route_configuration(layout: PackedLayout, has_zeros: bool, has_bias: bool, shape: tuple, arch: str):
    """The route's decode configuration for launches of ``shape`` (M, N, K) where it is known without
    tuning or tensors: the fp16 decode kernel's recorded one (pinned, cached or shipped for ``arch``), else
    (unless :func:`tunes_route_configuration`) the bf16 kernel's recorded one, as :func:`fp16_config`
    takes them; the default where that cannot cover N (:func:`covering`); None where nothing is recorded."""
    from anybit.ops.tuning import tuner_for

    config = tuner_for(layout, torch.float16, has_zeros, has_bias).recorded(shape, arch)
    if config is None and not tunes_route_configuration():
        config = tuner_for(layout, torch.bfloat16, has_zeros, has_bias).recorded(shape, arch)
    return None if config is None else covering(layout, config, shape[0], shape[1])


def precompile_routes(specialisations, *, arch: str | None = None, processes: int | None = None) -> dict:
    """Compile, in ``processes`` build worker processes (default :func:`~anybit.runtime.build_pool.
    default_processes`; here with fewer than two, or where they cannot start), the route kernels that first
    calls would time: for each
    ``(layout, act_dtype, has_zeros, has_bias, [(M, N, K), ...])`` every eligible form of every shape whose
    route is not chosen yet (pinned, cached or shipped) and whose fp16 decode configuration is recorded
    (:func:`route_configuration`). NVRTC is most of a route's first call (two forms, ~0.5 s each): a suite
    of many bf16 weights compiles them in parallel first. Returns counts of ``compiled`` and ``failed``
    kernels."""
    from anybit.kernels.decode_half_x import DecodeMatmulHalfX
    from anybit.ops.tuning import m_bucket, tuner_for
    from anybit.runtime.autotune import bucket_text, gpu_key, stored_config
    from anybit.runtime.build_pool import BuildPoolError, default_processes, run_jobs
    from anybit.runtime.compiler import build_call
    from anybit.runtime.device import current_arch

    arch = arch or current_arch()
    items = []  # build_call's (kernel, stand-ins, arch) of each route kernel
    for layout, act_dtype, has_zeros, has_bias, shapes in specialisations:
        if not eligible_forms(layout, act_dtype, 1):
            continue
        chooser = half_route_chooser(tuner_for(layout, act_dtype, has_zeros, has_bias).identity)
        for shape in shapes:
            m, n, k = shape
            if stored_config(chooser.identity, gpu_key(arch), bucket_text([m_bucket(m), n, k])) is not None:
                continue
            forms = eligible_forms(layout, act_dtype, m)
            config = route_configuration(layout, has_zeros, has_bias, shape, arch) if forms else None
            if config is not None:
                items += [
                    (
                        DecodeMatmulHalfX(
                            layout, form == "chunk", has_zeros=has_zeros, has_bias=has_bias, **config
                        ),
                        (None,) * 7 + tuple(shape),
                        arch,
                    )
                    for form in forms
                ]
    workers = default_processes() if processes is None else processes
    results = None
    if workers > 1 and len(items) > 1:
        try:
            results = run_jobs(build_call, items, workers)
        except BuildPoolError:  # workers that cannot start (or died): build here instead
            results = None
    if results is None:
        results = [_build_here(item) for item in items]
    failed = sum(not ok for ok, _ in results)
    return {"compiled": len(items) - failed, "failed": failed}


def _build_here(item: tuple) -> tuple[bool, object]:
    """:func:`~anybit.runtime.compiler.build_call` in this process, as a worker reports it: (True, its
    build) or (False, why)."""
    from anybit.runtime.compiler import build_call

    try:
        return True, build_call(*item)
    except Exception as error:  # a kernel that cannot build is left to its first call, which says why
        return False, f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
