"""``load_global(..., in_bounds=...)``: tiles the program promises lie inside their tensor load without
bounds checks; the interpreter holds the program to the promise."""

import numpy as np
import pytest

import anybit
from anybit import float16
from anybit.interp import InterpreterError
from anybit.ir import KernelDefinitionError

ROWS, COLS = 8, 64


class ChunkLoad(anybit.Script):
    """y[:, c·COLS:(c+1)·COLS] = x[:, (c + shift)·COLS : …] for every chunk c of x's columns, loaded into
    registers with ``load_global``; ``in_bounds`` as given (``shift`` > 0 reads past the end)."""

    def __init__(self, in_bounds, shift: int = 0) -> None:
        super().__init__()
        self.in_bounds, self.shift = in_bounds, shift

    def __call__(self, x: anybit.ptr(float16), y: anybit.ptr(float16), chunks: anybit.int32):
        self.attrs.blocks = [chunks]
        self.attrs.warps = 2
        gx = self.global_view(x, float16, [ROWS, chunks * COLS])
        gy = self.global_view(y, float16, [ROWS, chunks * COLS])
        column = (self.blockIdx.x + self.shift) * COLS
        tile = self.load_global(gx, [0, column], [ROWS, COLS], in_bounds=self.in_bounds)
        self.store_global(gy, tile, [0, self.blockIdx.x * COLS])


def _run(kernel, chunks: int = 3):
    x = np.random.default_rng().standard_normal((ROWS, chunks * COLS)).astype(np.float16)
    y = np.full_like(x, np.nan)
    anybit.interpret(kernel, x, y, chunks)
    return x, y


@pytest.mark.parametrize("in_bounds", [(), (1,), (0, 1), True])
def test_a_kept_promise_loads_the_same(in_bounds):
    x, y = _run(ChunkLoad(in_bounds))
    np.testing.assert_array_equal(y, x)


def test_without_a_promise_past_the_end_reads_zeros():
    x, y = _run(ChunkLoad((), shift=1))
    np.testing.assert_array_equal(y[:, : 2 * COLS], x[:, COLS:])
    np.testing.assert_array_equal(y[:, 2 * COLS :], 0)


def test_a_broken_promise_is_reported():
    with pytest.raises(InterpreterError, match="load_global of .*in_bounds promised"):
        _run(ChunkLoad((1,), shift=1))


@pytest.mark.parametrize("bad", [(2,), (-1,), ("1",), 1.5, (True,)])
def test_in_bounds_must_name_dimensions(bad):
    with pytest.raises(KernelDefinitionError, match="in_bounds"):
        _run(ChunkLoad(bad))


def _source(in_bounds) -> str:
    from anybit.runtime import compiler

    return compiler.generate_source(ChunkLoad(in_bounds).program(None, None, 3), "sm_90a").source


def test_a_promised_dimension_gets_no_check():
    checked, promised = _source(()), _source(True)
    load = "ld.global" if "ld.global" in promised else "*(const"
    assert load in checked and load in promised
    assert " < " in checked.split("__global__")[-1]  # the column bound, compared per vector
    assert "} else {" in checked and "} else {" not in promised.split("__global__")[-1]


@pytest.mark.gpu
@pytest.mark.parametrize("in_bounds", [(), True])
def test_promised_loads_on_the_gpu(in_bounds):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    chunks = 40
    x = torch.randn(ROWS, chunks * COLS, device="cuda", dtype=torch.float16)
    y = torch.full_like(x, float("nan"))
    ChunkLoad(in_bounds)(x, y, chunks)
    torch.cuda.synchronize()
    assert torch.equal(y, x)
