"""Run-time helpers that the transpiled ``__call__`` calls: control flow, bindings, ``==``, ``and``...

Each helper keeps plain Python semantics when its operands are Python values (so compile-time loops unroll
and compile-time conditions resolve at build time) and records VM control flow or expressions when an operand
is a run-time value. The transpiler (``anybit.lang.transpiler``) decides where these calls go.
"""

from __future__ import annotations

from anybit.dtypes import boolean, int32
from anybit.ir.expr import Const, Expr, Select, Var, as_expr, binary, unary
from anybit.ir.instructions import AssignInst, AssignScalarInst, DeclareScalarInst, SourceLocation
from anybit.ir.statements import BreakStmt, ForStmt, IfStmt, WhileStmt
from anybit.ir.tensors import GlobalTensor, RegisterTensor, SharedTensor, Tensor
from anybit.lang.builder import Builder, Frame, active_builder, current_builder


class _Unbound:
    """Marks a kernel variable that had no value before an assignment."""

    def __repr__(self) -> str:
        return "<unbound>"


UNBOUND = _Unbound()


def is_runtime(value) -> bool:
    """Whether ``value`` is a scalar known only at run time (an expression that is not a constant)."""
    return isinstance(value, Expr) and not isinstance(value, Const)


def truth(value) -> bool:
    """The Python truth of a compile-time condition (constants unwrap)."""
    if isinstance(value, Const):
        return bool(value.value)
    return bool(value)


def _condition(value, builder: Builder, statement: str):
    if isinstance(value, Tensor):
        raise builder.error(
            f"expected a scalar condition for `{statement}`, got the {type(value).__name__} {value!r}; "
            "use self.where(...) to choose between tensor elements"
        )
    return value


# ------------------------------------------------------------------------------------------------ loops
class RangeSpec:
    """What ``self.range(...)`` returns: the bounds of a run-time loop, consumed by a ``for`` statement."""

    def __init__(self, start, stop, step, unroll) -> None:
        self.start, self.stop, self.step, self.unroll = start, stop, step, unroll

    def __iter__(self):
        raise TypeError(
            "self.range(...) is only valid as the iterable of a `for` statement written in a Script's "
            "__call__"
        )


class ForLoop:
    """``with for_loop(iterable, ...) as items: for x in items: ...`` (run-time for a RangeSpec)."""

    def __init__(self, iterable, source: SourceLocation | None, target: str) -> None:
        self.iterable, self.source, self.target = iterable, source, target
        self.builder = current_builder()
        self.frame: Frame | None = None

    def __enter__(self):
        builder = self.builder
        if not isinstance(self.iterable, RangeSpec):
            builder.loops.append("python")
            return self.iterable
        spec = self.iterable
        for what in ("start", "stop", "step"):
            value = getattr(spec, what)
            if isinstance(value, Tensor) or not isinstance(value, (Expr, int)) or isinstance(value, bool):
                raise builder.error(
                    f"expected an int or a run-time int scalar as the {what} of self.range, got {value!r}"
                )
        self.var = Var(builder.fresh_name(self.target or "i"), int32)
        builder.loops.append("runtime")
        self.frame = builder.open_frame("for", self.source)
        builder.note_created(self.var)
        return [self.var]

    def __exit__(self, exc_type, exc, tb) -> bool:
        builder = self.builder
        builder.loops.pop()
        if self.frame is not None:
            body = builder.close_frame(self.frame)
            if exc_type is None:
                spec = self.iterable
                builder.emit(
                    ForStmt(
                        self.var,
                        as_expr(spec.start),
                        as_expr(spec.stop),
                        as_expr(spec.step),
                        body,
                        spec.unroll,
                        source=self.source,
                    )
                )
        return False


class WhileLoop:
    """``with while_loop(...) as w: while w.test(cond): ...`` (run-time when the condition is)."""

    def __init__(self, source: SourceLocation | None) -> None:
        self.source = source
        self.builder = current_builder()
        self.state = "new"  # new -> python | runtime -> done
        self.frame: Frame | None = None

    def __enter__(self) -> WhileLoop:
        self.builder.loops.append("python")
        return self

    def test(self, condition) -> bool:
        """Called before every Python iteration: opens the run-time body once, or answers in Python."""
        builder = self.builder
        condition = _condition(condition, builder, "while")
        if self.state == "runtime":
            self._close(emit=True)
            return False
        if self.state == "new" and is_runtime(condition):
            self.state = "runtime"
            self.condition = condition
            builder.loops[-1] = "runtime"
            self.frame = builder.open_frame("while", self.source)
            return True
        if is_runtime(condition):
            raise builder.error(
                f"the condition of this `while` became the run-time value {condition!r} after "
                "being a compile-time value; declare the variables it uses with self.scalar(...)"
            )
        self.state = "python"
        return truth(condition)

    def _close(self, emit: bool) -> None:
        body = self.builder.close_frame(self.frame)
        self.frame = None
        self.state = "done"
        if emit:
            self.builder.emit(WhileStmt(self.condition, body, source=self.source))

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.builder.loops.pop()
        if self.frame is not None:
            self._close(emit=exc_type is None)
        return False


class IfBranches:
    """``with if_(cond, ...) as b: if b.then: ...; if b.otherwise(): ...`` (run-time when cond is)."""

    def __init__(self, condition, source: SourceLocation | None) -> None:
        self.builder = current_builder()
        self.condition = _condition(condition, self.builder, "if")
        self.source = source
        self.runtime = is_runtime(self.condition)
        self.frame: Frame | None = None
        self.then_body: tuple = ()

    def __enter__(self) -> IfBranches:
        if self.runtime:
            self.builder.loops.append("if")
            self.frame = self.builder.open_frame("then", self.source)
            self.then = True
        else:
            self.then = truth(self.condition)
        return self

    def otherwise(self) -> bool:
        """Whether to run the ``else`` branch (always, once, for a run-time condition)."""
        if not self.runtime:
            return not self.then
        self.then_body = self.builder.close_frame(self.frame)
        self.frame = self.builder.open_frame("else", self.source)
        return True

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.runtime:
            return False
        builder = self.builder
        builder.loops.pop()
        body = builder.close_frame(self.frame)
        if self.frame.kind == "then":
            then_body, else_body = body, ()
        else:
            then_body, else_body = self.then_body, body
        if exc_type is None:
            builder.emit(IfStmt(self.condition, then_body, else_body, source=self.source))
        return False


def _innermost_loop(builder: Builder, statement: str) -> str:
    """The kind of the loop a ``break``/``continue`` leaves, rejecting a compile-time loop left from a
    run-time ``if``."""
    crossed_if = False
    for kind in reversed(builder.loops):
        if kind == "if":
            crossed_if = True
            continue
        if kind == "python" and crossed_if:
            raise builder.error(
                f"`{statement}` under a run-time `if` cannot leave a compile-time loop; loop with "
                "self.range(...) to make the loop a run-time one"
            )
        return kind
    return "python"


def break_() -> bool:
    """``break``: True to let Python break a compile-time loop; records a BreakStmt for a run-time one."""
    builder = current_builder()
    if _innermost_loop(builder, "break") == "python":
        return True
    builder.emit(BreakStmt(source=builder.location()))
    return False


def continue_() -> bool:
    """``continue``: allowed in compile-time loops only (the VM has no continue statement)."""
    builder = current_builder()
    if _innermost_loop(builder, "continue") == "python":
        return True
    raise builder.error(
        "`continue` is not supported inside a run-time loop; put the rest of the body under an `if` instead"
    )


def check_return() -> None:
    """``return`` is only allowed outside run-time control flow."""
    builder = current_builder()
    if builder.in_runtime_body():
        raise builder.error(
            "`return` inside run-time control flow is not supported; use self.exit() to end the thread block"
        )


# ---------------------------------------------------------------------------------------------- bindings
def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f"the {type(value).__name__} {value.name} ({value.dtype.name}{list(value.shape)})"
    if isinstance(value, Expr):
        return f"the run-time value {value!r}"
    return f"the Python value {value!r}"


def _is_vm_value(value) -> bool:
    return is_runtime(value) or isinstance(value, Tensor)


def bind(name: str, value, old, fresh: bool = False):
    """The value to store in kernel variable ``name`` for ``name = value`` (``old`` is its previous value).

    Inside a run-time body, a register tensor or declared scalar bound outside it is updated in place
    (AssignInst / AssignScalarInst) so loop-carried values work; a fresh temporary takes the variable's name.
    """
    builder = active_builder()
    if builder is None or value is old:
        return value
    frame = builder.frame
    bound = builder.bound_in.get(name, builder.root)
    outer = old is not UNBOUND and bound is not frame and any(f is bound for f in frame.ancestors())
    if not outer:
        builder.bound_in[name] = frame
        return _rename(builder, value, name) if fresh else value
    if isinstance(old, RegisterTensor) and isinstance(value, RegisterTensor):
        if old.dtype is not value.dtype or tuple(old.shape) != tuple(value.shape):
            raise builder.error(
                f"`{name}` holds the loop-carried register tensor {old.name} of "
                f"{old.dtype.name}{list(old.shape)}; "
                f"expected a new value of the same dtype and shape, got "
                f"{value.dtype.name}{list(value.shape)}",
                "assign",
            )
        builder.emit(AssignInst(old, value, source=builder.location()))
        return old
    if (
        isinstance(old, Var)
        and id(old) in builder.declared_scalars
        and isinstance(value, (Expr, int, float, bool))
    ):
        builder.emit(AssignScalarInst(old, as_expr(value), source=builder.location()))
        return old
    if _is_vm_value(value) or _is_vm_value(old):
        if isinstance(old, (Var, Expr)) or not _is_vm_value(old):
            hint = (
                "declare it before the run-time control flow with self.scalar(value, dtype)"
                if not isinstance(value, Tensor)
                else "declare it before with self.register_tensor(dtype, shape) (or assign a register tensor)"
            )
        else:
            hint = "only register tensors and scalars declared with self.scalar(...) can be reassigned there"
        if isinstance(old, (GlobalTensor, SharedTensor)):
            hint = (
                f"{type(old).__name__}s cannot be rebound in run-time control flow; index a stage (s[k % 2])"
            )
        raise builder.error(
            f"`{name}` was bound to {_describe(old)} outside this run-time {frame.kind} body and is "
            "reassigned "
            f"{_describe(value)} inside it; {hint}"
        )
    builder.bound_in[name] = frame
    return value


def bind_many(names: tuple, value, olds: tuple, fresh: bool = False) -> tuple:
    """``a, b = value``: bind each name; values that are also targets are copied first (``a, b = b, a``)."""
    items = tuple(value)
    if len(items) != len(names):
        raise ValueError(f"expected {len(names)} values to unpack, got {len(items)}")
    builder = active_builder()
    if builder is not None and builder.in_runtime_body():
        items = tuple(
            _copy(builder, item) if any(item is old for k, old in enumerate(olds) if k != i) else item
            for i, item in enumerate(items)
        )
    return tuple(bind(name, item, old, fresh) for name, item, old in zip(names, items, olds, strict=False))


def _copy(builder: Builder, value):
    if isinstance(value, RegisterTensor):
        copy = RegisterTensor(builder.fresh_name("copy"), value.dtype, value.shape, value.layout)
        builder.emit(AssignInst(copy, value, source=builder.location()))
        return copy
    if isinstance(value, Var) and id(value) in builder.declared_scalars:
        copy = Var(builder.fresh_name("copy"), value.type)
        builder.declared_scalars.add(id(copy))
        builder.emit(DeclareScalarInst(copy, value, source=builder.location()))
        return copy
    return value


def _rename(builder: Builder, value, name: str):
    """Give a fresh, auto-named tensor or declared scalar the kernel variable's name (readable programs)."""
    if id(value) not in builder.auto_named or not builder.frame.body:
        return value
    last = builder.frame.body[-1]
    field_name = (
        "output"
        if getattr(last, "output", None) is value
        else "var"
        if getattr(last, "var", None) is value
        else None
    )
    if field_name is None:
        return value
    import dataclasses

    renamed = dataclasses.replace(value, name=builder.fresh_name(name))
    builder.frame.body[-1] = dataclasses.replace(last, **{field_name: renamed})
    builder.created_in[id(renamed)] = builder.created_in.get(id(value), builder.frame)
    if id(value) in builder.declared_scalars:
        builder.declared_scalars.add(id(renamed))
    return renamed


# ----------------------------------------------------------------------------------------- expressions
def _tensor_op(op: str, *operands):
    from anybit.lang.compute import elementwise

    return elementwise(op, operands)


def eq(lhs, rhs):
    """``lhs == rhs``: element-wise for tensors, a run-time expression for scalars, else Python."""
    if isinstance(lhs, RegisterTensor) or isinstance(rhs, RegisterTensor):
        return _tensor_op("eq", lhs, rhs)
    if isinstance(lhs, Expr) or isinstance(rhs, Expr):
        if isinstance(lhs, Tensor) or isinstance(rhs, Tensor):
            return lhs is rhs
        return binary("eq", lhs, rhs)
    return lhs == rhs


def ne(lhs, rhs):
    """``lhs != rhs`` (see :func:`eq`)."""
    if isinstance(lhs, RegisterTensor) or isinstance(rhs, RegisterTensor):
        return _tensor_op("ne", lhs, rhs)
    if isinstance(lhs, Expr) or isinstance(rhs, Expr):
        if isinstance(lhs, Tensor) or isinstance(rhs, Tensor):
            return lhs is not rhs
        return binary("ne", lhs, rhs)
    return lhs != rhs


def _as_bool_expr(value: Expr) -> Expr:
    return value if value.dtype is boolean else binary("ne", value, 0)


def and_(lhs, rhs_thunk):
    """``lhs and rhs``, short-circuiting in Python, a logical-and expression at run time."""
    if isinstance(lhs, RegisterTensor):
        return _tensor_op("logical_and", lhs, rhs_thunk())
    if is_runtime(lhs):
        rhs = rhs_thunk()
        if isinstance(rhs, RegisterTensor):
            return _tensor_op("logical_and", lhs, rhs)
        if is_runtime(rhs):
            return binary("logical_and", _as_bool_expr(lhs), _as_bool_expr(rhs))
        return _as_bool_expr(lhs) if truth(rhs) else False
    if not truth(lhs):
        return lhs
    return rhs_thunk()


def or_(lhs, rhs_thunk):
    """``lhs or rhs``, short-circuiting in Python, a logical-or expression at run time."""
    if isinstance(lhs, RegisterTensor):
        return _tensor_op("logical_or", lhs, rhs_thunk())
    if is_runtime(lhs):
        rhs = rhs_thunk()
        if isinstance(rhs, RegisterTensor):
            return _tensor_op("logical_or", lhs, rhs)
        if is_runtime(rhs):
            return binary("logical_or", _as_bool_expr(lhs), _as_bool_expr(rhs))
        return True if truth(rhs) else _as_bool_expr(lhs)
    if truth(lhs):
        return lhs
    return rhs_thunk()


def not_(value):
    """``not value``: element-wise for tensors, a run-time expression for scalars, else Python."""
    if isinstance(value, RegisterTensor):
        return _tensor_op("logical_not", value)
    if is_runtime(value):
        return unary("logical_not", value)
    return not truth(value)


def select(condition, on_true_thunk, on_false_thunk):
    """``a if condition else b``: a run-time Select for scalar operands, else Python."""
    if isinstance(condition, Tensor):
        raise current_builder().error(
            "expected a scalar condition in `a if cond else b`; use self.where(...)"
        )
    if not is_runtime(condition):
        return on_true_thunk() if truth(condition) else on_false_thunk()
    on_true, on_false = on_true_thunk(), on_false_thunk()
    if isinstance(on_true, Tensor) or isinstance(on_false, Tensor):
        raise current_builder().error(
            "`a if cond else b` with a run-time condition needs scalar values; use "
            "self.where(cond, a, b) for tensors"
        )
    return Select(condition, as_expr(on_true), as_expr(on_false))


def location() -> SourceLocation | None:
    """The kernel author's line executing now."""
    return current_builder().location()


def augment(op_name: str, value, operand):
    """``value op= operand`` with Python's in-place operator semantics (register tensors make a new one)."""
    import operator

    return getattr(operator, op_name)(value, operand)
