"""Parse layout expressions: ``"local(2,1).spatial(8,4).local(1,2)"``, ``"spatial(8,4) * local(1,2)"``.

The grammar is a small, whitelisted subset of Python expressions (read with :mod:`ast`, never evaluated):
primitive calls ``local``, ``spatial``, ``column_local``, ``column_spatial`` (ints, optional ``order=[...]``);
method chaining with the same names; ``*`` (product) and ``/`` (division); parentheses;
``reduce(expr, dims=[...], keepdims=True)``; and the mode form
``RegisterLayout(shape=[...], mode_shape=[...], spatial_modes=[...], local_modes=[...])``.
"""

from __future__ import annotations

import ast
from typing import Any

from . import algebra, primitives
from .errors import LayoutError, LayoutParseError
from .register import RegisterLayout

_PRIMITIVES = {
    "local": primitives.local,
    "spatial": primitives.spatial,
    "column_local": primitives.column_local,
    "column_spatial": primitives.column_spatial,
}
_ORDERED = {"local", "spatial"}
_MODE_FORM_KEYS = ("shape", "mode_shape", "spatial_modes", "local_modes")


def parse_layout(text: str) -> RegisterLayout:
    """Parse a layout expression; raise :class:`LayoutParseError` (a ``ValueError``) pointing at the problem.

    Post-condition: ``parse_layout(repr(f)) == f`` for every register layout ``f``.
    """
    if not isinstance(text, str):
        raise LayoutParseError(f"expected a layout expression string, got {type(text).__name__}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise LayoutParseError(
            f"cannot parse layout {text!r}: {error.msg} at column {error.offset}"
        ) from None
    return _Parser(text).layout(tree.body)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, node: ast.AST, message: str) -> LayoutParseError:
        column = getattr(node, "col_offset", 0)
        pointer = " " * column + "^"
        return LayoutParseError(f"{message}\n  {self.text.strip()}\n  {pointer}")

    def layout(self, node: ast.AST) -> RegisterLayout:
        try:
            return self._layout(node)
        except LayoutParseError:
            raise
        except LayoutError as error:
            raise self.error(node, f"invalid layout: {error}") from None

    def _layout(self, node: ast.AST) -> RegisterLayout:
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
            left, right = self.layout(node.left), self.layout(node.right)
            operation = algebra.product if isinstance(node.op, ast.Mult) else algebra.divide
            try:
                return operation(left, right)
            except LayoutError as error:
                raise self.error(node, str(error)) from None
        if not isinstance(node, ast.Call):
            raise self.error(
                node, "expected a layout: a call such as local(2, 2), a chain, or a product a * b"
            )
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in _PRIMITIVES:
                args, kwargs = self.primitive_arguments(node, func.id)
                return _PRIMITIVES[func.id](*args, **kwargs)
            if func.id == "reduce":
                return self.reduce(node)
            if func.id == "RegisterLayout":
                return self.mode_form(node)
            names = ", ".join(sorted(_PRIMITIVES) + ["reduce", "RegisterLayout"])
            raise self.error(func, f"unknown layout {func.id!r}; expected one of {names}")
        if isinstance(func, ast.Attribute):
            if func.attr not in _PRIMITIVES:
                names = ", ".join(sorted(_PRIMITIVES))
                raise self.error(func, f"unknown layout method {func.attr!r}; expected one of {names}")
            outer = self.layout(func.value)
            args, kwargs = self.primitive_arguments(node, func.attr)
            try:
                return algebra.product(outer, _PRIMITIVES[func.attr](*args, **kwargs))
            except LayoutError as error:
                raise self.error(func, str(error)) from None
        raise self.error(node, "expected a layout call")

    def primitive_arguments(self, node: ast.Call, name: str) -> tuple[list[int], dict[str, Any]]:
        args = [self.integer(arg) for arg in node.args]
        kwargs: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg != "order" or name not in _ORDERED:
                raise self.error(
                    node,
                    f"{name}() takes only integer dimensions"
                    + (" and order=[...]" if name in _ORDERED else ""),
                )
            kwargs["order"] = self.integers(keyword.value)
        if not args:
            raise self.error(node, f"{name}() needs at least one dimension, e.g. {name}(2, 4)")
        return args, kwargs

    def reduce(self, node: ast.Call) -> RegisterLayout:
        if len(node.args) != 1:
            raise self.error(node, "reduce() takes one layout and dims=[...]")
        options: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg == "dims":
                options["dims"] = self.integers(keyword.value)
            elif keyword.arg == "keepdims":
                if not isinstance(keyword.value, ast.Constant) or not isinstance(keyword.value.value, bool):
                    raise self.error(keyword.value, "keepdims must be True or False")
                options["keepdims"] = keyword.value.value
            else:
                raise self.error(node, f"reduce() got an unexpected argument {keyword.arg!r}")
        if "dims" not in options:
            raise self.error(node, "reduce() needs dims=[...]")
        return algebra.reduce(
            self.layout(node.args[0]), options["dims"], keepdims=options.get("keepdims", False)
        )

    def mode_form(self, node: ast.Call) -> RegisterLayout:
        values = {keyword.arg: keyword for keyword in node.keywords}
        if node.args or set(values) != set(_MODE_FORM_KEYS):
            raise self.error(
                node, f"RegisterLayout() takes exactly the keywords {', '.join(_MODE_FORM_KEYS)}"
            )
        return RegisterLayout(*(self.integers(values[key].value, signed=True) for key in _MODE_FORM_KEYS))

    def integer(self, node: ast.AST, *, signed: bool = False) -> int:
        if signed and isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self.integer(node.operand)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        raise self.error(node, f"expected an integer, got {ast.unparse(node)!r}")

    def integers(self, node: ast.AST, *, signed: bool = False) -> list[int]:
        if not isinstance(node, (ast.List, ast.Tuple)):
            raise self.error(node, f"expected a list of integers, got {ast.unparse(node)!r}")
        return [self.integer(element, signed=signed) for element in node.elts]
