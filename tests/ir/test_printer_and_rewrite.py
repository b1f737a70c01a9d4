"""The printer shows shapes, dtypes and layouts; the rewriter substitutes by identity; tensor operators."""

import pytest

from anybit.dtypes import float16, float32, int32
from anybit.ir import (
    AllocateRegisterInst,
    BinaryInst,
    BlockIndex,
    Const,
    ForStmt,
    Program,
    RegisterTensor,
    Var,
    substitute,
)
from anybit.layout import local, spatial

MMA_C = "local(2, 1).spatial(8, 4).local(1, 2)"


def _program(layout=None):
    n = Var("n", int32)
    k = Var("k", int32)
    acc = RegisterTensor("acc", float32, (16, 8), layout)
    total = RegisterTensor("t", float32, (16, 8), layout)
    body = (
        AllocateRegisterInst(acc, 0),
        ForStmt(k, Const(0), n, Const(1), (BinaryInst(total, "add", acc, 1.0),), unroll=2),
    )
    return Program("demo", (n,), (BlockIndex(0) * 0 + 4, Const(1), Const(1)), 1, body, (("tile", 16),)), acc


def test_printer_shows_signature_shapes_dtypes_and_layouts():
    program, _ = _program(local(2, 1).spatial(8, 4).local(1, 2))
    assert str(program) == "\n".join(
        [
            "def demo(n: int32)  # grid=[4, 1, 1], warps=1",
            "    # constants: tile=16",
            "    acc = allocate_register(init=0)  # register float32[16, 8] layout=" + MMA_C,
            "    for k in range(0, n, 1):  # unroll=2",
            "        t = add(lhs=acc, rhs=1.0)  # register float32[16, 8] layout=" + MMA_C,
        ]
    )


def test_printer_marks_missing_layouts():
    program, _ = _program()
    assert "register float32[16, 8] layout=?" in str(program)


def test_substitute_replaces_by_identity_and_keeps_untouched_nodes():
    program, acc = _program()
    laid_out = RegisterTensor("acc", float32, (16, 8), spatial(32).local(4))
    new = substitute(program, {id(acc): laid_out})
    assert new.body[0].output is laid_out
    assert new.body[1].body[0].lhs is laid_out
    assert new.body[1].body[0].output is program.body[1].body[0].output  # untouched tensor kept
    assert new.params == program.params and new.params[0] is program.params[0]


def test_tensors_compare_by_identity_and_operators_need_a_builder():
    a = RegisterTensor("a", float16, (4,), None)
    b = RegisterTensor("a", float16, (4,), None)
    assert a == a and a != b and len({a, b}) == 2
    assert repr(a) == "a"
    with pytest.raises(TypeError, match="only available while a kernel is being built"):
        a + 1  # noqa: B018
    with pytest.raises(TypeError, match="self.where"):
        bool(a)


def test_expression_operators_defer_to_tensors():
    assert Var("x", int32).__add__(RegisterTensor("a", float16, (4,), None)) is NotImplemented
