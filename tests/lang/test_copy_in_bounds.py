"""``copy_async(..., in_bounds=...)``: tiles the program promises lie inside their tensor (no checks)."""

import numpy as np
import pytest

import anybit
from anybit import float16
from anybit.interp import InterpreterError
from anybit.ir import KernelDefinitionError

ROWS, COLS = 16, 64


class ChunkCopy(anybit.Script):
    """y[:, c·COLS:(c+1)·COLS] = x[:, (c + shift)·COLS : …] for every chunk c of x's columns, through
    ``copy_async`` into shared memory; ``in_bounds`` as given (``shift`` > 0 reads past the end)."""

    def __init__(self, in_bounds, shift: int = 0) -> None:
        super().__init__()
        self.in_bounds, self.shift = in_bounds, shift

    def __call__(self, x: anybit.ptr(float16), y: anybit.ptr(float16), chunks: anybit.int32):
        self.attrs.blocks = [chunks]
        self.attrs.warps = 2
        gx = self.global_view(x, float16, [ROWS, chunks * COLS])
        gy = self.global_view(y, float16, [ROWS, chunks * COLS])
        tile = self.shared_tensor(float16, [ROWS, COLS])
        column = (self.blockIdx.x + self.shift) * COLS
        self.copy_async(gx, tile, [0, column], in_bounds=self.in_bounds)
        self.copy_async_wait_all()
        self.sync()
        self.store_global(gy, self.load_shared(tile), [0, self.blockIdx.x * COLS])


def _run(kernel, chunks: int = 3):
    x = np.random.default_rng().standard_normal((ROWS, chunks * COLS)).astype(np.float16)
    y = np.full_like(x, np.nan)
    anybit.interpret(kernel, x, y, chunks)
    return x, y


@pytest.mark.parametrize("in_bounds", [(), (1,), (0, 1), True])
def test_a_kept_promise_copies_the_same(in_bounds):
    x, y = _run(ChunkCopy(in_bounds))
    np.testing.assert_array_equal(y, x)


def test_without_a_promise_past_the_end_reads_zeros():
    x, y = _run(ChunkCopy((), shift=1))
    np.testing.assert_array_equal(y[:, : 2 * COLS], x[:, COLS:])
    np.testing.assert_array_equal(y[:, 2 * COLS :], 0)


def test_a_broken_promise_is_reported():
    with pytest.raises(InterpreterError, match="in_bounds promised"):
        _run(ChunkCopy((1,), shift=1))


@pytest.mark.parametrize("bad", [(2,), (-1,), ("1",), 1.5, (True,)])
def test_in_bounds_must_name_dimensions(bad):
    with pytest.raises(KernelDefinitionError, match="in_bounds"):
        _run(ChunkCopy(bad))


def _source(in_bounds) -> str:
    from anybit.runtime import compiler

    program = ChunkCopy(in_bounds).program(None, None, 3)
    return compiler.generate_source(program, "sm_90a").source


def test_a_promised_dimension_gets_no_check():
    checked, promised = _source(()), _source(True)
    assert "cp.async" in checked and "cp.async" in promised
    assert "int z_ = (true)" in promised  # every byte read, nothing zero-filled
    assert "int z_ = (true)" not in checked


@pytest.mark.gpu
@pytest.mark.parametrize("in_bounds", [(), True])
def test_promised_copies_on_the_gpu(in_bounds):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    chunks = 40
    x = torch.randn(ROWS, chunks * COLS, device="cuda", dtype=torch.float16)
    y = torch.full_like(x, float("nan"))
    ChunkCopy(in_bounds)(x, y, chunks)
    torch.cuda.synchronize()
    assert torch.equal(y, x)
