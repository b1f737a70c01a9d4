"""Handlers of the asynchronous global→shared copy and its commit/wait groups.

A ``copy_async`` reads global memory when it is issued and lands in shared memory when a wait covers its
group (the GPU reads at some moment in between; a program whose answer depends on which is racy). From issue
to landing the destination bytes are *in flight*: reading them is an error. Landed bytes count as written by
the copy engine, not by a particular thread, so a ``sync`` must separate the wait from any read.
"""

from __future__ import annotations

import numpy as np

from anybit import ir
from anybit.interp import shared
from anybit.interp.errors import InterpreterError
from anybit.interp.handlers.registry import register
from anybit.interp.handlers.transfer import check_promise, tile_indices
from anybit.interp.state import BlockState, PendingCopy
from anybit.interp.values import convert_codes


@register(ir.CopyAsyncInst)
def copy_async(block: BlockState, inst: ir.CopyAsyncInst) -> None:
    source = block.global_binding(inst.tensor)
    destination = block.shared_binding(inst.destination)
    start = np.asarray(block.int_scalars(inst.offsets), dtype=np.int64)
    local = np.moveaxis(np.indices(destination.shape, dtype=np.int64), 0, -1)
    indices = tile_indices(start, local, inst.tensor)
    for d in inst.clamp:  # past either end: the nearest element inside
        if int(source.shape[d]) < 1:
            raise InterpreterError(f"copy_async of {inst.tensor.name}: clamped dimension {d} is empty")
        indices[..., d] = np.clip(indices[..., d], 0, int(source.shape[d]) - 1)
    check_promise(inst, "copy_async", source.shape, indices)
    valid = source.in_bounds(indices)
    codes = np.zeros(valid.shape, dtype=np.uint64)
    codes[valid] = source.read(source.bit_positions(indices[valid]))
    codes = convert_codes(codes.astype(source.dtype.code_dtype), source.dtype, destination.dtype)
    positions = destination.bit_positions(local)
    shared.mark_pending(destination, positions, +1)
    block.uncommitted.append(PendingCopy(destination, positions, codes))


def _land(block: BlockState, copies: list) -> None:
    for copy in copies:
        shared.complete_copy(copy.destination, copy.positions, copy.codes, block.epoch)


@register(ir.CopyAsyncCommitGroupInst)
def copy_async_commit_group(block: BlockState, inst: ir.CopyAsyncCommitGroupInst) -> None:
    block.groups.append(block.uncommitted)
    block.uncommitted = []


@register(ir.CopyAsyncWaitGroupInst)
def copy_async_wait_group(block: BlockState, inst: ir.CopyAsyncWaitGroupInst) -> None:
    if inst.n < 0:
        raise InterpreterError(f"copy_async_wait_group needs n >= 0, got {inst.n}")
    while len(block.groups) > inst.n:
        _land(block, block.groups.pop(0))


@register(ir.CopyAsyncWaitAllInst)
def copy_async_wait_all(block: BlockState, inst: ir.CopyAsyncWaitAllInst) -> None:
    for group in block.groups:
        _land(block, group)
    _land(block, block.uncommitted)
    block.groups = []
    block.uncommitted = []
