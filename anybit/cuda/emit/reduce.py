"""``reduce`` (sum/prod/max/min along one dimension): within each thread, then across the threads of a warp
with ``__shfl_xor_sync`` butterflies; when the reduced dimension spans warps (or the layouts do not allow the
butterfly), through a shared-memory scratch copy of the operand."""

from __future__ import annotations

import numpy as np

from anybit.cuda.emit.access import tile_index
from anybit.cuda.emit.scratch import register_scratch
from anybit.cuda.emitter import EmitContext, register_emitter
from anybit.cuda.registers import compute_ctype, get_value, set_value
from anybit.ir import ReduceInst


def _reduced(index, dim: int, keepdim: bool) -> tuple:
    index = list(index)
    if keepdim:
        index[dim] = 0
    else:
        del index[dim]
    return tuple(index)


def shuffle_plan(inst: ReduceInst, num_threads: int):
    """(per-output-local operand locals, xor lane masks) for the in-warp path, or None."""
    src, out = inst.operand.layout, inst.output.layout
    threads = max(src.num_threads, out.num_threads, num_threads)
    src_map, out_map = src.map_array(), out.map_array()
    locals_per_output = []
    for j in range(out.local_size):
        chosen = None
        for t in range(threads):
            target = tuple(int(x) for x in out_map[t % out.num_threads, j])
            members = tuple(
                i
                for i in range(src.local_size)
                if _reduced(src_map[t % src.num_threads, i], inst.dim, inst.keepdim) == target
            )
            if chosen is None:
                chosen = members
            elif chosen != members:
                return None
        if not chosen:
            return None
        locals_per_output.append(chosen)
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
    # coverage: each output gathers every coordinate along dim exactly once
    for t in range(threads):
        group = {t}
        for bit in masks:
            group |= {g ^ bit for g in group}
        for members in locals_per_output:
            coords = sorted(int(src_map[g % src.num_threads, i, inst.dim]) for g in group for i in members)
            if coords != list(range(src.shape[inst.dim])):
                return None
    return locals_per_output, masks


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
                ctx.emit(f"{ctype} p_ = {get_value(source, src.dtype, members[0])};")
                for i in members[1:]:
                    ctx.emit(
                        f"p_ = {_combine(inst.op, 'p_', f'({ctype}){get_value(source, src.dtype, i)}')};"
                    )
                for bit in masks:
                    # The shuffle goes into its own variable: inside max/min's conditional expression only
                    # some lanes would execute it, a divergent full-mask shuffle (undefined: wrong values
                    # or a hang on the H200).
                    ctx.emit(f"{{ const {ctype} o_ = __shfl_xor_sync(0xffffffffu, p_, {bit});")
                    ctx.emit(f"  p_ = {_combine(inst.op, 'p_', 'o_')}; }}")
                ctx.emit(*set_value(target, out.dtype, j, "p_"))
        return
    _reduce_through_shared(ctx, inst, ctype, source, target)


def _reduce_through_shared(ctx: EmitContext, inst: ReduceInst, ctype: str, source: str, target: str) -> None:
    src, out = inst.operand, inst.output
    slot = 8 if ctype in ("double", "long long") else 4
    base = f"(smem + {ctx.scratch_offsets[id(inst)]})"
    strides = [1] * src.rank
    for d in range(src.rank - 2, -1, -1):
        strides[d] = strides[d + 1] * src.shape[d + 1]
    ctx.emit("__syncthreads();")
    for i in range(src.layout.local_size):
        index = tile_index(src.layout, (0,) * src.rank, i)
        flat = sum((c * s for c, s in zip(index, strides, strict=True)), 0)
        ctx.emit(
            f"*({ctype}*)({base} + ({ctx.expr(flat)}) * {slot}) = ({ctype}){get_value(source, src.dtype, i)};"
        )
    ctx.emit("__syncthreads();")
    for j in range(out.layout.local_size):
        index = list(tile_index(out.layout, (0,) * out.rank, j))
        if not inst.keepdim:
            index.insert(inst.dim, 0)
        index[inst.dim] = 0
        flat = sum((c * s for c, s in zip(index, strides, strict=True)), 0)
        with ctx.block(""):
            ctx.emit(f"const {ctype}* row_ = ({ctype}*)({base}) + ({ctx.expr(flat)});")
            ctx.emit(f"{ctype} p_ = row_[0];")
            for k in range(1, src.shape[inst.dim]):
                ctx.emit(f"p_ = {_combine(inst.op, 'p_', f'row_[{k * strides[inst.dim]}]')};")
            ctx.emit(*set_value(target, out.dtype, j, "p_"))
    ctx.emit("__syncthreads();")
