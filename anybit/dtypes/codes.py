"""Validation of bit codes: the unsigned integers that hold one value's bit pattern."""

from __future__ import annotations

from typing import Any

import numpy as np

from anybit.dtypes.datatype import DataType


def check_codes(codes: Any, data_type: DataType) -> np.ndarray:
    """Return ``codes`` as an array of ``data_type.code_dtype`` after checking each fits in ``nbits`` bits.

    Raises
    ------
    ValueError
        If the codes are not integers, or one of them is negative or needs more than ``nbits`` bits; the
        message names the first bad index and value.
    """
    array = np.asarray(codes)
    # An empty list arrives as float64; with no codes in it there is nothing to reject.
    if array.dtype.kind not in "biu" and array.size > 0:
        raise ValueError(f"expected integer codes for {data_type.name}, got an array of {array.dtype}")
    limit = (1 << data_type.nbits) - 1
    if array.dtype.kind == "u":
        # Compare as uint64 so a uint64 code above 2^63 is not mistaken for a negative one.
        bad = array.astype(np.uint64) > np.uint64(limit)
    else:
        wide = array.astype(np.int64)
        bad = wide < 0
        if limit <= np.iinfo(np.int64).max:
            bad |= wide > limit
    if bad.any():
        flat = int(np.flatnonzero(bad.reshape(-1))[0])
        index = tuple(int(i) for i in np.unravel_index(flat, array.shape)) if array.ndim > 1 else flat
        value = array.reshape(-1)[flat]
        raise ValueError(
            f"code {value} at index {index} does not fit in {data_type.nbits} bits of "
            f"{data_type.name}: expected 0 ≤ code ≤ {limit}"
        )
    return array.astype(data_type.code_dtype)
