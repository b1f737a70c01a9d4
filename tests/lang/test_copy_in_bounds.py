"""``copy_async(..., in_bounds=..., clamp=...)`` and ``load_global(..., in_bounds=...)``: tiles the program
promises lie inside their tensor (no checks), and tiles whose indices past the end read the edge element
instead of zero."""

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

    def __init__(self, in_bounds, shift: int = 0, clamp=()) -> None:
        super().__init__()
        self.in_bounds, self.shift, self.clamp = in_bounds, shift, clamp

    def __call__(self, x: anybit.ptr(float16), y: anybit.ptr(float16), chunks: anybit.int32):
        self.attrs.blocks = [chunks]
        self.attrs.warps = 2
        gx = self.global_view(x, float16, [ROWS, chunks * COLS])
        gy = self.global_view(y, float16, [ROWS, chunks * COLS])
        tile = self.shared_tensor(float16, [ROWS, COLS])
        column = (self.blockIdx.x + self.shift) * COLS
        self.copy_async(gx, tile, [0, column], in_bounds=self.in_bounds, clamp=self.clamp)
        self.copy_async_wait_all()
        self.sync()
        self.store_global(gy, self.load_shared(tile), [0, self.blockIdx.x * COLS])


class ChunkLoad(ChunkCopy):
    """The same chunks loaded straight into registers with ``load_global`` (``in_bounds`` as given)."""

    def __call__(self, x: anybit.ptr(float16), y: anybit.ptr(float16), chunks: anybit.int32):
        self.attrs.blocks = [chunks]
        self.attrs.warps = 2
        gx = self.global_view(x, float16, [ROWS, chunks * COLS])
        gy = self.global_view(y, float16, [ROWS, chunks * COLS])
        column = (self.blockIdx.x + self.shift) * COLS
        tile = self.load_global(gx, [0, column], [ROWS, COLS], in_bounds=self.in_bounds)
        self.store_global(gy, tile, [0, self.blockIdx.x * COLS])


CHUNK_KERNELS = [ChunkCopy, ChunkLoad]


def _run(kernel, chunks: int = 3):
    x = np.random.default_rng().standard_normal((ROWS, chunks * COLS)).astype(np.float16)
    y = np.full_like(x, np.nan)
    anybit.interpret(kernel, x, y, chunks)
    return x, y


@pytest.mark.parametrize("kernel", CHUNK_KERNELS)
@pytest.mark.parametrize("in_bounds", [(), (1,), (0, 1), True])
def test_a_kept_promise_copies_the_same(kernel, in_bounds):
    x, y = _run(kernel(in_bounds))
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("kernel", CHUNK_KERNELS)
def test_without_a_promise_past_the_end_reads_zeros(kernel):
    x, y = _run(kernel((), shift=1))
    np.testing.assert_array_equal(y[:, : 2 * COLS], x[:, COLS:])
    np.testing.assert_array_equal(y[:, 2 * COLS :], 0)


@pytest.mark.parametrize(("kernel", "name"), [(ChunkCopy, "copy_async"), (ChunkLoad, "load_global")])
def test_a_broken_promise_is_reported(kernel, name):
    with pytest.raises(InterpreterError, match=f"{name} of .*in_bounds promised"):
        _run(kernel((1,), shift=1))


@pytest.mark.parametrize("kernel", CHUNK_KERNELS)
@pytest.mark.parametrize("bad", [(2,), (-1,), ("1",), 1.5, (True,)])
def test_in_bounds_must_name_dimensions(kernel, bad):
    with pytest.raises(KernelDefinitionError, match="in_bounds"):
        _run(kernel(bad))


def _source(in_bounds, clamp=(), kernel=ChunkCopy) -> str:
    from anybit.runtime import compiler

    program = kernel(in_bounds, clamp=clamp).program(None, None, 3)
    return compiler.generate_source(program, "sm_90a").source


def test_a_promised_load_gets_no_check():
    checked, promised = (_source(b, kernel=ChunkLoad).split("__global__")[-1] for b in ((), True))
    assert "*(const uint4*)" in checked and "*(const uint4*)" in promised  # 16-byte vectors either way
    assert "} else {" in checked and "} else {" not in promised  # no bound compare, no zero-fill


class RowsCopy(anybit.Script):
    """y[r, :] = x[min(r, m − 1), :] for the 16 rows of a tile, x having m ≤ 16 rows (clamped rows)."""

    def __call__(self, x: anybit.ptr(float16), y: anybit.ptr(float16), m: anybit.int32):
        self.attrs.blocks = [1]
        self.attrs.warps = 2
        gx = self.global_view(x, float16, [m, COLS])
        gy = self.global_view(y, float16, [ROWS, COLS])
        tile = self.shared_tensor(float16, [ROWS, COLS])
        self.copy_async(gx, tile, [0, 0], in_bounds=(1,), clamp=(0,))
        self.copy_async_wait_all()
        self.sync()
        self.store_global(gy, self.load_shared(tile), [0, 0])


@pytest.mark.parametrize("m", [1, 5, 16])
def test_clamped_rows_read_the_last_row(m):
    x = np.random.default_rng().standard_normal((m, COLS)).astype(np.float16)
    y = np.full((ROWS, COLS), np.nan, dtype=np.float16)
    anybit.interpret(RowsCopy(), x, y, m)
    np.testing.assert_array_equal(y, x[np.minimum(np.arange(ROWS), m - 1)])


def test_clamped_rows_need_no_zero_fill_and_stay_vectorised():
    from anybit.runtime import compiler

    source = compiler.generate_source(RowsCopy().program(None, None, 3), "sm_90a").source
    assert "int z_ = (true)" in source and "min(" in source
    assert "cp.async.cg.shared.global" in source  # 16-byte chunks along the unclamped columns


def test_a_dimension_is_not_both_promised_and_clamped():
    with pytest.raises(KernelDefinitionError, match="both promised in bounds and clamped"):
        _run(ChunkCopy((1,), clamp=(1,)))


def test_a_promised_dimension_gets_no_check():
    checked, promised = _source(()), _source(True)
    assert "cp.async" in checked and "cp.async" in promised
    assert "int z_ = (true)" in promised  # every byte read, nothing zero-filled
    assert "int z_ = (true)" not in checked


@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 7])
def test_clamped_rows_on_the_gpu(m):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    x = torch.randn(m, COLS, device="cuda", dtype=torch.float16)
    y = torch.full((ROWS, COLS), float("nan"), device="cuda", dtype=torch.float16)
    RowsCopy()(x, y, m)
    torch.cuda.synchronize()
    assert torch.equal(y, x[torch.clamp(torch.arange(ROWS, device="cuda"), max=m - 1)])


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", CHUNK_KERNELS)
@pytest.mark.parametrize("in_bounds", [(), True])
def test_promised_copies_on_the_gpu(kernel, in_bounds):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    chunks = 40
    x = torch.randn(ROWS, chunks * COLS, device="cuda", dtype=torch.float16)
    y = torch.full_like(x, float("nan"))
    kernel(in_bounds)(x, y, chunks)
    torch.cuda.synchronize()
    assert torch.equal(y, x)
