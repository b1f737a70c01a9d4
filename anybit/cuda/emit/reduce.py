"""``reduce`` (sum/prod/max/min along one dimension): within each thread, then across the threads of a warp
with ``__shfl_xor_sync`` butterflies. When the reduced dimension spans warps, each warp's partial results go
through shared memory and every thread combines the few partials of its outputs; only layouts that allow
neither (irregular maps) fall back to a scan of a shared-memory copy of the whole operand."""

from __future__ import annotations

import numpy as np

from anybit.cuda.emit.access import tile_index
from anybit.cuda.emit.scratch import register_scratch
from anybit.cuda.emitter import EmitContext, register_emitter
from anybit.cuda.registers import compute_ctype, get_value, set_value
from anybit.ir import ReduceInst


def _members(inst: ReduceInst, src_map, out_map, threads: int):
    """For each output local, the operand locals every thread combines into it, or None where they differ
    between threads (or an output has none). Compared for all threads and locals at once: the element by
    element loops took most of a decode kernel's code generation."""
    src, out = inst.operand.layout, inst.output.layout
    t = np.arange(threads)
    operand = src_map[t % src.num_threads]  # [threads, operand locals, rank]
    if inst.keepdim:
        operand = operand.copy()
        operand[..., inst.dim] = 0
    else:
        operand = np.delete(operand, inst.dim, axis=-1)
    output = out_map[t % out.num_threads]  # [threads, output locals, output rank]
    if operand.shape[-1] != output.shape[-1]:
        return None
    combines = (output[:, :, None, :] == operand[:, None, :, :]).all(axis=-1)  # [threads, output, operand]
    if not (combines == combines[:1]).all() or not combines[0].any(axis=1).all():
        return None
    return [tuple(int(i) for i in np.flatnonzero(row)) for row in combines[0]]


def _lane_masks(inst: ReduceInst, src_map, out_map, threads: int) -> list[int]:
    """The xor lane masks whose partners hold other coordinates along the reduced dimension only."""
    src, out = inst.operand.layout, inst.output.layout
    masks = []
    for bit in (1, 2, 4, 8, 16):
        if bit >= src.num_threads:
            break
        t = np.arange(threads)
        partner = t ^ bit
        a, b = src_map[t % src.num_threads], src_map[partner % src.num_threads]
        other_dims = [d for d in range(src.rank) if d != inst.dim]
        if (a[..., other_dims] == b[..., other_dims]).all() and not (a == b).all():
            if (out_map[t % out.num_threads] == out_map[partner % out.num_threads]).all():
                masks.append(bit)
    return masks


def _group(t: int, masks: list[int]) -> set[int]:
    group = {t}
    for bit in masks:
        group |= {g ^ bit for g in group}
    return group


def shuffle_plan(inst: ReduceInst, num_threads: int):
    """(per-output-local operand locals, xor lane masks) for the in-warp path, or None."""
    src, out = inst.operand.layout, inst.output.layout
    threads = max(src.num_threads, out.num_threads, num_threads)
    src_map, out_map = src.map_array(), out.map_array()
    locals_per_output = _members(inst, src_map, out_map, threads)
    if locals_per_output is None:
        return None
    masks = _lane_masks(inst, src_map, out_map, threads)
    # coverage: each output gathers every coordinate along dim exactly once
    for t in range(threads):
        group = _group(t, masks)
        for members in locals_per_output:
            coords = sorted(int(src_map[g % src.num_threads, i, inst.dim]) for g in group for i in members)
            if coords != list(range(src.shape[inst.dim])):
                return None
    return locals_per_output, masks


def warp_partials_plan(inst: ReduceInst):
    """(per-output-local operand locals, xor lane masks, partial coordinates) for reducing in each thread and
    warp first and then across warps, or None.

    After the butterflies, the lowest lane of each group of partners (the group's leader) holds the partial
    of its group's coordinates along the reduced dimension; it stores it where the operand's element at its
    first member's coordinate would go. The partial coordinates (the same for every output) are where a
    thread then finds every partial of an output.
    """
    src, out = inst.operand.layout, inst.output.layout
    threads = max(src.num_threads, out.num_threads)
    src_map, out_map = src.map_array(), out.map_array()
    locals_per_output = _members(inst, src_map, out_map, threads)
    if locals_per_output is None:
        return None
    masks = _lane_masks(inst, src_map, out_map, threads)
    lane_bits = sum(masks)
    extent = src.shape[inst.dim]
    partials = None
    for j, members in enumerate(locals_per_output):
        by_output: dict[tuple, dict[int, list[int]]] = {}
        for t in range(threads):
            leader = t & ~lane_bits
            target = tuple(int(x) for x in out_map[t % out.num_threads, j])
            first = int(src_map[leader % src.num_threads, members[0], inst.dim])
            coords = sorted(
                int(src_map[g % src.num_threads, i, inst.dim]) for g in _group(t, masks) for i in members
            )
            known = by_output.setdefault(target, {}).setdefault(first, coords)
            if known != coords:
                return None
        for groups in by_output.values():
            covered = sorted(c for coords in groups.values() for c in coords)
            if covered != list(range(extent)):
                return None  # a coordinate twice or never: not a partition into groups
            if partials is None:
                partials = sorted(groups)
            elif partials != sorted(groups):
                return None
    return locals_per_output, masks, partials


def _scratch(inst: ReduceInst) -> int:
    if shuffle_plan(inst, 0) is not None:
        return 0
    return inst.operand.layout.num_elements * max(8, inst.operand.dtype.nbits) // 8 * 2


register_scratch(ReduceInst)(_scratch)


def _combine(op: str, a: str, b: str) -> str:
    if op == "sum":
        return f"({a} + {b})"
    if op == "prod":
        return f"({a} * {b})"
    cmp = ">" if op == "max" else "<"
    return f"(({a} {cmp} {b} || {a} != {a}) ? {a} : {b})"


def _emit_thread_and_warp(
    ctx: EmitContext, inst: ReduceInst, ctype: str, source: str, members, masks
) -> None:
    """``p_`` = the thread's ``members`` combined, then combined across the partner lanes of ``masks``."""
    src = inst.operand
    ctx.emit(f"{ctype} p_ = {get_value(source, src.dtype, members[0])};")
    for i in members[1:]:
        ctx.emit(f"p_ = {_combine(inst.op, 'p_', f'({ctype}){get_value(source, src.dtype, i)}')};")
    for bit in masks:
        # The shuffle goes into its own variable: inside max/min's conditional expression only some lanes
        # would execute it, a divergent full-mask shuffle (undefined: wrong values or a hang on the H200).
        ctx.emit(f"{{ const {ctype} o_ = __shfl_xor_sync(0xffffffffu, p_, {bit});")
        ctx.emit(f"  p_ = {_combine(inst.op, 'p_', 'o_')}; }}")


def _row_major_strides(shape) -> list[int]:
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    return strides


@register_emitter(ReduceInst)
def emit_reduce(ctx: EmitContext, inst: ReduceInst) -> None:
    """See the module docstring."""
    src, out = inst.operand, inst.output
    ctype = compute_ctype(src.dtype)
    source, target = ctx.register(src), ctx.register(out)
    plan = shuffle_plan(inst, 0)
    if plan is not None:
        locals_per_output, masks = plan
        for j, members in enumerate(locals_per_output):
            with ctx.block(""):
                _emit_thread_and_warp(ctx, inst, ctype, source, members, masks)
                ctx.emit(*set_value(target, out.dtype, j, "p_"))
        return
    partial_plan = warp_partials_plan(inst)
    if partial_plan is not None:
        _reduce_across_warps(ctx, inst, ctype, source, target, partial_plan)
        return
    _reduce_through_shared(ctx, inst, ctype, source, target)


def _reduce_across_warps(
    ctx: EmitContext, inst: ReduceInst, ctype: str, source: str, target: str, plan
) -> None:
    """Each warp's partials (see :func:`warp_partials_plan`) through shared memory, then combined by every
    thread: a few shared loads an output instead of a scan of the whole dimension."""
    src = inst.operand
    locals_per_output, masks, partials = plan
    base, slot, strides = _scratch_row(ctx, inst, ctype)
    lane_bits = sum(masks)
    ctx.emit("__syncthreads();")
    for members in locals_per_output:
        with ctx.block(""):
            _emit_thread_and_warp(ctx, inst, ctype, source, members, masks)
            flat = _flat(tile_index(src.layout, (0,) * src.rank, members[0]), strides)
            store = f"*({ctype}*)({base} + ({ctx.expr(flat)}) * {slot}) = p_;"
            ctx.emit(f"if ((tid & {lane_bits}) == 0) {store}" if lane_bits else store)
    ctx.emit("__syncthreads();")
    _combine_from_shared(ctx, inst, ctype, target, partials)


def _reduce_through_shared(ctx: EmitContext, inst: ReduceInst, ctype: str, source: str, target: str) -> None:
    """Every element through shared memory and every thread's outputs combined from there (any layouts)."""
    src = inst.operand
    base, slot, strides = _scratch_row(ctx, inst, ctype)
    ctx.emit("__syncthreads();")
    for i in range(src.layout.local_size):
        flat = _flat(tile_index(src.layout, (0,) * src.rank, i), strides)
        ctx.emit(
            f"*({ctype}*)({base} + ({ctx.expr(flat)}) * {slot}) = ({ctype}){get_value(source, src.dtype, i)};"
        )
    ctx.emit("__syncthreads();")
    _combine_from_shared(ctx, inst, ctype, target, range(src.shape[inst.dim]))


def _scratch_row(ctx: EmitContext, inst: ReduceInst, ctype: str) -> tuple[str, int, list[int]]:
    """The scratch buffer's address, its slot size and the operand's row-major strides in it."""
    slot = 8 if ctype in ("double", "long long") else 4
    return f"(smem + {ctx.scratch_offsets[id(inst)]})", slot, _row_major_strides(inst.operand.shape)


def _flat(index, strides):
    return sum((c * s for c, s in zip(index, strides, strict=True)), 0)


def _combine_from_shared(ctx: EmitContext, inst: ReduceInst, ctype: str, target: str, coordinates) -> None:
    """Each output of the thread: the scratch values at ``coordinates`` along the reduced dimension."""
    out = inst.output
    base, _, strides = _scratch_row(ctx, inst, ctype)
    coordinates = list(coordinates)
    for j in range(out.layout.local_size):
        index = list(tile_index(out.layout, (0,) * out.rank, j))
        if not inst.keepdim:
            index.insert(inst.dim, 0)
        index[inst.dim] = 0
        with ctx.block(""):
            ctx.emit(f"const {ctype}* row_ = ({ctype}*)({base}) + ({ctx.expr(_flat(index, strides))});")
            ctx.emit(f"{ctype} p_ = row_[{coordinates[0] * strides[inst.dim]}];")
            for r in coordinates[1:]:
                ctx.emit(f"p_ = {_combine(inst.op, 'p_', f'row_[{r * strides[inst.dim]}]')};")
            ctx.emit(*set_value(target, out.dtype, j, "p_"))
    ctx.emit("__syncthreads();")
