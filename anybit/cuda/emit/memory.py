"""Loads and stores between registers and global/shared memory, vectorized (see ``anybit.cuda.vectorize``)."""

from __future__ import annotations

from anybit.cuda import select
from anybit.cuda.emit.access import (
    checked_dims,
    in_bounds,
    load_element,
    load_piece,
    same_layout_mask,
    store_element,
    store_piece,
    tile_index,
)
from anybit.cuda.emitter import CodegenError, EmitContext, register_emitter, where
from anybit.cuda.expressions import THREAD
from anybit.cuda.registers import constant_code, get_value, read_bits, write_bits
from anybit.cuda.vectorize import AccessPlan, affine_plan, exhaustive_plan, make_plan
from anybit.ir import (
    AtomicAddGlobalInst,
    LoadGlobalInst,
    LoadScalarInst,
    LoadSharedInst,
    StoreGlobalInst,
    StoreSharedInst,
)
from anybit.ir.expr import constant_value, gcd_divisor
from anybit.layout.register import RegisterLayout


def _global_plan(ctx: EmitContext, layout: RegisterLayout, tensor, offsets, dims) -> AccessPlan:
    placement = ctx.globals[tensor]
    plan = affine_plan(layout, tensor.dtype, tensor.layout.strides, offsets, placement.alignment)
    if plan.dim is not None and plan.dim in dims:
        # A group is checked by its first and last element: fine whatever the shape's divisibility.
        pass
    ctx.require_alignment(placement, plan.piece_bytes if plan.groups[0].pieces else 1)
    return plan


def _all_or_nothing(plan: AccessPlan, group, first_index, shape, dims, mask) -> bool:
    """Whether the group is entirely inside or entirely outside the tensor (no mask): its start along the
    vectorized dimension and that dimension's extent are multiples of the group's length (divisibility facts
    included), and along every other dimension its elements share one index."""
    if mask is not None or plan.dim is None or plan.dim not in dims or group.count == 1:
        return mask is None and group.count == 1
    return (
        gcd_divisor(shape[plan.dim]) % group.count == 0
        and gcd_divisor(first_index[plan.dim]) % group.count == 0
    )


def _mask_conditions(mask_array: str | None, first: int, count: int) -> list[str]:
    if mask_array is None:
        return []
    from anybit.dtypes import boolean

    return [get_value(mask_array, boolean, first + j) for j in range(count)]


def _element_offset(ctx: EmitContext, tensor, index) -> str:
    return ctx.expr(tensor.layout.offset(index))


@register_emitter(LoadGlobalInst)
def emit_load_global(ctx: EmitContext, inst: LoadGlobalInst) -> None:
    """Vectorized global loads; out-of-bounds or masked elements read ``other``."""
    out, tensor = inst.output, inst.tensor
    layout, dtype, n = out.layout, out.dtype, out.dtype.nbits
    same_layout_mask(inst, inst.mask, out)
    array = ctx.register(out)
    mask = ctx.register(inst.mask) if inst.mask is not None else None
    # Dimensions the program promised in bounds (in_bounds) get no check.
    dims = [d for d in checked_dims(tensor.shape, inst.offsets, out.shape) if d not in inst.in_bounds]
    plan = _global_plan(ctx, layout, tensor, inst.offsets, dims)
    base = ctx.globals[tensor].pointer
    other = constant_code(inst.other, dtype)
    for group in plan.groups:
        first_index = tile_index(layout, inst.offsets, group.first_local)
        last_index = tile_index(layout, inst.offsets, group.first_local + group.count - 1)
        whole = _all_or_nothing(plan, group, first_index, tensor.shape, dims, mask)
        guard = in_bounds(ctx, first_index, tensor.shape, dims)
        if not whole:
            guard += in_bounds(ctx, last_index, tensor.shape, dims)
        guard += _mask_conditions(mask, group.first_local, group.count)
        offset = _element_offset(ctx, tensor, first_index)
        with ctx.block(""):
            if group.pieces:
                address = ctx.fresh("a")
                ctx.emit(f"const uint8_t* {address} = {base} + ((long long)({offset}) * {n}) / 8;")
            if guard:
                ctx.emit(f"if ({' && '.join(dict.fromkeys(guard))}) {{")
            _load_group(ctx, array, group, n, base, offset, address if group.pieces else None)
            if guard:
                ctx.emit("} else {")
                if whole:  # the whole group is outside: every element reads `other`
                    _fill_other(ctx, array, group, n, other)
                else:
                    _load_elements_checked(ctx, inst, array, group, base, dims, mask, other)
                ctx.emit("}")


@register_emitter(LoadScalarInst)
def emit_load_scalar(ctx: EmitContext, inst: LoadScalarInst) -> None:
    """Every thread reads the element (a volatile load: the value may be what a prior grid wrote)."""
    tensor = inst.tensor
    placement = ctx.globals[tensor]
    ctx.require_alignment(placement, tensor.dtype.nbits // 8)
    offset = _element_offset(ctx, tensor, tuple(inst.index))
    ctype = "long long" if tensor.dtype.nbits == 64 else "int"
    name = ctx.printer.bind(inst.var)
    ctx.emit(
        f"int {name} = (int)*(const volatile {ctype}*)({placement.pointer} + "
        f"(long long)({offset}) * {tensor.dtype.nbits // 8});"
    )


def _load_group(ctx, array, group, n, base, offset, address) -> None:
    if group.pieces:
        for piece in group.pieces:
            load_piece(ctx, array, piece, f"{address} + {piece.byte_delta}")
    else:
        load_element(ctx, array, group.first_local, n, base, offset)


def _load_elements_checked(ctx, inst, array, group, base, dims, mask, other) -> None:
    out, tensor = inst.output, inst.tensor
    n = out.dtype.nbits
    for j in range(group.count):
        i = group.first_local + j
        index = tile_index(out.layout, inst.offsets, i)
        conditions = in_bounds(ctx, index, tensor.shape, dims) + _mask_conditions(mask, i, 1)
        with ctx.block(f"if ({' && '.join(conditions)})"):
            load_element(ctx, array, i, n, base, _element_offset(ctx, tensor, index))
        with ctx.block("else"):
            _write_other(ctx, array, i, n, other)


def _fill_other(ctx, array, group, n, other) -> None:
    for j in range(group.count):
        _write_other(ctx, array, group.first_local + j, n, other)


def _write_other(ctx, array, i, n, other) -> None:
    if n == 64:
        ctx.emit(f"{array}[{2 * i}] = {hex(other & 0xFFFFFFFF)}u;")
        ctx.emit(f"{array}[{2 * i + 1}] = {hex(other >> 32)}u;")
    else:
        ctx.emit(*write_bits(array, i * n, n, f"{hex(other)}u"))


def _owner_condition(ctx: EmitContext, layout: RegisterLayout, i: int) -> list[str]:
    """For replicated layouts: only the lowest owner thread performs a side effect."""
    if not layout.is_replicated:
        return []
    lowest = layout.thread_of(layout.logical(THREAD, i))
    return [f"tid % {layout.num_threads} == {ctx.expr(lowest)}"]


@register_emitter(StoreGlobalInst)
def emit_store_global(ctx: EmitContext, inst: StoreGlobalInst) -> None:
    """Vectorized global stores; out-of-bounds or masked elements are skipped."""
    value, tensor = inst.value, inst.tensor
    layout, n = value.layout, value.dtype.nbits
    same_layout_mask(inst, inst.mask, value)
    array = ctx.register(value)
    mask = ctx.register(inst.mask) if inst.mask is not None else None
    dims = checked_dims(tensor.shape, inst.offsets, value.shape)
    plan = _global_plan(ctx, layout, tensor, inst.offsets, dims)
    base = ctx.globals[tensor].pointer
    for group in plan.groups:
        first_index = tile_index(layout, inst.offsets, group.first_local)
        last_index = tile_index(layout, inst.offsets, group.first_local + group.count - 1)
        # Replicated values: the per-element fallback also picks each element's owner, so keep it.
        whole = not layout.is_replicated and _all_or_nothing(
            plan, group, first_index, tensor.shape, dims, mask
        )
        guard = in_bounds(ctx, first_index, tensor.shape, dims)
        if not whole:
            guard += in_bounds(ctx, last_index, tensor.shape, dims)
        guard += _mask_conditions(mask, group.first_local, group.count)
        guard += _owner_condition(ctx, layout, group.first_local)
        offset = _element_offset(ctx, tensor, first_index)
        with ctx.block(""):
            if guard:
                ctx.emit(f"if ({' && '.join(dict.fromkeys(guard))}) {{")
            if group.pieces:
                address = ctx.fresh("a")
                ctx.emit(f"uint8_t* {address} = {base} + ((long long)({offset}) * {n}) / 8;")
                for piece in group.pieces:
                    store_piece(ctx, array, piece, f"{address} + {piece.byte_delta}")
            else:
                store_element(ctx, array, group.first_local, n, base, offset)
            if guard and group.count > 1 and not whole:
                ctx.emit("} else {")
                for j in range(group.count):
                    i = group.first_local + j
                    index = tile_index(layout, inst.offsets, i)
                    conditions = in_bounds(ctx, index, tensor.shape, dims) + _mask_conditions(mask, i, 1)
                    conditions += _owner_condition(ctx, layout, i)
                    with ctx.block(f"if ({' && '.join(conditions) or 'true'})"):
                        store_element(ctx, array, i, n, base, _element_offset(ctx, tensor, index))
            if guard:
                ctx.emit("}")


_ATOMIC_TYPES = {
    "float32": "float",
    "int32": "int",
    "uint32": "unsigned",
    "float16": "__half",
    "bfloat16": "__nv_bfloat16",
    "float64": "double",
}


@register_emitter(AtomicAddGlobalInst)
def emit_atomic_add_global(ctx: EmitContext, inst: AtomicAddGlobalInst) -> None:
    """``atomicAdd`` per element (f32, i32, u32, f64, f16, bf16); f16/bf16 pairs use the x2 form."""
    value, tensor = inst.value, inst.tensor
    dtype, layout = value.dtype, value.layout
    if dtype.name not in _ATOMIC_TYPES:
        raise CodegenError(
            f"atomic_add{where(inst)}: expected float32, float16, bfloat16, float64, int32 or uint32 data, "
            f"got {dtype.name}"
        )
    same_layout_mask(inst, inst.mask, value)
    array = ctx.register(value)
    mask = ctx.register(inst.mask) if inst.mask is not None else None
    dims = checked_dims(tensor.shape, inst.offsets, value.shape)
    base = ctx.globals[tensor].pointer
    ctype = _ATOMIC_TYPES[dtype.name]
    plan = _global_plan(ctx, layout, tensor, inst.offsets, dims)
    pairs = dtype.nbits == 16 and plan.count % 2 == 0 and plan.piece_bytes >= 4
    i = 0
    while i < layout.local_size:
        width = 2 if pairs else 1
        first, last = tile_index(layout, inst.offsets, i), tile_index(layout, inst.offsets, i + width - 1)
        conditions = in_bounds(ctx, first, tensor.shape, dims) + in_bounds(ctx, last, tensor.shape, dims)
        conditions += _mask_conditions(mask, i, width) + _owner_condition(ctx, layout, i)
        offset = _element_offset(ctx, tensor, first)
        with ctx.block(f"if ({' && '.join(dict.fromkeys(conditions)) or 'true'})"):
            address = f"{base} + (long long)({offset}) * {dtype.nbits // 8}"
            if pairs:
                vector = "__half2" if dtype.name == "float16" else "__nv_bfloat162"
                bits = read_bits(array, i * 16, 32)
                ctx.emit(f"uint32_t w_ = {bits};")
                ctx.emit(f"atomicAdd(({vector}*)({address}), *reinterpret_cast<{vector}*>(&w_));")
            elif dtype.nbits == 16:
                bits = read_bits(array, i * 16, 16)
                ctx.emit(f"unsigned short h_ = (unsigned short){bits};")
                ctx.emit(f"atomicAdd(({ctype}*)({address}), *reinterpret_cast<{ctype}*>(&h_));")
            else:
                ctx.emit(f"atomicAdd(({ctype}*)({address}), ({ctype}){get_value(array, dtype, i)});")
        i += width


# ------------------------------------------------------------------------------------------------- shared
def _shared_plan(layout: RegisterLayout, tensor, offsets, alignment: int) -> AccessPlan:
    constants = [constant_value(o) for o in offsets]
    if all(isinstance(c, int) for c in constants):
        return exhaustive_plan(layout, tensor.dtype, tensor.layout, tuple(constants), alignment)
    if not tensor.layout.swizzles:
        return affine_plan(layout, tensor.dtype, tensor.layout.strides, offsets, alignment)
    return make_plan(layout.local_size, tensor.dtype, None, 1, alignment)


def shared_base(ctx: EmitContext, tensor) -> str:
    """C byte pointer to the start of a shared tensor."""
    return f"(smem + {ctx.shared[tensor].offset})"


@register_emitter(LoadSharedInst)
def emit_load_shared(ctx: EmitContext, inst: LoadSharedInst) -> None:
    """``ldmatrix`` when the layouts allow (see ``anybit.cuda.select``), else vectorized ``ld.shared``; from
    another block of the cluster (``rank``), vectorized loads through the generic address of its copy."""
    out, tensor = inst.output, inst.tensor
    array = ctx.register(out)
    placement = ctx.shared[tensor]
    if inst.rank is not None:
        base = ctx.fresh("remote")
        ctx.emit(
            f"uint8_t* {base} = (uint8_t*)__cluster_map_shared_rank((void*){shared_base(ctx, tensor)}, "
            f"(unsigned)({ctx.expr(inst.rank)}));"
        )
        plan = _shared_plan(out.layout, tensor, inst.offsets, placement.alignment)
        _shared_groups(ctx, plan, out.layout, tensor, inst.offsets, array, store=False, base=base)
        return
    choice = select.ldmatrix_plan(out.layout, tensor, inst.offsets, placement.alignment)
    if choice is not None:
        select.emit_ldmatrix(ctx, choice, array, out.layout, tensor, inst.offsets, store=False)
        return
    plan = _shared_plan(out.layout, tensor, inst.offsets, placement.alignment)
    _shared_groups(ctx, plan, out.layout, tensor, inst.offsets, array, store=False)


@register_emitter(StoreSharedInst)
def emit_store_shared(ctx: EmitContext, inst: StoreSharedInst) -> None:
    """``stmatrix`` on sm_90 when the layouts allow, else vectorized ``st.shared``."""
    value, tensor = inst.value, inst.tensor
    array = ctx.register(value)
    placement = ctx.shared[tensor]
    if ctx.arch >= 90 and not value.layout.is_replicated:
        choice = select.ldmatrix_plan(value.layout, tensor, inst.offsets, placement.alignment)
        if choice is not None:
            select.emit_ldmatrix(ctx, choice, array, value.layout, tensor, inst.offsets, store=True)
            return
    plan = _shared_plan(value.layout, tensor, inst.offsets, placement.alignment)
    _shared_groups(ctx, plan, value.layout, tensor, inst.offsets, array, store=True)


def _shared_groups(
    ctx, plan: AccessPlan, layout, tensor, offsets, array: str, *, store: bool, base: str | None = None
) -> None:
    n = tensor.dtype.nbits
    base = base or shared_base(ctx, tensor)
    for group in plan.groups:
        index = tile_index(layout, offsets, group.first_local)
        offset = ctx.expr(tensor.layout.offset(index))
        owner = _owner_condition(ctx, layout, group.first_local) if store else []
        with ctx.block(f"if ({owner[0]})" if owner else ""):
            if not group.pieces:
                fn = store_element if store else load_element
                fn(ctx, array, group.first_local, n, base, offset)
                continue
            address = ctx.fresh("a")
            ctx.emit(f"uint8_t* {address} = {base} + ((long long)({offset}) * {n}) / 8;")
            for piece in group.pieces:
                fn = store_piece if store else load_piece
                fn(ctx, array, piece, f"{address} + {piece.byte_delta}")
