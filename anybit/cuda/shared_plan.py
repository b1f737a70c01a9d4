"""Shared-memory planning: first-fit placement of shared tensors with lifetimes, 128-byte aligned.

Tensors are placed in program order; ``FreeSharedInst`` returns a tensor's bytes (merged with free
neighbours) for later allocations. Instructions that need a transient exchange buffer (cross-warp
reductions, layout conversions) share one scratch area placed after every tensor, so it never overlaps a
tensor that a loop may bring back to life; each use is bracketed by barriers. The planned total is the
kernel's dynamic shared-memory size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from anybit.ir import AllocateSharedInst, FreeSharedInst, Instruction, Program, instructions

ALIGNMENT = 128


def shared_bytes(tensor) -> int:
    """Bytes a shared tensor spans (its layout's size in packed elements, rounded up to bytes)."""
    return -(-tensor.layout.size * tensor.dtype.nbits // 8)


@dataclass
class FirstFitAllocator:
    """A free list over ``[0, inf)`` with first-fit allocation and coalescing frees."""

    free: list[tuple[int, int]] = field(default_factory=lambda: [(0, 1 << 40)])  # (start, end), sorted
    peak: int = 0

    def allocate(self, size: int) -> int:
        """Place ``size`` bytes at the lowest 128-byte aligned free offset that fits."""
        size = max(ALIGNMENT, -(-size // ALIGNMENT) * ALIGNMENT)
        for k, (start, end) in enumerate(self.free):
            aligned = -(-start // ALIGNMENT) * ALIGNMENT
            if aligned + size <= end:
                pieces = [(start, aligned)] if aligned > start else []
                if aligned + size < end:
                    pieces.append((aligned + size, end))
                self.free[k : k + 1] = pieces
                self.peak = max(self.peak, aligned + size)
                return aligned
        raise AssertionError("the free list is unbounded")  # pragma: no cover

    def release(self, offset: int, size: int) -> None:
        """Return ``[offset, offset+size)`` (rounded like ``allocate``) and merge neighbours."""
        size = max(ALIGNMENT, -(-size // ALIGNMENT) * ALIGNMENT)
        self.free.append((offset, offset + size))
        self.free.sort()
        merged: list[tuple[int, int]] = []
        for start, end in self.free:
            if merged and merged[-1][1] >= start:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        self.free = merged


@dataclass(frozen=True)
class SharedPlan:
    """Byte offsets of every shared allocation and scratch buffer (keyed by ``id`` of the instruction)."""

    offsets: dict[int, int]
    scratch: dict[int, int]
    total_bytes: int


def plan_shared_memory(program: Program, scratch_bytes: Callable[[Instruction], int]) -> SharedPlan:
    """Plan every ``AllocateSharedInst`` and every instruction's scratch; see the module docstring."""
    allocator = FirstFitAllocator()
    offsets: dict[int, int] = {}
    scratch: dict[int, int] = {}
    live: dict[object, tuple[int, int]] = {}
    scratch_need: dict[int, int] = {}
    for inst in instructions(program.body):
        if isinstance(inst, AllocateSharedInst):
            size = shared_bytes(inst.output)
            offset = allocator.allocate(size)
            offsets[id(inst)] = offset
            live[inst.output] = (offset, size)
        elif isinstance(inst, FreeSharedInst):
            if inst.tensor in live:
                allocator.release(*live.pop(inst.tensor))
        else:
            need = scratch_bytes(inst)
            if need:
                scratch_need[id(inst)] = need
    total = allocator.peak
    if scratch_need:
        base = -(-total // ALIGNMENT) * ALIGNMENT
        scratch = dict.fromkeys(scratch_need, base)
        total = base + max(scratch_need.values())
    return SharedPlan(offsets, scratch, total)
