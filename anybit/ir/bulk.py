"""What a bulk copy (``copy_bulk``, sm_90 ``cp.async.bulk``) needs of its tile: one contiguous run of bytes in
global memory and in shared memory, a whole number of 16-byte units. Shared by the builder (an early error at
the call) and the verifier (a program built by other means)."""

from __future__ import annotations

import math

from anybit.ir.expr import constant_value
from anybit.ir.tensors import GlobalTensor, SharedTensor

#: cp.async.bulk moves whole 16-byte units from and to 16-byte aligned addresses.
BULK_UNIT_BYTES = 16


def bulk_tile_problem(destination: SharedTensor, tensor: GlobalTensor) -> str | None:
    """Why ``destination``'s tile of ``tensor`` cannot be one bulk copy, or None when it can.

    The tile covers the trailing ``destination.rank`` dimensions of ``tensor``; its elements, in row-major
    order, must be consecutive in global memory (the non-unit dimensions' strides: 1 for the last, the
    product of the later extents before it) and in ``destination`` (row-major, no swizzle).
    """
    if destination.dtype is not tensor.dtype:
        return f"expected the same dtype, got {tensor.dtype.name} and {destination.dtype.name}"
    if destination.rank > tensor.rank:
        return f"expected a tile of rank at most {tensor.rank}, got shape {list(destination.shape)}"
    layout = destination.layout
    if getattr(layout, "swizzles", ()):
        return f"expected an unswizzled shared destination, got {layout}"
    if tuple(layout.strides) != _row_major(destination.shape):
        row_major = list(_row_major(destination.shape))
        return f"expected a row-major shared destination (strides {row_major}), got {layout}"
    lead = tensor.rank - destination.rank
    expected = 1
    for extent, stride in reversed(list(zip(destination.shape, tensor.layout.strides[lead:], strict=True))):
        if extent == 1:
            continue
        value = constant_value(stride)
        if value != expected:
            return (
                f"expected the tile to be contiguous in {tensor.name} (a stride of {expected} where the tile "
                f"spans {extent} elements), got stride {stride}; copy whole rows of a row-major tensor"
            )
        expected *= extent
    nbytes = math.prod(destination.shape) * tensor.dtype.nbits // 8
    if nbytes % BULK_UNIT_BYTES or math.prod(destination.shape) * tensor.dtype.nbits % 8:
        return f"expected a whole number of {BULK_UNIT_BYTES}-byte units, got {nbytes} bytes"
    return None


def _row_major(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= extent
    return tuple(reversed(strides))
