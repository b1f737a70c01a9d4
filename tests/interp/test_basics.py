"""Load/compute/store round trips through the interpreter on hand-built programs."""

import numpy as np
from interp_programs import Builder, reg

import anybit.dtypes as dt
from anybit import ir
from anybit.interp import interpret
from anybit.ir.expr import BlockIndex
from anybit.layout import spatial


def test_vector_add_over_grid():
    b = Builder(warps=1, grid=(3, 1, 1))
    x = b.param("x", dt.float16, pointer=True)
    y = b.param("y", dt.float16, pointer=True)
    n = b.param("n", dt.int32)
    gx = b.global_view(x, dt.float16, (n,))
    gy = b.global_view(y, dt.float16, (n,))
    layout = spatial(32).local(2)
    r = reg(dt.float16, layout)
    s = reg(dt.float16, layout)
    offset = (BlockIndex(0) * 64,)
    b.emit(ir.LoadGlobalInst, r, gx, offset)
    b.emit(ir.BinaryInst, s, "add", r, ir.Const(1.5, dt.float32))
    b.emit(ir.StoreGlobalInst, gy, s, offset)
    program = b.build()
    xs = np.random.default_rng(0).standard_normal(150).astype(np.float16)
    ys = np.full(150, np.nan, dtype=np.float16)
    interpret(program, xs, ys, 150)
    np.testing.assert_array_equal(ys, xs + np.float16(1.5))
