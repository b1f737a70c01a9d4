"""Decode attention in one kernel: the rotary embedding of q and k, the write of k and v into a static KV
cache, and attention of the step's one query token over the cache.

At batch 1 a Llama decode step spends ~9 µs a layer between its q/k/v and o projections in five kernels
(Inductor's rotary and cache-update kernels, cuDNN's attention and its input copy; H200, 2026-11-28
profile), each a launch and a round trip of tiny tensors, and none launched as a programmatic dependent.
:class:`DecodeAttention` does the same work in one kernel that waits for the projection before it and lets
the o projection after it launch early.

One block per (KV head, sequence) with one warp per query head of its group (grouped-query attention: the
``G = heads / kv_heads`` query heads sharing a KV head); head dimensions split into halves (the rotary
embedding pairs element i with i + D/2), each lane holding D/64 elements of each half. The cache is walked in
tiles of ``tile`` positions with an online softmax (running max and sum in f32). Every sequence of the batch
is at the same position (the static cache's decode: one ``cache_position`` for the batch), read from device
memory with ``load_scalar`` so the kernel can be replayed from a CUDA graph step after step. Padded batches
(a per-sequence attention mask) are not supported.
"""

from __future__ import annotations

import functools

import torch

import anybit
from anybit.dtypes import float32
from anybit.kernels.checks import check_tensor, run_kernel
from anybit.layout import spatial

#: Cache positions a step of the kernel's loop scores at once.
DEFAULT_TILE = 8


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
    ) -> None:
        super().__init__()
        if heads % kv_heads or not 1 <= heads // kv_heads <= 16:
            raise ValueError(
                f"expected heads a multiple of kv_heads with at most 16 query heads a KV head, got "
                f"{heads} and {kv_heads}"
            )
        if head_dim % 64:
            raise ValueError(f"expected head_dim a multiple of 64, got {head_dim}")
        if act not in (torch.float16, torch.bfloat16):
            raise ValueError(f"expected float16 or bfloat16 activations, got {act}")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.group = heads // kv_heads
        self.act = anybit.float16 if act == torch.float16 else anybit.bfloat16
        self.scale = float(scale)
        self.tile = tile

    def __call__(
        self,
        qkv: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        cos: anybit.ptr(self.act),  # noqa: F821
        sin: anybit.ptr(self.act),  # noqa: F821
        k_cache: anybit.ptr(self.act),  # noqa: F821
        v_cache: anybit.ptr(self.act),  # noqa: F821
        position: anybit.ptr(anybit.int64),
        out: anybit.ptr(self.act),  # noqa: F821
        batch: anybit.int32,
        length: anybit.int32,
    ):
        act, g, d, t, hkv = self.act, self.group, self.head_dim, self.tile, self.kv_heads
        half = d // 2
        row = (self.heads + 2 * hkv) * d
        self.attrs.blocks = [hkv, batch]
        self.attrs.warps = g
        h = self.blockIdx.x
        b = self.blockIdx.y
        sequence_head = b * hkv + h
        # [1, G, T, D/2]: a warp per query head, its lanes along the half head dimension, T positions local.
        tiles = spatial(1, g, 1, 32).local(1, 1, t, d // 64)
        rows = spatial(1, g, 1, 32).local(1, 1, 1, d // 64)
        self.wait_prior_grids()  # qkv and the position are the previous kernels' outputs
        self.allow_dependent_grids()
        p = self.load_scalar(self.global_view(position, anybit.int64, [1]), [0])
        go = self.global_view(out, act, [batch * hkv, g, 1, d], strides=[g * d, d, 0, 1])
        if (
            p < 0 or p >= length
        ):  # a position outside the cache: NaN out and nothing written (loud, in bounds)
            nan = self.register_tensor(act, [1, g, 1, half], layout=rows, init=float("nan"))
            self.store_global(go, nan, [sequence_head, 0, 0, 0])
            self.store_global(go, nan, [sequence_head, 0, 0, half])
            self.exit()
        # q (each warp its own head), replicated over the tile's positions by a zero stride.
        gq = self.global_view(qkv, act, [batch, self.heads, t, d], strides=[row, d, 0, 1])
        gc = self.global_view(cos, act, [batch, g, t, d], strides=[d, 0, 0, 1])
        gs = self.global_view(sin, act, [batch, g, t, d], strides=[d, 0, 0, 1])
        q_lo, q_hi = self._rotated(gq, gc, gs, [b, h * g, 0], tiles, t)
        # The step's k (rotated) and v, the same in every warp, written to the cache by warp 0.
        gkv = self.global_view(qkv, act, [batch, g, self.heads + 2 * hkv, d], strides=[row, 0, d, 1])
        gc1 = self.global_view(cos, act, [batch, g, 1, d], strides=[d, 0, 0, 1])
        gs1 = self.global_view(sin, act, [batch, g, 1, d], strides=[d, 0, 0, 1])
        k_lo, k_hi = self._rotated(gkv, gc1, gs1, [b, 0, self.heads + h], rows, 1)
        v_lo = self.load_global(gkv, [b, 0, self.heads + hkv + h, 0], [1, g, 1, half], layout=rows)
        v_hi = self.load_global(gkv, [b, 0, self.heads + hkv + h, half], [1, g, 1, half], layout=rows)
        cache_shape, cache_strides = [batch * hkv, g, length, d], [length * d, 0, d, 1]
        gk_out = self.global_view(k_cache, act, cache_shape, strides=cache_strides)
        gv_out = self.global_view(v_cache, act, cache_shape, strides=cache_strides)
        first_warp = self.index([1, g, 1, half], 1, layout=rows) == 0
        self.store_global(gk_out, self.cast(k_lo, act), [sequence_head, 0, p, 0], mask=first_warp)
        self.store_global(gk_out, self.cast(k_hi, act), [sequence_head, 0, p, half], mask=first_warp)
        self.store_global(gv_out, v_lo, [sequence_head, 0, p, 0], mask=first_warp)
        self.store_global(gv_out, v_hi, [sequence_head, 0, p, half], mask=first_warp)
        self.sync()  # the block's own cache writes are visible to its loads below
        # The cache up to and including this step's position; rows past it read as 0 and score -inf.
        gk = self.global_view(k_cache, act, [batch * hkv, g, p + 1, d], strides=cache_strides)
        gv = self.global_view(v_cache, act, [batch * hkv, g, p + 1, d], strides=cache_strides)
        scores = self._scores(gk, q_lo, q_hi, sequence_head, 0, p, tiles)
        running_max = self.max(scores, 2, keepdim=True)
        weights = self.exp(scores - running_max)
        total = self.sum(weights, 2, keepdim=True)
        acc_lo, acc_hi = self._weighted_values(gv, weights, sequence_head, 0, tiles)
        for start in self.range(t, p + 1, t):
            scores = self._scores(gk, q_lo, q_hi, sequence_head, start, p, tiles)
            new_max = self.maximum(running_max, self.max(scores, 2, keepdim=True))
            correction = self.exp(running_max - new_max)
            weights = self.exp(scores - new_max)
            total = total * correction + self.sum(weights, 2, keepdim=True)
            part_lo, part_hi = self._weighted_values(gv, weights, sequence_head, start, tiles)
            acc_lo = acc_lo * correction + part_lo
            acc_hi = acc_hi * correction + part_hi
            running_max = new_max
        self.store_global(go, self.cast(acc_lo / total, act), [sequence_head, 0, 0, 0])
        self.store_global(go, self.cast(acc_hi / total, act), [sequence_head, 0, 0, half])

    def _rotated(self, view, cos_view, sin_view, head_offsets, layout, positions):
        """The rotary embedding of one head's halves (f32): x·cos + rotate_half(x)·sin."""
        g, half = self.group, self.head_dim // 2
        shape = [1, g, positions, half]
        b, head_lo, head = head_offsets
        lo = self.cast(self.load_global(view, [b, head_lo, head, 0], shape, layout=layout), float32)
        hi = self.cast(self.load_global(view, [b, head_lo, head, half], shape, layout=layout), float32)
        cos_lo = self.cast(self.load_global(cos_view, [b, 0, 0, 0], shape, layout=layout), float32)
        cos_hi = self.cast(self.load_global(cos_view, [b, 0, 0, half], shape, layout=layout), float32)
        sin_lo = self.cast(self.load_global(sin_view, [b, 0, 0, 0], shape, layout=layout), float32)
        sin_hi = self.cast(self.load_global(sin_view, [b, 0, 0, half], shape, layout=layout), float32)
        return lo * cos_lo - hi * sin_lo, hi * cos_hi + lo * sin_hi

    def _scores(self, gk, q_lo, q_hi, sequence_head, start, p, layout):
        """Scaled q·k of the tile's positions [1, G, T, 1] (f32; positions past ``p`` score -inf)."""
        g, t, half = self.group, self.tile, self.head_dim // 2
        shape = [1, g, t, half]
        k_lo = self.cast(self.load_global(gk, [sequence_head, 0, start, 0], shape, layout=layout), float32)
        k_hi = self.cast(self.load_global(gk, [sequence_head, 0, start, half], shape, layout=layout), float32)
        scores = self.sum(q_lo * k_lo + q_hi * k_hi, 3, keepdim=True) * self.scale
        positions = self.index([1, g, t, 1], 2) + start
        return self.where(positions <= p, scores, float("-inf"))

    def _weighted_values(self, gv, weights, sequence_head, start, layout):
        """Σ over the tile of weight · v, per half [1, G, 1, D/2] (f32)."""
        g, t, half = self.group, self.tile, self.head_dim // 2
        shape = [1, g, t, half]
        v_lo = self.cast(self.load_global(gv, [sequence_head, 0, start, 0], shape, layout=layout), float32)
        v_hi = self.cast(self.load_global(gv, [sequence_head, 0, start, half], shape, layout=layout), float32)
        return self.sum(weights * v_lo, 2, keepdim=True), self.sum(weights * v_hi, 2, keepdim=True)


@functools.lru_cache(maxsize=64)
def attention_kernel(
    heads: int, kv_heads: int, head_dim: int, act: torch.dtype, scale: float, tile: int = DEFAULT_TILE
) -> DecodeAttention:
    """The cached :class:`DecodeAttention` of one specialisation."""
    return DecodeAttention(heads, kv_heads, head_dim, act, scale, tile)


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

    A position outside the cache (read on the device, so not checked here: that would synchronise) writes
    NaN to ``out`` and nothing to the caches.

    Returns ``out``: the attention output, heads side by side (what Llama's ``o_proj`` takes). On the CPU the
    kernel runs on the interpreter.
    """
    if k_cache.dim() != 4:
        raise ValueError(f"expected k_cache [B, kv_heads, L, D], got shape {list(k_cache.shape)}")
    batch, kv_heads, length, head_dim = k_cache.shape
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
    if out is None:
        out = torch.empty(batch, heads * head_dim, dtype=act, device=device)
    else:
        check_tensor("out", out, (batch, heads * head_dim), act, device)
    scale = head_dim**-0.5 if scale is None else float(scale)
    kernel = attention_kernel(heads, kv_heads, head_dim, act, scale)
    run_kernel(kernel, qkv, cos, sin, k_cache, v_cache, position, out, batch, length)
    return out
