"""``self.index`` / ``self.arange``: each element's own index, for masks; interpreter and CUDA compile."""

import numpy as np
import pytest

import anybit
from anybit import float32, int32
from anybit.ir import KernelDefinitionError, cdiv


class MaskedScale(anybit.Script):
    """y[i] = 2·x[i] for i < limit (a run-time bound that is not the tensor's size), else y[i] untouched."""

    def __call__(self, x: anybit.ptr(float32), y: anybit.ptr(float32), n: int32, limit: int32):
        self.attrs.blocks = [cdiv(n, 128)]
        self.attrs.warps = 2
        start = self.blockIdx.x * 128
        gx, gy = self.global_view(x, float32, [n]), self.global_view(y, float32, [n])
        keep = self.arange(128) + start < limit
        values = self.load_global(gx, [start], [128], mask=keep)
        self.store_global(gy, values * 2.0, [start], mask=keep)


class RowColumn(anybit.Script):
    """out[r, c] = 100·r + c over a [16, 8] tile, from two index tiles."""

    def __call__(self, out: anybit.ptr(int32)):
        self.attrs.blocks = [1]
        self.attrs.warps = 1
        rows = self.index([16, 8], 0)
        columns = self.index([16, 8], -1)
        self.store_global(self.global_view(out, int32, [16, 8]), rows * 100 + columns, [0, 0])


def test_arange_builds_a_run_time_mask():
    rng = np.random.default_rng()
    n, limit = 300, 211
    x = rng.standard_normal(n).astype(np.float32)
    y = np.full(n, np.nan, dtype=np.float32)
    anybit.interpret(MaskedScale(), x, y, n, limit)
    np.testing.assert_array_equal(y[:limit], 2 * x[:limit])
    assert np.isnan(y[limit:]).all()


def test_index_along_each_dimension():
    out = np.full((16, 8), -1, dtype=np.int32)
    anybit.interpret(RowColumn(), out)
    expected = np.arange(16)[:, None] * 100 + np.arange(8)[None, :]
    np.testing.assert_array_equal(out, expected)


def test_index_compiles_for_the_gpu():
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    for kernel, args in ((MaskedScale(), (None, None, 300, 211)), (RowColumn(), (None,))):
        compiled = anybit.compile(kernel, *args, arch="sm_90a")
        assert compiled.resources.stack_frame_bytes == 0


def test_bad_index_arguments_are_named():
    class BadDim(anybit.Script):
        def __call__(self, out: anybit.ptr(int32)):
            self.attrs.blocks = [1]
            self.index([4, 4], 2)

    with pytest.raises(KernelDefinitionError, match=r"expected a dimension in \[-2, 2\)"):
        BadDim().program(None)

    class Narrow(anybit.Script):
        def __call__(self, out: anybit.ptr(int32)):
            self.attrs.blocks = [1]
            self.arange(300, dtype=anybit.int8)

    with pytest.raises(KernelDefinitionError, match="holds indices up to 299"):
        Narrow().program(None)


@pytest.mark.gpu
def test_index_on_the_gpu_matches_the_interpreter():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    out = torch.full((16, 8), -1, dtype=torch.int32, device="cuda")
    RowColumn()(out)
    expected = np.full((16, 8), -1, dtype=np.int32)
    anybit.interpret(RowColumn(), expected)
    np.testing.assert_array_equal(out.cpu().numpy(), expected)
    n, limit = 300, 211
    x = torch.randn(n, device="cuda")
    y = torch.full((n,), float("nan"), device="cuda")
    MaskedScale()(x, y, n, limit)
    reference = np.full(n, np.nan, dtype=np.float32)
    anybit.interpret(MaskedScale(), x.cpu().numpy(), reference, n, limit)
    np.testing.assert_array_equal(y.cpu().numpy(), reference)
