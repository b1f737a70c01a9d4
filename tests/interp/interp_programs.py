"""A tiny helper that builds VM programs straight from IR nodes, for interpreter tests."""

from __future__ import annotations

import inspect
import itertools

from anybit import ir
from anybit.ir.expr import PointerType, Var, as_expr
from anybit.layout import global_row_major
from anybit.layout.shared import shared_row_major

_names = itertools.count()


def here(depth: int = 2) -> ir.SourceLocation:
    """The source location of the test line that called the helper."""
    frame = inspect.stack()[depth]
    text = frame.code_context[0] if frame.code_context else ""
    return ir.SourceLocation(frame.filename, frame.lineno, text)


class Builder:
    """Collects parameters and statements; ``build()`` returns the Program."""

    def __init__(self, *, warps: int = 1, grid=(1, 1, 1)) -> None:
        self.params: list[Var] = []
        self.body: list = []
        self.warps = warps
        self.grid = grid

    def param(self, name: str, dtype, pointer: bool = False) -> Var:
        var = Var(name, PointerType(dtype) if pointer else dtype)
        self.params.append(var)
        return var

    def emit(self, inst_class, *args, **kwargs):
        inst = inst_class(*args, **kwargs, source=here())
        self.body.append(inst)
        return inst

    def global_view(self, pointer: Var, dtype, shape, strides=None) -> ir.GlobalTensor:
        layout = global_row_major(*shape) if strides is None else ir.GlobalTensor  # noqa
        if strides is not None:
            from anybit.layout import global_strided

            layout = global_strided(shape, strides)
        tensor = ir.GlobalTensor(f"g{next(_names)}", dtype, tuple(shape), layout)
        self.body.append(ir.GlobalViewInst(tensor, pointer, source=here()))
        return tensor

    def shared(self, dtype, shape, layout=None) -> ir.SharedTensor:
        tensor = ir.SharedTensor(f"s{next(_names)}", dtype, tuple(shape), layout or shared_row_major(*shape))
        self.body.append(ir.AllocateSharedInst(tensor, source=here()))
        return tensor

    def build(self, name: str = "test_program") -> ir.Program:
        grid = tuple(as_expr(g) for g in self.grid)
        return ir.Program(name, tuple(self.params), grid, self.warps, tuple(self.body))


def reg(dtype, layout, name: str | None = None) -> ir.RegisterTensor:
    """A register tensor with ``layout``."""
    return ir.RegisterTensor(name or f"r{next(_names)}", dtype, tuple(layout.shape), layout)
