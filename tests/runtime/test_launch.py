"""The launch path without a GPU: fakes of torch's device and stream getters and of ``cuLaunchKernel``."""

from __future__ import annotations

import dataclasses
import importlib
import threading

import pytest

from anybit.cuda.kernel_source import CudaKernelSource, KernelParam
from anybit.dtypes import float32, int32
from anybit.ir.expr import Var, cdiv
from anybit.runtime import CudaDriverError, module
from anybit.runtime.launch import LaunchBackend, Launcher
from anybit.runtime.module import LoadedFunction

# The package exports the function anybit.runtime.launch, which hides the module of the same name.
launch = importlib.import_module("anybit.runtime.launch")

SCALARS = 'extern "C" __global__ void scalars(float a, int n) {}\n'


def scalars_source(grid) -> CudaKernelSource:
    """A kernel with scalar parameters only, so no CUDA tensor is needed to pass the checks."""
    return CudaKernelSource(
        name="scalars",
        source=SCALARS,
        params=(KernelParam("a", "scalar", float32), KernelParam("n", "scalar", int32)),
        grid=grid,
        block_threads=64,
        dynamic_shared_bytes=128,
        workspace_bytes=0,
        workspace_clean=False,
        alignment_requirements=(),
    )


class FakeDriver:
    """Records each launch; answers with ``status``."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.status = 0

    def call(self, *arguments) -> int:
        self.calls.append(arguments)
        return self.status


@pytest.fixture
def driver(monkeypatch):
    fake = FakeDriver()
    backend = LaunchBackend(
        "fake", fake.call, lambda loaded: ("function", loaded.handle), lambda raw: ("s", raw)
    )
    monkeypatch.setattr(launch, "launch_backend", lambda name: backend)
    monkeypatch.setattr(launch, "default_backend", lambda: "fake")
    monkeypatch.setattr(launch, "_device_now", lambda: 0)
    monkeypatch.setattr(launch, "_stream_now", lambda device: 1000 + device)
    return fake


def loader(device: int) -> LoadedFunction:
    return LoadedFunction(device, None, None, 77, 1024, 0, 16)


def test_a_launch_passes_grid_block_stream_and_parameters(driver):
    launcher = Launcher(scalars_source((cdiv(Var("n", int32), 64), 1, 1)), load=loader)
    launcher.launch((2.0, 1000))
    (call,) = driver.calls
    address = launcher.packing().address
    assert call == (("function", 77), 16, 1, 1, 64, 1, 1, 128, ("s", 1000), address, 0)
    assert [slot.value for slot in launcher.packing().slots] == [2.0, 1000]
    assert launcher.backend.name == "fake"


def test_a_constant_grid_is_checked_once_and_reused(driver):
    launcher = Launcher(scalars_source((3, 2, 1)), load=loader)
    assert launcher._constant_grid == (3, 2, 1)
    launcher.launch((1.0, 5))
    assert driver.calls[0][1:4] == (3, 2, 1)
    with pytest.raises(ValueError, match=r"grid extent y = 70000 .* is outside \[0, 65535\]"):
        Launcher(scalars_source((1, 70000, 1)), load=loader)


def test_empty_grids_launch_nothing(driver):
    Launcher(scalars_source((0, 1, 1)), load=loader).launch((1.0, 5))
    Launcher(scalars_source((cdiv(Var("n", int32), 64), 1, 1)), load=loader).launch((1.0, 0))
    assert driver.calls == []


def test_checks_still_run_on_the_fast_path(driver):
    launcher = Launcher(scalars_source((1, 1, 1)), load=loader)
    with pytest.raises(TypeError, match="expected a Python int, got float"):
        launcher.launch((1.0, 5.0))
    with pytest.raises(ValueError, match=r"expected an int in \[-2147483648, 2147483647\], got 4294967296"):
        launcher.launch((1.0, 2**32))
    with pytest.raises(TypeError, match="takes 2 arguments"):
        launcher.launch((1.0,))
    assert driver.calls == []


def test_each_thread_packs_into_its_own_buffer(driver):
    launcher = Launcher(scalars_source((1, 1, 1)), load=loader)
    launcher.launch((1.0, 1))
    addresses = []
    thread = threading.Thread(
        target=lambda: (launcher.launch((2.0, 2)), addresses.append(launcher.packing()))
    )
    thread.start()
    thread.join()
    (other,) = addresses
    assert other is not launcher.packing() and other.address != launcher.packing().address
    assert [driver.calls[0][9], driver.calls[1][9]] == [launcher.packing().address, other.address]
    assert [slot.value for slot in launcher.packing().slots] == [1.0, 1]


def test_the_stream_handle_follows_the_current_stream(driver, monkeypatch):
    launcher = Launcher(scalars_source((1, 1, 1)), load=loader)
    launcher.launch((1.0, 1))
    monkeypatch.setattr(launch, "_stream_now", lambda device: 5)
    launcher.launch((1.0, 1))
    assert [call[8] for call in driver.calls] == [("s", 1000), ("s", 5)]


def test_a_failed_launch_names_the_driver_error(driver, monkeypatch):
    monkeypatch.setattr(module, "error_name", lambda code: f"CUDA_ERROR_{code}")
    launcher = Launcher(scalars_source((1, 1, 1)), load=loader)
    driver.status = (700,)  # the cuda.bindings shape of a CUresult
    with pytest.raises(
        CudaDriverError, match=r"cuLaunchKernel of 'scalars' .* failed: CUDA_ERROR_700"
    ) as caught:
        launcher.launch((1.0, 1))
    assert caught.value.code == 700
    driver.status = (0,)
    launcher.launch((1.0, 1))  # success in the bindings shape


def test_an_unknown_backend_is_rejected(monkeypatch):
    monkeypatch.setenv("ANYBIT_LAUNCH_BACKEND", "cffi")
    with pytest.raises(ValueError, match="expected one of bindings, ctypes, compiled, got 'cffi'"):
        launch.default_backend()
    monkeypatch.setenv("ANYBIT_LAUNCH_BACKEND", "bindings")
    assert launch.default_backend() == "bindings"
    assert launch.launch_backend("bindings").name == "bindings"


def test_the_default_is_the_compiled_backend_where_it_builds(monkeypatch):
    from anybit.runtime import compiled_launch

    monkeypatch.delenv("ANYBIT_LAUNCH_BACKEND", raising=False)
    try:
        compiled_launch.load().driver()
    except (compiled_launch.CompiledLaunchUnavailable, OSError):
        assert launch.default_backend() == "bindings"  # no compiler or no driver here: the bindings instead
    else:
        assert launch.default_backend() == "compiled"


# -- dependent launches (programmatic stream serialization) -------------------------------------------------
class FakeConfig:
    """Stands in for ``CUlaunchConfig``: the fields the launcher sets."""

    def __init__(self, block_threads: int, shared_bytes: int) -> None:
        self.block = (block_threads, shared_bytes)
        self.gridDimX = self.gridDimY = self.gridDimZ = 1  # noqa: N815 - the driver's field names
        self.hStream = None  # noqa: N815


@pytest.fixture
def dependent_driver(monkeypatch):
    """A backend with ``cuLaunchKernelEx``; ``calls`` gets plain launches, ``dependent`` the others."""
    fake = FakeDriver()
    fake.dependent = []

    def call_dependent(config, function, params, extra):
        fake.dependent.append((config, (config.gridDimX, config.gridDimY, config.gridDimZ), config.hStream))
        return fake.status

    backend = LaunchBackend(
        "fake",
        fake.call,
        lambda loaded: ("function", loaded.handle),
        lambda raw: ("s", raw),
        dependent_config=FakeConfig,
        call_dependent=call_dependent,
    )
    monkeypatch.setattr(launch, "launch_backend", lambda name: backend)
    monkeypatch.setattr(launch, "default_backend", lambda: "fake")
    monkeypatch.setattr(launch, "_device_now", lambda: 0)
    monkeypatch.setattr(launch, "_stream_now", lambda device: 1000 + device)
    monkeypatch.setenv("ANYBIT_PDL", "1")
    return fake


def dependent_source(grid) -> CudaKernelSource:
    return dataclasses.replace(scalars_source(grid), waits_for_prior_grids=True)


def test_a_kernel_that_waits_is_launched_as_a_dependent(dependent_driver, monkeypatch):
    launcher = Launcher(dependent_source((cdiv(Var("n", int32), 64), 1, 1)), load=loader)
    launcher.launch((1.0, 64))
    launcher.launch((1.0, 640))
    monkeypatch.setattr(launch, "_stream_now", lambda device: 5)
    launcher.launch((1.0, 64))
    assert dependent_driver.calls == [] and launcher.launches_as_dependent(0)
    configs = [config for config, _, _ in dependent_driver.dependent]
    assert all(config is configs[0] for config in configs)  # made once, only grid and stream change
    assert configs[0].block == (64, 128)
    assert [(grid, stream) for _, grid, stream in dependent_driver.dependent] == [
        ((1, 1, 1), ("s", 1000)),
        ((10, 1, 1), ("s", 1000)),
        ((1, 1, 1), ("s", 5)),
    ]


def test_other_kernels_and_pdl_0_launch_plainly(dependent_driver, monkeypatch):
    """A kernel that does not wait launches plainly; with ANYBIT_PDL=0 one that waits does too."""
    Launcher(scalars_source((1, 1, 1)), load=loader).launch((1.0, 1))
    monkeypatch.setenv("ANYBIT_PDL", "0")
    launcher = Launcher(dependent_source((1, 1, 1)), load=loader)
    launcher.launch((1.0, 1))
    assert len(dependent_driver.calls) == 2 and dependent_driver.dependent == []
    assert not launcher.launches_as_dependent(0)


def test_dependent_launches_are_the_default(dependent_driver, monkeypatch):
    monkeypatch.delenv("ANYBIT_PDL", raising=False)
    launcher = Launcher(dependent_source((1, 1, 1)), load=loader)
    launcher.launch((1.0, 1))
    assert dependent_driver.calls == [] and launcher.launches_as_dependent(0)


def test_a_backend_without_launch_ex_launches_plainly(driver):
    """ctypes has no dependent launch: the kernel then runs after the previous one, its wait a no-op."""
    launcher = Launcher(dependent_source((1, 1, 1)), load=loader)
    launcher.launch((1.0, 1))
    assert len(driver.calls) == 1 and not launcher.launches_as_dependent(0)


def test_a_failed_dependent_launch_names_cu_launch_kernel_ex(dependent_driver, monkeypatch):
    monkeypatch.setattr(module, "error_name", lambda code: f"CUDA_ERROR_{code}")
    launcher = Launcher(dependent_source((1, 1, 1)), load=loader)
    dependent_driver.status = (1,)
    with pytest.raises(
        CudaDriverError, match=r"cuLaunchKernelEx \(a dependent launch; ANYBIT_PDL=0 launches plainly"
    ):
        launcher.launch((1.0, 1))


def test_the_bindings_dependent_launch_config():
    """The real ``CUlaunchConfig`` (built without a GPU): one programmatic-serialization attribute."""
    driver = pytest.importorskip("cuda.bindings.driver", reason="cuda.bindings is not installed")
    config = launch.dependent_launch_config(256, 40960)
    assert (config.blockDimX, config.blockDimY, config.blockDimZ) == (256, 1, 1)
    assert (config.gridDimX, config.gridDimY, config.gridDimZ) == (1, 1, 1)
    assert config.sharedMemBytes == 40960 and int(config.hStream) == 0
    assert config.numAttrs == 1
    (attribute,) = config.attrs
    assert attribute.id == driver.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
    assert attribute.value.programmaticStreamSerializationAllowed == 1
    config.gridDimX, config.hStream = 7, driver.CUstream(1234)  # what a launch sets
    assert config.gridDimX == 7 and int(config.hStream) == 1234
    backend = launch.launch_backend("bindings")
    assert backend.call_dependent is driver.cuLaunchKernelEx and backend.dependent_config is not None
