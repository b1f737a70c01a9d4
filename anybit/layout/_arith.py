"""Index arithmetic that works on ints, numpy arrays and symbolic expression objects alike.

Only ``+``, ``*``, ``//`` and ``%`` are applied to a variable operand, and the variable is always the left
operand, so an expression class needs nothing but ``__add__``, ``__mul__``, ``__floordiv__`` and ``__mod__``.
No comparison, truth test or conversion is ever made on it; plain ints are folded together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def digit(value: Any, stride: int, size: int) -> Any:
    """Return ``value // stride % size``, skipping the division when ``stride == 1``."""
    quotient = value if stride == 1 else value // stride
    return quotient % size


def scaled(value: Any, factor: int) -> Any:
    """Return ``value * factor``, skipping the multiplication when ``factor == 1``."""
    return value if factor == 1 else value * factor


def total(terms: Sequence[Any]) -> Any:
    """Sum ``terms``: variable terms first (left to right), then the folded int terms; empty sum is ``0``."""
    constant = sum(term for term in terms if isinstance(term, int))
    variables = [term for term in terms if not isinstance(term, int)]
    if not variables:
        return constant
    result = variables[0]
    for term in variables[1:]:
        result = result + term
    return result if constant == 0 else result + constant
