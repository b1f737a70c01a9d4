"""Shared test helpers for tests/layout: hypothesis strategies and a symbolic stand-in for code generation."""

from __future__ import annotations

import functools
import operator

from hypothesis import strategies as st

from anybit.layout import RegisterLayout, column_local, column_spatial, local, product, reduce, spatial

PRIMITIVES = {
    "local": local,
    "spatial": spatial,
    "column_local": column_local,
    "column_spatial": column_spatial,
}


def primitives(rank: int) -> st.SearchStrategy[RegisterLayout]:
    """One random primitive of ``rank`` with small dimensions (chains of three stay under ~700 elements)."""
    largest = {1: 4, 2: 3}.get(rank, 2)
    sizes = st.lists(st.integers(1, largest), min_size=rank, max_size=rank)
    return st.builds(lambda name, dims: PRIMITIVES[name](*dims), st.sampled_from(sorted(PRIMITIVES)), sizes)


def chains(rank: int, max_factors: int = 3) -> st.SearchStrategy[RegisterLayout]:
    """A product of 1..max_factors random primitives of ``rank``."""
    factors = st.lists(primitives(rank), min_size=1, max_size=max_factors)
    return factors.map(lambda layouts: functools.reduce(product, layouts))


ranks = st.integers(1, 3)
layouts = ranks.flatmap(chains)


@st.composite
def replicated_layouts(draw: st.DrawFn) -> RegisterLayout:
    """A chain of rank 2 or 3 reduced over one or more (not all) dimensions."""
    rank = draw(st.integers(2, 3))
    layout = draw(chains(rank))
    dims = draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank - 1, unique=True))
    return reduce(layout, dims)


any_layouts = st.one_of(layouts, replicated_layouts())


class Sym:
    """A symbolic integer expression: supports only + * // % (and ^ & >> << for swizzles), no truth value."""

    __slots__ = ("op", "args")

    def __init__(self, op: str, *args: object) -> None:
        self.op = op
        self.args = args

    def _binary(op: str):  # noqa: N805 - builds methods
        def forward(self, other):
            return Sym(op, self, other)

        def backward(self, other):
            return Sym(op, other, self)

        return forward, backward

    __add__, __radd__ = _binary("+")
    __mul__, __rmul__ = _binary("*")
    __floordiv__, __rfloordiv__ = _binary("//")
    __mod__, __rmod__ = _binary("%")
    __xor__, __rxor__ = _binary("^")
    __and__, __rand__ = _binary("&")
    __rshift__, __rrshift__ = _binary(">>")
    __lshift__, __rlshift__ = _binary("<<")

    def _refuse(self, *args):
        raise TypeError("a symbolic expression has no concrete value here")

    __bool__ = __int__ = __index__ = __float__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __eq__ = __ne__ = _refuse  # type: ignore[assignment]
    __hash__ = None  # type: ignore[assignment]

    def evaluate(self, env: dict[str, int]) -> int:
        """The value of the expression with variables bound by ``env``."""
        if self.op == "var":
            return env[self.args[0]]
        values = [a.evaluate(env) if isinstance(a, Sym) else a for a in self.args]
        operations = {
            "+": operator.add,
            "*": operator.mul,
            "//": operator.floordiv,
            "%": operator.mod,
            "^": operator.xor,
            "&": operator.and_,
            ">>": operator.rshift,
            "<<": operator.lshift,
        }
        return operations[self.op](*values)

    def __repr__(self) -> str:
        if self.op == "var":
            return str(self.args[0])
        return f"({self.args[0]!r} {self.op} {self.args[1]!r})"


def var(name: str) -> Sym:
    """A symbolic variable."""
    return Sym("var", name)


def value(expression: object, env: dict[str, int]) -> int:
    """Evaluate a Sym, or return an int as is."""
    return expression.evaluate(env) if isinstance(expression, Sym) else expression
