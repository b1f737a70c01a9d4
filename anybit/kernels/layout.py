"""The packed weight layout (digest §4.3, generalised): which bytes each thread of a warp loads.

W^T, the B operand [K, N], is cut into warp tiles [KC, 8·NT] (KC = ``k_chunk``, 8·NT = ``n_per_warp``). In
registers a warp tile has the tensor-core layout ``local(KC/16, NT) * MMA_M16N8K16_F16_B``: each thread holds
KC·NT/4 weights, that is ``bytes_per_thread`` = KC·NT·b/32 bytes. As uint8 the tile is
``local(bpt/g).spatial(32).local(g)`` with g = gcd(bpt, 16): every thread reads its bits with g-byte (at best
16-byte) vector loads, and ``view`` turns them into weights in the tensor-core layout for free. Warp tiles are
stored as ``[K/KC, N/(8·NT), 32·bpt]`` bytes, so the warps of a block read adjacent tiles of one k-chunk as
one contiguous [warps, 32·bpt] tile.

Bit planes: 3-, 5- and 6-bit codes straddle bytes and words, so a layout may store them as two planes of
power-of-two widths (:attr:`PackedLayout.planes`, low plane first: 3 = 2 + 1, 5 = 4 + 1, 6 = 4 + 2), each
packed as unsigned codes of its width with the same tile shape, the planes of a warp tile back to back.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from anybit.dtypes import DataType, decode
from anybit.dtypes import dtype as resolve_dtype
from anybit.kernels.quantize import check_weight_dtype
from anybit.layout import RegisterLayout, local, permute, spatial
from anybit.layout.mma import MMA_M16N8K16_F16_A, MMA_M16N8K16_F16_B

WARP_THREADS = 32
WORD_BITS = 32
MAX_K_CHUNK = 128
#: The default packing's widest warp tile (8·NT columns) and most weight bytes per thread per chunk.
MAX_N_TILES = 8
MAX_BYTES_PER_THREAD = 64
#: The wider warp tile :func:`choose_layout` takes by default for large 5-, 6- and 8-bit weights: on the H200
#: (BENCHMARKS.md, twenty-first session) 128 bytes a thread ran 1.00–1.11× as fast as 64 on the Llama-3-70B
#: gate_up (470 M weights) and down (235 M) rows of uint5, int6, float5_e2m2 and both float6 types at M = 1
#: and 16, and int8 and float8_e4m3 0.98–1.04× at M = 1, 1.03–1.11× at M = 16; but the 5- and 6-bit types
#: ran 0.89–1.10× (median 0.97–0.99×) on 70B o, qkv and 8B gate_up and down (67–117 M weights: half as many
#: warp tiles to spread over 132 SMs), and the 3- and 4-bit types lost or were level on every shape
#: (uint3 0.92–1.03×, uint4 and int4 0.94–1.03×, float4_e2m1 0.85–1.02×).
WIDE_BYTES_PER_THREAD = 128
WIDE_TILE_BITS: tuple[int, ...] = (5, 6, 8)
#: The fewest weights (N·K) for which the default packing of a 5-, 6- or 8-bit type takes the wide tile.
WIDE_TILE_MIN_WEIGHTS = 1 << 27
#: The warp-tile widths ``choose_layout(max_bytes_per_thread=...)`` takes.
BYTES_PER_THREAD_CHOICES: tuple[int, ...] = (16, 32, 64, 128, 256)
#: The default packing's tensor-core operand: the weight as the m16 "a" operand (the transposed decode
#: kernel), measured faster at M ≤ 8 on the H200 (BENCHMARKS.md, fifth session).
DEFAULT_OPERAND = "a"
#: Plane widths (low plane first) of the codes :func:`choose_layout` stores as bit planes: each plane a width
#: the fast pair conversions take (1, 2, 4 bits, all pair-interleaved), where 3-, 5- and 6-bit codes straddle
#: bytes and words and need shifts and masks per pair.
PLANE_WIDTHS: dict[int, tuple[int, int]] = {3: (2, 1), 5: (4, 1), 6: (4, 2)}
#: The spacings :attr:`PackedLayout.top_plane_stride` may put a 2-bit top plane's bits at (a power of two
#: below the 16 bits between a pair's two codes: the spread is a permutation of each word's bit digits).
TOP_PLANE_STRIDES: tuple[int, ...] = (1, 2, 4, 8)
#: Whether :func:`choose_layout` stores eligible types as bit planes unless told otherwise (the decode and
#: dequantize kernels convert both planes of a pair with a shift and a ``lop3`` each, where codes stored
#: whole straddle bytes and words: see ``cast(..., high=)``).
PLANAR_BY_DEFAULT = True


@dataclass(frozen=True)
class PackedLayout:
    """How an [N, K] weight of ``dtype`` is packed into bytes (see the module docstring).

    Attributes
    ----------
    dtype
        The weight type (b = ``dtype.nbits`` bits per weight).
    n, k
        The weight's shape [N, K].
    group_size
        k per scale group (K for per-channel scales).
    k_chunk
        KC: k rows of one warp tile; a multiple of 16 dividing K, and one scale group holds whole chunks.
    n_per_warp
        8·NT: columns (output features) of one warp tile; the default packing takes 8 to 64.
    bytes_per_thread
        KC·NT·b/32: the bytes of one warp tile each of the 32 threads holds.
    operand
        Which tensor-core operand the weight is: "b" (y = x·Wᵀ, x the m16 operand; this field's default) or
        "a" (the weight the m16 operand, x the n8 one: y^T = W·x^T, half the tensor-core work at M ≤ 8; 8·NT
        must then be a multiple of 16; :func:`choose_layout`'s default). Only the order of the codes in each
        thread's bytes differs.
    gated
        The weight is a gated pair, gate and up rows interleaved in blocks of 8
        (:func:`~anybit.kernels.interleave_gated`), and the product is silu(x·gateᵀ)·(x·upᵀ) [M, N/2] (the
        decode kernel's fused epilogue; the dequantize path does the same after cuBLAS). Operand "a" only.
    planes
        Bit-plane widths, low plane first; ``()`` (the default): the codes are stored whole. Otherwise two
        widths of 1, 2 or 4 bits summing to b: code = low | high << w0 on the raw code bits (two's complement
        for signed ints, the float's bits for floats). Each plane is packed exactly as ``uint<w>`` codes of
        the same tile shape (:meth:`plane_layouts`; 1-, 2- and 4-bit planes all pair-interleaved), and the
        planes of one warp tile are stored back to back in its 32·bpt bytes (:attr:`plane_byte_offsets`).
        Every plane must fill whole 32-bit words per thread. bytes_per_thread and the packed shape are the
        same as stored whole.
    plane
        This layout is one plane of a planar layout (a ``uint1``/``uint2``/``uint4`` layout): 1-bit codes are
        then stored pair-interleaved like 2- and 4-bit ones (see :attr:`interleaved`).
    top_plane_stride
        1 (the default): the top plane's codes are stored as ``uint<w>`` codes are, each code's bits side by
        side. 2, 4 or 8 (a top plane of 2 bits): within each 32-bit word each code's two bits sit that many
        bits apart (:func:`spread_bits_layout` of the plane's code layout; the pairs' two codes still 16 bits
        apart) — where the conversion puts them: a float's top plane holds its sign and its top exponent bit,
        which float16 puts 4 bits apart for float6_e2m3, so one shift and one ``lop3`` place both where two
        of each would (:func:`top_plane_stride_for`).
    """

    dtype: DataType
    n: int
    k: int
    group_size: int
    k_chunk: int
    n_per_warp: int
    bytes_per_thread: int
    operand: str = "b"
    gated: bool = False
    planes: tuple[int, ...] = ()
    plane: bool = False
    top_plane_stride: int = 1

    def __post_init__(self) -> None:
        kc, npw = self.k_chunk, self.n_per_warp
        if self.operand not in ("a", "b"):
            raise ValueError(
                f"expected operand 'a' or 'b' (the tensor-core operand the weight is), got {self.operand!r}"
            )
        if self.gated and self.operand != "a":
            raise ValueError(
                "a gated pair is packed as the A operand (its epilogue pairs rows g and g + 8 of each m16 "
                "tile): choose_layout(..., operand='a', gated=True)"
            )
        if self.operand == "a" and npw % 16:
            raise ValueError(
                f"operand 'a' takes the weight in 16-row tiles: expected n_per_warp % 16 == 0, got {npw}"
            )
        if kc % 16 or npw % 8:
            raise ValueError(f"expected k_chunk % 16 == 0 and n_per_warp % 8 == 0, got {kc} and {npw}")
        expected = kc * (npw // 8) * self.dtype.nbits // WARP_THREADS
        if expected * WARP_THREADS != kc * (npw // 8) * self.dtype.nbits or expected != self.bytes_per_thread:
            raise ValueError(
                f"expected bytes_per_thread = k_chunk·n_per_warp/8·nbits/32 = {expected} whole bytes, "
                f"got {self.bytes_per_thread}"
            )
        if self.k % kc or self.n % npw:
            raise ValueError(
                f"{self.dtype.name} weight [N={self.n}, K={self.k}] with group size {self.group_size}: "
                f"expected K a multiple of {kc} (k_chunk) and N a multiple of {npw} (n_per_warp)"
            )
        if self.group_size % kc:
            raise ValueError(f"expected group_size a multiple of k_chunk {kc}, got {self.group_size}")
        if self.plane:
            self._check_plane()
        if self.planes:
            self._check_planes()
        if self.top_plane_stride != 1:
            self._check_top_plane_stride()

    def _check_plane(self) -> None:
        if self.planes or self.dtype.kind != "uint" or self.nbits not in (1, 2, 4):
            raise ValueError(
                "a plane layout (plane=True) holds one plane of unsigned 1-, 2- or 4-bit codes and no planes "
                f"of its own, got {self.dtype.name} with planes {self.planes}; build it with plane_layouts()"
            )
        if self.bytes_per_thread % 4:
            raise ValueError(
                f"a plane layout fills whole 32-bit words per thread, got {self.bytes_per_thread} bytes per "
                "thread; use a larger k_chunk or n_per_warp"
            )

    def _check_planes(self) -> None:
        planes = self.planes
        if not isinstance(planes, tuple) or not all(isinstance(w, int) for w in planes):
            raise ValueError(f"expected planes a tuple of ints (widths, low plane first), got {planes!r}")
        if not planes_supported(self.dtype):
            raise ValueError(
                f"{self.dtype.name} cannot be stored as bit planes (3-, 5- and 6-bit ints, uints and floats "
                "without inf or NaN can); use planes=()"
            )
        if len(planes) != 2 or any(w not in (1, 2, 4) for w in planes) or sum(planes) != self.nbits:
            raise ValueError(
                f"expected planes two widths of 1, 2 or 4 bits summing to {self.nbits} ({self.dtype.name}), "
                f"e.g. {PLANE_WIDTHS[self.nbits]}, got {planes}"
            )
        if self.plane:
            raise ValueError("a plane layout (plane=True) cannot itself have planes")
        elements = self.k_chunk * self.n_tiles  # 4x the elements per thread: plane bits per thread = this·w/4
        if not _planes_fit(self.k_chunk, self.n_tiles, planes):
            w = min(planes)
            raise ValueError(
                f"planes {planes}: each plane must fill whole 32-bit words per thread, but k_chunk "
                f"{self.k_chunk} x n_per_warp {self.n_per_warp} gives {elements // 4} codes per thread, "
                f"{elements * w // 4} bits for the {w}-bit plane; use a larger k_chunk or n_per_warp "
                f"(k_chunk·n_per_warp/8 a multiple of {_planes_multiple(planes)}), or planes=()"
            )
        for plane in self.plane_layouts():
            try:
                plane.code_layout  # noqa: B018 - the 1-bit plane's pair interleave must exist for this tile
            except ValueError as error:
                raise ValueError(
                    f"planes {planes}: the {plane.nbits}-bit plane cannot be pair-interleaved in this tile "
                    f"(k_chunk {self.k_chunk}, n_per_warp {self.n_per_warp}): {error}; use planes=()"
                ) from error

    def _check_top_plane_stride(self) -> None:
        stride, planes = self.top_plane_stride, self.planes
        if not planes or planes[-1] != 2 or stride not in TOP_PLANE_STRIDES:
            raise ValueError(
                f"top_plane_stride spreads the two bits of a 2-bit top plane 2, 4 or 8 bits apart: expected "
                f"planes with a 2-bit top plane and a stride in {TOP_PLANE_STRIDES}, got planes {planes} and "
                f"stride {stride}; use top_plane_stride=1"
            )

    def top_plane_bits_layout(self, warps: int) -> RegisterLayout:
        """The top plane of ``warps`` adjacent warp tiles as ``uint1`` [KC, warps·8·NT, w] (bit b of each
        code's top part at [..., b]): its code layout's bits, spread by :attr:`top_plane_stride`."""
        top = self.plane_layouts()[-1]
        return spread_bits_layout(top.block_code_layout(warps), top.nbits, self.top_plane_stride)

    @property
    def nbits(self) -> int:
        """Bits per weight."""
        return self.dtype.nbits

    @property
    def planar(self) -> bool:
        """Whether the codes are stored as bit planes (:attr:`planes` is not empty)."""
        return bool(self.planes)

    def plane_layouts(self) -> tuple[PackedLayout, ...]:
        """One layout per plane, low plane first: ``uint<w>`` codes of the same shape, group size, tile shape,
        operand and gating, ``plane=True`` (so a 1-bit plane is pair-interleaved). Empty when not planar."""
        return _plane_layouts(self)  # cached: the same objects each call

    @property
    def plane_bit_offsets(self) -> tuple[int, ...]:
        """The code bit where each plane starts: (0, w0); code = Σ plane code << offset."""
        return tuple(sum(self.planes[:p]) for p in range(len(self.planes)))

    @property
    def plane_byte_offsets(self) -> tuple[int, ...]:
        """The byte where each plane starts within one warp tile's 32·bytes_per_thread bytes:
        (0, 32 · bytes_per_thread of the low plane)."""
        sizes = [plane.tile_bytes for plane in self.plane_layouts()]
        return tuple(sum(sizes[:p]) for p in range(len(sizes)))

    @property
    def n_tiles(self) -> int:
        """NT: mma n-tiles (8 columns each) of one warp tile."""
        return self.n_per_warp // 8

    @property
    def vector_bytes(self) -> int:
        """g = gcd(bytes_per_thread, 16): the bytes of one vector load."""
        return math.gcd(self.bytes_per_thread, 16)

    @property
    def tile_bytes(self) -> int:
        """Bytes of one warp tile (32 · bytes_per_thread)."""
        return WARP_THREADS * self.bytes_per_thread

    @property
    def packed_shape(self) -> tuple[int, int, int]:
        """[K / k_chunk, N / n_per_warp, 32 · bytes_per_thread]."""
        return (self.k // self.k_chunk, self.n // self.n_per_warp, self.tile_bytes)

    @property
    def per_channel(self) -> bool:
        """Whether there is one scale per output channel (group_size == K)."""
        return self.group_size == self.k

    @property
    def tile_layout(self) -> RegisterLayout:
        """Register layout of one warp tile [KC, 8·NT] of W^T: the tensor-core B operand, or (operand "a")
        the A operand of the tile of W [8·NT, KC] seen through the transpose."""
        if self.operand == "a":
            return permute(local(self.n_tiles // 2, self.k_chunk // 16) * MMA_M16N8K16_F16_A, (1, 0))
        return local(self.k_chunk // 16, self.n_tiles) * MMA_M16N8K16_F16_B

    @property
    def byte_layout(self) -> RegisterLayout:
        """Register layout of one warp tile as uint8 [32 · bytes_per_thread]."""
        g = self.vector_bytes
        return local(self.bytes_per_thread // g).spatial(WARP_THREADS).local(g)

    @property
    def interleaved(self) -> bool:
        """Whether the codes of each 32-bit word are stored pair-interleaved (2- and 4-bit types, and 1-bit
        planes).

        The tensor-core B operand takes weights in pairs (k, k+1 of one column, one f16x2 register). In a word
        of 32/b codes the packing stores the first element of pair p at slot p and the second at slot
        p + 16/b, so the two codes of every pair sit 16 bits apart, one in each half of the word: a single
        ``lop3`` (after at most one shift shared by several pairs) places both under a magic exponent, where
        adjacent codes need a ``prmt`` per pair first. (1-bit codes keep the plain order: there one ``prmt``
        serves the four pairs of a byte, and the interleaved form measured more SASS instructions. A 1-bit
        *plane* is interleaved, 32 codes a word, pair p at slots p and p + 16, so that in every plane of a
        planar layout the two codes of a pair sit 16 bits apart.)
        """
        interleaved_width = self.nbits in (2, 4) or (self.nbits == 1 and self.plane)
        return interleaved_width and self.bytes_per_thread % 4 == 0

    @property
    def code_layout(self) -> RegisterLayout:
        """Register layout of one warp tile's codes as stored: :attr:`tile_layout` with each word's pairs
        interleaved (see :attr:`interleaved`); the same elements per thread, another order."""
        if not self.interleaved:
            return self.tile_layout
        return interleave_pairs(self.tile_layout, WORD_BITS // self.nbits)

    def block_code_layout(self, warps: int) -> RegisterLayout:
        """:attr:`code_layout` of ``warps`` adjacent warp tiles (warp w holds tile w)."""
        return spatial(1, warps) * self.code_layout

    def block_tile_layout(self, warps: int) -> RegisterLayout:
        """Register layout of ``warps`` adjacent warp tiles [KC, warps·8·NT] (warp w holds tile w)."""
        return spatial(1, warps) * self.tile_layout

    def block_byte_layout(self, warps: int) -> RegisterLayout:
        """Register layout of ``warps`` adjacent warp tiles as uint8 [warps, 32 · bytes_per_thread]."""
        g = self.vector_bytes
        return spatial(warps, 1) * local(1, self.bytes_per_thread // g).spatial(1, WARP_THREADS).local(1, g)


def planes_supported(dtype: DataType) -> bool:
    """Whether codes of ``dtype`` may be stored as bit planes: 3-, 5- and 6-bit ints and uints, and floats of
    those widths without inf or NaN (whose special codes a two-plane conversion would have to test whole)."""
    if dtype.nbits not in PLANE_WIDTHS or dtype.kind not in ("int", "uint", "float"):
        return False
    return not (dtype.is_float and (dtype.has_inf or dtype.has_nan))


def _planes_multiple(widths: tuple[int, ...]) -> int:
    """What KC·NT must be a multiple of for every plane to fill whole 32-bit words per thread."""
    return 4 * WORD_BITS // min(widths)


def _planes_fit(k_chunk: int, n_tiles: int, widths: tuple[int, ...]) -> bool:
    """Whether every plane fills whole 32-bit words per thread (KC·NT/4 codes of w bits each)."""
    return k_chunk * n_tiles % _planes_multiple(widths) == 0


@functools.lru_cache(maxsize=1024)
def _plane_layouts(layout: PackedLayout) -> tuple[PackedLayout, ...]:
    return tuple(
        PackedLayout(
            resolve_dtype(f"uint{w}"),
            layout.n,
            layout.k,
            layout.group_size,
            layout.k_chunk,
            layout.n_per_warp,
            layout.k_chunk * layout.n_tiles * w // WARP_THREADS,
            layout.operand,
            layout.gated,
            plane=True,
        )
        for w in layout.planes
    )


def interleave_pairs(layout: RegisterLayout, word_elements: int) -> RegisterLayout:
    """``layout`` with the local order of every run of ``word_elements`` locals changed from pairs of
    adjacent elements (p, e) to (e, p): element e of pair p moves from slot 2p + e to e · word/2 + p.

    The pair element is the least significant local mode (size 2) of the tensor-core layouts; the modes
    above it that make up word/2 locals are moved below it (the last one split if needed).
    """
    return swap_least_local_mode(layout, 2, word_elements // 2)


def swap_least_local_mode(layout: RegisterLayout, least: int, run: int) -> RegisterLayout:
    """``layout`` whose least significant local mode has size ``least`` (a pair's element, a register's
    byte), with the local modes above it that make up ``run`` of its runs moved below it (the last one split
    if needed): within every ``least · run`` locals, slot ``least · r + e`` becomes ``run · e + r``."""
    modes = list(layout.mode_shape)
    local_modes = list(layout.local_modes)
    if not local_modes or modes[local_modes[-1]] != least:
        raise ValueError(
            f"expected a layout whose least significant local mode has size {least}, got {layout}"
        )
    element = local_modes.pop()
    modes, local_modes, moved, spatial_modes, renumber = _split_least_locals(
        layout, modes, local_modes, run, least * run
    )
    return RegisterLayout(layout.shape, modes, spatial_modes, [*local_modes, renumber(element), *moved])


def spread_bits_layout(code_layout: RegisterLayout, width: int, stride: int) -> RegisterLayout:
    """The bits of ``width``-bit codes in ``code_layout`` as ``uint1`` [*shape, width] (bit b of each code at
    [..., b]), bit b of local code j at bit ``(j mod stride) + stride · b + width · stride · (j div stride)``
    of the thread's registers: with ``stride`` 1 the codes' own bits (``width · j + b``), with a larger power
    of two each code's bits ``stride`` apart — the code's local modes below ``stride`` moved under its bit."""
    if stride < 1 or stride & (stride - 1):
        raise ValueError(f"expected a power-of-two stride, got {stride}")
    modes = [*code_layout.mode_shape]
    local_modes = list(code_layout.local_modes)
    moved: list[int] = []
    spatial_modes = list(code_layout.spatial_modes)
    if stride > 1:
        modes, local_modes, moved, spatial_modes, _ = _split_least_locals(
            code_layout, modes, local_modes, stride, stride
        )
    bit_mode = len(modes)  # the new last dimension's one mode
    shape = (*code_layout.shape, width)
    return RegisterLayout(shape, [*modes, width], spatial_modes, [*local_modes, bit_mode, *moved])


def _split_least_locals(
    layout: RegisterLayout, modes: list[int], local_modes: list[int], run: int, what: int
):
    """Pop the least significant local modes of ``local_modes`` that make up ``run`` locals, splitting the
    last one if needed: (modes, the remaining local modes, the popped ones, the spatial modes, a function
    renumbering a mode id of before the split). ``what``: the run's size in the error messages."""
    spatial_modes = list(layout.spatial_modes)
    needed, moved = run, []
    split_at = None
    while needed > 1:
        if not local_modes:
            raise ValueError(f"{layout} holds fewer than {what} elements per thread")
        mode = local_modes.pop()
        size = modes[mode]
        if size <= needed:
            if needed % size:
                raise ValueError(f"cannot split {layout}'s local modes into runs of {what}")
            moved.insert(0, mode)
            needed //= size
            continue
        if size % needed:
            raise ValueError(f"cannot split {layout}'s local modes into runs of {what}")
        # Split mode into (size / needed, needed): the low part moves.
        modes[mode : mode + 1] = [size // needed, needed]
        local_modes = [m + (m > mode) for m in local_modes]  # the modes after the split one move up by one
        moved = [m + (m > mode) for m in moved]
        spatial_modes = [m if m < 0 else m + (m > mode) for m in spatial_modes]  # −k: replication, not a mode
        split_at = mode
        local_modes.append(mode)
        moved.insert(0, mode + 1)
        needed = 1

    def renumber(mode: int) -> int:
        return mode if split_at is None else mode + (mode > split_at)

    return modes, local_modes, moved, spatial_modes, renumber


def default_bytes_per_thread(dtype, n: int, k: int, *, gated: bool = False) -> int:
    """The warp-tile width :func:`choose_layout` packs an [n, k] weight of ``dtype`` with by default:
    :data:`WIDE_BYTES_PER_THREAD` for 5-, 6- and 8-bit types with N·K ≥ :data:`WIDE_TILE_MIN_WEIGHTS` (fewer
    instructions per weight pay off once there are warp tiles enough to fill the GPU), else
    :data:`MAX_BYTES_PER_THREAD`. Gated pairs keep the narrow tile: the fused MLP kernel's block shape
    follows it, and no wide gated pair has been timed."""
    wide = check_weight_dtype(dtype).nbits in WIDE_TILE_BITS and n * k >= WIDE_TILE_MIN_WEIGHTS and not gated
    return WIDE_BYTES_PER_THREAD if wide else MAX_BYTES_PER_THREAD


def choose_layout(
    dtype,
    n: int,
    k: int,
    group_size: int,
    *,
    max_bytes_per_thread: int | None = None,
    operand: str | None = None,
    gated: bool = False,
    planar: bool | None = None,
    act_dtype: torch.dtype | None = None,
) -> PackedLayout:
    """The default packing of an [n, k] weight of ``dtype`` with scale groups of ``group_size``.

    k_chunk = group_size when it is at most 128, else 128 (per-channel scales: 128); n_per_warp = 8·NT with
    NT the largest of 8, 4, 2, 1 that keeps at most ``max_bytes_per_thread`` bytes per thread and divides
    N / 8. ``max_bytes_per_thread`` (one of :data:`BYTES_PER_THREAD_CHOICES`) defaults to
    :func:`default_bytes_per_thread`: 64, and 128 for 5-, 6- and 8-bit weights of at least 2^27 weights that
    are not a gated pair (measured faster there on the H200, slower on smaller weights). Wide warp tiles
    amortise each chunk's copy, index and scale work over more weights: at k_chunk 128 the main loop's SASS
    instructions per weight fall from 3.97 to 2.83 (uint2, NT 2 → 8), 5.88 to 3.62 (uint4, 1 → 4), 5.53 to
    4.14 (int8, 1 → 2) and 8.47 to 6.80 (float6_e3m2, 1 → 2); see docs/notes/decode-kernel.md. Bits per
    weight → NT at k_chunk 128: 1 → 8 (32 B), 2 → 8 (64 B), 3 and 4 → 4 (48, 64 B), 5 to 8 → 2 (40 to 64 B).
    ``operand`` picks the tensor-core operand the weight is (see :class:`PackedLayout`): by default "a", the
    transposed decode kernel (half the tensor-core work at M ≤ 8: 10–17% faster at M = 1 and 4 on the H200,
    about 5% slower at M = 16), and "b" when N is not a multiple of 16 (operand "a" needs NT ≥ 2).
    ``gated``: the weight is a row-interleaved gated pair (see :class:`PackedLayout`; operand "a").
    ``planar``: store the codes as bit planes (:attr:`PackedLayout.planes`, widths :data:`PLANE_WIDTHS`):
    True forces them, False forbids them, None (default) takes them when :data:`PLANAR_BY_DEFAULT` is set and
    the type (:func:`planes_supported`) and tile shape (every plane whole 32-bit words per thread: k_chunk ·
    NT a multiple of 128 for a 1-bit plane, of 64 for a 2-bit one) allow. The tile shape is chosen as for
    codes stored whole, so bytes_per_thread and the packed shape do not depend on ``planar``.
    ``act_dtype``: the activation dtype the weight will be multiplied in (:func:`~anybit.kernels.pack` passes
    the quantized weight's); with it, bit planes take the :attr:`PackedLayout.top_plane_stride` the
    conversion into that dtype wants (:func:`top_plane_stride_for`), without it the plain one.

    Raises
    ------
    ValueError
        For a type that is not a 1–8-bit weight type, for a shape the packing cannot take (naming the
        multiples K and N need), or for ``planar=True`` with a type or tile shape that cannot be planar.
    """
    data_type = check_weight_dtype(dtype)
    if operand is None:
        operand = DEFAULT_OPERAND if n % 16 == 0 or gated else "b"
    if max_bytes_per_thread is None:
        max_bytes_per_thread = default_bytes_per_thread(data_type, n, k, gated=gated)
    if max_bytes_per_thread not in BYTES_PER_THREAD_CHOICES:
        raise ValueError(f"expected max_bytes_per_thread 16, 32, 64, 128 or 256, got {max_bytes_per_thread}")
    group_size = k if group_size == -1 else group_size
    if group_size < 16 or group_size % 16 or k % group_size:
        raise ValueError(
            f"expected group_size a multiple of 16 dividing K = {k} (or -1 for per channel), got {group_size}"
        )
    if group_size <= MAX_K_CHUNK:
        k_chunk = group_size
    elif group_size % MAX_K_CHUNK == 0:
        k_chunk = MAX_K_CHUNK
    else:
        k_chunk = math.gcd(group_size, MAX_K_CHUNK)
    n_tiles = next(
        (
            t
            for t in (MAX_N_TILES, 4, 2)
            if k_chunk * t * data_type.nbits <= max_bytes_per_thread * WARP_THREADS and n % (8 * t) == 0
        ),
        1 if operand == "b" else 2,
    )
    widths = PLANE_WIDTHS.get(data_type.nbits, ())
    eligible = planes_supported(data_type) and _planes_fit(k_chunk, n_tiles, widths)
    if planar and not eligible:
        reason = (
            "only 3-, 5- and 6-bit ints, uints and floats without inf or NaN can"
            if not planes_supported(data_type)
            else f"the planes {widths} would not fill whole 32-bit words per thread with k_chunk {k_chunk} "
            f"and n_per_warp {8 * n_tiles} (k_chunk·n_per_warp/8 must be a multiple of "
            f"{_planes_multiple(widths)}): use a larger group size or N, or planar=False"
        )
        raise ValueError(f"{data_type.name} [N={n}, K={k}] cannot be stored as bit planes: {reason}")
    use_planes = eligible and (PLANAR_BY_DEFAULT if planar is None else planar)
    return PackedLayout(
        dtype=data_type,
        n=n,
        k=k,
        group_size=group_size,
        k_chunk=k_chunk,
        n_per_warp=8 * n_tiles,
        bytes_per_thread=k_chunk * n_tiles * data_type.nbits // WARP_THREADS,
        operand=operand,
        gated=gated,
        planes=widths if use_planes else (),
        top_plane_stride=top_plane_stride_for(data_type, act_dtype) if use_planes and act_dtype else 1,
    )


def top_plane_stride_for(dtype, act_dtype: torch.dtype) -> int:
    """The :attr:`PackedLayout.top_plane_stride` that lets the conversion of ``dtype`` codes stored as bit
    planes into ``act_dtype`` place each code's two top-plane bits with one shift: the distance between
    the places it puts them, where that is a power of two of :data:`TOP_PLANE_STRIDES`, else 1 (two groups
    a pair, as stored plainly). Integers' top bits land side by side (1); float16 puts float6_e2m3's sign and
    top exponent bit 4 apart, float6_e3m2's 3 (1: no spread reaches it), bfloat16 both 6 or 7 apart (1)."""
    from anybit.cuda.conversions import planar_placements  # the conversion's own placement: one source

    data_type = check_weight_dtype(dtype)
    widths = PLANE_WIDTHS.get(data_type.nbits, ())
    target = resolve_dtype(act_dtype)
    if not widths or widths[-1] != 2 or not planes_supported(data_type):
        return 1
    placements = planar_placements(data_type, target)
    if len(placements) != 1:  # integers pick a base per pair: their top bits always side by side
        return 1
    places = placements[0][0]
    distance = places[widths[0] + 1] - places[widths[0]]
    return distance if distance in TOP_PLANE_STRIDES else 1


def check_act_compatible(dtype: DataType, act_dtype: torch.dtype) -> None:
    """Refuse a float weight type whose values the activation dtype cannot hold exactly (the kernels cast
    weights to it before scaling): with float16, types with 6 or more exponent bits (float8_e6m1,
    float7_e6m0, float8_e7m0…) and 5-bit exponents without inf (float7_e5m1: its top binade overflows)."""
    if not dtype.is_float or act_dtype is not torch.float16:
        return
    values = decode(np.arange(1 << dtype.nbits, dtype=np.uint8), dtype)
    finite = values[np.isfinite(values)]
    with np.errstate(over="ignore"):  # values beyond float16's range become inf: not exact, as wanted
        exact = np.array_equal(finite.astype(np.float16).astype(np.float64), finite)
    if not exact:
        raise ValueError(
            f"{dtype.name} has values float16 cannot hold (magnitudes "
            f"{np.abs(finite[finite != 0]).min():g} to {dtype.max_value:g}); use act_dtype=torch.bfloat16 "
            "or a float type with at most 4 exponent bits"
        )
