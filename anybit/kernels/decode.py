"""The decode kernel: y [M, N] = x [M, K] @ W^T (+ bias) for small M, with W packed at any 1–8 bits.

Decode is memory-bound: the kernel exists to stream the packed weight at full bandwidth. A block of W warps
owns W·8·NT output columns (each warp one warp tile column of the packed layout) and walks all of K in
chunks of KC = k_chunk. Every chunk's weight bytes ([W, 32·bpt], one contiguous tile), x rows [16, KC] and
scale/zero rows go through an S-stage ``copy_async`` ring, so S−1 chunks are in flight while one is
computed. Per chunk: ``load_shared`` the bytes in the byte layout, ``view`` them as the weight type in the
tensor-core B layout (free), ``cast`` to the activation dtype (lop3/prmt fast paths) with the zero row
subtracted inside the conversion (``cast(..., subtract=)``: exact, zero points are integer codes),
``dot`` into a fresh f32 accumulator and add it to the running one scaled by the group's
scale row in f32. Scaling the [16, BN] partial sum instead of every weight removes one multiply per weight
and rounds the scale in only once. Per-channel scales are applied once, after the loop. Float weight types
without inf/NaN, with float16 activations, are cast to their value times 2^(source bias − 15)
(``cast(..., exponent=)``, exact): the bit-aligning conversion then needs no re-biasing multiply, one
instruction less per pair, and the scales are read times 2^(15 − source bias) instead (exact in f32).

Rows of x beyond M are zero-filled by the bounds of the copies; a second grid axis covers M > 16.

Split-K (``split`` = P > 1) keeps enough blocks when the warp tiles are wide and N is small: a third grid axis
cuts the chunks of K into P runs, one per block. Each block stores its f32 partial sum into its own slice of
an f32 workspace [P·M', N] (M' = M rounded up to whole 16-row blocks) and arrives at the block column's
counter (``arrive``: one atomic, no waiting); the last block to arrive reads the P partials back, four at a
time, adds them in split order (deterministic: the result does not depend on which block finished last) and
finishes as the unsplit kernel does (per-channel scale, bias, rounding to the activation dtype, store). The
counter wraps to 0 on the last arrival, so nothing is filled before a launch.

Programmatic dependent launch (``dependent_launch``, in the code by default; sm_90+; the runtime launches
the kernel as a dependent unless ``ANYBIT_PDL=0``): x is what the previous kernel in the stream writes, the
packed weight, scales and zero points are not. So the prologue issues the weight-side copies of the first
S−1 chunks, then ``wait_prior_grids``, then the x copies: the index math and the first weight bytes overlap
the previous kernel. Nothing is written to global memory before the wait (the verifier checks). Right after
its wait the kernel calls ``allow_dependent_grids``: the next kernel launches while this one streams its
weight, its blocks take the SMs' spare room and load their first chunks, then wait for this one to complete
(one kernel ahead at most, since each kernel lets the next launch only after its own wait). On the H200
(2026-11-29) that took 1.0–1.5 µs off each int4 Llama-3-8B projection in a row; letting the next kernel
launch only after the main loop, as the fourth session's kernels did, gained nothing.
"""

from __future__ import annotations

import dataclasses

import torch

import anybit
from anybit.dtypes import DataType, bfloat16, float16, float32, int32, scaling_is_exact, uint8
from anybit.ir import cdiv
from anybit.kernels.layout import PackedLayout
from anybit.kernels.planes import decode_tile
from anybit.lang.script import MAX_CLUSTER_BLOCKS
from anybit.layout import shared_swizzled

BLOCK_M = 16  # rows of x per block: the m of mma.m16n8k16
#: Split-K partial sums the last block loads at once, at least (each 16 f32 registers a thread at 16 rows and
#: 32 columns a warp) ...
PARTIALS_IN_FLIGHT = 4
#: ... and more while they fit this many f32 registers a thread (the main loop's are free by then): at 8 rows
#: (the transposed kernel at M ≤ 8) a partial is 8 registers, so split 8 sums in one L2 round trip, not two.
PARTIAL_REGISTERS = 64
#: The most splits a cluster reduces (a cluster's blocks: 16 on the H100/H200, past the portable 8).
MAX_CLUSTER_SPLIT = MAX_CLUSTER_BLOCKS
#: Rows of x the row-RMS prologue (``rms_eps``) sums at a time.
RMS_ROWS = 8
#: The most shared memory a block's copy of its rows of x for the row RMS may take (else x is read before
#: the main loop): 16 KB keeps the blocks a SM of the plain kernel.
RMS_SHARED_BYTES = 16 * 1024


#: bf16 activations times 2^this in registers when float weights are kept as their bit-aligned bf16 bits
#: (:func:`float_exponents`): it lifts the products value · 2^(bias − 127) · x out of f32's subnormals and
#: leaves x room up to 2^64 in magnitude.
BF16_X_EXPONENT = 64


@dataclasses.dataclass(frozen=True)
class FloatExponents:
    """The powers of two the decode loop works with (``cast(..., exponent=)``): the weights converted as
    value · 2^``weights``, x's tile times 2^``x``, the scales read times 2^``scales`` and the loop's sum times
    2^``after``; together they cancel (weights + x + scales + after = 0)."""

    weights: int = 0
    x: int = 0
    scales: int = 0
    after: int = 0


def float_exponents(dtype: DataType, act: DataType) -> FloatExponents:
    """How the decode loop takes the bit-aligning float conversion's re-biasing multiply off the weights.

    float16 activations: weights times 2^(bias − 15) (:func:`weight_exponent`), scales times 2^(15 − bias),
    exact in f32. bfloat16: the weights' bit-aligned bf16 bits are value · 2^(bias − 127) (subnormal for the
    smallest codes: the tensor cores take them as such), their products with x would be f32 subnormals, so
    x's tile is lifted by 2^:data:`BF16_X_EXPONENT` (one multiply a pair of x, not of weights) and the sum
    of the loop is multiplied by the rest once (a bf16 scale times a power of two is not always an f32).
    Other types (integers, floats with inf/NaN): nothing."""
    exponent = weight_exponent(dtype, act)
    if exponent:
        return FloatExponents(weights=exponent, scales=-exponent)
    if act is not bfloat16 or not dtype.is_float or dtype.has_inf or dtype.has_nan:
        return FloatExponents()
    weights = dtype.exponent_bias - 127
    if not scaling_is_exact(dtype, bfloat16, weights):
        return FloatExponents()
    return FloatExponents(weights=weights, x=BF16_X_EXPONENT, after=-weights - BF16_X_EXPONENT)


def weight_exponent(dtype: DataType, act: DataType) -> int:
    """The ``cast(..., exponent=)`` the decode kernels convert ``dtype`` weights with: source bias − 15 for
    float types without inf/NaN into float16 (their bit-aligned f16 bits are that value exactly, so the
    conversion's re-biasing multiply goes), else 0. The scales are read times 2^−exponent to match."""
    if act is not float16 or not dtype.is_float or dtype.has_inf or dtype.has_nan:
        return 0
    exponent = dtype.exponent_bias - 15
    return exponent if scaling_is_exact(dtype, float16, exponent) else 0


class DecodeMatmul(anybit.Script):
    """y = x @ W^T (+ bias) with a packed weight; x, scales, zeros, bias and y in the activation dtype.

    Parameters
    ----------
    layout
        The packed layout (only its type, k_chunk, n_per_warp and whether scales are per channel matter:
        N and K are run-time arguments).
    act_dtype
        torch.float16 or torch.bfloat16 (or the anybit type).
    has_zeros, has_bias
        Whether ``zeros`` / ``bias`` are read (otherwise pass any act-dtype tensor, it is not touched).
    warps
        W: warps per block; the block covers W · n_per_warp columns, so N must be a multiple of it.
    stages
        S ≥ 2: chunks in the shared-memory ring.
    split
        P ≥ 1: blocks along K per block column (split-K, reduced in f32; see the module docstring).
    split_in_cluster
        Reduce split-K in a thread-block cluster (sm_90, P ≤ 16; past 8 an H100/H200): a block column's P
        blocks are one cluster, each leaves its partial sum in its own shared memory, and after a cluster
        barrier they are added in split order from the cluster's shared memory — no partials through L2,
        no arrival counter.
    dependent_launch
        Launch as a programmatic dependent of the previous kernel (sm_90+; see the module docstring). The
        weight, scales and zeros must not be written by the kernels just before it in the stream (x may
        be). False gives the same kernel without ``wait_prior_grids`` / ``allow_dependent_grids``, for A/B.
    min_blocks
        Blocks per SM the compiled code must leave room for (0: the compiler's choice). A bound caps the
        registers a thread, for more resident warps where registers, not shared memory, limit them.
    accumulate
        y += x @ W^T: the kernel reads y and adds the product to it (one rounding), so a residual stream
        takes a projection's output without an element-wise kernel (not for gated pairs).
    rms_eps
        Row RMS normalisation of x folded in: y = (x / rms(x)) @ W^T with rms(x)_m = sqrt(mean_k x_m² + eps),
        the norm's own weight folded into W beforehand (a Llama RMSNorm followed by this projection). Each
        block reads its rows of x once more for the mean of squares: copied into shared memory with the
        first chunk when small (``rms_from_shared``), else before the main loop. The transposed kernel
        (weights packed as the A operand) only.
    rms_rows
        Rows of x a block sums squares of (1 to its 8 rows; default all): at M = 1 one row, not eight, so
        the copy and the sums cost an eighth. Rows past it get no norm: launch with M ≤ rms_rows (the
        launchers pick min(M, rows)). Blocks of 16 rows sum all 16.
    rms_k
        K of x, for the row RMS: with it, a block may copy its rows of x into shared memory sized for this K
        (see the transposed kernel's ``rms_from_shared``); launch with this K (the launchers pass it).
        None: x is read before the main loop, for any K.
    bias_after_dot
        Convert the weights with their magic number left in (``cast(..., biased=True)``: one subtraction a
        pair of weights less) and take it off with a second ``dot`` a chunk, of the same biased cast of a
        tile of zero codes (constants), into the same accumulator: fewer instructions where the conversion,
        not the tensor cores, bounds the loop (8 rows of x). Integer codes stored whole; with zero points
        (scale groups only) those come off after the dot too, as z · Σx a chunk (Σx: a dot of ones).
    weights_in_registers
        Load each thread's weight bytes straight from global memory into registers, one chunk ahead of the
        one it converts, instead of through the shared-memory ring: every byte of a warp tile is read by
        one thread only, so the ring buys the weights nothing but asynchrony, and costs a copy, a shared
        load and a slot of capacity a chunk. x, the scales and the zero points keep the ring (x is read by
        every warp of the block). Shared memory per block drops to x's ring; registers rise by a chunk's
        bytes a thread / 4.
    late_weight_loads
        With ``weights_in_registers``: issue the next chunk's weight loads after this chunk's conversion, into
        the same registers (one chunk's bytes held, no copy, the loop not unrolled) instead of before it
        (two chunks' bytes): fewer registers, less time to hide the loads behind.
    io_dtype
        The dtype of the scales, zero points, bias and y (default: ``act_dtype``, x's and the conversion's).
        Another one (bf16 beside fp16 x: :class:`~anybit.kernels.decode_half_x.DecodeMatmulHalfX`) is read
        and written as it is; the zero points become ``act_dtype`` before the conversion subtracts them.
    """

    def __init__(
        self,
        layout: PackedLayout,
        act_dtype: torch.dtype | anybit.DataType,
        *,
        has_zeros: bool = False,
        has_bias: bool = False,
        warps: int = 4,
        stages: int = 4,
        split: int = 1,
        split_in_cluster: bool = False,
        dependent_launch: bool = True,
        min_blocks: int = 0,
        accumulate: bool = False,
        rms_eps: float | None = None,
        rms_rows: int | None = None,
        rms_k: int | None = None,
        bias_after_dot: bool = False,
        weights_in_registers: bool = False,
        late_weight_loads: bool = False,
        io_dtype: torch.dtype | anybit.DataType | None = None,
    ) -> None:
        super().__init__()
        if stages < 2:
            raise ValueError(f"expected stages >= 2 (one chunk computes while the next loads), got {stages}")
        if warps < 1 or warps > 32:
            raise ValueError(f"expected 1 to 32 warps, got {warps}")
        if split < 1:
            raise ValueError(f"expected split >= 1 (blocks along K), got {split}")
        if split_in_cluster and split > MAX_CLUSTER_SPLIT:
            raise ValueError(
                f"expected split ≤ {MAX_CLUSTER_SPLIT} to reduce split-K in a cluster (a cluster's blocks), "
                f"got {split}"
            )
        self.split_in_cluster = split_in_cluster and split > 1
        self.layout = layout
        self.act = anybit.dtype(act_dtype)
        self.io = self.act if io_dtype is None else anybit.dtype(io_dtype)
        self.has_zeros, self.has_bias = has_zeros, has_bias
        self.warps, self.stages, self.split = warps, stages, split
        self.dependent_launch = dependent_launch
        self.min_blocks = min_blocks
        if accumulate and layout.gated:
            raise ValueError("accumulate=True adds y to the product; a gated pair's product is not added to")
        if rms_eps is not None and not (isinstance(rms_eps, float) and rms_eps > 0.0):
            raise ValueError(
                f"expected rms_eps a positive float (the RMSNorm's epsilon) or None, got {rms_eps!r}"
            )
        self.accumulate, self.rms_eps = accumulate, rms_eps
        if rms_rows is not None and not 1 <= rms_rows <= RMS_ROWS:
            raise ValueError(f"expected rms_rows 1 to {RMS_ROWS} (rows of x a block has), got {rms_rows}")
        self.rms_rows = rms_rows or RMS_ROWS
        self.rms_k = rms_k
        if bias_after_dot and (
            (has_zeros and layout.per_channel)
            or layout.planar
            or not layout.dtype.is_integer
            or layout.dtype.nbits > 8
        ):
            raise ValueError(
                f"bias_after_dot takes integer codes of at most 8 bits stored whole (zero points with scale "
                f"groups, not per channel), got {layout.dtype.name}"
                f"{' with per-channel zero points' if has_zeros and layout.per_channel else ''}"
                f"{' in bit planes' if layout.planar else ''}; use bias_after_dot=False"
            )
        self.bias_after_dot = bias_after_dot
        self.weights_in_registers = weights_in_registers
        if late_weight_loads and not weights_in_registers:
            raise ValueError(
                "late_weight_loads orders the weights' register loads: set weights_in_registers=True"
            )
        self.late_weight_loads = late_weight_loads
        # A gated pair (layout.gated, the transposed kernel): y [M, N/2] = silu(x·gateᵀ)·(x·upᵀ), the pairing
        # in f32 before the one rounding (DecodeMatmulTransposed._gate).
        self.gated = layout.gated

    @property
    def block_n(self) -> int:
        """Output columns per block: warps · n_per_warp."""
        return self.warps * self.layout.n_per_warp

    @property
    def k_groups(self) -> int:
        """Warp groups along K in a block (1: every warp its own columns over the block's whole run of K;
        the transposed kernel's ``warps_along_k`` makes it the warps)."""
        return 1

    def __call__(
        self,
        x: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        weight: anybit.ptr(anybit.uint8),
        scales: anybit.ptr(self.io),  # noqa: F821 - evaluated with the instance
        zeros: anybit.ptr(self.io),  # noqa: F821 - evaluated with the instance
        bias: anybit.ptr(self.io),  # noqa: F821 - evaluated with the instance
        y: anybit.ptr(self.io),  # noqa: F821 - evaluated with the instance
        m: anybit.int32,
        n: anybit.int32,
        k: anybit.int32,
    ):
        self._program(x, weight, scales, zeros, bias, y, m, n, k)

    @anybit.runtime_helper
    def _program(self, x, weight, scales, zeros, bias, y, m, n, k):
        """The kernel's body (``__call__``'s; a subclass with more arguments calls it from its own)."""
        pl, stages, warps, split = self.layout, self.stages, self.warps, self.split
        kc, bn, rows = pl.k_chunk, self.block_n, self.block_m
        self.attrs.blocks = [n // bn, cdiv(m, rows), split]
        self.attrs.warps = warps
        self.attrs.min_blocks = self.min_blocks
        if self.split_in_cluster:
            self.attrs.cluster = [1, 1, split]  # a block column's splits: one cluster
        # Whole chunks and whole blocks; rows of x and of the scales start 16-byte aligned. K groups (warps
        # along K, k_groups > 1) take k_groups chunks a step: every split's run is whole steps.
        kw = self.k_groups
        self.assume_divisible(k, kc * (kw * split if kw > 1 else 1))
        self.assume_divisible(n, bn)
        group_rows = 1 if pl.per_channel else k // pl.group_size
        gx = self._x_view(x, m, k)
        gw = self._weight_view(weight, k, n)
        gs = self._scales_view(scales, group_rows, n)
        gz = self._zeros_view(zeros, group_rows, n)
        gy = self._y_view(y, m, n // 2 if self.gated else n)
        sx = self._x_ring()
        sw = None if self.weights_in_registers else self.shared_tensor(uint8, [stages, warps, pl.tile_bytes])
        ss = self._scales_ring()
        sz = self._zeros_ring()
        powers = self._float_exponents()  # the float weights' re-biasing off the weights
        n0 = self.blockIdx.x * bn
        m0 = self.blockIdx.y * rows
        # This block's run of chunks: all of them, or split p's share chunks·p/P ... chunks·(p+1)/P.
        first, count = 0, k // kc
        if split > 1:
            first = self.blockIdx.z * (k // kc) // split
            count = (self.blockIdx.z + 1) * (k // kc) // split - first
        acc, inverse_rms, prior = self._main_loop(
            x, m, k, gx, gw, gs, gz, gy, sx, sw, ss, sz, n0, m0, first, count
        )
        if self.split_in_cluster:
            # The rings are done with (every warp past the barrier): the partial sum's tile reuses their
            # memory rather than adding to the block's shared memory.
            self.sync()
            for ring in (sx, sw, ss, sz):
                if ring is not None:
                    self.free_shared(ring)
        if split > 1:
            acc = self._sum_splits(acc, m, n, m0, n0)
        acc = self._row_factors(acc, m0)
        if pl.per_channel:
            acc = acc * self.cast(self._load_columns(gs, n0), float32, exponent=powers.scales)
        if self.rms_eps is not None:
            acc = acc * inverse_rms
        if self.has_bias:
            gb = self._bias_view(bias, n)
            acc = acc + self.cast(self._load_columns(gb, n0), float32)
        if self.accumulate:
            acc = acc + self.cast(self._prior_y(prior), float32)
        if self.gated:
            self._store_y(gy, self.cast(self._gate(acc), self.io), m0, n0 // 2)
        else:
            self._store_y(gy, self.cast(acc, self.io), m0, n0)

    @anybit.runtime_helper
    def _main_loop(self, x, m, k, gx, gw, gs, gz, gy, sx, sw, ss, sz, n0, m0, first, count):
        """The block's run of ``count`` chunks from ``first`` (the prologue, the wait for the previous kernel
        and the pipelined K loop; the K groups' sums and the row RMS after it): (the f32 accumulator, the
        rows' inverse RMS or None, the residual tile ``accumulate`` prefetched or None). A helper so that
        kernels built on this one (a fused MLP) run the same loop."""
        pl, act, stages, warps = self.layout, self.act, self.stages, self.warps
        kw = self.k_groups
        powers = self._float_exponents()
        inverse_rms = None
        prior = None
        # Steps of the main loop: a chunk each, or with K groups k_groups chunks each (one a group).
        runs = count // kw if kw > 1 else count
        acc = self._new_accumulator()
        sf = self._factors_ring()  # x's factors a row and chunk (the bf16 route's), or None
        negated_bias = self._negated_bias() if self.bias_after_dot else None
        # Zero points after the dot: Σx a row (a dot of ones, the same for every warp tile) times the zeros.
        ones = self._ones_like(negated_bias) if self.zeros_after_dot else None
        if pl.per_channel and self.has_zeros:
            zero_row = self._load_zero_row(gz, n0)
        # The prologue: weight-side copies of the first S−1 chunks, the wait for the previous kernel (which
        # writes x), then x's copies. A split's run may be shorter than the pipeline: fetch only its own
        # chunks. Commit groups: a group holds every copy issued since the previous commit, so group 0 is
        # all prologue weight copies plus chunk 0's x, and group g (1 ≤ g ≤ S−2) chunk g's x; the main loop
        # commits group g for g ≥ S−1, holding all of chunk g. Step s waits until at most S−2 groups are in
        # flight out of the S−1+s committed, i.e. groups 0…s have landed: chunk s's weights (group 0 or s)
        # and x (group s) both, as with one group per chunk.
        # Every copy is of a chunk below first + count ≤ K / k_chunk (the guards say so), in block columns
        # the grid keeps inside N: the copies promise it (in_bounds) and carry no bounds checks; x's rows
        # past M are zero-filled (see _copy_x).
        for stage in range(stages - 1):
            if stage < runs:
                self._copy_weights(
                    gw, gs, gz, self._weight_slot(sw, stage), ss[stage], sz[stage], first + stage * kw, n0
                )
        # Weights in registers: chunk first's bytes before the wait (the previous kernel does not write them).
        weights_ahead = self._load_weight_bytes(gw, first) if self.weights_in_registers else None
        if self.dependent_launch:
            self.wait_prior_grids()
            # The previous kernel has completed: let the next one launch now, so its blocks take the SMs'
            # spare room, fetch their first weight chunks under this kernel's main loop and wait for it (one
            # kernel ahead at most: the next one triggers only after its own wait).
            self.allow_dependent_grids()
        # The row RMS of x (rms_eps) from a shared copy of this block's rows of x when it is small (M ≤ 2
        # at K = 4096): copied with chunk 0, summed after the main loop from shared memory, no load latency
        # of its own. Else, before the main loop: every thread reads 16 bytes of each of 8 rows a step
        # (rows past M: predicated off, no memory traffic), its squares summed in f32 per row, then the
        # block adds the threads' sums.
        x_copy = self.rms_eps is not None and self.rms_from_shared
        if x_copy:
            gx_rows, steps, table = self._rms_start(x, m, k)
            x_rows = self._copy_x_rows(gx_rows, m0)
        if self.accumulate:  # the residual y, copied with chunk 0: its latency hidden behind the main loop
            prior = self._prefetch_y(gy, m0, n0)
        for stage in range(stages - 1):
            if stage < runs:
                self._copy_x(gx, sx[stage], first + stage * kw, m0)
                if sf is not None:
                    self._copy_factors(sf[stage], first + stage * kw, m0)
            self.copy_async_commit_group()
        if self.rms_eps is not None and not x_copy:
            gx_rows, steps, table = self._rms_start(x, m, k)
            for part in range(self.block_m // RMS_ROWS):  # 8 rows at a time: fewer registers at 16 rows
                squares = self._rms_zeros()
                for rms_step in self.range(steps, unroll=2):
                    squares = self._rms_add(squares, self._rms_load(gx_rows, m0 + part * RMS_ROWS, rms_step))
                self._rms_stash(table, squares, part)
            inverse_rms = self._rms_finish(table, k)
        # Weights in registers: two buffers, the loop unrolled twice so the compiler can alternate them
        # instead of copying one into the other a chunk.
        two_buffers = self.weights_in_registers and not self.late_weight_loads
        for step in self.range(runs, unroll=2 if two_buffers else None):
            # This step's chunk has landed; the sync also frees the slot read in the previous step for the
            # prefetch below. Prefetches past the end of the run are skipped (a uniform branch: cheaper than
            # the bounds checks and zero-fill selects of every copy it lets the copies drop).
            ahead, slot = self._ring_step(step)
            if ahead < runs:
                self._copy_chunk(
                    gx,
                    gw,
                    gs,
                    gz,
                    sx[slot],
                    self._weight_slot(sw, slot),
                    ss[slot],
                    sz[slot],
                    first + ahead * kw,
                    m0,
                    n0,
                )
                if sf is not None:
                    self._copy_factors(sf[slot], first + ahead * kw, m0)
            self.copy_async_commit_group()
            current = step % stages
            if self.late_weight_loads:  # converted in place; the next chunk's loads go out after it
                weight_bytes = weights_ahead
            elif (
                self.weights_in_registers
            ):  # this chunk's bytes out of the way, the next chunk's loads issued
                weight_bytes = self._copy_registers(weights_ahead)
                if step + 1 < runs:
                    self._reload_weight_bytes(weights_ahead, gw, first + (step + 1) * kw)
            tile_x = self._x_operand(sx[current])
            if powers.x:  # bf16 float weights as their bit-aligned bits: x lifted instead (float_exponents)
                tile_x = tile_x * 2.0**powers.x
            zero = None
            if self.has_zeros and not self.zeros_after_dot:  # codes: subtracted in the conversion, for free
                zero = zero_row if pl.per_channel else self._load_zeros(sz[current])
                if self.io is not act:  # integers: exact in either 16-bit type
                    zero = self.cast(zero, act)
            # (The ring slot's view is taken here, after x's: the shipped tunings' kernels are this code.)
            if self.weights_in_registers:
                load_weight_bytes = lambda part, first_byte, loaded=weight_bytes: loaded[first_byte]  # noqa: E731
            else:
                load_weight_bytes = lambda part, first_byte, tile=sw[current]: self._tile_bytes(  # noqa: E731
                    tile, part, first_byte
                )
            weights = decode_tile(
                self,
                pl,
                warps,
                act,
                load_weight_bytes,
                zero=zero,
                exponent=0 if self.has_zeros else powers.weights,
                biased=self.bias_after_dot,
            )
            if self.late_weight_loads and step + 1 < runs:  # the converted bytes are dead: reuse them
                self._reload_weight_bytes(weights_ahead, gw, first + (step + 1) * kw)
            if pl.per_channel and sf is None:
                self._dot(tile_x, weights, acc)
                if negated_bias is not None:
                    acc += self._constant_dot(tile_x, negated_bias)
            elif pl.per_channel:  # x's factors a chunk: the chunk's sum on its own, then times them
                partial = self._new_accumulator()
                self._dot(tile_x, weights, partial)
                if negated_bias is not None:
                    partial = partial + self._constant_dot(tile_x, negated_bias)
                acc += self._times_factors(partial, sf[current])
            else:
                partial = self._new_accumulator()
                self._dot(tile_x, weights, partial)
                if negated_bias is not None:  # the conversion's bias off, inside the chunk (before scaling)
                    partial = partial + self._constant_dot(tile_x, negated_bias)
                if ones is not None:  # then the zero points: z · Σx, the chunk's zeros shaped as its scales
                    zeros = self.cast(self._load_scales(sz[current]), float32)
                    partial = partial - self._constant_dot(tile_x, ones) * zeros
                if sf is not None:  # x's factors of the chunk's rows (the bf16 route's exact scaling)
                    partial = self._times_factors(partial, sf[current])
                scale = self.cast(self._load_scales(ss[current]), float32, exponent=powers.scales)
                acc += partial * scale
        if powers.after:
            acc = acc * 2.0**powers.after
        if kw > 1:  # the K groups' partial sums added through shared memory, before anything else
            acc = self._sum_k_groups(acc)
        if x_copy:  # chunk 0's wait covered the copy of x's rows
            squares = self._rms_zeros()
            for rms_step in self.range(steps):
                squares = self._rms_add(squares, self._rms_load_shared(x_rows, rms_step))
            self._rms_stash(table, squares, 0)
            inverse_rms = self._rms_finish(table, k)
        return acc, inverse_rms, prior

    @anybit.runtime_helper
    def _sum_splits(self, acc, m, n, m0, n0):
        """Split-K's reduction: every split stores its partial sum into its own slice of whole row blocks and
        arrives at the block column's counter; all but the last to arrive exit; the last adds the partials
        in split order (the same sum whatever order the blocks ran in) and returns it. The counter wraps
        back to 0: no fill before launches. Slices of whole row blocks need no masks (rows past M come from
        x's zero-filled rows and are never stored to y)."""
        split, rows, bn = self.split, self.block_m, self.block_n
        if self.split_in_cluster:
            return self._sum_splits_in_cluster(acc)
        partials = self._partials(m, n)
        counters = self.global_tensor(int32, [cdiv(m, rows), n // bn], kept_clean=True)
        self._store_partial(partials, acc, m, n, m0, n0)
        arrival = self.arrive(counters, [self.blockIdx.y, self.blockIdx.x], split)
        if arrival < split - 1:
            self.exit()
        # Read a group of partials at a time (partials_in_flight), every load of a group issued before the
        # first add (one L2 round trip per group, not per split).
        group = min(split, self.partials_in_flight)
        acc = self._sum_partials(partials, 0, group, m, n, m0, n0)
        for first_part in self.range(group, split - split % group, group):
            acc = acc + self._sum_partials(partials, first_part, group, m, n, m0, n0)
        if split % group:
            acc = acc + self._sum_partials(partials, split - split % group, split % group, m, n, m0, n0)
        return acc

    @anybit.runtime_helper
    def _sum_splits_in_cluster(self, acc):
        """Split-K's reduction in the block column's cluster: every split's partial sum into its own shared
        memory, a cluster barrier, the partials added in split order from the cluster's shared memory (every
        split adds them: the same sum, and no split idles at a branch), a second barrier (no split's memory
        goes while another reads it), then all but the first exit."""
        partial = self.shared_tensor(float32, list(acc.shape))
        self.store_shared(partial, acc)
        self.cluster_sync()
        total = self.load_shared(partial, rank=0)
        for rank in range(1, self.split):
            total = total + self.load_shared(partial, rank=rank)
        self.cluster_sync()
        if self.blockIdx.z != 0:
            self.exit()
        return total

    def _float_exponents(self) -> FloatExponents:
        """:func:`float_exponents` of the kernel's weights and activation dtype; with scales of another dtype
        (``io_dtype``: bf16 beside fp16 x, whose range a factor on every scale could overflow in f32) the
        scales' power moves onto the loop's sum, once."""
        powers = float_exponents(self.layout.dtype, self.act)
        if self.io is self.act or not powers.scales:
            return powers
        return dataclasses.replace(powers, scales=0, after=powers.after + powers.scales)

    def _row_factors(self, acc, m0):
        """The block's sum times a factor per row of x (a subclass's; here none: ``acc`` as it is)."""
        return acc

    def _factors_ring(self):
        """A shared ring of x's factors a row and chunk, copied with x (a subclass's; here none)."""
        return None

    def _copy_factors(self, slot, chunk, m0) -> None:
        """Start copying chunk ``chunk``'s factors of this block's rows into ``slot`` (with a ring)."""
        raise NotImplementedError("a kernel with a factors ring copies its factors")

    def _times_factors(self, partial, slot):
        """A chunk's partial sum times its rows' factors from ``slot`` (with a ring)."""
        raise NotImplementedError("a kernel with a factors ring applies its factors")

    def _ring_step(self, step):
        """Wait until step ``step``'s slot of the copy ring has landed (and, past the barrier, every warp is
        done with the slot read in the previous step); returns (the step whose copies go out now, its slot).
        """
        self.copy_async_wait_group(self.stages - 2)
        self.sync()
        ahead = step + self.stages - 1
        return ahead, ahead % self.stages

    @property
    def partials_in_flight(self) -> int:
        """Split-K partials the last block loads before adding (:data:`PARTIALS_IN_FLIGHT` at least, more
        while they fit :data:`PARTIAL_REGISTERS` f32 registers a thread: the block's tile spread over the
        threads of one K group, since after :meth:`_sum_k_groups` every group holds the whole sum)."""
        per_thread = max(1, self.block_m * self.block_n * self.k_groups // (32 * self.warps))
        return max(PARTIALS_IN_FLIGHT, PARTIAL_REGISTERS // per_thread)

    # -- what depends on which tensor-core operand the weight is (overridden by the transposed kernel) ----
    @property
    def block_m(self) -> int:
        """Rows of x per block: the m of ``mma.m16n8k16`` (x is the A operand)."""
        return BLOCK_M

    def _x_view(self, x, m, k):
        """x as the kernel indexes it: row-major [M, K]."""
        return self.global_view(x, self.act, [m, k])

    def _scales_view(self, scales, group_rows, n):
        """The scales as the kernel indexes them: [groups, N]."""
        return self.global_view(scales, self.io, [group_rows, n])

    def _gate(self, acc):
        """silu(gate) · up of a gated pair's accumulator: the transposed kernel's (PackedLayout refuses a
        gated pair packed as the B operand, so this one never runs)."""
        raise AssertionError("a gated pair packed as the B operand")

    def _y_view(self, y, m, n):
        """y as the kernel indexes it: row-major [M, N]."""
        return self.global_view(y, self.io, [m, n])

    def _bias_view(self, bias, n):
        """The bias as a row [1, N]."""
        return self.global_view(bias, self.io, [1, n])

    def _x_ring(self):
        """The shared ring of x chunks [16, KC], swizzled for ldmatrix."""
        kc, stages = self.layout.k_chunk, self.stages
        return self.shared_tensor(
            self.act, [stages, BLOCK_M, kc], layout=shared_swizzled([BLOCK_M, kc], 2).prepend_dim(stages)
        )

    def _scales_ring(self):
        """The shared ring of scale rows [1, block_n]."""
        return self.shared_tensor(self.io, [self.stages, 1, self.block_n])

    def _x_operand(self, slot):
        """A step's x tile as the dot takes it: loaded from its ring slot into registers."""
        return self.load_shared(slot)

    def _new_accumulator(self):
        """A zero f32 [16, block_n]: the mma's C."""
        return self.register_tensor(float32, [BLOCK_M, self.block_n], init=0.0)

    def _dot(self, tile_x, weights, c) -> None:
        """c += x · W^T: x [16, KC] the A operand, the weight tile W^T [KC, block_n] the B operand."""
        self.dot(tile_x, weights, c, out=c)

    def _load_columns(self, tensor, n0):
        """This block's block_n columns of a [1, N] row (per-channel scales, bias) as [1, block_n]."""
        return self.load_global(tensor, [0, n0], [1, self.block_n])

    def _store_y(self, gy, value, m0, n0) -> None:
        self.store_global(gy, value, [m0, n0])

    def _prefetch_y(self, gy, m0, n0):
        """This block's tile of y (rows past M read as zeros), what ``accumulate`` adds to, loaded early."""
        return self.load_global(gy, [m0, n0], [BLOCK_M, self.block_n])

    def _prior_y(self, prefetched):
        """The tile :meth:`_prefetch_y` started, in registers."""
        return prefetched

    @property
    def rms_from_shared(self) -> bool:
        """Whether the row RMS reads a shared copy of x's rows (the transposed kernel's; see there)."""
        return False

    def _rms_start(self, x, m, k):
        """The row-RMS prologue's start (the transposed kernel's; see DecodeMatmulTransposed)."""
        raise ValueError("rms_eps needs the weight packed as the A operand (the transposed decode kernel)")

    def _partials(self, m, n):
        """The split-K workspace: P slices of whole 16-row blocks, [P·M', N] f32."""
        rows = cdiv(m, BLOCK_M) * BLOCK_M
        return self.global_tensor(float32, [self.split * rows, n])

    def _store_partial(self, partials, acc, m, n, m0, n0) -> None:
        rows = cdiv(m, BLOCK_M) * BLOCK_M
        self.store_global(partials, acc, [self.blockIdx.z * rows + m0, n0])

    def _load_partial(self, partials, index, m, n, m0, n0):
        """This block's tile of split ``index``'s partial sum."""
        rows = cdiv(m, BLOCK_M) * BLOCK_M
        return self.load_global(partials, [index * rows + m0, n0], [BLOCK_M, self.block_n])

    def _sum_partials(self, partials, first, count, m, n, m0, n0):
        """Σ of split partials first … first + count − 1 (loads first, then the adds, in split order)."""
        tiles = [self._load_partial(partials, first + j, m, n, m0, n0) for j in range(count)]
        total = tiles[0]
        for tile in tiles[1:]:
            total = total + tile
        return total

    @property
    def zeros_after_dot(self) -> bool:
        """Whether the zero points come off after the dot (``bias_after_dot`` with zero points): their ring
        and global view then take the scales' shape, to multiply the partial sum as the scales do."""
        return self.bias_after_dot and self.has_zeros

    def _zeros_view(self, zeros, group_rows, n):
        """The zero points in global memory: rows [group_rows, N], or shaped as the scales."""
        if self.zeros_after_dot:
            return self._scales_view(zeros, group_rows, n)
        return self.global_view(zeros, self.io, [group_rows, n])

    def _zeros_ring(self):
        """The shared ring of zero-point rows [1, block_n] (shaped as the scales' for ``zeros_after_dot``)."""
        if self.zeros_after_dot:
            return self._scales_ring()
        return self.shared_tensor(self.io, [self.stages, 1, self.block_n])

    def _load_zeros(self, slot):
        """A step's zero points from their ring slot, [1, block_n]: what the conversion subtracts."""
        return self.load_shared(slot)

    def _load_zero_row(self, gz, n0):
        """This block's per-channel zero points [1, block_n], read once before the main loop."""
        return self.load_global(gz, [0, n0], [1, self.block_n])

    def _constant_dot(self, tile_x, tile):
        """A constant weight ``tile`` · x in an accumulator of its own: no chain of dependent ``mma`` after
        the weights' ones, and every warp tile's product the same constants times the same x, which the
        compiler computes once (sm_90a, int2 at 8 rows: 64 → 40 ``HMMA`` a chunk)."""
        product = self._new_accumulator()
        self._dot(tile_x, tile, product)
        return product

    def _ones_like(self, tile):
        """A register tile of ones in ``tile``'s shape and layout: its dot with x is Σx for every column."""
        return self.register_tensor(self.act, list(tile.shape), layout=tile.layout, init=1.0)

    def _negated_bias(self):
        """−(the biased cast of a block tile of zero codes): what ``bias_after_dot`` adds through a second
        ``dot``. Built from constants before the main loop (the compiler folds the conversion)."""
        pl, warps = self.layout, self.warps
        zero_codes = self.register_tensor(
            uint8, [warps, pl.tile_bytes], layout=pl.block_byte_layout(warps), init=0
        )
        bias = decode_tile(self, pl, warps, self.act, lambda part, first_byte: zero_codes, biased=True)
        negated = self.register_tensor(self.act, list(bias.shape), layout=bias.layout)
        return self.neg(bias, out=negated)

    def _tile_bytes(self, tile, part, first_byte, whole=None):
        """The block tile's bytes of ``part`` (the packed layout itself — ``whole``, by default the kernel's —
        or one of its bit planes), from the shared slot ``tile`` [warps, tile_bytes]."""
        layout = part.block_byte_layout(self.warps)
        if part is (self.layout if whole is None else whole):
            return self.load_shared(tile, layout=layout)
        return self.load_shared(tile, [0, first_byte], [self.warps, part.tile_bytes], layout=layout)

    def _copy_chunk(self, gx, gw, gs, gz, sx, sw, ss, sz, chunk, m0, n0) -> None:
        """Start copying chunk ``chunk`` (weight tiles, x columns, scale and zero rows) into one slot.

        The order the SASS tables were measured with: x last changes the K loop (sm_90a, uint4: 328 → 331
        instructions unsplit, 354 → 352 at split 4), so the main loop keeps it; only the prologue splits."""
        self._copy_weight_tiles(gw, sw, chunk)
        self._copy_x(gx, sx, chunk, m0)
        self._copy_group_rows(gs, gz, ss, sz, chunk, n0)

    def _copy_weights(self, gw, gs, gz, sw, ss, sz, chunk, n0) -> None:
        """Start copying what chunk ``chunk`` reads of the weight (tiles, scale and zero rows) into a slot."""
        self._copy_weight_tiles(gw, sw, chunk)
        self._copy_group_rows(gs, gz, ss, sz, chunk, n0)

    def _weight_view(self, weight, k, n):
        """The packed weight as [K / k_chunk, N / n_per_warp, tile_bytes]: a chunk's warp tiles."""
        pl = self.layout
        return self.global_view(weight, uint8, [k // pl.k_chunk, n // pl.n_per_warp, pl.tile_bytes])

    def _copy_weight_tiles(self, gw, sw, chunk) -> None:
        """Start copying chunk ``chunk``'s packed weight tiles of this block's warps (none: weights in
        registers)."""
        if sw is not None:
            self.copy_async(gw, sw, [chunk, self.blockIdx.x * self.warps, 0], in_bounds=True)

    def _weight_slot(self, sw, index):
        """The weight ring's slot ``index``, or None with the weights in registers (no ring)."""
        return None if sw is None else sw[index]

    def _weight_parts(self) -> dict:
        """{first byte: part} of a block tile: the packed layout itself, or its two bit planes."""
        pl = self.layout
        if pl.planar:
            return dict(zip(pl.plane_byte_offsets, pl.plane_layouts(), strict=True))
        return {0: pl}

    def _load_weight_bytes(self, gw, chunk) -> dict:
        """{first byte: the bytes [warps, part.tile_bytes] of chunk ``chunk``'s block tile part, in
        registers} (:meth:`_weight_parts`), loaded from global memory in ``part.block_byte_layout``: each
        thread its own 16-byte vectors of the packed tile."""
        return {
            first_byte: self._load_weight_part(gw, chunk, part, first_byte)
            for first_byte, part in self._weight_parts().items()
        }

    def _load_weight_part(self, gw, chunk, part, first_byte):
        """Chunk ``chunk``'s bytes of one part of this block's tile (every chunk below K / k_chunk and every
        block column inside N: no bounds checks)."""
        return self.load_global(
            gw,
            [chunk, self.blockIdx.x * self.warps, first_byte],
            [self.warps, part.tile_bytes],
            layout=part.block_byte_layout(self.warps),
            in_bounds=True,
        )

    def _reload_weight_bytes(self, loaded: dict, gw, chunk) -> None:
        """Chunk ``chunk``'s weight bytes into the registers of ``loaded`` (:meth:`_load_weight_bytes`)."""
        for first_byte, part in self._weight_parts().items():
            self.assign(loaded[first_byte], self._load_weight_part(gw, chunk, part, first_byte))

    def _copy_registers(self, loaded: dict) -> dict:
        """A copy of each register tile of ``loaded`` (the chunk converted now, while its registers take the
        next chunk's loads)."""
        copies = {}
        for first_byte, tile in loaded.items():
            copies[first_byte] = self.register_tensor(tile.dtype, list(tile.shape), layout=tile.layout)
            self.assign(copies[first_byte], tile)
        return copies

    def _load_scales(self, slot):
        """A step's scale row(s) from their ring slot, shaped to multiply the step's partial sum."""
        return self.load_shared(slot)

    def _copy_group_rows(self, gs, gz, ss, sz, chunk, n0) -> None:
        """Start copying chunk ``chunk``'s scale and zero-point rows (group-wise scales only)."""
        pl = self.layout
        if not pl.per_channel:
            row = chunk * pl.k_chunk // pl.group_size
            self.copy_async(gs, ss, [row, n0], in_bounds=True)
            if self.has_zeros:
                self.copy_async(gz, sz, [row, n0], in_bounds=True)

    def _copy_x(self, gx, sx, chunk, m0) -> None:
        """Start copying chunk ``chunk``'s columns of x's 16 rows (written by the previous kernel)."""
        # Rows past M are zero-filled, not read: clamped to row M − 1 they cost a select less per copy,
        # but the H200 ran the same kernel slower the more duplicate rows a block copied (see the
        # transposed kernel's _copy_x). They feed only output rows past M, which are never stored.
        self.copy_async(gx, sx, [m0, chunk * self.layout.k_chunk], in_bounds=(1,))
