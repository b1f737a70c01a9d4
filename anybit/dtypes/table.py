"""`types_table()`: every anybit type, one aligned row each (for ``python -m anybit types``)."""

from __future__ import annotations

import numpy as np

from anybit.dtypes.conversion import encode
from anybit.dtypes.datatype import DataType, all_types

_HEADER = ("name", "short", "bits", "kind", "min", "max", "smallest subnormal", "inf/nan", "1 →", "max →")


def _number(value: int | float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


def format_code(code: int, data_type: DataType) -> str:
    """Show a code in binary, split into sign.exponent.mantissa fields for floats; hex above 8 bits."""
    if data_type.nbits > 8:
        return f"0x{code:0{data_type.nbits // 4}x}"
    text = f"{code:0{data_type.nbits}b}"
    if not data_type.is_float:
        return text
    exponent_end = 1 + data_type.exponent_bits
    fields = [text[:1], text[1:exponent_end], text[exponent_end:]]
    return ".".join(field for field in fields if field)


def _specials(data_type: DataType) -> str:
    if not data_type.is_float:
        return "-"
    return {(True, True): "inf, nan", (False, True): "nan", (False, False): "none"}[
        (data_type.has_inf, data_type.has_nan)
    ]


def _row(data_type: DataType) -> tuple[str, ...]:
    one, maximum = encode(np.array([1, data_type.max_value], dtype=np.float64), data_type)
    one_text = format_code(int(one), data_type) if data_type.max_value >= 1 else "-"
    return (
        data_type.name,
        data_type.short_name,
        str(data_type.nbits),
        data_type.kind,
        _number(data_type.min_value),
        _number(data_type.max_value),
        _number(data_type.smallest_subnormal),
        _specials(data_type),
        one_text,
        format_code(int(maximum), data_type),
    )


def types_table() -> str:
    """Every type, one row each: names, bits, kind, range, smallest subnormal, inf/NaN, example codes."""
    rows = [_HEADER, *(_row(t) for t in all_types())]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_HEADER))]
    numeric = {2, 4, 5, 6}  # right-align the number columns
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(width) if column in numeric and index else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
