"""Instruction selection: ``ldmatrix``/``stmatrix`` for shared-memory tiles and ``mma.sync`` for ``dot``.

The decision is made on the layouts themselves. For ``ldmatrix`` the register layout must divide by the
instruction's atom (``anybit.layout.mma.LDMATRIX_LAYOUTS``: each thread's 32-bit words are whole atom
registers) and the shared layout must put each 8-element row of every atom at a 16-byte aligned, contiguous
address. Both conditions are verified on the actual maps, word by word and lane by lane, which also admits
swizzled shared layouts. For ``dot`` the operand layouts must be the MMA operand layouts tiled
(``anybit.layout.mma``): every 16x8xK tile is held by one warp with thread-uniform register positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anybit.ir.expr import constant_value

LDMATRIX_SHAPES = (4, 2, 1)


@dataclass(frozen=True)
class LdmatrixPlan:
    """Words of each thread grouped into ``ldmatrix.xN`` instructions; ``trans`` for ``.trans``."""

    trans: bool
    instructions: tuple[tuple[int, ...], ...]  # each: the destination word indices, one per matrix


def _shared_byte_offsets(layout, tensor, offsets) -> np.ndarray | None:
    constants = [constant_value(o) for o in offsets]
    if not all(isinstance(c, int) for c in constants):
        return None
    coords = layout.map_array()
    lead = len(constants) - layout.rank
    index = tuple(constants[:lead]) + tuple(coords[..., d] + constants[lead + d] for d in range(layout.rank))
    elements = np.broadcast_to(np.asarray(tensor.layout.offset(index), dtype=np.int64), coords.shape[:2])
    return elements * tensor.dtype.nbits // 8


def ldmatrix_plan(layout, tensor, offsets, base_alignment: int) -> LdmatrixPlan | None:
    """The ``ldmatrix`` grouping of a shared load into ``layout``, or None when it does not apply."""
    n = tensor.dtype.nbits
    if n not in (8, 16) or layout.num_threads % 32 or base_alignment % 16:
        return None
    if layout.local_size * n % 32:
        return None
    data = _shared_byte_offsets(layout, tensor, offsets)
    if data is None:
        return None
    per_word = 32 // n
    threads = layout.num_threads
    words = data.reshape(threads, -1, per_word)  # (T, W, elements per word)
    lanes = np.arange(threads) % 32
    warps = np.arange(threads) // 32
    for trans in (False, True) if n == 16 else (False,):
        if _words_fit(words, lanes, warps, n, trans):
            count = words.shape[1]
            shape = next(s for s in LDMATRIX_SHAPES if count % s == 0)
            groups = tuple(tuple(range(k, k + shape)) for k in range(0, count, shape))
            return LdmatrixPlan(trans, groups)
    return None


def _words_fit(words: np.ndarray, lanes, warps, n: int, trans: bool) -> bool:
    element_bytes = n // 8
    if not trans:
        # each word: consecutive bytes, at row (lane // 4) start + 4 * (lane % 4)
        if not (np.diff(words, axis=-1) == element_bytes).all():
            return False
        starts = words[..., 0] - 4 * (lanes % 4)[:, None]
        key_rows = lanes // 4
    else:
        # word j of lane l: elements at rows 2*(l%4)+e, column l//4 of the stored matrix
        rows0 = words[..., 0] - 2 * (lanes // 4)[:, None]
        rows1 = words[..., 1] - 2 * (lanes // 4)[:, None]
        starts = np.stack([rows0, rows1], axis=-1).reshape(words.shape[0], -1)
        if (starts % 16).any():
            return False
        table = {}
        for t in range(words.shape[0]):
            for k in range(words.shape[1]):
                for e in range(2):
                    key = (warps[t], k, 2 * (lanes[t] % 4) + e)
                    value = starts[t, 2 * k + e]
                    if table.setdefault(key, value) != value:
                        return False
        return True
    if (starts % 16).any():
        return False
    table = {}
    for t in range(words.shape[0]):
        for k in range(words.shape[1]):
            key = (warps[t], k, key_rows[t])
            if table.setdefault(key, starts[t, k]) != starts[t, k]:
                return False
    return True


def emit_ldmatrix(ctx, plan: LdmatrixPlan, array: str, layout, tensor, offsets, *, store: bool) -> None:
    """Emit the ``ldmatrix`` (``stmatrix`` when ``store``) instructions of ``plan``.

    Lane ``l`` supplies the address of row ``l % 8`` of matrix ``l // 8``: without ``.trans`` that row starts
    at the first element of the matrix's word in lane ``4 * (l % 8)``; with ``.trans`` row ``r`` starts at
    element ``r % 2`` of the word in lane ``r // 2``.

    Each lane's byte offset from the tensor's base depends on the thread index alone (the tile offsets are
    constants), so it is computed once in the kernel's prologue (:func:`_lane_offset`) and the instruction
    itself costs one add: ``ldmatrix`` inside a main loop runs without index arithmetic.
    """
    from anybit.cuda.emit.memory import shared_base

    data = _shared_byte_offsets(layout, tensor, offsets)
    base = ctx.fresh("sb")
    ctx.emit(f"const uint32_t {base} = ab_smem_addr({shared_base(ctx, tensor)});")
    for group in plan.instructions:
        count = len(group)
        offset = _lane_offset(ctx, plan, group, layout, tensor, offsets, data)
        address = f"{base} + {offset}"
        registers = ", ".join(f"%{k}" for k in range(count))
        suffix = f".x{count}{'.trans' if plan.trans else ''}.shared.b16"
        if store:
            operands = ", ".join(f'"r"({array}[{w}])' for w in group)
            ctx.emit(
                f'asm volatile("stmatrix.sync.aligned.m8n8{suffix} [%{count}], {{{registers}}};" '
                f':: {operands}, "r"({address}) : "memory");'
            )
        else:
            operands = ", ".join(f'"=r"({array}[{w}])' for w in group)
            ctx.emit(
                f'asm volatile("ldmatrix.sync.aligned.m8n8{suffix} {{{registers}}}, [%{count}];" '
                f': {operands} : "r"({address}) : "memory");'
            )


def _lane_table(plan: LdmatrixPlan, group: tuple[int, ...], data: np.ndarray, per_word: int) -> np.ndarray:
    """Byte offset each thread supplies to one ``ldmatrix`` (see :func:`emit_ldmatrix`), from the byte
    offsets ``data[thread, element]`` of the whole access."""
    threads = np.arange(data.shape[0])
    lanes, warp_base = threads % 32, threads // 32 * 32
    words = np.asarray(group)[(lanes // 8) % len(group)]
    if not plan.trans:
        return data[warp_base + (lanes % 8) * 4, words * per_word]
    return data[warp_base + (lanes % 8) // 2, words * 2 + (lanes & 1)]


def _lane_offset(ctx, plan: LdmatrixPlan, group, layout, tensor, offsets, data: np.ndarray) -> str:
    """A C expression of this thread's byte offset for one ``ldmatrix``: a prologue value, reused (plus or
    xor a constant) when another instruction's offsets differ from these by a constant in every thread."""
    from anybit.cuda.expressions import THREAD

    n = tensor.dtype.nbits
    per_word = 32 // n
    table = _lane_table(plan, group, data, per_word)
    exact = data.shape[0] == ctx.num_threads  # otherwise threads past the layout's wrap: no reuse
    roots = ctx.hoisted.setdefault("ldmatrix lane offsets", [])
    if exact:
        for name, known in roots:
            # (known ^ x) + c: the xor of a swizzle (a multiple of 16 bytes within a 128-byte row) is one
            # shared LOP3; the constant folds into the instruction's immediate offset.
            for x in range(0, 128, 16):
                delta = table - (known ^ x)
                if (delta == delta[0]).all():
                    flipped = f"({name} ^ {x}u)" if x else name
                    return flipped if delta[0] == 0 else f"({flipped} + {int(delta[0])}u)"
    name = ctx.fresh("lo")
    lane = THREAD % 32
    warp_base = (THREAD // 32) * 32
    ctx.hoist(f"uint32_t {name} = 0u;")
    for j in range(4):
        word = group[j % len(group)]
        if not plan.trans:
            element = _element_offset(
                ctx, layout, tensor, offsets, warp_base + (lane % 8) * 4, word * per_word
            )
            value = f"({element}) * {n // 8}"
        else:
            supplier = warp_base + (lane % 8) // 2
            even = _element_offset(ctx, layout, tensor, offsets, supplier, word * 2)
            odd = _element_offset(ctx, layout, tensor, offsets, supplier, word * 2 + 1)
            value = f"((tid & 1) ? ({odd}) : ({even})) * {n // 8}"
        ctx.hoist(f"if ((tid % 32) / 8 == {j}) {name} = (uint32_t)({value});")
    if exact:
        roots.append((name, table))
    return name


def _element_offset(ctx, layout, tensor, offsets, thread, element: int) -> str:
    from anybit.cuda.emit.access import tile_index

    return ctx.expr(tensor.layout.offset(tile_index(layout, offsets, element, thread)))


__all__ = ["LdmatrixPlan", "ldmatrix_plan", "emit_ldmatrix"]
