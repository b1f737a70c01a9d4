"""Handlers of synchronisation and control: sync, exit, print, split-K semaphores, grid dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from anybit import ir
from anybit.dtypes import int32
from anybit.interp.errors import InterpreterError
from anybit.interp.handlers.registry import register
from anybit.interp.memory import SharedBinding
from anybit.interp.registers import scatter_to_dense
from anybit.interp.state import BlockState
from anybit.interp.values import values_from_codes
from anybit.ir.tensors import RegisterTensor, SharedTensor


class BlockExit(Exception):
    """Raised by ``exit`` to end the running thread block."""


@dataclass(frozen=True)
class SemaphoreWait:
    """What a block yields while ``lock_semaphore`` waits: the instruction, the values, and whether this is a
    repeated check that found nothing changed."""

    instruction: ir.LockSemaphoreInst
    block_index: tuple
    index: tuple
    expected: int
    current: int
    repeated: bool


@register(ir.SyncInst)
def sync(block: BlockState, inst: ir.SyncInst) -> None:
    block.epoch += 1


@dataclass(frozen=True)
class ClusterWait:
    """What a block yields while ``cluster_sync`` waits for the rest of its cluster."""

    instruction: ir.ClusterSyncInst
    block_index: tuple
    arrived: int
    size: int
    repeated: bool

    def describe(self) -> str:
        return (
            f"block {self.block_index} waits at cluster_sync for its cluster ({self.arrived} of {self.size} "
            f"blocks arrived) at {self.instruction.source}"
        )


@register(ir.ClusterSyncInst)
def cluster_sync(block: BlockState, inst: ir.ClusterSyncInst) -> Iterator[ClusterWait]:
    """Arrive, then wait until every block of the cluster has arrived at the same barrier (their count of
    cluster barriers passed): the block's own shared-memory writes are then visible to the cluster."""
    cluster = block.launch.program.cluster
    size = int(np.prod(cluster))
    key = (tuple(i // c for i, c in zip(block.block_index, cluster, strict=True)), block.cluster_barriers)
    arrivals = block.launch.cluster_arrivals
    arrivals[key] = arrivals.get(key, 0) + 1
    block.epoch += 1
    repeated = False
    while arrivals[key] < size:
        yield ClusterWait(inst, block.block_index, arrivals[key], size, repeated)
        repeated = True
    block.cluster_barriers += 1


@register(ir.ExitInst)
def exit_block(block: BlockState, inst: ir.ExitInst) -> None:
    raise BlockExit()


def _tensor_text(block: BlockState, tensor) -> str:
    if isinstance(tensor, RegisterTensor):
        values = scatter_to_dense(tensor, values_from_codes(block.registers.codes(tensor), tensor.dtype))
    elif isinstance(tensor, SharedTensor):
        binding: SharedBinding = block.shared_binding(tensor)
        from anybit.interp import bits
        from anybit.interp.memory import storage_bits

        local = np.moveaxis(np.indices(binding.shape, dtype=np.int64), 0, -1)
        codes = bits.read_codes(
            binding.region.data, binding.bit_positions(local), storage_bits(binding.dtype)
        )
        values = values_from_codes(codes.astype(binding.dtype.code_dtype), binding.dtype)
    else:
        raise InterpreterError(f"print can show register or shared tensors, got {tensor!r}")
    return f"{tensor.name}: {tensor.dtype.name}{list(values.shape)}\n{values}"


@register(ir.PrintInst)
def print_tensor(block: BlockState, inst: ir.PrintInst) -> None:
    text = f"[block {block.block_index}] {inst.message}"
    if inst.tensor is not None:
        text += "\n" + _tensor_text(block, inst.tensor)
    block.launch.print_fn(text)


def _semaphore(block: BlockState, inst) -> tuple:
    tensor = inst.counter if isinstance(inst, ir.ArriveInst) else inst.semaphore
    binding = block.global_binding(tensor)
    if binding.dtype is not int32:
        raise InterpreterError(f"semaphore {tensor.name} must be int32, got {binding.dtype.name}")
    index = np.asarray(block.int_scalars(inst.index), dtype=np.int64)
    if not binding.in_bounds(index):
        raise InterpreterError(
            f"semaphore index {tuple(index)} is outside {tensor.name}{list(binding.shape)}"
        )
    return binding, binding.bit_positions(index[None])


@register(ir.LockSemaphoreInst)
def lock_semaphore(block: BlockState, inst: ir.LockSemaphoreInst) -> Iterator[SemaphoreWait]:
    binding, position = _semaphore(block, inst)
    expected = int(block.scalar(inst.value))
    repeated = False
    while True:
        current = int(values_from_codes(binding.read(position).astype(np.uint32), int32)[0])
        if current == expected:
            return
        yield SemaphoreWait(
            inst, block.block_index, block.int_scalars(inst.index), expected, current, repeated
        )
        repeated = True


@register(ir.ReleaseSemaphoreInst)
def release_semaphore(block: BlockState, inst: ir.ReleaseSemaphoreInst) -> None:
    binding, position = _semaphore(block, inst)
    value = int(block.scalar(inst.value))
    binding.write(position, np.asarray([value & 0xFFFFFFFF], dtype=np.uint64))


@register(ir.ArriveInst)
def arrive(block: BlockState, inst: ir.ArriveInst) -> None:
    """``var`` = the counter's value; the counter steps by one and wraps to 0 at ``count`` (``atom.inc``)."""
    binding, position = _semaphore(block, inst)
    count = int(block.scalar(inst.count))
    if count < 1:
        raise InterpreterError(f"arrive at {inst.counter.name}: expected a count of at least 1, got {count}")
    current = int(values_from_codes(binding.read(position).astype(np.uint32), int32)[0])
    if not 0 <= current < count:
        raise InterpreterError(
            f"arrive at {inst.counter.name}{list(block.int_scalars(inst.index))}: the counter holds "
            f"{current}, outside [0, {count}); it must start at 0 (allocate it with kept_clean=True or "
            "requires_clean=True) and every launch must arrive the same count of times"
        )
    following = 0 if current == count - 1 else current + 1
    binding.write(position, np.asarray([following], dtype=np.uint64))
    block.env[inst.var] = current


@register(ir.WaitPriorGridsInst)
@register(ir.AllowDependentGridsInst)
def grid_dependency(block: BlockState, inst) -> None:
    """Nothing: the interpreter runs kernels one after another, so the prior grids have always completed."""
