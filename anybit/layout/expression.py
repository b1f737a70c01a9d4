"""Write a register layout back as a chain of primitives, e.g. ``local(2, 1).spatial(8, 4).local(1, 2)``."""

from __future__ import annotations

from ._modes import ModeTable
from .register import RegisterLayout


def to_expression(layout: RegisterLayout) -> str | None:
    """A primitive chain that ``parse_layout`` turns back into ``layout``, or None when there is none.

    Peels primitives off the inner end: the last thread (or local) modes that are each the least significant
    remaining mode of distinct dimensions form the innermost ``spatial`` (or ``local``) factor. Layouts with
    replicated modes, or whose modes cannot be peeled this way (some reshapes), have no chain.
    Post-condition: ``parse_layout(to_expression(f)) == f`` whenever it is not None.
    """
    if layout.is_replicated:
        return None
    table = ModeTable.from_layout(layout)
    factors: list[str] = []
    while table.spatial or table.local:
        for kind in ("local", "spatial"):
            peeled = _peel(table, kind)
            if peeled is not None:
                factors.append(peeled)
                break
        else:
            return None
    if not factors:
        factors.append(_format("local", [1] * layout.rank, None))
    chain = factors[::-1]
    return ".".join(chain)


def _peel(table: ModeTable, kind: str) -> str | None:
    """Remove the innermost primitive of ``kind`` from ``table`` and return its text, or None."""
    sequence = table.local if kind == "local" else table.spatial
    taken: list[int] = []
    for mode in reversed(sequence):
        dim = table.dim_of[mode]
        if dim is None or table.dims[dim][-1] != mode or any(table.dim_of[m] == dim for m in taken):
            break
        taken.append(mode)
    if not taken:
        return None
    order = [table.dim_of[mode] for mode in reversed(taken)]
    sizes = [1] * len(table.dims)
    for mode in taken:
        sizes[table.dim_of[mode]] = table.size[mode]
    for mode in taken:
        table.remove(mode)
    # dimensions absent from the factor are free to sit anywhere in its order; put them where the row-major
    # or column-major spelling needs them.
    full_order = _complete_order([d for d in order if d is not None], len(sizes))
    return _format(kind, sizes, full_order)


def _complete_order(order: list[int], rank: int) -> tuple[int, ...] | None:
    """A permutation containing ``order`` as a subsequence: row-major, column-major or explicit."""
    forward = tuple(range(rank))
    if _is_subsequence(order, forward):
        return forward
    if _is_subsequence(order, forward[::-1]):
        return forward[::-1]
    return tuple(order) + tuple(d for d in forward if d not in order)


def _is_subsequence(items: list[int], sequence: tuple[int, ...]) -> bool:
    iterator = iter(sequence)
    return all(item in iterator for item in items)


def _format(kind: str, sizes: list[int], order: tuple[int, ...] | None) -> str:
    arguments = ", ".join(str(size) for size in sizes)
    rank = len(sizes)
    if order is None or order == tuple(range(rank)):
        return f"{kind}({arguments})"
    if order == tuple(range(rank))[::-1]:
        return f"column_{kind}({arguments})"
    return f"{kind}({arguments}, order={list(order)})"
