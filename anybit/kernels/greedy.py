"""The greedy pick of a decode step, the argmax of each row of logits, over the whole GPU.

torch's ``argmax`` over one row of a 128K vocabulary is one block's reduction: 35.6 µs a step on the H200
(2026-11-28 profile) — more than a Llama-3-8B layer's four int4 projections — and compiled by Inductor 29.6.
:class:`GreedyToken` gives each chunk of a row to its own block (its max, and the first index holding it),
and the last block of the row to arrive picks among the chunks' maxima, writing the token straight into
the int64 buffer the next step reads. Ties go to the lowest index and NaN counts as the largest value, as
torch's ``argmax`` does.
"""

from __future__ import annotations

import functools

import torch

import anybit
from anybit.dtypes import float32, int32
from anybit.kernels.checks import check_tensor, run_kernel
from anybit.layout import spatial

#: Logits a block reduces: 4 warps, 16 a lane (two 16-byte loads of float16).
CHUNK = 2048
#: Chunks a row may have (the last block combines them in one tile): vocabularies up to 256 · CHUNK.
MAX_CHUNKS = 256
#: An index past any vocabulary, for the minimum over positions that do not hold the maximum.
NO_INDEX = 2**31 - 1


class GreedyToken(anybit.Script):
    """``token[b] = argmax(logits[b])`` for logits [B, V] of ``act`` into an int64 token buffer [B]."""

    def __init__(self, act: torch.dtype) -> None:
        super().__init__()
        if act not in (torch.float16, torch.bfloat16, torch.float32):
            raise ValueError(f"expected float16, bfloat16 or float32 logits, got {act}")
        self.act = {torch.float16: anybit.float16, torch.bfloat16: anybit.bfloat16}.get(act, anybit.float32)

    def __call__(
        self,
        logits: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        token: anybit.ptr(anybit.int64),
        batch: anybit.int32,
        vocab: anybit.int32,
    ):
        chunks = (vocab + CHUNK - 1) // CHUNK
        self.attrs.blocks = [chunks, batch]
        self.attrs.warps = 4
        row = self.blockIdx.y
        first = self.blockIdx.x * CHUNK
        self.wait_prior_grids()  # the logits are the previous kernel's output
        self.allow_dependent_grids()
        layout = spatial(1, 128).local(1, CHUNK // 128)
        gl = self.global_view(logits, self.act, [batch, vocab])
        values = self.cast(
            self.load_global(gl, [row, first], [1, CHUNK], layout=layout, other=float("-inf")), float32
        )
        values = self.where(values != values, float("inf"), values)  # NaN is the largest, as in torch
        best = self.max(values, 1, keepdim=True)
        indices = self.index([1, CHUNK], 1, layout=layout) + first
        best_index = self.min(self.where(values == best, indices, NO_INDEX), 1, keepdim=True)
        maxima = self.global_tensor(float32, [batch, MAX_CHUNKS])
        positions = self.global_tensor(int32, [batch, MAX_CHUNKS])
        self.store_global(maxima, best, [row, self.blockIdx.x])
        self.store_global(positions, best_index, [row, self.blockIdx.x])
        counters = self.global_tensor(int32, [batch], kept_clean=True)
        arrival = self.arrive(counters, [row], chunks)
        if arrival < chunks - 1:
            self.exit()
        # The last block of the row: the chunks' maxima in one tile (chunks past the row's read as -inf).
        runs = spatial(1, 128).local(1, MAX_CHUNKS // 128)
        every = self.load_global(maxima, [row, 0], [1, MAX_CHUNKS], layout=runs, other=float("-inf"))
        valid = self.index([1, MAX_CHUNKS], 1, layout=runs) < chunks
        every = self.where(valid, every, float("-inf"))
        overall = self.max(every, 1, keepdim=True)
        where_found = self.load_global(positions, [row, 0], [1, MAX_CHUNKS], layout=runs, other=NO_INDEX)
        holders = self.where(every == overall, where_found, NO_INDEX)
        pick = self.min(self.where(valid, holders, NO_INDEX), 1, keepdim=True)
        gt = self.global_view(token, anybit.int64, [batch, 1])
        self.store_global(gt, self.cast(pick, anybit.int64), [row, 0])


@functools.lru_cache(maxsize=8)
def greedy_kernel(act: torch.dtype) -> GreedyToken:
    """The cached :class:`GreedyToken` for logits of ``act``."""
    return GreedyToken(act)


def greedy_token(logits: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """The argmax of each row of ``logits`` [B, V] as int64 [B, 1] (written into ``out`` when given).

    What ``logits.argmax(-1, keepdim=True)`` returns (the first index of the maximum; NaN counts as the
    maximum), computed by every SM instead of one block. On the CPU the kernel runs on the interpreter.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(f"expected logits [B, V], got {getattr(logits, 'shape', type(logits).__name__)}")
    batch, vocab = logits.shape
    if not 0 < vocab <= MAX_CHUNKS * CHUNK:
        raise ValueError(f"expected a vocabulary of 1 to {MAX_CHUNKS * CHUNK} logits a row, got {vocab}")
    check_tensor("logits", logits, (batch, vocab), logits.dtype, logits.device)
    if out is None:
        out = torch.empty(batch, 1, dtype=torch.int64, device=logits.device)
    else:
        check_tensor("out", out, (batch, 1), torch.int64, logits.device)
    run_kernel(greedy_kernel(logits.dtype), logits, out, batch, vocab)
    return out
