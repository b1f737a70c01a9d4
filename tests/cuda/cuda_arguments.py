"""Random arguments for a test program: one array per pointer parameter (typed), ints for scalars."""

from __future__ import annotations

import numpy as np

from anybit.dtypes import encode

SCALAR_VALUES = {"m": 100, "n": 2048}
ELEMENTS = 8192


def random_arguments(program, rng: np.random.Generator) -> list:
    """Fresh random inputs (values of each dtype's range; sub-byte types as random packed bytes)."""
    args = []
    for var in program.params:
        dtype = getattr(var.type, "dtype", None)
        if dtype is None:
            args.append(SCALAR_VALUES.get(var.name, 64))
            continue
        if dtype.is_standard and dtype.name != "boolean":
            if dtype.is_float:
                values = rng.standard_normal(ELEMENTS)
                codes = encode(values, dtype)
                args.append(codes.view(dtype.numpy_dtype))
            else:
                info = np.iinfo(dtype.numpy_dtype)
                args.append(
                    rng.integers(max(info.min, -100), min(info.max, 100), ELEMENTS).astype(dtype.numpy_dtype)
                )
        else:
            args.append(rng.integers(0, 256, ELEMENTS, dtype=np.uint8))
    return args
