"""Bound launches (``Launcher.bind``) without a GPU: torch's getters faked, the driver call replaced by one
that records its arguments and unpacks the parameter bytes with the compiled module's own packing."""

from __future__ import annotations

import importlib
import struct

import pytest

from anybit.cuda.kernel_source import CudaKernelSource, KernelParam
from anybit.dtypes import float16, float32, int32
from anybit.ir.expr import Var, cdiv
from anybit.runtime import compiled_launch
from anybit.runtime.launch import LaunchBackend, Launcher
from anybit.runtime.module import LoadedFunction

launch = importlib.import_module("anybit.runtime.launch")


class FakeTensor:
    """What a bound launch reads of a tensor: its address."""

    def __init__(self, address: int) -> None:
        self.address = address

    def data_ptr(self) -> int:
        return self.address


class FakeModule:
    """``launch_frame`` recording (grid, stream, dependent, the parameter bytes); answers ``status``."""

    def __init__(self) -> None:
        self.frame = compiled_launch.load().frame
        self.launches: list[tuple] = []
        self.status = 0

    def launch_frame(
        self, function, gx, gy, gz, block, shared, stream, dependent, frame, offsets, slots, *ptrs
    ):
        packed = self.frame(frame, offsets, slots, *ptrs)
        self.launches.append((function, (gx, gy, gz), block, shared, stream, dependent, packed))
        return self.status


@pytest.fixture
def bound_driver(monkeypatch):
    module = FakeModule()
    checked: list[tuple] = []

    def call(*arguments) -> int:
        checked.append(arguments)
        return 0

    backend = LaunchBackend("compiled", call, lambda loaded: loaded.handle, lambda raw: raw)
    monkeypatch.setattr(launch, "launch_backend", lambda name: backend)
    monkeypatch.setattr(launch, "default_backend", lambda: "compiled")
    monkeypatch.setattr(launch, "_device_now", lambda: 0)
    monkeypatch.setattr(launch, "_stream_now", lambda device: 5000 + device)
    monkeypatch.setattr(launch, "compiled_launch_module", lambda: module)
    module.checked = checked
    return module


def fake_pointer_setter(name, position, dtype, alignment, slot):
    """A pointer setter that takes a :class:`FakeTensor` (the scalars keep their real checks)."""

    def set_pointer(argument, device):
        slot.value = argument.data_ptr()

    return set_pointer


def loader(device: int) -> LoadedFunction:
    return LoadedFunction(device, None, None, 77, 1024, 0, 16)


def source(params, grid=None, workspace=0) -> CudaKernelSource:
    grid = grid or (cdiv(Var("n", int32), 64), 1, 1)
    return CudaKernelSource(
        name="bound",
        source='extern "C" __global__ void bound() {}\n',
        params=params,
        grid=grid,
        block_threads=128,
        dynamic_shared_bytes=256,
        workspace_bytes=workspace,
        workspace_clean=False,
        alignment_requirements=(),
    )


SCALARS = (KernelParam("a", "scalar", float32), KernelParam("n", "scalar", int32))


def test_a_bound_launch_fixes_scalars_and_grid(bound_driver):
    launcher = Launcher(source(SCALARS), load=loader)
    assert launcher.bind((2.5, 640)) is None  # not launched on this device yet: nothing to bind
    launcher.launch((2.5, 640))
    bound = launcher.bind((2.5, 640))
    bound((9.0, 1))  # the scalars of the call are not read
    bound((2.5, 640))
    first, second = bound_driver.launches
    assert first == second
    function, grid, block, shared, stream, dependent, packed = first
    assert (function, grid, block, shared, stream, dependent) == (77, (10, 1, 1), 128, 256, 5000, 0)
    assert struct.unpack("<fi", packed) == (2.5, 640)


def test_a_bound_launch_reads_each_tensor_at_its_position(bound_driver, monkeypatch):
    params = (
        KernelParam("x", "pointer", float16),
        KernelParam("n", "scalar", int32),
        KernelParam("y", "pointer", float16),
    )
    monkeypatch.setattr(launch, "pointer_setter", fake_pointer_setter)
    launcher = Launcher(source(params), load=loader)
    launcher._functions[0] = 77
    launcher.backend = launch.launch_backend("compiled")
    # The caller's order is (y, x, n): positions name, for each kernel parameter, its index there.
    bound = launcher.bind((FakeTensor(0x2000), FakeTensor(0x1000), 128), positions=(1, 2, 0))
    bound((FakeTensor(0x20000), FakeTensor(0x10000), 128))
    (launched,) = bound_driver.launches
    assert launched[1] == (2, 1, 1)
    assert struct.unpack("<QiiQ", launched[-1]) == (0x10000, 128, 0, 0x20000)  # n padded to y's alignment


def test_a_bound_launch_takes_its_workspace_each_call(bound_driver, monkeypatch):
    params = (KernelParam("n", "scalar", int32), KernelParam("__workspace", "pointer", int32))
    monkeypatch.setattr(launch, "pointer_setter", fake_pointer_setter)
    launcher = Launcher(source(params, workspace=Var("n", int32) * 4), load=loader)
    launcher._functions[0] = 77
    launcher.backend = launch.launch_backend("compiled")
    requests = []
    monkeypatch.setattr(
        launcher._workspace, "pointer", lambda device, nbytes, clean: requests.append(nbytes) or 0xABC00
    )
    launcher.bind((64,))((64,))
    assert requests == [256]
    assert struct.unpack("<iiQ", bound_driver.launches[0][-1]) == (64, 0, 0xABC00)


def test_another_device_or_a_refused_launch_goes_through_the_checked_launch(bound_driver, monkeypatch):
    launcher = Launcher(source(SCALARS), load=loader)
    launcher.launch((1.0, 64))
    bound = launcher.bind((1.0, 64))
    monkeypatch.setattr(launch, "_device_now", lambda: 1)
    bound((1.0, 64))
    assert bound_driver.launches == [] and len(bound_driver.checked) == 2  # launched, checked, on device 1
    monkeypatch.setattr(launch, "_device_now", lambda: 0)
    bound_driver.status = 500
    bound((1.0, 64))
    assert len(bound_driver.launches) == 1 and len(bound_driver.checked) == 3  # refused, then retried checked


def test_binding_checks_the_arguments_and_refuses_other_backends(bound_driver, monkeypatch):
    launcher = Launcher(source(SCALARS), load=loader)
    launcher.launch((1.0, 64))
    with pytest.raises(TypeError, match="expected a Python int, got float"):
        launcher.bind((1.0, 64.0))
    with pytest.raises(ValueError, match=r"positions \[0, 1, 1\] for 2 parameters must name one of the 2"):
        launcher.bind((1.0, 64), positions=(0, 1, 1))
    with pytest.raises(ValueError, match=r"positions \[0, 2\] for 2 parameters"):
        launcher.bind((1.0, 64), positions=(0, 2))
    assert launcher.bind((1.0, 0)) is None  # an empty grid launches nothing
    launcher.backend = LaunchBackend("bindings", None, None, None)
    assert launcher.bind((1.0, 64)) is None


def test_the_frame_packing_rejects_bad_layouts():
    module = compiled_launch.load()
    frame, offsets = bytes(16), struct.pack("<2I", 0, 8)
    assert module.frame(frame, offsets, struct.pack("<I", 8), 0x1234)[8:] == struct.pack("<Q", 0x1234)
    with pytest.raises(ValueError, match="1 slot offsets for 2 pointers"):
        module.frame(frame, offsets, struct.pack("<I", 8), 1, 2)
    with pytest.raises(ValueError, match="pointer slot 0 at byte 12 is outside the 16-byte frame"):
        module.frame(frame, offsets, struct.pack("<I", 12), 1)
    with pytest.raises(TypeError, match="pointer 0 must be a non-negative int"):
        module.frame(frame, offsets, struct.pack("<I", 8), -1)
    with pytest.raises(ValueError, match="a frame of 4104 bytes"):
        module.frame(bytes(4104), offsets, b"")


def test_a_bound_launch_without_workspace_at_its_sizes_passes_a_null_one(bound_driver, monkeypatch):
    params = (KernelParam("n", "scalar", int32), KernelParam("__workspace", "pointer", int32))
    monkeypatch.setattr(launch, "pointer_setter", fake_pointer_setter)
    launcher = Launcher(source(params, workspace=(Var("n", int32) - 64) * 4), load=loader)
    launcher._functions[0] = 77
    launcher.backend = launch.launch_backend("compiled")
    monkeypatch.setattr(launcher._workspace, "pointer", lambda *a: pytest.fail("no workspace is needed"))
    launcher.bind((64,))((64,))
    assert struct.unpack("<iiQ", bound_driver.launches[0][-1]) == (64, 0, 0)
