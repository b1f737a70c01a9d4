"""Index arithmetic of the generated C: shifts and masks for floor division by powers of two, lower bounds
that drop ``>= 0`` checks, loop-invariant values hoisted to the prologue, and bounds checks without a
per-element fallback when divisibility makes a vector access all-in or all-out."""

from __future__ import annotations

import numpy as np

import anybit
from anybit import dtypes as dt
from anybit.cuda import generate_cuda
from anybit.cuda.expressions import THREAD, ExprPrinter
from anybit.ir.expr import BlockIndex, Var, binary
from anybit.layout import spatial


def _loop_printer() -> tuple[ExprPrinter, list[str], Var, Var]:
    prologue: list[str] = []
    printer = ExprPrinter(hoist=prologue.append)
    m = Var("m", dt.int32)
    printer.bind(m, name="p_m")
    printer.invariant.add(m)
    step = Var("step", dt.int32)
    printer.bind(step, nonnegative=True)
    printer.lower_bounds[step] = 0
    printer.loop_depth = 1
    return printer, prologue, m, step


def test_power_of_two_floor_division_is_a_shift_and_a_mask_for_every_sign() -> None:
    printer = ExprPrinter()
    k = Var("k", dt.int32)
    printer.bind(k, name="k")
    assert printer.print(k // 8) == "(k >> 3)" and printer.print(k % 8) == "(k & 7)"
    values = np.arange(-1000, 1000, dtype=np.int32)
    assert (np.right_shift(values, 3) == values // 8).all()  # arithmetic shift, as CUDA's signed >>
    assert (np.bitwise_and(values, 7) == values % 8).all()  # two's-complement mask = floor remainder


def test_lower_bounds_make_division_unsigned_and_drop_nonnegativity_checks() -> None:
    printer, _, m, step = _loop_printer()
    ahead = step + 4 - 1
    assert printer.lower_bound(ahead) == 3 and printer.lower_bound(ahead * 32 + THREAD % 4 * 8) == 96
    assert printer.lower_bound(m) is None and printer.lower_bound(step - m) is None
    assert printer.print(ahead % 3) == "((int)((unsigned)(((v_step + 4) - 1)) % 3u))"
    assert "ab_floormod" in printer.print((step - 5) % 3)  # may be negative: the floor helper stays
    assert printer.print((ahead * 128) // 128) == "((v_step + 4) - 1)"  # (x·c)//c cancels exactly
    assert printer.print((ahead * 256) % 128) == "0"


def test_loop_invariant_subexpressions_are_hoisted_once() -> None:
    printer, prologue, m, step = _loop_printer()
    row = BlockIndex(0) * 128 + THREAD // 4 % 128
    assert printer.print(binary("lt", row, m)) == "h0"
    assert prologue == ["const bool h0 = ((((int)blockIdx.x * 128) + ((tid >> 2) & 127)) < p_m);"]
    column = step * 32 + THREAD % 4 * 8
    assert (
        printer.print(column) == "((v_step * 32) + h1)" and prologue[-1] == "const int h1 = ((tid & 3) * 8);"
    )
    assert printer.print(binary("lt", row, m)) == "h0" and len(prologue) == 2  # computed once
    printer.loop_depth = 0
    assert printer.print(THREAD % 4 * 8) == "((tid & 3) * 8)"  # outside loops: printed in place


class _Copy(anybit.Script):
    """Loads and stores 8 halves per thread from a length-n vector (n assumed a multiple of ``divisor``)."""

    def __init__(self, divisor: int) -> None:
        super().__init__()
        self.divisor = divisor

    def __call__(self, x: anybit.ptr(anybit.float16), y: anybit.ptr(anybit.float16), n: anybit.int32):
        self.attrs.blocks = [(n + 1023) // 1024]
        self.attrs.warps = 4
        if self.divisor > 1:
            self.assume_divisible(n, self.divisor)
        gx = self.global_view(x, anybit.float16, [n])
        gy = self.global_view(y, anybit.float16, [n])
        start = self.blockIdx.x * 1024
        for step in self.range(4):
            value = self.load_global(gx, [start], [1024], layout=spatial(128).local(8))
            self.store_global(gy, value, [start])
            start = start + 0 * step


def test_divisibility_removes_the_per_element_fallback() -> None:
    fallback = generate_cuda(_Copy(1).program(None, None, 4096)).source
    divisible = generate_cuda(_Copy(8).program(None, None, 4096)).source
    assert fallback.count("} else {") > divisible.count("} else {")
    body = divisible.split("for (", 1)[1]
    assert body.count("if (") == 2  # one predicate for the load (else: `other`), one for the store


def test_matmul_main_loop_has_no_floor_helpers_or_sign_checks() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))
    from matmul_f16 import MatmulF16

    source = generate_cuda(MatmulF16(**MatmulF16.FAST).program(None, None, None, 4096, 4096, 4096)).source
    loop = source.split("for (int v_step", 1)[1].split("mma.sync", 1)[0]
    assert "ab_floor" not in loop and ">= 0" not in loop
    assert "const bool h" in source.split("for (int v_step", 1)[0]  # the row bounds checks are hoisted
