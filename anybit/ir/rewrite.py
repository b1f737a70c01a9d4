"""A generic rewriter over the IR's frozen dataclasses: substitute tensors and variables by identity.

Passes that change a tensor (layout inference gives it a layout) build a mapping ``old -> new`` and call
:func:`substitute`; every instruction, statement, expression and the program are rebuilt only where something
changed, so untouched nodes keep their identity.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from anybit.ir.expr import Var
from anybit.ir.tensors import Tensor


def transform(node, fn: Callable):
    """Rebuild ``node`` bottom-up: ``fn(value)`` returns a replacement or None to keep/recurse.

    Tuples and dataclass instances are traversed; other values are returned unchanged. Results are memoised
    by identity so a shared subtree is rebuilt once.
    """
    memo: dict[int, object] = {}

    def visit(value):
        key = id(value)
        if key in memo:
            return memo[key]
        replaced = fn(value)
        if replaced is not None:
            result = replaced
        elif isinstance(value, tuple):
            items = tuple(visit(item) for item in value)
            result = value if all(a is b for a, b in zip(items, value, strict=False)) else items
        elif (
            dataclasses.is_dataclass(value)
            and not isinstance(value, type)
            and not isinstance(value, (Tensor, Var))
        ):
            changes = {}
            for f in dataclasses.fields(value):
                if not f.init:  # worked out from the others (an expression's dtype): made again by replace
                    continue
                old = getattr(value, f.name)
                new = visit(old)
                if new is not old:
                    changes[f.name] = new
            result = dataclasses.replace(value, **changes) if changes else value
        else:
            result = value
        memo[key] = result
        return result

    return visit(node)


def substitute(node, mapping: dict):
    """``node`` with every tensor or variable ``v`` for which ``id(v)`` is a key of ``mapping`` replaced."""
    if not mapping:
        return node
    return transform(node, lambda value: mapping.get(id(value)) if isinstance(value, (Tensor, Var)) else None)


__all__ = ["transform", "substitute"]
