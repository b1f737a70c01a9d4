"""The interpreter's memory: global buffers (the caller's arrays, the workspace) and shared-memory regions.

Global memory is the raw bytes of the arrays passed for pointer parameters; a global tensor is a *binding*
of a buffer, a starting bit, a dtype, a shape and element strides. Shared memory is one region per
``allocate_shared`` executed by a block, holding bytes plus, per byte, the thread that last wrote it, the
sync epoch of that write and the number of async copies in flight to it (for the hazard checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from anybit.dtypes import DataType
from anybit.interp import bits
from anybit.interp.errors import InterpreterError

#: Writer marks in a shared region's ``writer`` array (thread ids are ≥ 0).
NEVER_WRITTEN = -1
ASYNC_COPY = -2
SEVERAL_THREADS = -3


def storage_bits(dtype: DataType) -> int:
    """Bits one element takes in memory: ``nbits``, except that a boolean takes a byte (C ``bool``)."""
    return 8 if dtype.kind == "bool" else dtype.nbits


@dataclass(eq=False)
class GlobalBuffer:
    """Bytes of global memory: a flat uint8 view of a caller's array (written in place) or the workspace."""

    name: str
    data: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.data.size)


@dataclass(frozen=True, eq=False)
class Pointer:
    """A run-time pointer value: a buffer and a bit offset into it; ``+ k`` advances by k elements."""

    buffer: GlobalBuffer
    bit_offset: int
    dtype: DataType

    def advanced(self, elements: int) -> Pointer:
        """This pointer moved by ``elements`` elements of its dtype."""
        return Pointer(self.buffer, self.bit_offset + int(elements) * storage_bits(self.dtype), self.dtype)

    def __repr__(self) -> str:
        return f"&{self.buffer.name}[bit {self.bit_offset}]"


@dataclass(frozen=True, eq=False)
class GlobalBinding:
    """A global tensor at run time: elements at ``bit_offset + sum(index·strides)·storage_bits``."""

    name: str
    buffer: GlobalBuffer
    bit_offset: int
    dtype: DataType
    shape: tuple[int, ...]
    strides: tuple[int, ...]

    def bit_positions(self, indices: np.ndarray) -> np.ndarray:
        """Start bit of each element; ``indices`` has the index as its last axis."""
        offsets = (np.asarray(indices, dtype=np.int64) * np.asarray(self.strides, dtype=np.int64)).sum(-1)
        return self.bit_offset + offsets * storage_bits(self.dtype)

    def in_bounds(self, indices: np.ndarray) -> np.ndarray:
        """Whether each index (last axis) lies inside ``shape``."""
        shape = np.asarray(self.shape, dtype=np.int64)
        return ((indices >= 0) & (indices < shape)).all(axis=-1)

    def check_positions(self, positions: np.ndarray, action: str) -> None:
        """Raise when an element starting at one of ``positions`` lies outside the buffer's bytes."""
        if positions.size == 0:
            return
        low = int(positions.min())
        high = int(positions.max()) + storage_bits(self.dtype)
        if low < 0 or high > self.buffer.nbytes * 8:
            raise InterpreterError(
                f"{action} {self.name} ({self.dtype.name}{list(self.shape)}) reaches bits [{low}, {high}) of "
                f"{self.buffer.name}, which holds only {self.buffer.nbytes} bytes ({self.buffer.nbytes * 8} "
                "bits): the view is larger than the array passed for it"
            )

    def read(self, positions: np.ndarray) -> np.ndarray:
        """Codes (uint64) of the elements at ``positions`` (checked)."""
        self.check_positions(positions, "reading")
        return bits.read_codes(self.buffer.data, positions, storage_bits(self.dtype))

    def write(self, positions: np.ndarray, codes: np.ndarray) -> None:
        """Write ``codes`` at ``positions`` (checked)."""
        self.check_positions(positions, "writing")
        if not self.buffer.data.flags.writeable:
            raise InterpreterError(
                f"writing {self.name}: the array passed as {self.buffer.name} is read-only"
            )
        bits.write_codes(self.buffer.data, positions, storage_bits(self.dtype), codes)


@dataclass(eq=False)
class SharedRegion:
    """The bytes of one shared allocation and their per-byte hazard records."""

    name: str
    data: np.ndarray
    writer: np.ndarray = field(init=False)
    epoch: np.ndarray = field(init=False)
    pending: np.ndarray = field(init=False)
    freed: bool = False

    def __post_init__(self) -> None:
        self.writer = np.full(self.data.size, NEVER_WRITTEN, dtype=np.int32)
        self.epoch = np.zeros(self.data.size, dtype=np.int64)
        self.pending = np.zeros(self.data.size, dtype=np.int32)

    @classmethod
    def allocate(cls, name: str, nbytes: int) -> SharedRegion:
        """A fresh region of ``nbytes`` bytes that nothing has written (filled with 0xA5 garbage)."""
        return cls(name, np.full(nbytes, 0xA5, dtype=np.uint8))


@dataclass(frozen=True, eq=False)
class SharedBinding:
    """A shared tensor at run time: element ``index`` at ``bit_offset + offsets[index]·nbits`` of a region."""

    name: str
    region: SharedRegion
    bit_offset: int
    dtype: DataType
    offsets: np.ndarray  # element offset of every logical index, shaped like the tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.offsets.shape)

    def bit_positions(self, indices: np.ndarray) -> np.ndarray:
        """Start bit of each element; ``indices`` has the index as its last axis (checked in range)."""
        indices = np.asarray(indices, dtype=np.int64)
        shape = np.asarray(self.shape, dtype=np.int64)
        outside = ~((indices >= 0) & (indices < shape)).all(axis=-1)
        if outside.any():
            bad = tuple(int(v) for v in indices[outside][0])
            raise InterpreterError(
                f"index {bad} is outside shared tensor {self.name} of shape {list(self.shape)}"
            )
        flat = self.offsets[tuple(np.moveaxis(indices, -1, 0))]
        return self.bit_offset + flat * storage_bits(self.dtype)
