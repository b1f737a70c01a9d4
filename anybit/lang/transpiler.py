"""Transpile a Script's ``__call__``: rewrite its Python AST so one execution records the VM program.

Rewrites (every helper keeps Python semantics for compile-time values, see ``anybit.lang.control``):

* ``for x in it:`` -> ``with ForLoop(it, ...) as items: for x in items:`` (run-time when ``it`` is
  ``self.range(...)``, the body is then recorded once into a ``ForStmt``);
* ``while c:`` -> ``with WhileLoop(...) as w: while w.test(c):``;
* ``if c: A else: B`` -> ``with IfBranches(c, ...) as b: if b.then: A; if b.otherwise(): B``;
* ``break``/``continue``/``return`` -> checked helpers; ``a == b``, ``a != b``, ``and``, ``or``, ``not`` and
  ``a if c else b`` -> helpers that build run-time expressions;
* ``x = v``, ``x += v``, ``a, b = v`` -> ``bind(...)``: loop-carried values are assigned in place.

The rewritten function is compiled with the original file name and line numbers, so tracebacks and every
instruction's ``SourceLocation`` point at the kernel author's lines.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
import types
from collections.abc import Callable

from anybit.ir.errors import KernelDefinitionError
from anybit.ir.instructions import SourceLocation
from anybit.lang import control

RUNTIME = "__anybit__"

_cache: dict[Callable, Callable] = {}


def transpile(function: Callable) -> Callable:
    """The rewritten version of ``function`` (cached); it must be executed while a builder is active."""
    cached = _cache.get(function)
    if cached is None:
        cached = _cache[function] = _transpile(function)
    return cached


def _transpile(function: Callable) -> Callable:
    code = function.__code__
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError) as error:
        raise KernelDefinitionError(
            f"cannot read the source of {function.__qualname__} (was it defined interactively?): {error}",
            source=SourceLocation(code.co_filename, code.co_firstlineno),
        ) from None
    tree = ast.parse(textwrap.dedent(source))
    ast.increment_lineno(tree, code.co_firstlineno - 1)
    definition = tree.body[0]
    assert isinstance(definition, (ast.FunctionDef, ast.AsyncFunctionDef)), "expected a function definition"
    definition.decorator_list = []
    rewriter = _Rewriter(code.co_filename)
    definition.body = rewriter.statements(definition.body)
    free = list(code.co_freevars)
    factory = ast.FunctionDef(
        name="__anybit_factory__",
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg(arg=name) for name in [RUNTIME, *free]],
            vararg=None,
            kwonlyargs=[],
            kw_defaults=[],
            kwarg=None,
            defaults=[],
        ),
        body=[definition, ast.Return(value=ast.Name(id=definition.name, ctx=ast.Load()))],
        decorator_list=[],
        returns=None,
        type_comment=None,
    )
    module = ast.Module(body=[factory], type_ignores=[])
    _locate(factory, definition)
    ast.fix_missing_locations(module)
    compiled = compile(module, code.co_filename, "exec")
    namespace: dict = {}
    exec(compiled, function.__globals__, namespace)  # noqa: S102 - the kernel author's own code
    cells = [cell.cell_contents for cell in (function.__closure__ or ())]
    rewritten = namespace["__anybit_factory__"](control, *cells)
    rewritten.__anybit_original__ = function
    return rewritten


def _locate(node: ast.AST, like: ast.AST) -> None:
    """Give ``node`` (a synthetic wrapper) the line of ``like``."""
    node.lineno = like.lineno
    node.col_offset = 0
    node.end_lineno = like.lineno
    node.end_col_offset = 0


def _call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(
        func=ast.Attribute(value=ast.Name(id=RUNTIME, ctx=ast.Load()), attr=name, ctx=ast.Load()),
        args=list(args),
        keywords=[],
    )


def _lambda(body: ast.expr) -> ast.Lambda:
    return ast.Lambda(
        args=ast.arguments(
            posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]
        ),
        body=body,
    )


def _old_value(name: str) -> ast.expr:
    """``locals().get(name, UNBOUND)``: the variable's value before the assignment, if any."""
    locals_call = ast.Call(func=ast.Name(id="locals", ctx=ast.Load()), args=[], keywords=[])
    return ast.Call(
        func=ast.Attribute(value=locals_call, attr="get", ctx=ast.Load()),
        args=[
            ast.Constant(name),
            ast.Attribute(value=ast.Name(id=RUNTIME, ctx=ast.Load()), attr="UNBOUND", ctx=ast.Load()),
        ],
        keywords=[],
    )


_AUGMENT = {
    ast.Add: "iadd",
    ast.Sub: "isub",
    ast.Mult: "imul",
    ast.Div: "itruediv",
    ast.FloorDiv: "ifloordiv",
    ast.Mod: "imod",
    ast.BitAnd: "iand",
    ast.BitOr: "ior",
    ast.BitXor: "ixor",
    ast.LShift: "ilshift",
    ast.RShift: "irshift",
    ast.Pow: "ipow",
    ast.MatMult: "imatmul",
}


class _Rewriter(ast.NodeTransformer):
    """Rewrites statements of the kernel body (not of nested functions) and expressions within them."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.counter = itertools.count()

    def fail(self, node: ast.AST, message: str) -> KernelDefinitionError:
        import linecache

        text = linecache.getline(self.filename, node.lineno).strip()
        return KernelDefinitionError(message, source=SourceLocation(self.filename, node.lineno, text))

    def fresh(self, hint: str) -> str:
        return f"__anybit_{hint}{next(self.counter)}"

    def statements(self, body: list[ast.stmt]) -> list[ast.stmt]:
        result: list[ast.stmt] = []
        for stmt in body:
            new = self.visit(stmt)
            result.extend(new if isinstance(new, list) else [new])
        return result

    # ------------------------------------------------------------------------------- scopes left alone
    def visit_FunctionDef(self, node):
        return node

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_ClassDef = visit_FunctionDef

    # ------------------------------------------------------------------------------------ control flow
    def _with(self, node: ast.stmt, manager: ast.expr, name: str, body: list[ast.stmt]) -> ast.With:
        item = ast.withitem(context_expr=manager, optional_vars=ast.Name(id=name, ctx=ast.Store()))
        wrapper = ast.copy_location(ast.With(items=[item], body=body), node)
        # The synthetic calls inherit this location: keep it on one line, or CPython attributes method
        # calls to the statement's last line.
        wrapper.end_lineno, wrapper.end_col_offset = node.lineno, node.col_offset + 1
        return wrapper

    def visit_For(self, node: ast.For):
        if node.orelse:
            raise self.fail(node, "`for ... else` is not supported in a kernel")
        target = node.target.id if isinstance(node.target, ast.Name) else ""
        items = self.fresh("items")
        manager = _call("ForLoop", self.visit(node.iter), ast.Constant(None), ast.Constant(target))
        manager.args[1] = _call("location")
        loop = ast.copy_location(
            ast.For(
                target=node.target,
                iter=ast.Name(id=items, ctx=ast.Load()),
                body=self.statements(node.body),
                orelse=[],
            ),
            node,
        )
        return self._with(node, manager, items, [loop])

    def visit_While(self, node: ast.While):
        if node.orelse:
            raise self.fail(node, "`while ... else` is not supported in a kernel")
        name = self.fresh("while")
        test = ast.Call(
            func=ast.Attribute(value=ast.Name(id=name, ctx=ast.Load()), attr="test", ctx=ast.Load()),
            args=[self.visit(node.test)],
            keywords=[],
        )
        loop = ast.copy_location(ast.While(test=test, body=self.statements(node.body), orelse=[]), node)
        return self._with(node, _call("WhileLoop", _call("location")), name, [loop])

    def visit_If(self, node: ast.If):
        name = self.fresh("if")
        branches = self.visit(node.test)
        then = ast.copy_location(
            ast.If(
                test=ast.Attribute(value=ast.Name(id=name, ctx=ast.Load()), attr="then", ctx=ast.Load()),
                body=self.statements(node.body),
                orelse=[],
            ),
            node,
        )
        body: list[ast.stmt] = [then]
        if node.orelse:
            otherwise = ast.Call(
                func=ast.Attribute(value=ast.Name(id=name, ctx=ast.Load()), attr="otherwise", ctx=ast.Load()),
                args=[],
                keywords=[],
            )
            first = node.orelse[0]
            body.append(
                ast.copy_location(ast.If(test=otherwise, body=self.statements(node.orelse), orelse=[]), first)
            )
        return self._with(node, _call("IfBranches", branches, _call("location")), name, body)

    def visit_Break(self, node: ast.Break):
        return ast.copy_location(ast.If(test=_call("break_"), body=[node], orelse=[]), node)

    def visit_Continue(self, node: ast.Continue):
        return ast.copy_location(ast.If(test=_call("continue_"), body=[node], orelse=[]), node)

    def visit_Return(self, node: ast.Return):
        check = ast.copy_location(ast.Expr(value=_call("check_return")), node)
        self.generic_visit(node)
        return [check, node]

    # -------------------------------------------------------------------------------------- bindings
    def visit_Assign(self, node: ast.Assign):
        value = self.visit(node.value)
        fresh = ast.Constant(not isinstance(node.value, (ast.Name, ast.Attribute, ast.Subscript)))
        if len(node.targets) != 1:
            node.value = value
            return node
        target = node.targets[0]
        if isinstance(target, ast.Name):
            node.value = _call("bind", ast.Constant(target.id), value, _old_value(target.id), fresh)
        elif isinstance(target, (ast.Tuple, ast.List)) and all(isinstance(e, ast.Name) for e in target.elts):
            names = ast.Tuple(elts=[ast.Constant(e.id) for e in target.elts], ctx=ast.Load())
            olds = ast.Tuple(elts=[_old_value(e.id) for e in target.elts], ctx=ast.Load())
            node.value = _call("bind_many", names, value, olds, fresh)
        else:
            node.targets = [self.visit(target)]
            node.value = value
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign):
        if node.value is None or not isinstance(node.target, ast.Name):
            return self.generic_visit(node)
        assign = ast.Assign(targets=[node.target], value=node.value)
        return self.visit_Assign(ast.copy_location(assign, node))

    def visit_AugAssign(self, node: ast.AugAssign):
        value = self.visit(node.value)
        if not isinstance(node.target, ast.Name):
            node.value = value
            return node
        name = node.target.id
        load = ast.Name(id=name, ctx=ast.Load())
        combined = _call("augment", ast.Constant(_AUGMENT[type(node.op)]), load, value)
        bound = _call(
            "bind", ast.Constant(name), combined, ast.Name(id=name, ctx=ast.Load()), ast.Constant(True)
        )
        return ast.copy_location(ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())], value=bound), node)

    # ----------------------------------------------------------------------------------- expressions
    def visit_Compare(self, node: ast.Compare):
        if len(node.ops) > 1:
            operands = [node.left, *node.comparators]
            pairs = [
                ast.Compare(left=operands[k], ops=[op], comparators=[operands[k + 1]])
                for k, op in enumerate(node.ops)
            ]
            return self.visit(ast.copy_location(ast.BoolOp(op=ast.And(), values=pairs), node))
        self.generic_visit(node)
        op = node.ops[0]
        if isinstance(op, (ast.Eq, ast.NotEq)):
            helper = "eq" if isinstance(op, ast.Eq) else "ne"
            return ast.copy_location(_call(helper, node.left, node.comparators[0]), node)
        return node

    def visit_BoolOp(self, node: ast.BoolOp):
        self.generic_visit(node)
        helper = "and_" if isinstance(node.op, ast.And) else "or_"
        result = node.values[-1]
        for value in reversed(node.values[:-1]):
            result = _call(helper, value, _lambda(result))
        return ast.copy_location(result, node)

    def visit_UnaryOp(self, node: ast.UnaryOp):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return ast.copy_location(_call("not_", node.operand), node)
        return node

    def visit_IfExp(self, node: ast.IfExp):
        self.generic_visit(node)
        return ast.copy_location(_call("select", node.test, _lambda(node.body), _lambda(node.orelse)), node)


def is_transpiled(function: Callable) -> bool:
    """Whether ``function`` came out of :func:`transpile`."""
    return isinstance(function, types.FunctionType) and hasattr(function, "__anybit_original__")
