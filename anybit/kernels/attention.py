"""Decode attention in one kernel: the rotary embedding of q and k, the write of k and v into a static KV
cache, and attention of the step's one query token over the cache.

At batch 1 a Llama decode step spends ~9 µs a layer between its q/k/v and o projections in five kernels
(Inductor's rotary and cache-update kernels, cuDNN's attention and its input copy; H200, 2026-11-28
profile), each a launch and a round trip of tiny tensors, and none launched as a programmatic dependent.
:class:`DecodeAttention` does the same work in one kernel that waits for the projection before it and lets
the o projection after it launch early.

One block per (KV head, sequence) with one warp per query head of its group (grouped-query attention: the
``G = heads / kv_heads`` query heads sharing a KV head); head dimensions split into halves (the rotary
embedding pairs element i with i + D/2). A warp scores ``tile`` positions at a time: its lanes are 8 position
slots × 4 parts of the head dimension, each lane holding D/8 contiguous elements of each half (16-byte loads),
so a score costs two butterflies and each slot keeps its own online softmax (running max, total and weighted
sum in f32) until the slots are combined once at the end — no warp-wide reduction a tile. Every sequence of
the batch is at the same position (the static cache's decode: one ``cache_position`` for the batch), read
from device memory with ``load_scalar`` so the kernel can be replayed from a CUDA graph step after step.
Padded batches: an optional mask (a byte a sequence and position, loaded with each tile) drops positions
per sequence. ``warps_over="positions"`` spreads a block's warps over positions instead of query heads
(each lane then holds every head of the group): fewer conversions of K and V, the default for large batch
caches (:func:`default_warps_over`).
"""

from __future__ import annotations

import functools

import torch

import anybit
from anybit.dtypes import float32, int32
from anybit.ir.expr import cdiv, minimum
from anybit.kernels.checks import check_tensor, run_kernel
from anybit.lang.script import MAX_CLUSTER_BLOCKS, MAX_PORTABLE_CLUSTER_BLOCKS
from anybit.layout import spatial

#: Cache positions a step of the kernel's loop scores at once (a multiple of SLOTS).
DEFAULT_TILE = 8
#: Position slots of a warp: its lanes are SLOTS positions × (32 / SLOTS) parts of the head dimension.
SLOTS = 8
#: The same with the warps over positions (each lane holding every query head of the group: fewer slots, so
#: that a lane's share of the head dimension, and its registers, stay small).
GROUP_SLOTS = 4
#: What a block's warps are spread over: the group's query heads (a warp each, every warp walking every
#: position) or the positions (each warp its own slots, every lane all G query heads: each K and V element is
#: converted once for the group instead of once a query head).
WARPS_OVER = ("heads", "positions")
#: The score of a position outside a block's run: finite, so a run without positions has a finite max and
#: gets exp(MASKED − max) = 0 weight when the runs are combined.
MASKED = -1.0e30
#: The most runs the cache is split into (their sums are combined in registers: 2·splits·D/64 a thread).
MAX_SPLITS = 16
#: How the runs' sums meet: through global memory (each run stores them and arrives at a counter; the last
#: to arrive loads them all: two L2 round trips) or in a thread-block cluster (each run's sums in its own
#: shared memory, read by the cluster's blocks after a cluster barrier: sm_90, at most 16 runs).
COMBINES = ("global", "cluster")
#: What :func:`decode_attention` takes: a combine, or ``"auto"`` (:func:`default_combine`).
COMBINE_CHOICES = (*COMBINES, "auto")
#: The most runs one cluster combines (a cluster's blocks: 16 on the H100/H200, past the portable 8).
MAX_CLUSTER_SPLITS = MAX_CLUSTER_BLOCKS
#: The most runs ``combine="auto"`` puts in a cluster: the portable size, the one measured (9 to 16 runs in
#: a cluster are opt-in through ``combine="cluster"`` until timed).
MAX_AUTO_CLUSTER_SPLITS = MAX_PORTABLE_CLUSTER_BLOCKS


class DecodeAttention(anybit.Script):
    """Rotary embedding, KV-cache write and attention of one decode token per sequence.

    Parameters
    ----------
    heads, kv_heads
        Query and key/value heads (``heads`` a multiple of ``kv_heads``; a block holds ``heads / kv_heads``
        warps, at most 16).
    head_dim
        D, a multiple of 64.
    act
        The activation dtype (``torch.float16`` or ``torch.bfloat16``).
    scale
        The softmax scale (``head_dim ** -0.5`` for Llama).
    tile
        Cache positions scored per loop step.
    splits
        Runs the cache is split into, a block each (flash-decoding): at batch 1 a long cache is otherwise
        walked by ``kv_heads`` blocks alone. Each run keeps its max, total and weighted sum in an f32
        workspace; the last run of a (sequence, KV head) to arrive combines them in run order.
    warps_over
        ``"heads"`` or ``"positions"`` (see WARPS_OVER).
    combine
        ``"global"`` or ``"cluster"`` (see COMBINES): where the runs' sums meet when ``splits`` > 1.

    Launch arguments: ``qkv`` [B, (heads + 2 kv_heads) · D] (q, k, v side by side: a fused projection's
    output), ``cos`` and ``sin`` [B, D] (the step's rotary tables), ``k_cache`` and ``v_cache``
    [B, kv_heads, L, D], ``position`` (int64 [1]: the step's cache position, < L), ``out`` [B, heads · D],
    ``batch``, ``length`` (L).
    """

    def __init__(
        self,
        heads: int,
        kv_heads: int,
        head_dim: int,
        act: torch.dtype,
        scale: float,
        tile: int = DEFAULT_TILE,
        splits: int = 1,
        warps_over: str = "heads",
        masked: bool = False,
        combine: str = "global",
    ) -> None:
        super().__init__()
        if combine not in COMBINES:
            raise ValueError(f"expected combine one of {COMBINES}, got {combine!r}")
        if combine == "cluster" and splits > MAX_CLUSTER_SPLITS:
            raise ValueError(
                f"expected at most {MAX_CLUSTER_SPLITS} runs to combine in a cluster (a cluster's blocks), "
                f"got {splits}; combine='global' takes up to {MAX_SPLITS}"
            )
        if warps_over not in WARPS_OVER:
            raise ValueError(f"expected warps_over one of {WARPS_OVER}, got {warps_over!r}")
        if not 1 <= splits <= MAX_SPLITS:
            raise ValueError(f"expected 1 to {MAX_SPLITS} splits of the cache, got {splits}")
        if heads % kv_heads or not 1 <= heads // kv_heads <= 16:
            raise ValueError(
                f"expected heads a multiple of kv_heads with at most 16 query heads a KV head, got "
                f"{heads} and {kv_heads}"
            )
        if head_dim % 64:
            raise ValueError(f"expected head_dim a multiple of 64, got {head_dim}")
        step = SLOTS if warps_over == "heads" else GROUP_SLOTS * (heads // kv_heads)
        if tile % step or tile <= 0:
            raise ValueError(
                f"expected a tile of a positive multiple of {step} positions (warps over {warps_over}), "
                f"got {tile}"
            )
        if act not in (torch.float16, torch.bfloat16):
            raise ValueError(f"expected float16 or bfloat16 activations, got {act}")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.group = heads // kv_heads
        self.act = anybit.float16 if act == torch.float16 else anybit.bfloat16
        self.scale = float(scale)
        self.tile = tile
        self.splits = splits
        self.warps_over = warps_over
        self.masked = masked
        self.combine = combine

    def __call__(
        self,
        qkv: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        cos: anybit.ptr(self.act),  # noqa: F821
        sin: anybit.ptr(self.act),  # noqa: F821
        k_cache: anybit.ptr(self.act),  # noqa: F821
        v_cache: anybit.ptr(self.act),  # noqa: F821
        position: anybit.ptr(anybit.int64),
        out: anybit.ptr(self.act),  # noqa: F821
        mask: anybit.ptr(anybit.uint8),
        batch: anybit.int32,
        length: anybit.int32,
        mask_stride: anybit.int32,
    ):
        act, g, d, t, hkv = self.act, self.group, self.head_dim, self.tile, self.kv_heads
        half = d // 2
        row = (self.heads + 2 * hkv) * d
        splits = self.splits
        self.attrs.blocks = [hkv, batch, splits]
        self.attrs.warps = g
        if self.combine == "cluster" and splits > 1:
            self.attrs.cluster = [1, 1, splits]  # a (sequence, KV head)'s runs: one cluster
        h = self.blockIdx.x
        b = self.blockIdx.y
        sequence_head = b * hkv + h
        # [1, G, T, D/2]. Warps over heads: a warp per query head, its lanes SLOTS position slots × 4 parts of
        # the half head dimension (T / SLOTS positions and D/8 contiguous elements a lane). Warps over
        # positions: the block's lanes are GROUP_SLOTS · G slots (a warp's slots its own) × 8 parts (D/16
        # elements), every lane holding all G query heads. Keys and values: the products' layout reduced over
        # the heads; the query, the slots' running sums and the output: reduced over the positions.
        if self.warps_over == "heads":
            parts = 32 // SLOTS
            products = spatial(1, g, SLOTS, parts).local(1, 1, t // SLOTS, half // parts)
            keys = products
        else:
            parts = 32 // GROUP_SLOTS
            slots = GROUP_SLOTS * g
            products = spatial(1, 1, slots, parts).local(1, g, t // slots, half // parts)
            keys = products.reduce([1], keepdims=True)
        self._products = products
        heads = products.reduce([2], keepdims=True)
        self._score_layout = products.reduce([3], keepdims=True)
        self._mask = self._mask_view(mask, batch, length, mask_stride)
        self._sequence = b
        rows = spatial(1, g, 1, 32).local(1, 1, 1, d // 64)
        self.wait_prior_grids()  # qkv and the position are the previous kernels' outputs
        self.allow_dependent_grids()
        # q (the group's heads, broadcast over a tile's positions in the products below), the step's k
        # (rotated) and v: loaded before the position, which they do not depend on, so the two round trips
        # overlap.
        gq = self.global_view(qkv, act, [batch, self.heads, 1, d], strides=[row, d, 0, 1])
        gc = self.global_view(cos, act, [batch, g, 1, d], strides=[d, 0, 0, 1])
        gs = self.global_view(sin, act, [batch, g, 1, d], strides=[d, 0, 0, 1])
        q_lo, q_hi = self._rotated(gq, gc, gs, [b, h * g, 0], heads)
        gkv = self.global_view(qkv, act, [batch, g, self.heads + 2 * hkv, d], strides=[row, 0, d, 1])
        new_k_lo, new_k_hi = self._rotated(gkv, gc, gs, [b, 0, self.heads + h], rows)
        new_v_lo = self.load_global(gkv, [b, 0, self.heads + hkv + h, 0], [1, g, 1, half], layout=rows)
        new_v_hi = self.load_global(gkv, [b, 0, self.heads + hkv + h, half], [1, g, 1, half], layout=rows)
        p = self.load_scalar(self.global_view(position, anybit.int64, [1]), [0])
        go = self.global_view(out, act, [batch * hkv, g, 1, d], strides=[g * d, d, 0, 1])
        # A position outside the cache: NaN out and nothing written (loud, and every access in bounds).
        if p < 0 or p >= length:
            nan = self.register_tensor(act, [1, g, 1, half], layout=rows, init=float("nan"))
            self.store_global(go, nan, [sequence_head, 0, 0, 0])
            self.store_global(go, nan, [sequence_head, 0, 0, half])
            self.exit()
        # This block's run of positions: split s of the cache's, in whole tiles (a tile never reaches into
        # the next run), cut at the step's position.
        span = cdiv(cdiv(length, splits), t) * t
        first = self.blockIdx.z * span
        end = minimum(first + span, p + 1)
        # The step's k and v are written to the cache by warp 0 of the block whose run holds the position
        # (the only block that reads that row).
        if p >= first and p < first + span:
            cache_shape, cache_strides = [batch * hkv, g, length, d], [length * d, 0, d, 1]
            gk_out = self.global_view(k_cache, act, cache_shape, strides=cache_strides)
            gv_out = self.global_view(v_cache, act, cache_shape, strides=cache_strides)
            first_warp = self.index([1, g, 1, half], 1, layout=rows) == 0
            self.store_global(gk_out, self.cast(new_k_lo, act), [sequence_head, 0, p, 0], mask=first_warp)
            self.store_global(gk_out, self.cast(new_k_hi, act), [sequence_head, 0, p, half], mask=first_warp)
            self.store_global(gv_out, new_v_lo, [sequence_head, 0, p, 0], mask=first_warp)
            self.store_global(gv_out, new_v_hi, [sequence_head, 0, p, half], mask=first_warp)
        self.sync()  # the block's own cache writes are visible to its loads below
        # The cache up to and including the position (rows past it read as 0); positions outside the run
        # score MASKED: exp(MASKED − max) is 0, and a run with no position left gets weight 0 when the runs
        # are combined (a finite mask keeps its own max finite: no ∞ − ∞).
        view_strides = [length * d, 0, d, 1]
        gk = self.global_view(k_cache, act, [batch * hkv, g, p + 1, d], strides=view_strides)
        gv = self.global_view(v_cache, act, [batch * hkv, g, p + 1, d], strides=view_strides)
        # Each step loads the next tile while it scores this one (the loads past the cache read 0; past the
        # run, they are masked), so a tile's L2 round trip overlaps the previous tile's arithmetic. Each slot
        # (a lane's positions) keeps its own running max, total and weighted sums: a slot that has seen only
        # masked positions holds max MASKED, and its weight becomes 0 once a real score is larger.
        tile = self._load_tile(gk, gv, sequence_head, first, keys)
        ahead = self._load_tile(gk, gv, sequence_head, first + t, keys)
        running_max = self._scores(tile, q_lo, q_hi, first, end)
        total = self.exp(running_max - running_max)
        acc_lo, acc_hi = (self._weighted(total, part) for part in tile[2:4])
        k_lo, k_hi, v_lo, v_hi, keep = ahead
        for start in self.range(first + t, end, t):
            following = self._load_tile(gk, gv, sequence_head, start + t, keys)
            scores = self._scores((k_lo, k_hi, v_lo, v_hi, keep), q_lo, q_hi, start, end)
            new_max = self.maximum(running_max, scores)
            correction = self.exp(running_max - new_max)
            weights = self.exp(scores - new_max)
            total = total * correction + weights
            acc_lo = acc_lo * correction + self._weighted(weights, v_lo)
            acc_hi = acc_hi * correction + self._weighted(weights, v_hi)
            running_max = new_max
            k_lo, k_hi, v_lo, v_hi, keep = following
        # The slots combined: their sums scaled to the block's max (a slot of masked positions only gets 0).
        slot_max = running_max
        running_max = self.max(slot_max, 2, keepdim=True)
        scale = self.exp(slot_max - running_max)
        total = self.sum(scale * total, 2, keepdim=True)
        acc_lo = self.sum(scale * acc_lo, 2, keepdim=True)
        acc_hi = self.sum(scale * acc_hi, 2, keepdim=True)
        if splits == 1:
            self.store_global(go, self.cast(acc_lo / total, act), [sequence_head, 0, 0, 0])
            self.store_global(go, self.cast(acc_hi / total, act), [sequence_head, 0, 0, half])
        elif self.combine == "cluster":
            self._combine_in_cluster(go, sequence_head, acc_lo, acc_hi, running_max, total)
        else:
            # Each run stores its sums and max; the last run of the (sequence, head) to arrive combines them
            # (the runs' order fixed: the result does not depend on which finished last).
            sums = self.global_tensor(float32, [batch * hkv, g, splits, d])
            maxima = self.global_tensor(float32, [batch * hkv, g, splits, half])
            totals = self.global_tensor(float32, [batch * hkv, g, splits, half])
            run = [sequence_head, 0, self.blockIdx.z, 0]
            self.store_global(sums, acc_lo, run)
            self.store_global(sums, acc_hi, [sequence_head, 0, self.blockIdx.z, half])
            # The max and total along the half row (workspace tensors have no zero strides to broadcast).
            self.store_global(maxima, acc_lo * 0.0 + running_max, run)
            self.store_global(totals, acc_lo * 0.0 + total, run)
            counters = self.global_tensor(int32, [batch * hkv], kept_clean=True)
            arrival = self.arrive(counters, [sequence_head], splits)
            if arrival < splits - 1:
                self.exit()
            runs = spatial(1, g, 1, 32).local(1, 1, splits, d // 64)
            shape = [1, g, splits, half]
            every_max = self.load_global(maxima, [sequence_head, 0, 0, 0], shape, layout=runs)
            scale = self.exp(every_max - self.max(every_max, 2, keepdim=True))
            every_total = self.load_global(totals, [sequence_head, 0, 0, 0], shape, layout=runs)
            combined = self.sum(scale * every_total, 2, keepdim=True)
            sums_lo = self.load_global(sums, [sequence_head, 0, 0, 0], shape, layout=runs)
            sums_hi = self.load_global(sums, [sequence_head, 0, 0, half], shape, layout=runs)
            out_lo = self.sum(scale * sums_lo, 2, keepdim=True) / combined
            out_hi = self.sum(scale * sums_hi, 2, keepdim=True) / combined
            self.store_global(go, self.cast(out_lo, act), [sequence_head, 0, 0, 0])
            self.store_global(go, self.cast(out_hi, act), [sequence_head, 0, 0, half])

    @anybit.runtime_helper
    def _combine_in_cluster(self, go, sequence_head, acc_lo, acc_hi, running_max, total) -> None:
        """The runs' sums combined on chip: each run's max, total and sums into its own shared memory, a
        cluster barrier, every run reading all of them (in run order) from the cluster's shared memory — the
        maxima first, then each run's total and sums scaled as they arrive, so that 16 runs hold no more
        registers than 2 — a second barrier (no run's memory goes while another reads it), and the first run
        storing the output."""
        act, g, d, splits = self.act, self.group, self.head_dim, self.splits
        half = d // 2
        # [1, G, 1, D/2] each: the sums' halves, and the max and total along the half row (one layout).
        parts = self.shared_tensor(float32, [4, g, 1, half])
        for index, value in enumerate((acc_lo, acc_hi, acc_lo * 0.0 + running_max, acc_lo * 0.0 + total)):
            self.store_shared(parts, value, [index, 0, 0, 0])
        self.cluster_sync()
        rows = spatial(1, g, 1, 32).local(1, 1, 1, d // 64)

        def part(index: int, run: int):
            return self.load_shared(parts, [index, 0, 0, 0], [1, g, 1, half], layout=rows, rank=run)

        overall = part(2, 0)
        for run in range(1, splits):
            overall = self.maximum(overall, part(2, run))
        combined, out_lo, out_hi = None, None, None
        for run in range(splits):
            scale = self.exp(part(2, run) - overall)
            terms = (scale * part(3, run), scale * part(0, run), scale * part(1, run))
            if combined is None:
                combined, out_lo, out_hi = terms
            else:
                combined, out_lo, out_hi = combined + terms[0], out_lo + terms[1], out_hi + terms[2]
        self.cluster_sync()
        if self.blockIdx.z == 0:
            self.store_global(go, self.cast(out_lo / combined, act), [sequence_head, 0, 0, 0])
            self.store_global(go, self.cast(out_hi / combined, act), [sequence_head, 0, 0, half])

    def _rotated(self, view, cos_view, sin_view, head_offsets, layout):
        """The rotary embedding of one head's halves (f32): x·cos + rotate_half(x)·sin."""
        g, half = self.group, self.head_dim // 2
        shape = [1, g, 1, half]
        b, head_lo, head = head_offsets
        lo = self.cast(self.load_global(view, [b, head_lo, head, 0], shape, layout=layout), float32)
        hi = self.cast(self.load_global(view, [b, head_lo, head, half], shape, layout=layout), float32)
        cos_lo = self.cast(self.load_global(cos_view, [b, 0, 0, 0], shape, layout=layout), float32)
        cos_hi = self.cast(self.load_global(cos_view, [b, 0, 0, half], shape, layout=layout), float32)
        sin_lo = self.cast(self.load_global(sin_view, [b, 0, 0, 0], shape, layout=layout), float32)
        sin_hi = self.cast(self.load_global(sin_view, [b, 0, 0, half], shape, layout=layout), float32)
        return lo * cos_lo - hi * sin_lo, hi * cos_hi + lo * sin_hi

    def _mask_view(self, mask, batch, length, mask_stride):
        """The padding mask (1: attend) of each sequence's positions, broadcast over the group's heads, or
        None when the kernel reads no mask."""
        if not self.masked:
            return None
        shape, strides = [batch, self.group, length, 1], [mask_stride, 0, 1, 0]
        return self.global_view(mask, anybit.uint8, shape, strides=strides)

    def _load_tile(self, gk, gv, sequence_head, start, layout):
        """The tile's keys and values from ``start`` on, each as halves [1, G or 1, T, D/2] (the layout's
        shape; activation dtype), then its mask bytes [1, G, T, 1] (None without a mask): loaded with the
        tile, a step ahead, so the mask adds no round trip of its own to a step."""
        half = self.head_dim // 2
        parts = tuple(
            self.load_global(view, [sequence_head, 0, start, column], list(layout.shape), layout=layout)
            for view in (gk, gv)
            for column in (0, half)
        )
        keep = None
        if self._mask is not None:
            shape, layout = [1, self.group, self.tile, 1], self._score_layout
            keep = self.load_global(self._mask, [self._sequence, 0, start, 0], shape, layout=layout)
        return parts + (keep,)

    def _product(self, a, b):
        """a · b broadcast to [1, G, T, D/2] in the products' layout (both sides may broadcast)."""
        product = a * b
        self.annotate_layout(product, self._products)
        return product

    def _weighted(self, weights, values):
        """weights [1, G, T, 1] times the values' half [1, G or 1, T, D/2] in f32."""
        return self._product(weights, self.cast(values, float32))

    def _scores(self, tile, q_lo, q_hi, start, end):
        """Scaled q·k of the tile's positions [1, G, T, 1] (f32; positions from ``end`` on, and those the
        tile's mask bytes drop, score MASKED)."""
        k_lo, k_hi = (self.cast(part, float32) for part in tile[:2])
        products = self._product(q_lo, k_lo) + self._product(q_hi, k_hi)
        scores = self.sum(products, 3, keepdim=True) * self.scale
        shape, layout = [1, self.group, self.tile, 1], self._score_layout
        positions = self.index(shape, 2, layout=layout) + start
        keep = tile[4]
        if keep is not None:
            scores = self.where(self.ne(keep, 0), scores, MASKED)
        return self.where(positions < end, scores, MASKED)


#: The cached :class:`DecodeAttention` of one specialisation (same arguments).
attention_kernel = functools.lru_cache(maxsize=64)(DecodeAttention)


#: Cache positions a run should hold at least before the cache is split into more runs (two slots' worth):
#: a run's fixed cost (its q, its combination) is a few L2 round trips, a tile a fraction of one.
POSITIONS_PER_RUN = 16
#: Blocks an SM the runs should fill, at most: the kernel has one warp a query head, so it needs several
#: blocks an SM to keep the SM's schedulers busy (H200 probe, 2026-11-29, 16 sequences: 2 runs best at
#: 145–4096 positions, 3 runs — a third block on some SMs only — 7–35% slower; 1 sequence: 10–16 runs).
BLOCKS_PER_SM = 2
#: Positions a run walks from which the larger tile (16 positions a step, 254 registers) pays when the grid
#: is small (H200 probe, 2026-11-29: 1 sequence, 4096 positions in 16 runs 19.2 µs against 25.3 at tile 8;
#: 16 sequences, 145 positions in 2 runs 10.4 against 12.6; 1 sequence, 1024 in 16 runs 7.8 against 7.5).
LONG_RUN = 64
#: Cached positions of the whole batch (sequences × cache length) from which the warps go over the positions
#: (each K and V element converted once for the group) rather than over the query heads (H200 probe,
#: 2026-11-29: 1 × 4096 17.0 µs against 19.2; 16 × 1024 32.4 against 38.1; 16 × 4096 98.1 against 132;
#: below it the heads win: 1 × 1024 7.5 against 9.1, 16 × 145 10.4 against 12.9).
POSITIONS_FOR_WARPS_OVER_POSITIONS = 4096
#: The largest group (query heads a KV head) the warps go over positions for: each lane holds every head's
#: query, so larger groups cost registers (the probe measured Llama-3-8B's 4).
LARGEST_GROUP_OVER_POSITIONS = 4
#: SMs assumed when no GPU is visible (the H200's).
DEFAULT_SMS = 132


def default_splits(length: int, blocks: int = 8, sms: int | None = None) -> int:
    """Runs for a cache of ``length`` positions when the grid has ``blocks`` (KV heads × sequences) without
    splitting: enough for ~BLOCKS_PER_SM blocks an SM, none shorter than POSITIONS_PER_RUN, at most
    MAX_SPLITS (tuned with ``benchmarks/attention_probe.py``)."""
    sms = _sms() if sms is None else sms
    for_the_gpu = BLOCKS_PER_SM * sms // blocks
    return max(1, min(MAX_SPLITS, -(-length // POSITIONS_PER_RUN), for_the_gpu))


def default_warps_over(length: int, batch: int, group: int = 4) -> str:
    """``"positions"`` when the batch caches POSITIONS_FOR_WARPS_OVER_POSITIONS positions or more
    (``batch × length``) and a KV head serves at most 4 query heads (``group``: each lane then holds every
    head's query, so more would cost registers; the probe measured 4), else ``"heads"`` (tuned with
    ``benchmarks/attention_probe.py``)."""
    large = batch * length >= POSITIONS_FOR_WARPS_OVER_POSITIONS
    return "positions" if large and group <= LARGEST_GROUP_OVER_POSITIONS else "heads"


def default_tile(length: int, splits: int, blocks: int = 8, sms: int | None = None) -> int:
    """The tile for ``splits`` runs of a ``length``-position cache over ``blocks`` (KV heads × sequences):
    16 positions a step (254 registers) when the runs are long (LONG_RUN positions) and the grid small enough
    that the registers cost no resident blocks (≤ BLOCKS_PER_SM an SM), else 8."""
    sms = _sms() if sms is None else sms
    few_blocks = blocks * splits <= BLOCKS_PER_SM * sms
    return 2 * DEFAULT_TILE if few_blocks and -(-length // splits) >= LONG_RUN else DEFAULT_TILE


def default_combine(splits: int, blocks: int, device: torch.device, sms: int | None = None) -> str:
    """Where ``splits`` runs of each of ``blocks`` (KV heads × sequences) meet: ``"cluster"`` when they fit a
    portable cluster (2 to MAX_AUTO_CLUSTER_SPLITS), the grid fits one wave of BLOCKS_PER_SM blocks an SM and
    the device runs clusters (sm_90 on, or the interpreter), else ``"global"``. Measured with
    ``benchmarks/attention_probe.py`` (H200, 2026-11-29): in a cluster 3–27% faster at 1 × 145 and 1 × 1024
    positions with 2–8 runs and at 16 × 145 and 16 × 1024 with 2, but 19–81% slower at batch 16 with 4 or 8
    runs, where the grid takes more than one wave and a cluster's blocks wait to be placed together."""
    sms = _sms() if sms is None else sms
    if not 1 < splits <= MAX_AUTO_CLUSTER_SPLITS or blocks * splits > BLOCKS_PER_SM * sms:
        return "global"
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (9, 0):
        return "global"
    return "cluster"


def _sms() -> int:
    """The GPU's SM count (DEFAULT_SMS without a GPU)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).multi_processor_count
    return DEFAULT_SMS


def decode_attention(
    qkv: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    position: torch.Tensor,
    heads: int,
    scale: float | None = None,
    out: torch.Tensor | None = None,
    splits: int | None = None,
    tile: int | None = None,
    warps_over: str | None = None,
    mask: torch.Tensor | None = None,
    combine: str = "auto",
) -> torch.Tensor:
    """One decode token's attention for every sequence of a batch, in one kernel (see the module docstring).

    Parameters
    ----------
    qkv
        [B, (heads + 2·kv_heads)·D]: the step's q, k and v side by side (a fused q/k/v projection's output).
    cos, sin
        [B, D] (or [B, 1, D]): the rotary tables of the step's position (Llama's ``rotate_half`` form).
    k_cache, v_cache
        [B, kv_heads, L, D], written at ``position`` with the step's rotated k and its v.
    position
        int64 [1] on the device: the step's cache position (the same for the whole batch), < L.
    heads
        Query heads.
    scale
        Softmax scale (default ``D ** -0.5``).
    out
        [B, heads·D] to write into (allocated when omitted).
    splits
        Runs of the cache, a block each (default :func:`default_splits` of L and B · kv_heads).
    tile
        Cache positions a block scores a loop step (default :func:`default_tile`): a multiple of 8 with the
        warps over the heads, of 4 · heads / kv_heads with the warps over the positions.
    warps_over
        ``"heads"`` (a warp per query head of the group) or ``"positions"`` (each warp its own positions,
        every lane all of the group's query heads: each K and V element converted once for the group;
        ~27 instructions a head and position against ~36); default :func:`default_warps_over` (positions
        from 4096 cached positions in the batch on, for groups of up to 4 query heads).
    mask
        Optional bool [B, L] or [1, L] (one row for the whole batch), or transformers' decode mask itself,
        [B or 1, 1, 1, L] (rows at any stride, positions contiguous): True where a sequence attends to a
        cache position — a left-padded batch's attention mask. Without it every position up to
        ``position`` is attended to.
    combine
        ``"auto"`` (default): the cluster where the runs fit a portable one and the grid one wave
        (:func:`default_combine`: where the H200 measured it faster), else global memory; ``"global"`` or
        ``"cluster"`` to choose (see :data:`COMBINES`; ``"cluster"`` needs sm_90 and at most 16 runs, past
        8 an H100/H200).

    A position outside the cache (read on the device, so not checked here: that would synchronise) writes
    NaN to ``out`` and nothing to the caches.

    Returns ``out``: the attention output, heads side by side (what Llama's ``o_proj`` takes). On the CPU the
    kernel runs on the interpreter.
    """
    if k_cache.dim() != 4:
        raise ValueError(f"expected k_cache [B, kv_heads, L, D], got shape {list(k_cache.shape)}")
    batch, kv_heads, length, head_dim = k_cache.shape
    if k_cache.numel() >= 2**31 or qkv.numel() >= 2**31:
        raise ValueError(
            f"expected caches of fewer than 2^31 elements (the kernel's offsets are 32-bit), got "
            f"{list(k_cache.shape)}; split the batch"
        )
    act, device = qkv.dtype, qkv.device
    width = (heads + 2 * kv_heads) * head_dim
    for name, table in (("cos", cos), ("sin", sin)):
        if table.numel() != batch * head_dim:
            raise ValueError(f"expected {name} [B, D] = [{batch}, {head_dim}], got shape {list(table.shape)}")
    cos, sin = cos.reshape(batch, head_dim), sin.reshape(batch, head_dim)
    checked = {"qkv": (qkv, (batch, width)), "cos": (cos, (batch, head_dim)), "sin": (sin, (batch, head_dim))}
    checked |= {"k_cache": (k_cache, k_cache.shape), "v_cache": (v_cache, k_cache.shape)}
    for name, (tensor, shape) in checked.items():
        check_tensor(name, tensor, shape, act, device)
    check_tensor("position", position, (1,), torch.int64, device)
    mask_bytes, mask_stride = _mask_bytes(mask, batch, length, device, position)
    if out is None:
        out = torch.empty(batch, heads * head_dim, dtype=act, device=device)
    else:
        check_tensor("out", out, (batch, heads * head_dim), act, device)
    scale = head_dim**-0.5 if scale is None else float(scale)
    if combine not in COMBINE_CHOICES:
        raise ValueError(f"expected combine one of {COMBINE_CHOICES}, got {combine!r}")
    if splits is None:
        splits = default_splits(length, batch * kv_heads)
        if combine == "cluster":  # a cluster holds at most MAX_CLUSTER_SPLITS runs
            splits = min(splits, MAX_CLUSTER_SPLITS)
    splits = int(splits)
    if combine == "auto":
        combine = default_combine(splits, batch * kv_heads, device)
    if warps_over is None:
        warps_over = default_warps_over(length, batch, heads // kv_heads)
    if tile is None:
        tile = default_tile(length, splits, batch * kv_heads)
        if warps_over == "positions":  # a position a lane a step (two spill registers at G = 4)
            tile = GROUP_SLOTS * (heads // kv_heads)
    kernel = attention_kernel(
        heads, kv_heads, head_dim, act, scale, int(tile), splits, warps_over, mask is not None, combine
    )
    run_kernel(kernel, qkv, cos, sin, k_cache, v_cache, position, out, mask_bytes, batch, length, mask_stride)
    return out


def _mask_bytes(mask: torch.Tensor | None, batch: int, length: int, device, position: torch.Tensor):
    """The mask as uint8 bytes and its row stride (a placeholder the kernel does not read without one)."""
    if mask is None:
        return position.view(torch.uint8), 0
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(
            f"expected mask to be a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}"
        )
    if mask.dim() == 4 and tuple(mask.shape[1:3]) == (1, 1):
        mask = mask[:, 0, 0, :]  # transformers' [B or 1, 1, 1, L]: a view, no kernel
    if mask.dim() != 2 or mask.shape[0] not in (1, batch) or mask.shape[1] != length or mask.device != device:
        raise ValueError(
            f"expected mask bool [B or 1, L] or [B or 1, 1, 1, L] with B = {batch}, L = {length} on "
            f"{device}, got {list(mask.shape)} on {mask.device}"
        )
    mask = mask.expand(batch, length)  # one row for every sequence: row stride 0
    if length > 1 and mask.stride(1) != 1:
        raise ValueError("expected the mask's positions contiguous (stride 1); pass mask.contiguous()")
    # The bytes from the first row's start to the last row's end, as one contiguous run (what a pointer
    # argument is): the kernel steps through the rows itself.
    span = mask.stride(0) * (batch - 1) + length
    return mask.as_strided((span,), (1,)).view(torch.uint8), mask.stride(0)
