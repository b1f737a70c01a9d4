"""Shared-memory reads and writes with the VM's hazard checks (DESIGN §4.3: synchronisation is explicit).

Every byte remembers the thread that last wrote it and the sync epoch of that write (``sync`` starts a new
epoch). A read fails when the byte was never written, when an async copy to it is still in flight, or when
another thread wrote it in the current epoch (no ``sync`` between the write and the read). Bytes that
several threads wrote in one instruction (replicated layouts, sub-byte neighbours) are not attributed to a
single thread and are not checked for a missing sync.
"""

from __future__ import annotations

import numpy as np

from anybit.interp import bits
from anybit.interp.errors import InterpreterError
from anybit.interp.memory import ASYNC_COPY, NEVER_WRITTEN, SEVERAL_THREADS, SharedBinding, storage_bits


def read(
    binding: SharedBinding, positions: np.ndarray, threads: np.ndarray, epoch: int, *, remote: bool = False
) -> np.ndarray:
    """Codes at ``positions`` read by ``threads`` (same shape), after the hazard checks; ``remote``: by
    another block of the cluster (``epoch`` then the owner's: any write of its current epoch is a race)."""
    region = binding.region
    nbits = storage_bits(binding.dtype)
    if region.freed:
        raise InterpreterError(f"shared tensor {binding.name} is read after free_shared")
    touched = bits.touched_bytes(positions, nbits)
    readers = np.broadcast_to(np.asarray(threads)[..., None], touched.shape)
    writer = region.writer[touched]
    if region.pending[touched].any():
        raise InterpreterError(
            f"reads shared tensor {binding.name} while a copy_async into it is still in flight; wait for its "
            "group with copy_async_wait_group / copy_async_wait_all, then sync"
        )
    if (writer == NEVER_WRITTEN).any():
        where = np.argwhere((writer == NEVER_WRITTEN).any(axis=-1))[0]
        raise InterpreterError(
            f"reads shared tensor {binding.name} at byte {int(touched[tuple(where)][0])} of its region, "
            f"which nothing has written (thread {int(np.asarray(threads)[tuple(where)])} reads "
            "uninitialised shared memory)"
        )
    same_epoch = region.epoch[touched] == epoch
    async_hazard = same_epoch & (writer == ASYNC_COPY)
    if async_hazard.any():
        raise InterpreterError(
            f"reads shared tensor {binding.name}, written by copy_async that completed without a sync since: "
            "a thread may read bytes another thread copied; add self.sync() after the wait"
        )
    if remote and (same_epoch & (writer >= 0)).any():
        raise InterpreterError(
            f"reads shared tensor {binding.name} of another block of the cluster that block wrote with no "
            "cluster_sync since; add self.cluster_sync() between the store and the load"
        )
    thread_hazard = same_epoch & (writer >= 0) & (writer != readers)
    if thread_hazard.any():
        at = tuple(np.argwhere(thread_hazard)[0])
        raise InterpreterError(
            f"thread {int(readers[at])} reads shared tensor {binding.name} (byte {int(touched[at])} of its "
            f"region) that thread {int(writer[at])} wrote with no sync since the write; add self.sync() "
            "between the store and the load"
        )
    return bits.read_codes(region.data, positions, nbits)


def write(
    binding: SharedBinding, positions: np.ndarray, threads: np.ndarray, codes: np.ndarray, epoch: int
) -> None:
    """Write ``codes`` at ``positions`` on behalf of ``threads`` and record the writers."""
    region = binding.region
    if region.freed:
        raise InterpreterError(f"shared tensor {binding.name} is written after free_shared")
    nbits = storage_bits(binding.dtype)
    bits.write_codes(region.data, positions, nbits, codes)
    record_writers(binding, positions, threads, epoch)


def record_writers(binding: SharedBinding, positions: np.ndarray, threads: np.ndarray, epoch: int) -> None:
    """Mark the bytes of the elements at ``positions`` as written by ``threads`` in ``epoch``."""
    region = binding.region
    touched = bits.touched_bytes(positions, storage_bits(binding.dtype))
    writers = np.broadcast_to(np.asarray(threads, dtype=np.int64)[..., None], touched.shape)
    pairs = np.unique(np.stack([touched.reshape(-1), writers.reshape(-1)]), axis=1)
    unique_bytes, counts = np.unique(pairs[0], return_counts=True)
    first = np.searchsorted(pairs[0], unique_bytes)
    region.writer[unique_bytes] = np.where(counts > 1, SEVERAL_THREADS, pairs[1][first])
    region.epoch[unique_bytes] = epoch


def mark_pending(binding: SharedBinding, positions: np.ndarray, amount: int) -> None:
    """Add ``amount`` (+1 at issue, −1 at completion) to the in-flight count of the elements' bytes."""
    touched = np.unique(bits.touched_bytes(positions, storage_bits(binding.dtype)))
    binding.region.pending[touched] += amount


def complete_copy(binding: SharedBinding, positions: np.ndarray, codes: np.ndarray, epoch: int) -> None:
    """Land an async copy: write its codes and record them as written by the copy engine in ``epoch``."""
    mark_pending(binding, positions, -1)
    bits.write_codes(binding.region.data, positions, storage_bits(binding.dtype), codes)
    touched = np.unique(bits.touched_bytes(positions, storage_bits(binding.dtype)))
    binding.region.writer[touched] = ASYNC_COPY
    binding.region.epoch[touched] = epoch
