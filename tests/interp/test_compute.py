"""Element-wise, cast, reduce, where, assign and dot instructions against numpy references."""

import ml_dtypes
import numpy as np
import pytest
from interp_programs import Builder, reg

import anybit.dtypes as dt
from anybit import ir
from anybit.interp import interpret
from anybit.layout import local, spatial
from anybit.layout.mma import MMA_M16N8_C, MMA_M16N8K16_F16_A, MMA_M16N8K16_F16_B

LAYOUT = local(2, 1).spatial(4, 8).local(1, 2)  # an [8, 16] tile over 32 threads


def run_2d(dtype_in, dtype_out, build_body, *inputs, out_shape=(8, 16), out_layout=LAYOUT):
    """Load each input [8, 16] tile, run ``build_body(builder, regs) -> out reg``, store, return output."""
    b = Builder()
    pointers = [b.param(f"x{i}", dtype_in, pointer=True) for i in range(len(inputs))]
    out_ptr = b.param("y", dtype_out, pointer=True)
    regs = []
    for p in pointers:
        g = b.global_view(p, dtype_in, (8, 16))
        r = reg(dtype_in, LAYOUT)
        b.emit(ir.LoadGlobalInst, r, g, (0, 0))
        regs.append(r)
    result = build_body(b, regs)
    gy = b.global_view(out_ptr, dtype_out, out_shape)
    b.emit(ir.StoreGlobalInst, gy, result, (0,) * len(out_shape))
    out = (
        np.full(out_shape, np.nan, dtype=dtype_out.numpy_dtype)
        if dtype_out.is_float
        else np.zeros(out_shape, dtype=dtype_out.numpy_dtype)
    )
    interpret(b.build(), *inputs, out)
    return out


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "minimum"])
@pytest.mark.parametrize("dtype", [dt.float16, dt.float32, dt.bfloat16])
def test_binary_float_ieee_exact(op, dtype):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 16)).astype(dtype.numpy_dtype)
    c = (rng.standard_normal((8, 16)) + 3).astype(dtype.numpy_dtype)

    def body(b, regs):
        out = reg(dtype, LAYOUT)
        b.emit(ir.BinaryInst, out, op, regs[0], regs[1])
        return out

    got = run_2d(dtype, dtype, body, a, c)
    numpy_op = {
        "add": np.add,
        "sub": np.subtract,
        "mul": np.multiply,
        "div": np.divide,
        "maximum": np.maximum,
        "minimum": np.minimum,
    }[op]
    np.testing.assert_array_equal(got, numpy_op(a, c))


@pytest.mark.parametrize("op", ["add", "mul", "div", "mod", "and", "xor", "shl", "shr", "lt", "eq"])
def test_binary_int32_wraps_and_floors(op):
    rng = np.random.default_rng(2)
    a = rng.integers(-(2**31), 2**31, (8, 16)).astype(np.int32)
    c = rng.integers(1, 30, (8, 16)).astype(np.int32) * rng.choice([-1, 1], (8, 16)).astype(np.int32)
    if op in ("shl", "shr"):
        c = np.abs(c)
    out_dtype = dt.boolean if op in ("lt", "eq") else dt.int32

    def body(b, regs):
        out = reg(out_dtype, LAYOUT)
        b.emit(ir.BinaryInst, out, op, regs[0], regs[1])
        return out

    got = run_2d(dt.int32, out_dtype, body, a, c)
    wide_a, wide_c = a.astype(np.int64), c.astype(np.int64)
    expected = {
        "add": wide_a + wide_c,
        "mul": wide_a * wide_c,
        "div": wide_a // wide_c,
        "mod": wide_a % wide_c,
        "and": wide_a & wide_c,
        "xor": wide_a ^ wide_c,
        "shl": wide_a << wide_c,
        "shr": wide_a >> wide_c,
        "lt": wide_a < wide_c,
        "eq": wide_a == wide_c,
    }[op]
    np.testing.assert_array_equal(got, expected.astype(out_dtype.numpy_dtype))


def test_broadcast_row_operand_and_scalar():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((8, 16)).astype(np.float32)

    def body(b, regs):
        row_max = reg(dt.float32, LAYOUT.reduce([1], keepdims=True))
        b.emit(ir.ReduceInst, row_max, "max", regs[0], 1, True)
        shifted = reg(dt.float32, LAYOUT)
        b.emit(ir.BinaryInst, shifted, "sub", regs[0], row_max)
        scaled = reg(dt.float32, LAYOUT)
        b.emit(ir.BinaryInst, scaled, "mul", shifted, ir.Const(2.0, dt.float32))
        return scaled

    got = run_2d(dt.float32, dt.float32, body, a)
    np.testing.assert_array_equal(got, (a - a.max(1, keepdims=True)) * np.float32(2))


@pytest.mark.parametrize("op", ["sum", "prod", "max", "min"])
@pytest.mark.parametrize("dim", [0, 1])
def test_reduce(op, dim):
    a = np.random.default_rng(4).standard_normal((8, 16)).astype(np.float32)

    def body(b, regs):
        out = reg(dt.float32, LAYOUT.reduce([dim]))
        b.emit(ir.ReduceInst, out, op, regs[0], dim, False)
        return out

    shape = (16,) if dim == 0 else (8,)
    got = run_2d(dt.float32, dt.float32, body, a, out_shape=shape)
    np.testing.assert_allclose(got, getattr(a, op)(axis=dim), rtol=1e-6)


@pytest.mark.parametrize("op", ["neg", "abs", "exp", "sqrt", "log", "tanh"])
def test_unary(op):
    a = (np.random.default_rng(5).random((8, 16)) + 0.5).astype(np.float32)

    def body(b, regs):
        out = reg(dt.float32, LAYOUT)
        b.emit(ir.UnaryInst, out, op, regs[0])
        return out

    got = run_2d(dt.float32, dt.float32, body, a)
    np.testing.assert_array_equal(got, getattr(np, {"neg": "negative"}.get(op, op))(a))


def test_where_and_cast_saturates_and_rounds():
    a = np.array([[70000.0, -1e9, 0.1, 2.5] * 4] * 8, dtype=np.float32)

    def body(b, regs):
        positive = reg(dt.boolean, LAYOUT)
        b.emit(ir.BinaryInst, positive, "gt", regs[0], ir.Const(0.0, dt.float32))
        chosen = reg(dt.float32, LAYOUT)
        b.emit(ir.WhereInst, chosen, positive, regs[0], ir.Const(-3.5, dt.float32))
        half = reg(dt.float16, LAYOUT)
        b.emit(ir.CastInst, half, chosen)
        return half

    got = run_2d(dt.float32, dt.float16, body, a)
    expected = np.where(a > 0, a, -3.5)
    expected = np.clip(expected, -65504, 65504).astype(np.float16)  # §4.1: saturate, not inf
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("target", [dt.int4, dt.uint3, dt.float4_e2m1, dt.float6_e3m2, dt.float8_e4m3])
def test_cast_to_low_bit_matches_encode(target):
    a = (np.random.default_rng(6).standard_normal((8, 16)) * 4).astype(np.float32)

    def body(b, regs):
        low = reg(target, LAYOUT)
        b.emit(ir.CastInst, low, regs[0])
        back = reg(dt.float32, LAYOUT)
        b.emit(ir.CastInst, back, low)
        return back

    got = run_2d(dt.float32, dt.float32, body, a)
    np.testing.assert_array_equal(got, dt.decode(dt.encode(a, target), target).astype(np.float32))


def test_assign_moves_values_between_layouts():
    a = np.random.default_rng(7).standard_normal((8, 16)).astype(np.float32)

    def body(b, regs):
        other = reg(dt.float32, spatial(8, 4).local(1, 4))
        b.emit(ir.AssignInst, other, regs[0])
        return other

    np.testing.assert_array_equal(run_2d(dt.float32, dt.float32, body, a), a)


@pytest.mark.parametrize("dtype", [dt.float16, dt.bfloat16])
def test_dot_accumulates_in_float32(dtype):
    rng = np.random.default_rng(8)
    a = rng.standard_normal((16, 16)).astype(dtype.numpy_dtype)
    bm = rng.standard_normal((16, 8)).astype(dtype.numpy_dtype)
    b = Builder()
    pa, pb, pc = b.param("a", dtype, True), b.param("b", dtype, True), b.param("c", dt.float32, True)
    ga, gb, gc = (
        b.global_view(pa, dtype, (16, 16)),
        b.global_view(pb, dtype, (16, 8)),
        b.global_view(pc, dt.float32, (16, 8)),
    )
    ra, rb = reg(dtype, MMA_M16N8K16_F16_A), reg(dtype, MMA_M16N8K16_F16_B)
    acc = reg(dt.float32, MMA_M16N8_C)
    b.emit(ir.LoadGlobalInst, ra, ga, (0, 0))
    b.emit(ir.LoadGlobalInst, rb, gb, (0, 0))
    b.emit(ir.AllocateRegisterInst, acc, 1.0)
    b.emit(ir.DotInst, acc, ra, rb, acc)
    b.emit(ir.StoreGlobalInst, gc, acc, (0, 0))
    out = np.full((16, 8), np.nan, dtype=np.float32)
    interpret(b.build(), a, bm, out)
    expected = a.astype(np.float32) @ bm.astype(np.float32) + 1
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert ml_dtypes  # bfloat16 arrays come from ml_dtypes
