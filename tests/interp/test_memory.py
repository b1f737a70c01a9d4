"""Shared memory, copy_async groups, masks, atomics, semaphores, control flow, print, and the error checks."""

import numpy as np
import pytest
from interp_programs import Builder, reg

import anybit.dtypes as dt
from anybit import ir
from anybit.interp import DeadlockError, InterpreterError, interpret
from anybit.ir.expr import BlockIndex, Var
from anybit.layout import local, spatial
from anybit.layout.shared import shared_row_major

ROWS = spatial(32).local(2)  # 64 elements over 32 threads
SWAPPED = local(2).spatial(32)  # the same 64 elements, another thread assignment


def copy_through_shared(*, with_sync=True, dtype=dt.float16, read_layout=SWAPPED):
    b = Builder()
    px, py = b.param("x", dtype, True), b.param("y", dtype, True)
    gx, gy = b.global_view(px, dtype, (64,)), b.global_view(py, dtype, (64,))
    s = b.shared(dtype, (64,))
    r, t = reg(dtype, ROWS), reg(dtype, read_layout)
    b.emit(ir.LoadGlobalInst, r, gx, (0,))
    b.emit(ir.StoreSharedInst, s, r, (0,))
    if with_sync:
        b.emit(ir.SyncInst)
    b.emit(ir.LoadSharedInst, t, s, (0,))
    b.emit(ir.StoreGlobalInst, gy, t, (0,))
    return b.build()


@pytest.mark.parametrize("dtype", [dt.float16, dt.int4, dt.float6_e3m2, dt.uint1])
def test_shared_round_trip_packs_sub_byte(dtype):
    codes = np.random.default_rng(0).integers(0, 1 << dtype.nbits, 64).astype(dtype.code_dtype)
    data = dt.pack(codes, dtype)
    if dtype.is_standard:
        data = data.view(dtype.numpy_dtype)
    out = np.zeros_like(data)
    interpret(copy_through_shared(dtype=dtype), data, out)
    np.testing.assert_array_equal(out.view(np.uint8), data.view(np.uint8))


def test_missing_sync_names_the_load():
    x = np.arange(64, dtype=np.float16)
    with pytest.raises(InterpreterError, match=r"load_shared at .*test_memory.py:\d+: .*no sync"):
        interpret(copy_through_shared(with_sync=False), x, np.zeros_like(x))


def test_same_thread_read_needs_no_sync():
    x = np.arange(64, dtype=np.float16)
    y = np.zeros_like(x)
    interpret(copy_through_shared(with_sync=False, read_layout=ROWS), x, y)
    np.testing.assert_array_equal(y, x)


def test_uninitialised_shared_read():
    b = Builder()
    py = b.param("y", dt.float32, True)
    gy = b.global_view(py, dt.float32, (64,))
    s = b.shared(dt.float32, (64,))
    t = reg(dt.float32, ROWS)
    b.emit(ir.LoadSharedInst, t, s, (0,))
    b.emit(ir.StoreGlobalInst, gy, t, (0,))
    with pytest.raises(InterpreterError, match=r"load_shared at .*test_memory.py:\d+.*nothing has written"):
        interpret(b.build(), np.zeros(64, np.float32))


def copy_async_program(*, wait: bool, sync: bool, stages: int = 2):
    """Copy x[64·k : 64·k+64] for k < stages into stage k of a [stages, 64] shared tensor, then read back."""
    b = Builder()
    px, py = b.param("x", dt.float16, True), b.param("y", dt.float16, True)
    gx, gy = b.global_view(px, dt.float16, (stages, 64)), b.global_view(py, dt.float16, (stages, 64))
    s = b.shared(dt.float16, (stages, 64))
    for k in range(stages):
        stage = ir.SharedTensor(f"stage{k}", dt.float16, (64,), shared_row_major(64))
        b.emit(ir.SharedSliceInst, stage, s, (k,))
        b.emit(ir.CopyAsyncInst, stage, gx, (k, 0))
        b.emit(ir.CopyAsyncCommitGroupInst)
    if wait:
        b.emit(ir.CopyAsyncWaitGroupInst, 0)
    if sync:
        b.emit(ir.SyncInst)
    t = reg(dt.float16, local(stages, 1).spatial(1, 32).local(1, 2))
    b.emit(ir.LoadSharedInst, t, s, (0, 0))
    b.emit(ir.StoreGlobalInst, gy, t, (0, 0))
    return b.build()


def test_copy_async_pipeline_lands_at_wait():
    x = np.random.default_rng(1).standard_normal((2, 64)).astype(np.float16)
    y = np.full_like(x, np.nan)
    interpret(copy_async_program(wait=True, sync=True), x, y)
    np.testing.assert_array_equal(y, x)


def test_copy_async_read_before_wait_is_an_error():
    x = np.zeros((2, 64), np.float16)
    with pytest.raises(InterpreterError, match="copy_async into it is still in flight"):
        interpret(copy_async_program(wait=False, sync=True), x, x.copy())


def test_copy_async_needs_sync_after_wait():
    x = np.zeros((2, 64), np.float16)
    with pytest.raises(InterpreterError, match=r"load_shared at .*without a sync"):
        interpret(copy_async_program(wait=True, sync=False), x, x.copy())


def masked_copy(n_expr_param=True):
    b = Builder(grid=(2, 1, 1))
    px, py = b.param("x", dt.float32, True), b.param("y", dt.float32, True)
    n = b.param("n", dt.int32)
    gx, gy = b.global_view(px, dt.float32, (n,)), b.global_view(py, dt.float32, (n,))
    r = reg(dt.float32, ROWS)
    b.emit(ir.LoadGlobalInst, r, gx, (BlockIndex(0) * 64,), other=-7.0)
    b.emit(ir.StoreGlobalInst, gy, r, (BlockIndex(0) * 64,))
    return b.build()


def test_ragged_edges_read_other_and_skip_stores():
    x = np.arange(100, dtype=np.float32)
    y = np.full(100, np.nan, np.float32)
    interpret(masked_copy(), x, y, 100)
    np.testing.assert_array_equal(y, x)


def test_view_past_the_callers_array_is_an_error():
    x = np.arange(100, dtype=np.float32)
    with pytest.raises(InterpreterError, match=r"global_view at .*test_memory.py:\d+.*holds only 400 bytes"):
        interpret(masked_copy(), x, np.zeros(100, np.float32), 128)


def test_argument_errors():
    with pytest.raises(InterpreterError, match="takes 3 run-time arguments"):
        interpret(masked_copy(), np.zeros(4, np.float32))
    with pytest.raises(InterpreterError, match="expected float32 elements"):
        interpret(masked_copy(), np.zeros(4, np.float64), np.zeros(4, np.float32), 4)
    with pytest.raises(InterpreterError, match="expected an int"):
        interpret(masked_copy(), np.zeros(4, np.float32), np.zeros(4, np.float32), 4.5)


def split_k_program(order):
    """Block k waits until semaphore == k, adds its row into y, then releases k + 1 (``order`` permutes)."""
    blocks = len(order)
    b = Builder(grid=(blocks, 1, 1))
    px, py, psem = (
        b.param("x", dt.float32, True),
        b.param("y", dt.float32, True),
        b.param("sem", dt.int32, True),
    )
    gx, gy = b.global_view(px, dt.float32, (blocks, 64)), b.global_view(py, dt.float32, (1, 64))
    gsem = b.global_view(psem, dt.int32, (1,))
    turn = Var("turn", dt.int32)
    order_expr = ir.Const(0)
    for block, position in enumerate(order):
        order_expr = ir.Select(ir.eq(BlockIndex(0), block), ir.Const(position), order_expr)
    b.emit(ir.DeclareScalarInst, turn, order_expr)
    r = reg(dt.float32, spatial(1, 32).local(1, 2))
    acc = reg(dt.float32, spatial(1, 32).local(1, 2))
    b.emit(ir.LoadGlobalInst, r, gx, (BlockIndex(0), 0))
    b.emit(ir.LockSemaphoreInst, gsem, (0,), turn)
    b.emit(ir.LoadGlobalInst, acc, gy, (0, 0))
    b.emit(ir.BinaryInst, acc, "add", acc, r)
    b.emit(ir.StoreGlobalInst, gy, acc, (0, 0))
    b.emit(ir.ReleaseSemaphoreInst, gsem, (0,), turn + 1)
    return b.build()


def test_semaphores_order_blocks():
    x = np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)
    y = np.zeros((1, 64), np.float32)
    sem = np.zeros(1, np.int32)
    interpret(split_k_program([3, 1, 0, 2]), x, y, sem)
    expected = np.zeros(64, np.float32)
    for block in [2, 1, 3, 0]:
        expected += x[block]
    np.testing.assert_array_equal(y[0], expected)
    assert sem[0] == 4


def test_deadlock_names_semaphore_and_values():
    x = np.zeros((2, 64), np.float32)
    with pytest.raises(
        DeadlockError,
        match=r"(?s)lock_semaphore at .*test_memory.py:\d+.*deadlock.*\[0\] == 1 \(it holds 5\)",
    ):
        interpret(split_k_program([1, 2]), x, np.zeros((1, 64), np.float32), np.array([5], np.int32))


def test_atomic_add_counts_replicated_elements_once():
    b = Builder(grid=(3, 1, 1))
    py = b.param("y", dt.float32, True)
    gy = b.global_view(py, dt.float32, (8,))
    replicated = spatial(8, 4).reduce([1])  # 8 elements, each held by 4 threads
    assert replicated.replication == 4
    r = reg(dt.float32, replicated)
    b.emit(ir.AllocateRegisterInst, r, 1.5)
    b.emit(ir.AtomicAddGlobalInst, gy, r, (0,))
    y = np.zeros(8, np.float32)
    interpret(b.build(), y)
    np.testing.assert_array_equal(y, np.full(8, 4.5, np.float32))


def test_workspace_allocation_is_clean_and_shared():
    b = Builder(grid=(4, 1, 1))
    py = b.param("y", dt.int32, True)
    gy = b.global_view(py, dt.int32, (32,))
    w = ir.GlobalTensor("counts", dt.int32, (32,), __import__("anybit").layout.global_row_major(32))
    b.emit(ir.AllocateGlobalInst, w, True)
    one = reg(dt.int32, spatial(32))
    b.emit(ir.AllocateRegisterInst, one, 1)
    b.emit(ir.AtomicAddGlobalInst, w, one, (0,))
    total = reg(dt.int32, spatial(32))
    b.emit(ir.LoadGlobalInst, total, w, (0,))
    b.emit(ir.StoreGlobalInst, gy, total, (0,))
    y = np.zeros(32, np.int32)
    workspace = np.full(4096, 0xFF, np.uint8)
    interpret(b.build(), y, workspace=workspace)
    np.testing.assert_array_equal(y, np.full(32, 4))


def test_control_flow_loops_break_exit_and_print():
    b = Builder(grid=(2, 1, 1))
    py = b.param("y", dt.int32, True)
    gy = b.global_view(py, dt.int32, (2, 32))
    acc = reg(dt.int32, spatial(1, 32))
    b.emit(ir.AllocateRegisterInst, acc, 0)
    i, j = Var("i", dt.int32), Var("j", dt.int32)
    count = Var("count", dt.int32)
    b.body.append(ir.DeclareScalarInst(count, ir.Const(0)))
    loop_body = (
        ir.IfStmt(ir.eq(i, 5), (ir.BreakStmt(),)),
        ir.BinaryInst(acc, "add", acc, i),
    )
    b.body.append(ir.ForStmt(i, ir.Const(0), ir.Const(10), ir.Const(1), loop_body))
    b.body.append(
        ir.WhileStmt(
            count < 3, (ir.AssignScalarInst(count, count + 1), ir.BinaryInst(acc, "mul", acc, ir.Const(2)))
        )
    )
    b.body.append(ir.ForStmt(j, ir.Const(0), ir.Const(1), ir.Const(1), ()))
    b.body.append(ir.PrintInst("acc", acc))
    b.body.append(ir.StoreGlobalInst(gy, acc, (BlockIndex(0), 0)))
    b.body.append(ir.IfStmt(ir.eq(BlockIndex(0), 1), (ir.ExitInst(),)))
    b.body.append(ir.StoreGlobalInst(gy, acc, (1, 0)))  # block 0 only: block 1 exits first
    lines = []
    y = np.full((2, 32), -1, np.int32)
    interpret(b.build(), y, print_fn=lines.append)
    np.testing.assert_array_equal(y, np.full((2, 32), (0 + 1 + 2 + 3 + 4) * 8))
    assert len(lines) == 2 and "acc" in lines[0] and "80" in lines[0]


def test_unknown_instruction_is_reported_before_running():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class MysteryInst(ir.Instruction):
        source: object = None

    b = Builder()
    b.body.append(MysteryInst())
    with pytest.raises(InterpreterError, match="no handler for MysteryInst"):
        interpret(b.build())
