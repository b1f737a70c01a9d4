"""The layouts layout inference chooses: tensor-core (MMA) operand layouts tiled over warps, and the default.

MMA rule (documented in docs/programming-guide.md). For ``dot`` with ``c`` of shape [M, N], ``a`` [M, K],
``b`` [K, N] and W warps, the atom is ``mma.m16n8k16`` for float16/bfloat16 operands and ``mma.m16n8k32``
for int8/uint8, ``mma.m16n8k256`` (``.and.popc``) for uint1. The warps form a (wm, wn) grid with
wm * wn = W, wm dividing M/16 and wn dividing N/8, choosing the grid whose warp tile (M/wm, N/wn) is
closest to square (ties: more warps along M). With
rm = M/(16 wm), rn = N/(8 wn), rk = K/k_atom:

* C (and the result): ``spatial(wm, wn) * local(rm, rn) * atom.c``
* A: ``spatial(wm, wn)`` reduced over its N axis (warps of one row share A) ``* local(rm, rk) * atom.a``
* B: ``spatial(wm, wn)`` reduced over its M axis ``* local(rk, rn) * atom.b``

Default rule, for a tensor no instruction constrains: every thread holds runs of up to 16 bytes that are
contiguous along the last dimension (so loads and stores coalesce and vectorise), threads are spread from the
last dimension to the first, and the rest of the tensor repeats locally; when there are fewer elements than
threads, the remaining threads replicate the data.
"""

from __future__ import annotations

import math

from anybit.dtypes import DataType
from anybit.layout import LayoutError, RegisterLayout, local, reduce, reshape, spatial, unsqueeze
from anybit.layout.mma import MMA_ATOMS, MmaAtom


def mma_atom(dtype: DataType) -> MmaAtom | None:
    """The tensor-core instruction shape for operands of ``dtype``, or None when there is none."""
    name = {
        "float16": "m16n8k16.f16",
        "bfloat16": "m16n8k16.bf16",
        "int8": "m16n8k32.s8",
        "uint8": "m16n8k32.u8",
        "uint1": "m16n8k256.b1",
    }.get(dtype.name)
    return MMA_ATOMS[name] if name else None


def warp_grid(m: int, n: int, warps: int, atom: MmaAtom) -> tuple[int, int] | None:
    """The (wm, wn) arrangement of ``warps`` over an [m, n] accumulator, or None when none fits."""
    best = None
    for wm in range(1, warps + 1):
        if warps % wm:
            continue
        wn = warps // wm
        if (m // atom.m) % wm or (n // atom.n) % wn:
            continue
        score = (abs(math.log((m / wm) / (n / wn))), -wm)
        if best is None or score < best[0]:
            best = (score, (wm, wn))
    return None if best is None else best[1]


def mma_layouts(m: int, n: int, k: int, dtype: DataType, warps: int, batch: int | None = None):
    """(A, B, C) layouts for a [m, k] x [k, n] dot over ``warps`` warps, or why there are none; with
    ``batch``, for [batch, m, k] x [batch, k, n]: gcd(batch, warps) warp groups along the batch first (each
    group its own batches), the other warps over each product as above."""
    if batch is not None:
        return _batched_mma_layouts(batch, m, n, k, dtype, warps)
    atom = mma_atom(dtype)
    if atom is None:
        return f"expected float16, bfloat16, int8, uint8 or uint1 operands for tensor cores, got {dtype.name}"
    if m % atom.m or n % atom.n or k % atom.k:
        return (
            f"expected M, N, K to be multiples of {atom.m}, {atom.n}, {atom.k} (mma.{atom.name}), "
            f"got {m}, {n}, {k}"
        )
    grid = warp_grid(m, n, warps, atom)
    if grid is None:
        return (
            f"cannot spread the [{m}, {n}] accumulator over {warps} warps in whole {atom.m}x{atom.n} tiles; "
            "use fewer warps (self.attrs.warps) or a larger tile"
        )
    wm, wn = grid
    rm, rn, rk = m // (atom.m * wm), n // (atom.n * wn), k // atom.k
    warp_layout = spatial(wm, wn)
    c = warp_layout * local(rm, rn) * atom.c
    a = reduce(warp_layout, [1], keepdims=True) * local(rm, rk) * atom.a
    b = reduce(warp_layout, [0], keepdims=True) * local(rk, rn) * atom.b
    return a, b, c


def _batched_mma_layouts(batch: int, m: int, n: int, k: int, dtype: DataType, warps: int):
    groups = math.gcd(batch, warps)
    per_product = mma_layouts(m, n, k, dtype, warps // groups)
    if isinstance(per_product, str):
        return per_product
    atom = mma_atom(dtype)
    wm, wn = warp_grid(m, n, warps // groups, atom)
    rb, rm, rn, rk = batch // groups, m // (atom.m * wm), n // (atom.n * wn), k // atom.k
    warp_layout = spatial(groups, wm, wn)
    c = warp_layout * local(rb, rm, rn) * unsqueeze(atom.c, 0)
    a = reduce(warp_layout, [2], keepdims=True) * local(rb, rm, rk) * unsqueeze(atom.a, 0)
    b = reduce(warp_layout, [1], keepdims=True) * local(rb, rk, rn) * unsqueeze(atom.b, 0)
    return a, b, c


def default_layout(shape: tuple[int, ...], dtype: DataType, num_threads: int) -> RegisterLayout:
    """The layout of a tensor nothing constrains (see the module docstring)."""
    rank = len(shape)
    total = math.prod(shape)
    vector = min(shape[-1], max(1, 128 // max(dtype.nbits, 1)))
    while shape[-1] % vector:
        vector -= 1
    while vector > 1 and total // vector < num_threads and shape[-1] % (vector // 2) == 0:
        vector //= 2
    remaining = list(shape)
    remaining[-1] //= vector
    threads_left = num_threads
    threads = [1] * rank
    for dim in reversed(range(rank)):
        threads[dim] = math.gcd(threads_left, remaining[dim])
        threads_left //= threads[dim]
    repeats = [r // t for r, t in zip(remaining, threads, strict=False)]
    inner = [1] * (rank - 1) + [vector]
    if threads_left == 1:
        return local(*repeats) * spatial(*threads) * local(*inner)
    full = local(1, *repeats) * spatial(threads_left, *threads) * local(1, *inner)
    return reduce(full, [0])


def view_layout(
    known: RegisterLayout, known_bits: int, shape: tuple[int, ...], bits: int
) -> RegisterLayout | None:
    """The layout of a view of a tensor laid out as ``known``: with the same element width and count, the
    elements reshaped in row-major order where the layout allows it (each thread keeps its registers, e.g. an
    accumulator [64, 8] viewed as [4, 2, 8, 8]); otherwise the 1-D layout holding each thread's ``known``
    register bits as contiguous ``bits``-wide elements."""
    if bits == known_bits and math.prod(shape) == known.num_elements and len(shape) != 1:
        try:
            return reshape(known, shape)
        except LayoutError:
            return None
    if len(shape) != 1 or known.is_replicated:
        return None
    total_bits = known.local_size * known_bits
    if total_bits % bits or shape[0] != known.num_threads * (total_bits // bits):
        return None
    return spatial(known.num_threads) * local(total_bits // bits)
