"""Handlers moving tiles between registers and memory: load/store global, atomic add, load/store shared.

A tile instruction touches, for every register (thread t, local i) of the register tensor, the element at
``offsets + layout(t, i)`` of the memory tensor. Global elements outside the tensor's shape (or masked off)
read as ``other`` and are not written; every access is also checked against the bytes of the array behind
the view, so nothing is read or written past it.
"""

from __future__ import annotations

import numpy as np

from anybit import ir
from anybit.interp import shared
from anybit.interp.errors import InterpreterError
from anybit.interp.handlers.registry import register
from anybit.interp.registers import gather_from_dense, layout_map
from anybit.interp.state import BlockState
from anybit.interp.values import codes_from_values, constant_codes, convert_codes, values_from_codes


def tile_indices(start: np.ndarray, tile: np.ndarray, tensor) -> np.ndarray:
    """Memory indices of a tile: ``start`` (one offset per memory dimension) plus tile indices ``tile`` (last
    axis), which cover the trailing dimensions when the tile has lower rank (the leading ones stay fixed)."""
    rank, tile_rank = start.size, tile.shape[-1]
    if start.size != len(tensor.shape) or tile_rank > rank:
        raise InterpreterError(
            f"a rank-{tile_rank} tile of {tensor.name} (rank {len(tensor.shape)}) needs {len(tensor.shape)} "
            f"offsets, got {start.size}"
        )
    padded = np.zeros(tile.shape[:-1] + (rank,), dtype=np.int64)
    padded[..., rank - tile_rank :] = tile
    return padded + start


def _tile_indices(block: BlockState, tensor, offsets, register_tensor) -> np.ndarray:
    """Memory indices (T, L, rank) touched by each register of ``register_tensor``."""
    start = np.asarray(block.int_scalars(offsets), dtype=np.int64)
    return tile_indices(start, layout_map(register_tensor), tensor)


def _mask(block: BlockState, mask, register_tensor) -> np.ndarray | None:
    if mask is None:
        return None
    return gather_from_dense(block.registers.dense_values(mask).astype(bool), register_tensor)


def check_promise(inst, what: str, shape, indices: np.ndarray) -> None:
    """Raise where the tile leaves the tensor along a dimension ``inst.in_bounds`` promised (the GPU would
    read whatever lies there instead of the out-of-bounds value)."""
    for d in inst.in_bounds:
        column, extent = indices[..., d], int(shape[d])
        bad = (column < 0) | (column >= extent)
        if bad.any():
            raise InterpreterError(
                f"{what} of {inst.tensor.name}: the tile reaches index {int(column[bad].flat[0])} of "
                f"dimension {d} (extent {extent}), which in_bounds promised it stays inside; drop the "
                "dimension from in_bounds (out-of-range elements then read as zero) or keep the offsets "
                "in range"
            )


@register(ir.LoadGlobalInst)
def load_global(block: BlockState, inst: ir.LoadGlobalInst) -> None:
    binding = block.global_binding(inst.tensor)
    indices = _tile_indices(block, inst.tensor, inst.offsets, inst.output)
    check_promise(inst, "load_global", binding.shape, indices)
    valid = binding.in_bounds(indices)
    mask = _mask(block, inst.mask, inst.output)
    if mask is not None:
        valid &= mask
    codes = np.zeros(valid.shape, dtype=np.uint64)
    codes[valid] = binding.read(binding.bit_positions(indices[valid]))
    codes = convert_codes(codes.astype(inst.tensor.dtype.code_dtype), inst.tensor.dtype, inst.output.dtype)
    other = constant_codes(inst.other, inst.output.dtype)
    block.registers.set_codes(inst.output, np.where(valid, codes, other))


@register(ir.LoadScalarInst)
def load_scalar(block: BlockState, inst: ir.LoadScalarInst) -> None:
    binding = block.global_binding(inst.tensor)
    index = np.asarray(block.int_scalars(inst.index), dtype=np.int64)
    if not binding.in_bounds(index[None]).all():
        raise InterpreterError(
            f"load_scalar: index {tuple(index.tolist())} is outside {inst.tensor.name}{list(binding.shape)}"
        )
    code = binding.read(binding.bit_positions(index[None])).astype(inst.tensor.dtype.code_dtype)
    block.env[inst.var] = int(values_from_codes(code, inst.tensor.dtype)[0])


def _store_targets(block: BlockState, inst) -> tuple:
    binding = block.global_binding(inst.tensor)
    indices = _tile_indices(block, inst.tensor, inst.offsets, inst.value)
    valid = binding.in_bounds(indices)
    mask = _mask(block, inst.mask, inst.value)
    if mask is not None:
        valid &= mask
    positions = binding.bit_positions(indices[valid])
    codes = convert_codes(block.registers.codes(inst.value), inst.value.dtype, inst.tensor.dtype)[valid]
    return binding, positions, codes


@register(ir.StoreGlobalInst)
def store_global(block: BlockState, inst: ir.StoreGlobalInst) -> None:
    binding, positions, codes = _store_targets(block, inst)
    binding.write(positions, codes)


@register(ir.AtomicAddGlobalInst)
def atomic_add_global(block: BlockState, inst: ir.AtomicAddGlobalInst) -> None:
    """Each element is added once, even when a replicated layout holds it in several threads."""
    binding, positions, codes = _store_targets(block, inst)
    positions, first = np.unique(positions, return_index=True)
    dtype = inst.tensor.dtype
    old = values_from_codes(binding.read(positions).astype(dtype.code_dtype), dtype)
    added = values_from_codes(codes[first].astype(dtype.code_dtype), dtype)
    with np.errstate(all="ignore"):
        binding.write(positions, codes_from_values(old + added, dtype))


def _cluster_block(block: BlockState, rank: int) -> BlockState:
    """The block of ``block``'s cluster with rank ``rank`` (x fastest), checked to be running."""
    cluster = block.launch.program.cluster
    size = cluster[0] * cluster[1] * cluster[2]
    if not 0 <= rank < size:
        raise InterpreterError(f"block rank {rank} is outside the cluster of {size} blocks")
    local = (rank % cluster[0], rank // cluster[0] % cluster[1], rank // (cluster[0] * cluster[1]))
    index = tuple(i - i % c + r for i, c, r in zip(block.block_index, cluster, local, strict=True))
    owner = block.launch.blocks.get(index)
    if owner is None or owner.finished:
        raise InterpreterError(
            f"reads the shared memory of block {index} (rank {rank} of the cluster), which has exited or not "
            "started; add a cluster_sync that the owner passes only after the last read"
        )
    return owner


def _shared_indices(block: BlockState, inst, register_tensor, reader: BlockState | None = None) -> tuple:
    binding = block.shared_binding(inst.tensor)
    indices = _tile_indices(reader or block, inst.tensor, inst.offsets, register_tensor)
    threads = np.broadcast_to(np.arange(indices.shape[0])[:, None], indices.shape[:2])
    return binding, binding.bit_positions(indices), threads


@register(ir.LoadSharedInst)
def load_shared(block: BlockState, inst: ir.LoadSharedInst) -> None:
    owner = block if inst.rank is None else _cluster_block(block, int(block.scalar(inst.rank)))
    binding, positions, threads = _shared_indices(owner, inst, inst.output, reader=block)
    codes = shared.read(binding, positions, threads, owner.epoch, remote=owner is not block)
    if owner is not block:
        owner.read_remotely.add(block.cluster_barriers)
    codes = convert_codes(codes.astype(inst.tensor.dtype.code_dtype), inst.tensor.dtype, inst.output.dtype)
    block.registers.set_codes(inst.output, codes)


@register(ir.StoreSharedInst)
def store_shared(block: BlockState, inst: ir.StoreSharedInst) -> None:
    binding, positions, threads = _shared_indices(block, inst, inst.value)
    codes = convert_codes(block.registers.codes(inst.value), inst.value.dtype, inst.tensor.dtype)
    shared.write(binding, positions, threads, codes, block.epoch)
