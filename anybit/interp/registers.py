"""Per-thread register files: each register tensor lives as codes of shape (num_threads, local_size).

Row t holds thread t's local elements in local-index order, each as its dtype's bit pattern, so ``view``
re-cuts a row's bits exactly as the GPU reinterprets a thread's registers. Replicated layouts hold a copy in
every owner. Moving between the per-thread form and the logical (dense) form uses the layout's
``map_array()``, cached per layout.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from anybit.interp.errors import InterpreterError
from anybit.interp.values import values_from_codes
from anybit.ir.tensors import RegisterTensor


@lru_cache(maxsize=4096)
def _cached_map(layout) -> np.ndarray:
    array = np.asarray(layout.map_array(), dtype=np.int64)
    array.setflags(write=False)
    return array


def layout_map(tensor: RegisterTensor) -> np.ndarray:
    """The (num_threads, local_size, rank) logical index of every register of ``tensor``."""
    if tensor.layout is None:
        raise InterpreterError(
            f"register tensor {tensor.name} has no layout; interpret the program after layout inference "
            "(Script.program() returns such a program)"
        )
    return _cached_map(tensor.layout)


def storage_shape(tensor: RegisterTensor) -> tuple[int, int]:
    """(num_threads, local_size) of ``tensor``'s layout."""
    mapping = layout_map(tensor)
    return mapping.shape[0], mapping.shape[1]


def scatter_to_dense(tensor: RegisterTensor, per_thread: np.ndarray) -> np.ndarray:
    """The logical array of ``tensor`` from per-thread data (a replicated element takes one owner's copy)."""
    mapping = layout_map(tensor)
    dense = np.empty(tuple(int(d) for d in tensor.shape), dtype=per_thread.dtype)
    dense[tuple(np.moveaxis(mapping, -1, 0))] = per_thread
    return dense


def gather_from_dense(dense: np.ndarray, tensor: RegisterTensor) -> np.ndarray:
    """Per-thread data of ``tensor`` taken from a logical array broadcastable to ``tensor.shape``."""
    mapping = layout_map(tensor)
    rank = mapping.shape[-1]
    if dense.ndim > rank:
        raise InterpreterError(f"cannot broadcast shape {list(dense.shape)} to {list(tensor.shape)}")
    coordinates = []
    for axis in range(dense.ndim):
        column = mapping[..., rank - dense.ndim + axis]
        extent = dense.shape[axis]
        target = tensor.shape[rank - dense.ndim + axis]
        if extent == 1:
            coordinates.append(np.zeros_like(column))
        elif extent == target:
            coordinates.append(column)
        else:
            raise InterpreterError(f"cannot broadcast shape {list(dense.shape)} to {list(tensor.shape)}")
    if dense.ndim == 0:
        return np.broadcast_to(dense, mapping.shape[:2]).copy()
    return dense[tuple(coordinates)]


class RegisterFile:
    """The register tensors of one thread block, as per-thread code arrays."""

    def __init__(self) -> None:
        self._codes: dict[RegisterTensor, np.ndarray] = {}

    def codes(self, tensor: RegisterTensor) -> np.ndarray:
        """The (num_threads, local_size) codes of ``tensor``."""
        try:
            return self._codes[tensor]
        except KeyError:
            raise InterpreterError(
                f"register tensor {tensor.name} is read before any instruction defined it"
            ) from None

    def set_codes(self, tensor: RegisterTensor, codes: np.ndarray) -> None:
        """Define or overwrite ``tensor`` with per-thread ``codes`` (checked against its layout)."""
        expected = storage_shape(tensor)
        if codes.shape != expected:
            raise InterpreterError(
                f"register tensor {tensor.name} expects per-thread data of shape {expected}, "
                f"got {codes.shape}"
            )
        self._codes[tensor] = np.ascontiguousarray(codes.astype(tensor.dtype.code_dtype, copy=False))

    def values(self, tensor: RegisterTensor) -> np.ndarray:
        """Per-thread values of ``tensor`` in its compute type."""
        return values_from_codes(self.codes(tensor), tensor.dtype)

    def dense_values(self, tensor: RegisterTensor) -> np.ndarray:
        """The logical values of ``tensor`` (shape ``tensor.shape``) in its compute type."""
        return scatter_to_dense(tensor, self.values(tensor))

    def dense_codes(self, tensor: RegisterTensor) -> np.ndarray:
        """The logical codes of ``tensor``."""
        return scatter_to_dense(tensor, self.codes(tensor))
