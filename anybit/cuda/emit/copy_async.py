"""``copy_async``: global → shared with ``cp.async`` (16 B ``.cg``; 8/4 B ``.ca``), zero-filling the
out-of-bounds part.

The tile is cut into chunks along the dimension that is contiguous in both memories; chunk ``c`` goes to
thread ``c % T``. The chunk size is the largest of 16/8/4 bytes allowed by the proven alignment of the
global offsets, the shared addresses (checked for every chunk) and the bounds (a chunk is entirely inside
or entirely outside). When no chunk size applies, elements are copied synchronously (correct, slower).
"""

from __future__ import annotations

import math

import numpy as np

from anybit.cuda.emit.access import add, checked_dims, in_bounds, load_element, store_element
from anybit.cuda.emit.memory import shared_base
from anybit.cuda.emitter import EmitContext, register_emitter
from anybit.cuda.expressions import THREAD
from anybit.ir import CopyAsyncInst
from anybit.ir.expr import as_expr, binary, constant_value, gcd_divisor, maximum, minimum

CHUNK_BYTES = (16, 8, 4)


def _chunk_elements(ctx: EmitContext, inst: CopyAsyncInst, dims) -> tuple[int, int] | None:
    """(dim, elements per chunk) of the widest legal chunk, or None."""
    dest, tensor = inst.destination, inst.tensor
    n = dest.dtype.nbits
    lead = tensor.rank - dest.rank  # the tile covers the trailing dimensions of the tensor
    strides = tensor.layout.strides[lead:]
    offsets = tuple(inst.offsets)[lead:]
    placement = ctx.globals[tensor]
    fixed = 1 << 30
    for k in range(lead):
        fixed = math.gcd(fixed, gcd_divisor(as_expr(inst.offsets[k]) * tensor.layout.strides[k]))
    for dim in reversed(range(dest.rank)):
        if constant_value(strides[dim]) != 1 or dim + lead in inst.clamp:
            continue  # a chunk along a clamped dimension would clamp only its first element
        for chunk in CHUNK_BYTES:
            if (chunk * 8) % n or chunk > placement.alignment or ctx.shared[dest].alignment % chunk:
                continue
            count = chunk * 8 // n
            if dest.shape[dim] % count:
                continue
            divisor = math.gcd(gcd_divisor(offsets[dim]), fixed)
            for k, stride in enumerate(strides):
                if k != dim:
                    value = stride if dest.shape[k] > 1 else as_expr(offsets[k]) * stride
                    divisor = math.gcd(divisor, gcd_divisor(value))
            if divisor % count:
                continue
            if dim + lead in dims and gcd_divisor(tensor.shape[dim + lead]) % count:
                continue
            if _shared_chunks_ok(dest, dim, count):
                return dim, count
    return None


def _shared_chunks_ok(dest, dim: int, count: int) -> bool:
    offsets = np.asarray(dest.layout.offsets_array(), dtype=np.int64)
    moved = np.moveaxis(offsets, dim, -1)
    chunks = moved.reshape(*moved.shape[:-1], -1, count)
    if not (np.diff(chunks, axis=-1) == 1).all():
        return False
    return not ((chunks[..., 0] * dest.dtype.nbits) % (count * dest.dtype.nbits)).any()


def _chunk_index(shape, dim: int, count: int, chunk):
    """Logical index of the first element of chunk number ``chunk`` (row-major over the chunk grid)."""
    grid = list(shape)
    grid[dim] //= count
    index = []
    stride = 1
    for extent in reversed(grid):
        index.append(chunk // stride % extent if stride > 1 else chunk % extent)
        stride *= extent
    index = index[::-1]
    index[dim] = index[dim] * count
    return tuple(index)


def _clamped(ctx: EmitContext, index: tuple, shape, dims) -> tuple:
    """``index`` with the entries of ``dims`` clamped into [0, extent − 1] (the low end only where the
    index is not provably non-negative)."""
    index = list(index)
    for d in dims:
        clamped = minimum(index[d], binary("sub", shape[d], 1))
        index[d] = clamped if ctx.printer.is_nonnegative(index[d]) else maximum(clamped, 0)
    return tuple(index)


@register_emitter(CopyAsyncInst)
def emit_copy_async(ctx: EmitContext, inst: CopyAsyncInst) -> None:
    """See the module docstring."""
    dest, tensor = inst.destination, inst.tensor
    n = dest.dtype.nbits
    threads = ctx.num_threads
    # Dimensions the program promised in bounds (in_bounds) get no check and no zero-fill; clamped ones
    # neither: their index is clamped into the tensor instead.
    unchecked = set(inst.in_bounds) | set(inst.clamp)
    dims = [d for d in checked_dims(tensor.shape, inst.offsets, dest.shape) if d not in unchecked]
    choice = _chunk_elements(ctx, inst, dims)
    count = choice[1] if choice else 1
    dim = choice[0] if choice else dest.rank - 1
    total = math.prod(dest.shape) // count
    placement = ctx.globals[tensor]
    policy = None
    if inst.evict in ("evict_first", "evict_last") and choice:
        policy = ctx.fresh("pol")
        ctx.emit(f"uint64_t {policy};")
        ctx.emit(f'asm volatile("createpolicy.fractional.L2::{inst.evict}.b64 %0, 1.0;" : "=l"({policy}));')
    if choice:
        ctx.require_alignment(placement, count * n // 8)
    if choice and not dims and not inst.clamp and _contiguous_tile(dest, tensor):
        _emit_contiguous(ctx, inst, count, total, policy)
        return
    for k in range(-(-total // threads)):
        chunk = THREAD + k * threads
        index = _chunk_index(dest.shape, dim, count, chunk)
        partial = (k + 1) * threads > total
        # A partial round of chunks is predicated inside the asm rather than branched around it.
        guard = f"if (tid + {k * threads} < {total})" if partial and not choice else ""
        active = f"(tid + {k * threads} < {total})" if partial else "true"
        with ctx.block(guard):
            lead = tensor.rank - dest.rank
            source_index = tuple(inst.offsets[:lead]) + tuple(
                add(o, c) for o, c in zip(inst.offsets[lead:], index, strict=True)
            )
            source_index = _clamped(ctx, source_index, tensor.shape, inst.clamp)
            offset_expr = tensor.layout.offset(source_index)
            global_offset = ctx.expr(offset_expr)
            # A proven non-negative offset widens by zero-extension: no sign extension, and the select of
            # the offset stays 32-bit (two instructions fewer per copy).
            widened = (
                f"(unsigned long long)(unsigned)({global_offset})"
                if ctx.printer.is_nonnegative(offset_expr)
                else f"(long long)({global_offset})"
            )
            shared_offset = ctx.expr(dest.layout.offset(index))
            conditions = in_bounds(ctx, source_index, tensor.shape, dims)
            inside = " && ".join(conditions) if conditions else "true"
            if choice:
                nbytes = count * n // 8
                cache = "cg" if nbytes == 16 else "ca"
                dst = f"ab_smem_addr({shared_base(ctx, dest)} + ((long long)({shared_offset}) * {n}) / 8)"
                ctx.emit(f"int z_ = ({inside}) ? {nbytes} : 0;")
                # The base itself when nothing is read: one select of the offset, not of the pointer.
                ctx.emit(f"const uint8_t* src_ = {placement.pointer} + (z_ ? ({widened} * {n}) / 8 : 0LL);")
                # ptxas 13.0 (NVRTC 13.0, the H200's) mis-encodes a cache-hinted cp.async whose chunks do
                # not cover every thread, branched or predicated: LDGSTS with an odd uniform descriptor
                # register, "illegal instruction". The hint is only a hint: partial rounds go without it.
                _emit_cp_async(ctx, cache, nbytes, dst, policy if not partial else None, active)
            else:
                ctx.emit("uint32_t e_[2] = {0u, 0u};")
                with ctx.block(f"if ({inside})"):
                    load_element(ctx, "e_", 0, n, placement.pointer, global_offset)
                store_element(ctx, "e_", 0, n, shared_base(ctx, dest), shared_offset)


def _contiguous_tile(dest, tensor) -> bool:
    """Whether the tile is one run of elements in global memory and in ``dest`` (row-major, unswizzled), so
    that copy round k of thread t moves the elements at (k·threads + t)·count of both: one base address per
    thread and constant steps instead of per-round index arithmetic."""
    from anybit.ir.bulk import bulk_tile_problem

    problem = bulk_tile_problem(dest, tensor)
    return problem is None or problem.startswith("expected a whole number")


def _emit_contiguous(ctx: EmitContext, inst: CopyAsyncInst, count: int, total: int, policy) -> None:
    """The copies of a contiguous tile (:func:`_contiguous_tile`): every chunk inside the tensor (no bounds
    dimension is checked), thread t's round k at a constant byte step from its first."""
    dest, tensor = inst.destination, inst.tensor
    n, threads = dest.dtype.nbits, ctx.num_threads
    nbytes = count * n // 8
    cache = "cg" if nbytes == 16 else "ca"
    placement = ctx.globals[tensor]
    origin = ctx.expr(tensor.layout.offset(tuple(inst.offsets)))
    with ctx.block(""):
        ctx.emit(
            f"const uint8_t* src0_ = {placement.pointer} + ((long long)({origin}) * {n}) / 8 "
            f"+ (long long)tid * {nbytes};"
        )
        base = shared_base(ctx, dest)
        ctx.emit(f"const uint32_t dst0_ = ab_smem_addr({base}) + (uint32_t)tid * {nbytes}u;")
        for k in range(-(-total // threads)):
            partial = (k + 1) * threads > total
            active = f"(tid + {k * threads} < {total})" if partial else "true"
            with ctx.block(""):
                ctx.emit(f"const uint8_t* src_ = src0_ + {k * threads * nbytes}LL;")
                ctx.emit(f"const int z_ = {nbytes};")
                dst = f"dst0_ + {k * threads * nbytes}u"
                _emit_cp_async(ctx, cache, nbytes, dst, policy if not partial else None, active)


def _emit_cp_async(
    ctx: EmitContext, cache: str, nbytes: int, dst: str, policy: str | None, active: str
) -> None:
    """One ``cp.async`` of ``nbytes`` from ``src_`` (``z_`` bytes read, the rest zero-filled), executed by the
    threads where ``active`` holds (a predicate, not a branch; see the caller)."""
    hint = ".L2::cache_hint" if policy else ""
    operands = f'"r"({dst}), "l"(src_), "r"(z_)' + (f', "l"({policy})' if policy else "")
    policy_operand = ", %3" if policy else ""
    copy = f"cp.async.{cache}.shared.global{hint} [%0], [%1], {nbytes}, %2{policy_operand};"
    if active == "true":
        ctx.emit(f'asm volatile("{copy}" :: {operands} : "memory");')
        return
    predicate = "%4" if policy else "%3"
    ctx.emit(
        f'asm volatile("{{ .reg .pred p_; setp.ne.b32 p_, {predicate}, 0; @p_ {copy} }}" '
        f':: {operands}, "r"((int){active}) : "memory");'
    )
