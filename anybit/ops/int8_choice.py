"""Whether a one-row quantized matmul takes the int8 route, decided by timing on its first call.

At M = 1 the int8 route (:mod:`anybit.kernels.decode_int8`: the packed 1-, 2- and 4-bit codes through the
int8 tensor cores, x in fixed point made by a small kernel first) beat the tuned decode kernel on the H200
in this measurement for uint1 (33.5 against 48.0 µs on 57344×8192, 5–7% on the smaller target shapes) and
uint2 (5–9%), and lost for uint4 (level on 57344×8192, 9–13% behind on the others: its x preparation and
second launch), BENCHMARKS.md, thirty-second session. So the first one-row call of an eligible weight
(unsigned 1-, 2- or 4-bit codes of the default packing in scale groups of 128, K a multiple of 1024, no bias,
no folded norm or residual add) times the tuned decode kernel and each int8 configuration of
:data:`WARPS` × :data:`SPLITS`, both as a row of launches replayed from a CUDA graph
(:mod:`anybit.ops.route_choice`, the decode tuner's method), and keeps the faster in the autotune cache.
"""

from __future__ import annotations

import functools
import hashlib
import inspect

import torch

from anybit.kernels.layout import PackedLayout
from anybit.ops.route_choice import PreparedLaunch, RouteChooser

#: Warps a block and blocks along K the first call times (m16 tiles a warp: two, or the packing's one).
WARPS: tuple[int, ...] = (4, 8)
SPLITS: tuple[int, ...] = (1, 2, 4, 8)


def eligible(layout: PackedLayout, act_dtype: torch.dtype, m: int, has_bias: bool) -> bool:
    """Whether a call of ``m`` rows on a weight of ``layout`` may take the int8 route (group-columns form)."""
    from anybit.kernels.decode_int8 import check_int8_route
    from anybit.kernels.int8_activations import COLUMN_CHUNK, COLUMN_GROUPS

    if m != 1 or has_bias or act_dtype not in (torch.float16, torch.bfloat16):
        return False
    if layout.k_chunk != COLUMN_CHUNK or layout.k % (COLUMN_GROUPS * COLUMN_CHUNK):
        return False
    try:
        check_int8_route(layout, route_tiles(layout))
    except ValueError:
        return False
    return True


def route_tiles(layout: PackedLayout) -> int:
    """m16 tiles a warp of the int8 route: two where the packing's warp tile has more (16-byte vectors a
    thread allow it), else the packing's."""
    packed = max(layout.n_per_warp // 16, 1)
    return 2 if packed > 2 and layout.bytes_per_thread * 2 // packed >= 16 else packed


def candidates(layout: PackedLayout) -> list[dict]:
    """The int8 configurations the first call times on ``layout``: blocks that divide N, at least one run of
    8 chunks a block."""
    tiles = route_tiles(layout)
    runs = layout.k // 1024
    return [
        {"route": "int8", "warps": warps, "tiles": tiles, "split": split}
        for warps in WARPS
        for split in SPLITS
        if layout.n % (warps * 16 * tiles) == 0 and split <= runs
    ]


@functools.cache
def route_revision() -> str:
    """A hash of the int8 route's two kernels, its k order and the conversions they inline (not of the
    entry points around them): stored choices made with other kernels are not reused."""
    from anybit.cuda import conversions
    from anybit.kernels import int8_order
    from anybit.kernels.decode_int8 import DecodeInt8
    from anybit.kernels.int8_activations import PrepareX

    source = "".join(inspect.getsource(part) for part in (DecodeInt8, PrepareX, int8_order, conversions))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


class Int8RouteChooser(RouteChooser):
    """The measured route per (N, K, GPU) of one decode specialisation at M = 1 (``decode_identity``: its
    tuner's kernel identity, so a changed decode kernel or int8 route measures again)."""

    def __init__(self, decode_identity: str) -> None:
        digest = hashlib.sha256((decode_identity + route_revision()).encode()).hexdigest()[:16]
        super().__init__(f"QuantizedMatmulInt8Route-{digest}", "int8")


def int8_route_chooser(decode_identity: str) -> Int8RouteChooser:
    """The shared :class:`Int8RouteChooser` of one decode specialisation."""
    from anybit.ops.path_choice import shared_chooser

    return shared_chooser(Int8RouteChooser, decode_identity)


class Int8RouteLaunch(PreparedLaunch):
    """The int8 route's launch of one configuration for a plan: x's fixed point by ``PrepareX`` into buffers
    kept here (the group-columns planes' zeros written once), then ``DecodeInt8``. Called with the decode
    launch's arguments (bias None)."""

    PREPARE_PARAMETERS = ("x", "planes", "inverse", "sums", "m", "k")
    KERNEL_PARAMETERS = ("w", "planes", "inverse", "sums", "scales", "zeros", "y", "m", "n", "k")

    def __init__(self, layout: PackedLayout, act_dtype: torch.dtype, config: dict, has_zeros: bool, device):
        from anybit.kernels.decode_int8 import kernel_for
        from anybit.kernels.int8_activations import COLUMN_GROUPS, ROWS, column_planes, prepare_kernel_for

        runs = layout.k // (COLUMN_GROUPS * layout.k_chunk)
        self.planes = column_planes(layout.k, layout.k_chunk, device)
        self.inverse = torch.empty((runs, ROWS), dtype=torch.float32, device=device)
        self.sums = torch.empty_like(self.inverse)
        self.prepare = prepare_kernel_for(act_dtype, layout.nbits, layout.k_chunk, True)
        self.kernel = kernel_for(
            layout.nbits,
            act_dtype,
            config["warps"],
            config["tiles"],
            layout.k_chunk,
            config["split"],
            True,
            ROWS,
            1,
            has_zeros,
        )

    def arguments(self, args: tuple) -> tuple[tuple, tuple]:
        x, weight, scales, zeros, _, y, m, n, k = args
        prepare_args = (x, self.planes, self.inverse, self.sums, m, k)
        return prepare_args, (weight, self.planes, self.inverse, self.sums, scales, zeros, y, m, n, k)
