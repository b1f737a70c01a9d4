"""Handlers that define tensors and scalars: global views and allocations, shared allocations and slices,
register allocation, scalar declaration and assignment, and layout annotations (no run-time effect)."""

from __future__ import annotations

import math

import numpy as np

from anybit import ir
from anybit.dtypes import encode
from anybit.interp.errors import InterpreterError
from anybit.interp.handlers.registry import register
from anybit.interp.memory import GlobalBinding, Pointer, SharedBinding, SharedRegion, storage_bits
from anybit.interp.registers import layout_map, storage_shape
from anybit.interp.state import BlockState
from anybit.interp.values import constant_codes


def _global_binding(block: BlockState, tensor, buffer, bit_offset: int) -> GlobalBinding:
    shape = block.int_scalars(tensor.shape)
    strides = block.int_scalars(tensor.layout.strides)
    binding = GlobalBinding(tensor.name, buffer, bit_offset, tensor.dtype, shape, strides)
    if all(extent > 0 for extent in shape):
        corners = np.array([[0] * len(shape), [extent - 1 for extent in shape]], dtype=np.int64)
        binding.check_positions(binding.bit_positions(corners), "the view")
    return binding


@register(ir.GlobalViewInst)
def global_view(block: BlockState, inst: ir.GlobalViewInst) -> None:
    pointer = block.scalar(inst.pointer)
    if not isinstance(pointer, Pointer):
        raise InterpreterError(f"expected a pointer for the view {inst.output.name}, got {pointer!r}")
    block.global_tensors[inst.output] = _global_binding(
        block, inst.output, pointer.buffer, pointer.bit_offset
    )


@register(ir.AllocateGlobalInst)
def allocate_global(block: BlockState, inst: ir.AllocateGlobalInst) -> None:
    tensor = inst.output
    shape = block.int_scalars(tensor.shape)
    nbytes = -(-math.prod(shape) * storage_bits(tensor.dtype) // 8)
    buffer = block.launch.allocate_workspace(
        inst, tensor.name, nbytes, inst.requires_clean or inst.kept_clean
    )
    block.global_tensors[tensor] = _global_binding(block, tensor, buffer, 0)


@register(ir.AllocateSharedInst)
def allocate_shared(block: BlockState, inst: ir.AllocateSharedInst) -> None:
    tensor = inst.output
    layout = tensor.layout
    nbytes = -(-layout.size * storage_bits(tensor.dtype) // 8)
    region = SharedRegion.allocate(tensor.name, nbytes)
    offsets = np.asarray(layout.offsets_array(), dtype=np.int64).reshape(tuple(tensor.shape))
    block.shared_tensors[tensor] = SharedBinding(tensor.name, region, 0, tensor.dtype, offsets)


@register(ir.SharedSliceInst)
def shared_slice(block: BlockState, inst: ir.SharedSliceInst) -> None:
    parent = block.shared_binding(inst.tensor)
    values = block.int_scalars(inst.offsets)
    leading = len(parent.shape) - len(inst.output.shape)
    fixed, rest = values[:leading], values[leading:]
    if leading < 1 or any(rest) or any(not 0 <= v < e for v, e in zip(fixed, parent.shape, strict=False)):
        raise InterpreterError(
            f"slice {list(values)} does not select a {list(inst.output.shape)} sub-tensor of "
            f"{inst.tensor.name} of shape {list(parent.shape)}"
        )
    offsets = parent.offsets[tuple(fixed)]
    base = int(offsets.reshape(-1)[0]) if offsets.size else 0
    relative = offsets - base
    expected = np.asarray(inst.output.layout.offsets_array(), dtype=np.int64).reshape(relative.shape)
    if not np.array_equal(relative, expected):
        raise InterpreterError(
            f"the slice {inst.output.name} of {inst.tensor.name} has layout {inst.output.layout}, "
            "which does not match the offsets of those elements in the parent layout"
        )
    bit_offset = parent.bit_offset + base * storage_bits(parent.dtype)
    block.shared_tensors[inst.output] = SharedBinding(
        inst.output.name, parent.region, bit_offset, parent.dtype, relative
    )


@register(ir.FreeSharedInst)
def free_shared(block: BlockState, inst: ir.FreeSharedInst) -> None:
    block.shared_binding(inst.tensor).region.freed = True


@register(ir.AllocateRegisterInst)
def allocate_register(block: BlockState, inst: ir.AllocateRegisterInst) -> None:
    tensor = inst.output
    # An undefined register holds zero bits here; the CUDA backend leaves it as whatever the register held.
    code = constant_codes(0 if inst.init is None else inst.init, tensor.dtype)
    block.registers.set_codes(tensor, np.full(storage_shape(tensor), code, dtype=tensor.dtype.code_dtype))


@register(ir.IndexInst)
def index(block: BlockState, inst: ir.IndexInst) -> None:
    tensor = inst.output
    # Every (thread, local) slot holds the index along ``dim`` of the element it maps to (all owners alike).
    indices = layout_map(tensor)[..., inst.dim]
    block.registers.set_codes(tensor, encode(indices, tensor.dtype))


@register(ir.DeclareScalarInst)
def declare_scalar(block: BlockState, inst: ir.DeclareScalarInst) -> None:
    from anybit.interp.scalars import round_to

    block.env[inst.var] = round_to(block.scalar(inst.init), inst.var.dtype)


@register(ir.AssignScalarInst)
def assign_scalar(block: BlockState, inst: ir.AssignScalarInst) -> None:
    from anybit.interp.scalars import round_to

    if inst.var not in block.env:
        raise InterpreterError(f"scalar {inst.var.name} is assigned before it is declared")
    block.env[inst.var] = round_to(block.scalar(inst.value), inst.var.dtype)


@register(ir.AnnotateLayoutInst)
def annotate_layout(block: BlockState, inst: ir.AnnotateLayoutInst) -> None:
    """A requirement for layout inference; by the time a program runs the tensor already has the layout."""
    if inst.tensor.layout is not None and inst.tensor.layout != inst.layout:
        raise InterpreterError(
            f"register tensor {inst.tensor.name} has layout {inst.tensor.layout}, but annotate_layout "
            f"requires {inst.layout}"
        )
