"""The emitter registry, the shared-memory planner, expression printing, vectorization and views."""

from __future__ import annotations

import re

import pytest
from cuda_programs import global_view, pointer, program, reg
from cuda_support import requires_nvrtc

from anybit import dtypes as dt
from anybit.cuda import CodegenError, generate_cuda, missing_emitters
from anybit.cuda.emitter import register_emitter
from anybit.cuda.expressions import THREAD, ExprPrinter
from anybit.cuda.shared_plan import FirstFitAllocator
from anybit.cuda.vectorize import affine_plan
from anybit.ir import LoadGlobalInst, StoreGlobalInst, SyncInst, ViewInst
from anybit.ir.expr import Var
from anybit.layout import local, spatial


def test_every_instruction_has_an_emitter() -> None:
    assert missing_emitters() == []


def test_duplicate_emitter_is_rejected() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_emitter(SyncInst)(lambda ctx, inst: None)


def test_first_fit_reuses_freed_bytes() -> None:
    allocator = FirstFitAllocator()
    a = allocator.allocate(1000)
    b = allocator.allocate(100)
    allocator.release(a, 1000)
    c = allocator.allocate(512)
    assert (a, b, c) == (0, 1024, 0) and allocator.peak == 1152


def test_floor_division_printing() -> None:
    printer = ExprPrinter()
    k = Var("k", dt.int32)
    printer.bind(k)
    assert printer.print(THREAD // 4 % 8) == "((tid >> 2) & 7)"
    assert printer.print(THREAD // 3 % 5) == "((int)((unsigned)(((int)((unsigned)(tid) / 3u))) % 5u))"
    assert "ab_floordiv" in printer.print(k // 3) and "ab_floormod" in printer.print(k % 3)


def test_vector_width_follows_layout_and_alignment() -> None:
    layout = spatial(16, 8).local(1, 8)
    assert affine_plan(layout, dt.float16, (64, 1), (0, 0), 16).piece_bytes == 16
    assert affine_plan(layout, dt.float16, (64, 1), (0, 4), 16).piece_bytes == 8  # offset 4 elements
    assert affine_plan(layout, dt.float16, (63, 1), (0, 0), 16).piece_bytes == 2  # odd row stride
    six = affine_plan(spatial(32).local(4), dt.int6, (1,), (0,), 16)
    assert six.count == 4 and six.piece_bytes == 1 and len(six.groups[0].pieces) == 3  # 3 bytes
    twelve = affine_plan(spatial(32).local(16), dt.int6, (1,), (0,), 16)
    assert twelve.piece_bytes == 4 and len(twelve.groups[0].pieces) == 3


def test_unsupported_mask_layout_says_why() -> None:
    from anybit.ir import RegisterTensor

    x, o = pointer("x", dt.float32), pointer("o", dt.float32)
    gx, vx = global_view("gx", x, dt.float32, 128)
    a = reg("a", dt.float32, spatial(128))
    mask = RegisterTensor("mask", dt.boolean, (128,), spatial(32).local(4))
    bad = program("bad", [x, o], [vx, LoadGlobalInst(a, gx, (0,), mask=mask)])
    with pytest.raises(CodegenError, match="mask's layout"):
        generate_cuda(bad)


def _instruction_count(ptx: str) -> int:
    body = ptx[ptx.index("{") :]
    return sum(
        1 for line in body.splitlines() if re.match(r"\s+[a-z@]", line) and not line.strip().startswith("//")
    )


@requires_nvrtc
def test_view_is_zero_cost() -> None:
    from anybit.runtime.nvrtc import compile_cubin

    def build(with_view: bool):
        x, o = pointer("x", dt.uint32), pointer("o", dt.uint32)
        gx, vx = global_view("gx", x, dt.uint32, 512)
        go, vo = global_view("go", o, dt.uint32, 512)
        raw = reg("raw", dt.uint32, spatial(128).local(4))
        body = [vx, vo, LoadGlobalInst(raw, gx, (0,))]
        if with_view:
            as_int4 = reg("q", dt.int4, spatial(128).local(32))
            back = reg("back", dt.uint32, spatial(128).local(4))
            body += [ViewInst(as_int4, raw), ViewInst(back, as_int4), StoreGlobalInst(go, back, (0,))]
        else:
            body += [StoreGlobalInst(go, raw, (0,))]
        return program("view_cost", [x, o], body)

    counts = []
    for with_view in (False, True):
        kernel = generate_cuda(build(with_view))
        counts.append(_instruction_count(compile_cubin(kernel.source, kernel.name, "sm_90a").ptx))
    assert counts[0] == counts[1]


def test_layout_local_size_words() -> None:
    from anybit.cuda.registers import word_count

    assert word_count(dt.int6, local(16).local_size) == 3 and word_count(dt.float16, 8) == 4
