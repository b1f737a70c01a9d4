"""Emitters that define tensors and scalars: global views, workspace, shared allocation/slices, registers."""

from __future__ import annotations

import math

from anybit.cuda.emitter import EmitContext, GlobalPlacement, SharedPlacement, register_emitter
from anybit.cuda.expressions import THREAD, scalar_ctype
from anybit.cuda.registers import constant_code, set_value, word_count
from anybit.ir import (
    AllocateGlobalInst,
    AllocateRegisterInst,
    AllocateSharedInst,
    AnnotateLayoutInst,
    AssignScalarInst,
    DeclareScalarInst,
    FreeSharedInst,
    GlobalViewInst,
    IndexInst,
    SharedSliceInst,
    Var,
)
from anybit.ir.expr import PointerType, gcd_divisor

#: Alignment assumed for a pointer parameter (reported in ``alignment_requirements`` when relied on).
POINTER_ALIGNMENT = 16
WORKSPACE_ALIGNMENT = 256


@register_emitter(GlobalViewInst)
def emit_global_view(ctx: EmitContext, inst: GlobalViewInst) -> None:
    """A global view is a byte pointer; a plain pointer parameter is assumed 16-byte aligned."""
    pointer = inst.pointer
    name = ctx.fresh("g_")
    ctx.emit(f"uint8_t* {name} = (uint8_t*)({ctx.expr(pointer)});")
    if isinstance(pointer, Var) and isinstance(pointer.type, PointerType):
        ctx.globals[inst.output] = GlobalPlacement(name, POINTER_ALIGNMENT, ctx.expr(pointer))
    else:
        ctx.globals[inst.output] = GlobalPlacement(name, 1, None)


@register_emitter(AllocateGlobalInst)
def emit_allocate_global(ctx: EmitContext, inst: AllocateGlobalInst) -> None:
    """Workspace tensors live at planned offsets of the hidden ``__workspace`` parameter."""
    name = ctx.fresh("g_")
    ctx.emit(f"uint8_t* {name} = __workspace + ({ctx.workspace_offsets[id(inst)]});")
    ctx.globals[inst.output] = GlobalPlacement(name, WORKSPACE_ALIGNMENT, None)


@register_emitter(AllocateSharedInst)
def emit_allocate_shared(ctx: EmitContext, inst: AllocateSharedInst) -> None:
    """Shared tensors sit at the planner's 128-byte aligned offsets of the dynamic shared base."""
    ctx.shared[inst.output] = SharedPlacement(str(ctx.shared_offsets[id(inst)]), 128)


@register_emitter(SharedSliceInst)
def emit_shared_slice(ctx: EmitContext, inst: SharedSliceInst) -> None:
    """A slice starts at the parent's offset of ``offsets`` (remaining dimensions at 0)."""
    parent = ctx.shared[inst.tensor]
    index = tuple(inst.offsets) + (0,) * (inst.tensor.rank - len(inst.offsets))
    element = inst.tensor.layout.offset(index)
    bits = inst.tensor.dtype.nbits
    divisor = gcd_divisor(element) * bits
    alignment = math.gcd(parent.alignment, (divisor // 8) & -(divisor // 8)) if divisor % 8 == 0 else 1
    name = ctx.fresh("s_")
    ctx.emit(f"const int {name} = {parent.offset} + (int)(((long long)({ctx.expr(element)}) * {bits}) / 8);")
    ctx.shared[inst.output] = SharedPlacement(name, max(1, alignment))


@register_emitter(FreeSharedInst)
def emit_free_shared(ctx: EmitContext, inst: FreeSharedInst) -> None:
    """Freeing is a planning-time event: no code."""


@register_emitter(AllocateRegisterInst)
def emit_allocate_register(ctx: EmitContext, inst: AllocateRegisterInst) -> None:
    """Fill the word array with the packed constant (words computed at generation time)."""
    name = ctx.register(inst.output)
    if inst.init is None:
        return
    dtype, layout = inst.output.dtype, inst.output.layout
    code = constant_code(inst.init, dtype)
    bits = 0
    for i in range(layout.local_size):
        bits |= code << (i * dtype.nbits)
    for w in range(word_count(dtype, layout.local_size)):
        ctx.emit(f"{name}[{w}] = {hex((bits >> (32 * w)) & 0xFFFFFFFF)}u;")


@register_emitter(IndexInst)
def emit_index(ctx: EmitContext, inst: IndexInst) -> None:
    """Each local element gets the ``dim`` coordinate of the logical index the layout maps it to."""
    name = ctx.register(inst.output)
    dtype, layout = inst.output.dtype, inst.output.layout
    for i in range(layout.local_size):
        coordinate = layout.logical(THREAD, i)[inst.dim]
        for line in set_value(name, dtype, i, ctx.expr(coordinate)):
            ctx.emit(line)


@register_emitter(DeclareScalarInst)
def emit_declare_scalar(ctx: EmitContext, inst: DeclareScalarInst) -> None:
    """``T name = init;`` (a C variable in the current scope)."""
    value = ctx.expr(inst.init)
    name = ctx.printer.bind(inst.var)
    ctx.emit(f"{scalar_ctype(inst.var.dtype)} {name} = {value};")


@register_emitter(AssignScalarInst)
def emit_assign_scalar(ctx: EmitContext, inst: AssignScalarInst) -> None:
    """``name = value;``."""
    ctx.emit(f"{ctx.expr(inst.var)} = {ctx.expr(inst.value)};")


@register_emitter(AnnotateLayoutInst)
def emit_annotate_layout(ctx: EmitContext, inst: AnnotateLayoutInst) -> None:
    """Consumed by layout inference: no code."""
