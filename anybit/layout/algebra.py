"""Pure functions on register layouts: product, division, reduction and reshaping (digest §3.3-3.5).

Every function returns a canonical layout and states the post-conditions its property tests check.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from ._modes import ModeTable
from .errors import LayoutError
from .register import RegisterLayout


def product(outer: RegisterLayout, inner: RegisterLayout) -> RegisterLayout:
    """The Kronecker product ``outer * inner``: each element of ``outer`` is a tile laid out by ``inner``.

    ``h(t, i) = outer(t // T_in, i // N_in) * S_in + inner(t % T_in, i % N_in)`` (elementwise), so
    ``h.shape = outer.shape * inner.shape``, ``h.num_threads = T_out * T_in`` and
    ``h.local_size = N_out * N_in``.
    Associative, not commutative. Both layouts must have the same rank.
    """
    _check_same_rank("product", outer, inner)
    outer_table, inner_table = ModeTable.from_layout(outer), ModeTable.from_layout(inner)
    table = ModeTable(outer.rank)
    outer_ids = outer_table.copy_into(table)
    inner_ids = inner_table.copy_into(table)
    table.set_dims(
        [
            [outer_ids[m] for m in outer_table.dims[d]] + [inner_ids[m] for m in inner_table.dims[d]]
            for d in range(outer.rank)
        ]
    )
    table.spatial = [outer_ids[m] for m in outer_table.spatial] + [inner_ids[m] for m in inner_table.spatial]
    table.local = [outer_ids[m] for m in outer_table.local] + [inner_ids[m] for m in inner_table.local]
    return _build(table)


compose = product


def divide(lhs: RegisterLayout, rhs: RegisterLayout) -> RegisterLayout:
    """The layout ``f`` with ``f * rhs == lhs`` (right division); raise :class:`LayoutError` saying why not.

    ``rhs`` must be the innermost factor of ``lhs``: in every dimension its modes are the least significant
    modes of ``lhs``, its thread modes the last thread modes and its local modes the last local modes.
    Post-condition: ``product(divide(h, g), g) == h`` whenever it returns.
    """
    return _divide(lhs, rhs, from_end=True)


def left_divide(lhs: RegisterLayout, rhs: RegisterLayout) -> RegisterLayout:
    """The layout ``g`` with ``rhs * g == lhs`` (left division); raise :class:`LayoutError` saying why not.

    Post-condition: ``product(f, left_divide(h, f)) == h`` whenever it returns.
    """
    return _divide(lhs, rhs, from_end=False)


def divides(lhs: RegisterLayout, rhs: RegisterLayout) -> bool:
    """Whether ``rhs`` is an inner factor of ``lhs``, i.e. ``divide(lhs, rhs)`` succeeds."""
    try:
        divide(lhs, rhs)
    except LayoutError:
        return False
    return True


def reduce(layout: RegisterLayout, dims: Sequence[int], *, keepdims: bool = False) -> RegisterLayout:
    """The layout of the tensor reduced over ``dims``: what each thread holds after the reduction.

    Spatial modes of reduced dimensions become replicated modes (those threads now share a value); local
    modes of reduced dimensions disappear (a thread folds them into one value). Post-conditions: same
    ``num_threads``; ``shape`` loses ``dims`` (or keeps them as 1 with ``keepdims``); ``logical(t, i)`` is
    ``layout.logical(t, i')`` with the reduced coordinates removed, for the matching ``i'``.
    """
    reduced = _normalize_dims(dims, layout.rank, "reduce")
    table = ModeTable.from_layout(layout)
    for dim in reduced:
        for mode in list(table.dims[dim]):
            if mode in table.spatial:
                table.make_replicated(mode)
            else:
                table.remove(mode)
    if not keepdims:
        table.set_dims([modes for dim, modes in enumerate(table.dims) if dim not in reduced])
    return _build(table)


def concat(first: RegisterLayout, second: RegisterLayout) -> RegisterLayout:
    """Stack the dimensions: ``h(t, i) = first(t // T2, i // N2) ++ second(t % T2, i % N2)``.

    Post-conditions: ``h.shape == first.shape + second.shape``, ``T_h = T1 * T2``, ``N_h = N1 * N2``.
    """
    first_table, second_table = ModeTable.from_layout(first), ModeTable.from_layout(second)
    table = ModeTable(first.rank + second.rank)
    first_ids = first_table.copy_into(table)
    second_ids = second_table.copy_into(table)
    table.set_dims(
        [[first_ids[m] for m in modes] for modes in first_table.dims]
        + [[second_ids[m] for m in modes] for modes in second_table.dims]
    )
    table.spatial = [first_ids[m] for m in first_table.spatial] + [
        second_ids[m] for m in second_table.spatial
    ]
    table.local = [first_ids[m] for m in first_table.local] + [second_ids[m] for m in second_table.local]
    return _build(table)


def permute(layout: RegisterLayout, dims: Sequence[int]) -> RegisterLayout:
    """Reorder the dimensions: ``h.logical(t, i)[k] == layout.logical(t, i)[dims[k]]``."""
    dims = tuple(dims)
    if sorted(dims) != list(range(layout.rank)):
        raise LayoutError(f"permute: expected a permutation of 0..{layout.rank - 1}, got {dims}")
    table = ModeTable.from_layout(layout)
    table.set_dims([table.dims[dim] for dim in dims])
    return _build(table)


def reshape(layout: RegisterLayout, shape: Sequence[int]) -> RegisterLayout:
    """Reinterpret the row-major linear order of the logical elements under a new ``shape``.

    Post-condition: ``ravel(h.logical(t, i), shape) == ravel(layout.logical(t, i), layout.shape)``. It is
    defined when every mode either fits inside one new dimension or can be split at the new boundary.
    """
    shape = tuple(shape)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise LayoutError(f"reshape: the new shape must hold positive ints, got {shape}")
    if prod(shape) != layout.num_elements:
        raise LayoutError(
            f"reshape: cannot reshape shape {layout.shape} ({layout.num_elements} elements) into {shape}"
        )
    table = ModeTable.from_layout(layout)
    # view the tensor as one dimension first so that modes split only by the old shape merge again
    table.set_dims([[mode for modes in table.dims for mode in modes]])
    table.canonicalize()
    pending = list(table.dims[0])
    new_dims: list[list[int]] = []
    for extent in shape:
        modes: list[int] = []
        remaining = extent
        while remaining > 1:
            mode = pending.pop(0)
            size = table.size[mode]
            if remaining % size == 0:
                modes.append(mode)
                remaining //= size
            elif size % remaining == 0:
                major, minor = table.split(mode, remaining, size // remaining)
                modes.append(major)
                pending.insert(0, minor)
                remaining = 1
            else:
                raise LayoutError(
                    f"reshape: cannot reshape {layout} from {layout.shape} to {shape}: a mode of size {size} "
                    f"straddles the boundary of the new dimension of size {extent}"
                )
        new_dims.append(modes)
    table.set_dims(new_dims)
    return _build(table)


def flatten(layout: RegisterLayout, start_dim: int = 0, end_dim: int = -1) -> RegisterLayout:
    """Merge dimensions ``start_dim..end_dim`` (inclusive) into one; always defined."""
    rank = layout.rank
    start, end = (_normalize_dims([d], rank, "flatten")[0] for d in (start_dim, end_dim))
    if start > end:
        raise LayoutError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = layout.shape[:start] + (prod(layout.shape[start : end + 1]),) + layout.shape[end + 1 :]
    return reshape(layout, shape)


def squeeze(layout: RegisterLayout, dims: Sequence[int] | None = None) -> RegisterLayout:
    """Drop size-1 dimensions (all of them, or ``dims``, each of which must have size 1)."""
    if dims is None:
        dropped = {dim for dim, extent in enumerate(layout.shape) if extent == 1}
    else:
        dropped = set(_normalize_dims(dims, layout.rank, "squeeze"))
        for dim in sorted(dropped):
            if layout.shape[dim] != 1:
                raise LayoutError(
                    f"squeeze: dimension {dim} of shape {layout.shape} has size {layout.shape[dim]}"
                )
    table = ModeTable.from_layout(layout)
    table.set_dims([modes for dim, modes in enumerate(table.dims) if dim not in dropped])
    return _build(table)


def unsqueeze(layout: RegisterLayout, dim: int) -> RegisterLayout:
    """Insert a size-1 dimension so that it becomes dimension ``dim`` of the result."""
    if not -layout.rank - 1 <= dim <= layout.rank:
        raise LayoutError(f"unsqueeze: dimension {dim} is out of range for rank {layout.rank}")
    dim %= layout.rank + 1
    table = ModeTable.from_layout(layout)
    table.set_dims(table.dims[:dim] + [[]] + table.dims[dim:])
    return _build(table)


# ----------------------------------------------------------------------------------------------- helpers
def _build(table: ModeTable) -> RegisterLayout:
    shape, mode_shape, spatial, local = table.to_tuples()
    return RegisterLayout(shape, mode_shape, spatial, local)


def _check_same_rank(operation: str, first: RegisterLayout, second: RegisterLayout) -> None:
    if first.rank != second.rank:
        raise LayoutError(
            f"{operation}: layouts must have the same rank, got {first} of rank {first.rank} (shape "
            f"{first.shape}) and {second} of rank {second.rank} (shape {second.shape})"
        )


def _normalize_dims(dims: Sequence[int], rank: int, operation: str) -> tuple[int, ...]:
    result = []
    for dim in dims:
        if isinstance(dim, bool) or not isinstance(dim, int) or not -rank <= dim < rank:
            raise LayoutError(f"{operation}: dimension {dim!r} is out of range for rank {rank}")
        result.append(dim % rank)
    if len(set(result)) != len(result):
        raise LayoutError(f"{operation}: repeated dimensions in {tuple(dims)}")
    return tuple(result)


def _divide(lhs: RegisterLayout, rhs: RegisterLayout, *, from_end: bool) -> RegisterLayout:
    """Match ``rhs``'s modes against the innermost (``from_end``) or outermost modes of ``lhs``."""
    operation = "divide" if from_end else "left_divide"
    _check_same_rank(operation, lhs, rhs)

    def fail(reason: str) -> LayoutError:
        side = "an inner (right)" if from_end else "an outer (left)"
        return LayoutError(f"{operation}: {rhs} is not {side} factor of {lhs}: {reason}")

    for dim, (big, small) in enumerate(zip(lhs.shape, rhs.shape, strict=False)):
        if big % small:
            raise fail(
                f"dimension {dim}: {big} is not a multiple of {small} (shapes {lhs.shape}, {rhs.shape})"
            )
    if lhs.num_threads % rhs.num_threads:
        raise fail(f"{lhs.num_threads} threads are not a multiple of {rhs.num_threads}")
    if lhs.local_size % rhs.local_size:
        raise fail(f"local size {lhs.local_size} is not a multiple of {rhs.local_size}")

    whole, part = ModeTable.from_layout(lhs), ModeTable.from_layout(rhs)
    partner: dict[int, int] = {}  # mode of ``part`` -> mode of ``whole`` it matches

    def at(sequence: list[int], k: int) -> int:
        return sequence[-1 - k] if from_end else sequence[k]

    def split_off(table: ModeTable, mode: int, size: int) -> None:
        rest = table.size[mode] // size
        if from_end:
            table.split(mode, rest, size)
        else:
            table.split(mode, size, rest)

    # 1. per dimension, refine both sides until rhs's modes pair one for one with lhs's extreme modes.
    for dim in range(lhs.rank):
        k = 0
        while k < len(part.dims[dim]):
            if k >= len(whole.dims[dim]):
                raise fail(f"dimension {dim} runs out of modes")
            mine, theirs = at(whole.dims[dim], k), at(part.dims[dim], k)
            big, small = whole.size[mine], part.size[theirs]
            if big == small:
                partner[theirs] = mine
                k += 1
            elif big % small == 0:
                split_off(whole, mine, small)
            elif small % big == 0:
                split_off(part, theirs, big)
            else:
                raise fail(
                    f"in dimension {dim} a mode of size {small} cannot be matched with one of size {big}"
                )

    # 2. the thread and local lists of rhs must be the extreme entries of lhs's lists, pair for pair.
    used: set[int] = set(partner.values())
    for which in ("spatial", "local"):
        k = 0
        while k < len(getattr(part, which)):
            mine_list, theirs_list = getattr(whole, which), getattr(part, which)
            if k >= len(mine_list):
                raise fail(f"it has more {which} modes")
            mine, theirs = at(mine_list, k), at(theirs_list, k)
            mine_replicated = whole.dim_of[mine] is None
            theirs_replicated = part.dim_of[theirs] is None
            if mine_replicated and theirs_replicated:
                big, small = whole.size[mine], part.size[theirs]
                if big == small:
                    used.add(mine)
                    k += 1
                elif big % small == 0:
                    split_off(whole, mine, small)
                elif small % big == 0:
                    split_off(part, theirs, big)
                else:
                    raise fail(f"replicated modes of sizes {big} and {small} do not match")
            elif not mine_replicated and not theirs_replicated and partner.get(theirs) == mine:
                k += 1
            else:
                kind = "thread" if which == "spatial" else "local"
                side = "last" if from_end else "first"
                raise fail(f"its {kind} modes are not the {side} {kind} modes of the dividend")

    # 3. what is left of lhs is the quotient.
    quotient = ModeTable(lhs.rank)
    ids = whole.copy_into(quotient)
    quotient.set_dims([[ids[m] for m in modes if m not in used] for modes in whole.dims])
    keep_spatial = len(whole.spatial) - len(part.spatial)
    keep_local = len(whole.local) - len(part.local)
    spatial = whole.spatial[:keep_spatial] if from_end else whole.spatial[len(part.spatial) :]
    local = whole.local[:keep_local] if from_end else whole.local[len(part.local) :]
    if any(mode in used for mode in spatial + local):
        raise fail("its modes are interleaved with the other factor's")
    quotient.spatial = [ids[m] for m in spatial]
    quotient.local = [ids[m] for m in local]
    for mode in used:
        del quotient.size[ids[mode]]
        del quotient.dim_of[ids[mode]]
    result = _build(quotient)
    rebuilt = product(result, rhs) if from_end else product(rhs, result)
    if rebuilt != lhs:
        raise fail(f"the candidate quotient {result} does not reproduce it")
    return result
