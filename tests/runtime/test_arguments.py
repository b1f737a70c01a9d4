"""Argument checks before launch, launch expressions and launcher construction, without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anybit.cuda.kernel_source import KernelParam
from anybit.dtypes import float8_e4m3, float16, float32, int4, int32, int64, uint8
from anybit.ir.expr import Var, cdiv, maximum
from anybit.runtime import UnsupportedDeviceError, accepted_torch_dtypes, compile_source
from anybit.runtime.closure import compile_exprs
from anybit.runtime.device import arch_of_capability, check_arch_runs_on, check_supported

from .helpers import axpy_source


@pytest.fixture(scope="module")
def axpy():
    return compile_source(axpy_source(), arch="sm_80")


def check(kernel, *args):
    kernel.launcher.check(args, 0)


def test_argument_count(axpy):
    with pytest.raises(
        TypeError,
        match=r"takes 4 arguments \(a: float32, x: ptr float32, y: ptr float32, "
        r"n: int32\), got 2",
    ):
        axpy(1.0, 2)


def test_cpu_tensor_asks_for_a_cuda_tensor(axpy):
    x = torch.zeros(8)
    with pytest.raises(ValueError, match=r"pointer parameter 'x' \(argument 2\).*expected a CUDA tensor"):
        check(axpy, 1.0, x, x, 8)


def test_wrong_dtype_is_a_type_error_naming_both(axpy):
    with pytest.raises(TypeError, match=r"expected dtype float32 for elements of float32, got torch.float16"):
        check(axpy, 1.0, torch.zeros(8, dtype=torch.float16), torch.zeros(8), 8)


def test_non_contiguous_and_misaligned_are_reported(axpy):
    strided = torch.zeros(8, 8).t()
    with pytest.raises(ValueError, match=r"not contiguous \(shape \(8, 8\), strides \(1, 8\)\)"):
        check(axpy, 1.0, strided, strided, 8)
    offset = torch.zeros(16)[1:]
    with pytest.raises(ValueError, match="not a multiple of 16 bytes"):
        check(axpy, 1.0, offset, offset, 8)


def test_non_tensors_for_pointers(axpy):
    with pytest.raises(
        TypeError,
        match=r"expected a torch CUDA tensor \(or an object with "
        r"__cuda_array_interface__ or __dlpack__\), got list",
    ):
        check(axpy, 1.0, [1.0, 2.0], torch.zeros(4), 2)
    # dlpack objects are converted, then checked
    with pytest.raises(ValueError, match="expected a CUDA tensor"):
        check(axpy, 1.0, np.zeros(4, dtype=np.float32), torch.zeros(4), 2)


@pytest.fixture(scope="module")
def scalars():
    """A kernel of scalar parameters only: (a: float32, x: int32, y: int32, n: int32)."""
    return compile_source(
        axpy_source(
            name="scalars",
            source='extern "C" __global__ void scalars(float a, int x, int y, int n) {}\n',
            params=(
                KernelParam("a", "scalar", float32),
                KernelParam("x", "scalar", int32),
                KernelParam("y", "scalar", int32),
                KernelParam("n", "scalar", int32),
            ),
            alignment_requirements=(),
        ),
        arch="sm_80",
    )


@pytest.mark.parametrize(
    ("value", "error", "pattern"),
    [
        (2.5, TypeError, r"scalar parameter 'n' \(argument 4, int32\): expected a Python int, got float 2.5"),
        (True, TypeError, "expected a Python int, got bool"),
        (2**31, ValueError, r"expected an int in \[-2147483648, 2147483647\], got 2147483648"),
        (torch.tensor(3), TypeError, r"\.item\(\) reads a tensor's value"),
    ],
)
def test_bad_integer_scalars(scalars, value, error, pattern):
    with pytest.raises(error, match=pattern):
        check(scalars, 1.0, 1, 1, value)


def test_bad_float_scalar(scalars):
    with pytest.raises(TypeError, match=r"'a' \(argument 1, float32\): expected a Python float, got str"):
        check(scalars, "1.0", 1, 1, 1)
    check(scalars, 1, np.int64(3), 1, np.int32(4))  # ints for floats and numpy ints are accepted


def test_accepted_storage_for_packed_types():
    assert accepted_torch_dtypes(float16) == {torch.float16}
    assert accepted_torch_dtypes(int4) == {torch.uint8, torch.int8, torch.int32}
    assert accepted_torch_dtypes(float8_e4m3) == {torch.float8_e4m3fn, torch.uint8, torch.int8, torch.int32}
    assert accepted_torch_dtypes(uint8) == {torch.uint8}


def test_launch_expressions_compile_to_closures():
    n, m = Var("n", int32), Var("m", int64)
    grid = compile_exprs([cdiv(n, 128), maximum(m // 2, 1), 1], {"n": 0, "m": 1})
    assert grid((1000, 7)) == (8, 3, 1)
    assert grid((1, 0)) == (1, 1, 1)
    with pytest.raises(ValueError, match="'k', which is not a scalar parameter"):
        compile_exprs([Var("k", int32)], {"n": 0})


def test_launcher_rejects_bad_sources():
    with pytest.raises(ValueError, match="expected 1 to 1024 threads per block, got 2048"):
        compile_source(axpy_source(block_threads=2048), arch="sm_80")
    with pytest.raises(ValueError, match="name \\['z'\\], which are not pointer parameters"):
        compile_source(axpy_source(alignment_requirements=(("z", 16),)), arch="sm_80")
    with pytest.raises(ValueError, match="'__workspace' must be the last parameter"):
        compile_source(
            axpy_source(
                params=(KernelParam("__workspace", "pointer", uint8), KernelParam("n", "scalar", int32))
            ),
            arch="sm_80",
        )


def test_empty_grid_launches_nothing(axpy):
    assert axpy.launcher.grid((1.0, None, None, 0)) == (0, 1, 1)
    assert axpy.launcher._check_grid((0, 1, 1)) is True
    with pytest.raises(ValueError, match="grid extent x = -1"):
        axpy.launcher._check_grid((-1, 1, 1))


def test_unsupported_gpu_and_arch_mismatch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(UnsupportedDeviceError, match="compute capability 8.0 or newer.*Tesla T4.*7.5"):
        check_supported(0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))
    check_arch_runs_on("sm_80", 0)
    with pytest.raises(UnsupportedDeviceError, match="compiled for sm_90a but cuda:0 is sm_86"):
        check_arch_runs_on("sm_90a", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    check_arch_runs_on("sm_90a", 0)
    assert arch_of_capability(9, 0) == "sm_90a" and arch_of_capability(8, 9) == "sm_89"
