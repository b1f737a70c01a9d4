"""Each front-end construct records the expected statements; user errors point at the kernel's lines."""

import inspect

import pytest

import anybit
from anybit import float32, int32
from anybit.ir import (
    AssignInst,
    AssignScalarInst,
    BinaryInst,
    BreakStmt,
    ForStmt,
    IfStmt,
    KernelDefinitionError,
    WhileStmt,
)


def _line_of(cls, text):
    lines, first = inspect.getsourcelines(
        cls.__call__ if "_block_program" not in vars(cls) else cls._block_program
    )
    return first + next(i for i, line in enumerate(lines) if text in line)


def _stmts(body, kind):
    return [s for s in body if isinstance(s, kind)]


class Loops(anybit.Script):
    def __call__(self, n: int32):
        self.attrs.blocks = [1]
        acc = self.register_tensor(float32, [32], init=0)
        for k in self.range(n, unroll=2):
            acc += 1.0
            if k == 0:
                break
        for _ in range(3):
            acc = acc * 2.0


def test_runtime_for_records_one_body_and_compile_time_for_unrolls():
    body = Loops().trace().body
    (loop,) = _stmts(body, ForStmt)
    assert loop.unroll == 2 and repr(loop.stop) == "n"
    assert [type(s) for s in loop.body] == [BinaryInst, AssignInst, IfStmt]
    assert isinstance(loop.body[1], AssignInst) and loop.body[1].output.name == "acc"
    assert isinstance(loop.body[2].then_body[0], BreakStmt)
    assert repr(loop.body[2].condition) == "(k == 0)"
    assert len(_stmts(body, BinaryInst)) == 3  # range(3) unrolled at build time


class Branches(anybit.Script):
    def __call__(self, n: int32, mode: int):
        self.attrs.blocks = [1]
        total = self.scalar(0, int32)
        if n == 0:
            total = total + 1
        elif n < 5:
            total = total + 2
        else:
            total = total + 3
        if mode == 1:
            self.sync()
        while total < n:
            total = total * 2


def test_if_elif_else_and_while_on_runtime_values():
    body = Branches().trace(mode=0).body
    (branch,) = _stmts(body, IfStmt)
    assert isinstance(branch.then_body[0], AssignScalarInst)
    (inner,) = branch.else_body
    assert isinstance(inner, IfStmt) and repr(inner.condition) == "(n < 5)"
    assert isinstance(inner.else_body[0], AssignScalarInst)
    (loop,) = _stmts(body, WhileStmt)
    assert repr(loop.condition).startswith("(v < n)") or "<" in repr(loop.condition)
    assert isinstance(loop.body[0], AssignScalarInst)
    assert not any(type(s).__name__ == "SyncInst" for s in body)  # mode == 1 resolved at build time
    assert any(type(s).__name__ == "SyncInst" for s in Branches().trace(mode=1).body)


def test_equality_rewrite_builds_runtime_expressions():
    class Eq(anybit.Script):
        def __call__(self, n: int32):
            self.attrs.blocks = [1]
            if n == 3 and not n != 4:
                self.sync()

    (branch,) = Eq().trace().body
    assert repr(branch.condition) == "((n == 3) and not (n != 4))"


def test_python_value_reassigned_in_runtime_loop_asks_for_scalar():
    class Bad(anybit.Script):
        def __call__(self, n: int32):
            self.attrs.blocks = [1]
            count = 0
            for k in self.range(n):
                count = count + k

    with pytest.raises(KernelDefinitionError, match=r"self\.scalar\(value, dtype\)") as info:
        Bad().trace()
    assert info.value.source.line == _line_of(Bad, "count = count + k")


def test_return_inside_runtime_control_flow_is_rejected():
    class Bad(anybit.Script):
        def __call__(self, n: int32):
            self.attrs.blocks = [1]
            if n > 0:
                return

    with pytest.raises(KernelDefinitionError, match=r"self\.exit\(\)") as info:
        Bad().trace()
    assert info.value.source.line == _line_of(Bad, "return")


def test_break_from_compile_time_loop_under_runtime_if_is_rejected():
    class Bad(anybit.Script):
        def __call__(self, n: int32):
            self.attrs.blocks = [1]
            for _ in range(4):
                if n > 0:
                    break

    with pytest.raises(KernelDefinitionError, match="cannot leave a compile-time loop"):
        Bad().trace()


def test_source_locations_point_at_the_authors_lines():
    body = Loops().trace().body
    (loop,) = _stmts(body, ForStmt)
    assert loop.source.line == _line_of(Loops, "for k in self.range")
    add = loop.body[0]
    assert add.source.line == _line_of(Loops, "acc += 1.0") and add.source.text == "acc += 1.0"
    assert add.source.filename == __file__


def test_missing_blocks_is_a_clear_error():
    class NoGrid(anybit.Script):
        def __call__(self):
            self.sync()

    with pytest.raises(KernelDefinitionError, match=r"self\.attrs\.blocks") as info:
        NoGrid().trace()
    assert info.value.source.line == _line_of(NoGrid, "self.sync()")


def test_tuple_swap_of_loop_carried_tensors_copies_first():
    class Swap(anybit.Script):
        def __call__(self, n: int32):
            self.attrs.blocks = [1]
            a = self.register_tensor(float32, [32], init=0)
            b = self.register_tensor(float32, [32], init=1)
            for _ in self.range(n):
                a, b = b, a

    (loop,) = _stmts(Swap().trace().body, ForStmt)
    assigns = [(s.output.name, s.operand.name) for s in loop.body]
    assert assigns == [("copy", "b"), ("copy_1", "a"), ("a", "copy"), ("b", "copy_1")]
