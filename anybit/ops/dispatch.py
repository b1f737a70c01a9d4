"""Which path a quantized matmul of M rows takes: the decode kernel or dequantize + cuBLAS.

Up to ``decode_max_m`` rows the product is memory-bound and the decode kernel, which reads the packed
weight once per 16 rows, wins; above it the product turns compute-bound and decoding the weight once into
the activation dtype, then ``torch.matmul`` (cuBLAS, tensor cores at full rate) wins. The default, 16, is
where the decode kernel's single row tile ends; ``benchmarks/matmul.py`` measures both paths over M (its
crossover suite) and reports the best threshold on the machine. Set it with :func:`set_decode_max_m` or the
environment variable ``ANYBIT_DECODE_MAX_M``. Between it and 128 rows a weight on the GPU takes whichever path
its first call of that M bucket measured faster (:mod:`anybit.ops.path_choice`); :func:`choose_path` is the
rule without that measurement.
"""

from __future__ import annotations

import os

DEFAULT_DECODE_MAX_M = 16
DECODE = "decode"
DEQUANTIZE = "dequantize"


def _from_environment() -> int:
    text = os.environ.get("ANYBIT_DECODE_MAX_M")
    if text is None:
        return DEFAULT_DECODE_MAX_M
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"ANYBIT_DECODE_MAX_M: expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise ValueError(f"ANYBIT_DECODE_MAX_M: expected a non-negative integer, got {value}")
    return value


class _Threshold:
    """The current threshold; read on every call, so a plain attribute."""

    __slots__ = ("decode_max_m",)

    def __init__(self) -> None:
        self.decode_max_m = _from_environment()


threshold = _Threshold()


def decode_max_m() -> int:
    """The largest M (rows of x) that takes the decode kernel."""
    return threshold.decode_max_m


def set_decode_max_m(m: int) -> int:
    """Set the largest M that takes the decode kernel (0: always dequantize + cuBLAS); return the old one."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise ValueError(f"expected a non-negative int for decode_max_m, got {m!r}")
    previous = threshold.decode_max_m
    threshold.decode_max_m = m
    return previous


def choose_path(m: int) -> str:
    """``"decode"`` for M ≤ :func:`decode_max_m`, else ``"dequantize"`` (dequantize + cuBLAS): the rule, which
    on the GPU rows up to 128 refine by measurement (:mod:`anybit.ops.path_choice`)."""
    return DECODE if m <= threshold.decode_max_m else DEQUANTIZE
