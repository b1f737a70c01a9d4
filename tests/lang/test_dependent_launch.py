"""``self.wait_prior_grids``, ``self.allow_dependent_grids``: interpreter, verifier, CUDA source, GPU."""

import numpy as np
import pytest

import anybit
from anybit import float32, int32
from anybit.ir import VerificationError

COLUMNS = 128


class Scale(anybit.Script):
    """y = x · w, where w (a "weight") is copied before the wait and x (an "activation") after it."""

    def __init__(self, dependent: bool = True) -> None:
        super().__init__()
        self.dependent = dependent

    def __call__(self, w: anybit.ptr(float32), x: anybit.ptr(float32), y: anybit.ptr(float32), n: int32):
        self.attrs.blocks = [n // COLUMNS]
        self.attrs.warps = 1
        column = self.blockIdx.x * COLUMNS
        gw = self.global_view(w, float32, [n])
        gx = self.global_view(x, float32, [n])
        gy = self.global_view(y, float32, [n])
        sw = self.shared_tensor(float32, [COLUMNS])
        self.copy_async(gw, sw, [column])
        self.copy_async_commit_group()
        if self.dependent:
            self.wait_prior_grids()
        tile = self.load_global(gx, [column], [COLUMNS])
        self.copy_async_wait_all()
        self.sync()
        product = tile * self.load_shared(sw)
        if self.dependent:
            self.allow_dependent_grids()
        self.store_global(gy, product, [column])


class Increment(anybit.Script):
    """y = x + 1: the producer of the GPU test. It lets the consumer start at once, so the consumer's wait
    is all that keeps it from reading y too early."""

    def __call__(self, x: anybit.ptr(float32), y: anybit.ptr(float32), n: int32):
        self.attrs.blocks = [n // COLUMNS]
        self.attrs.warps = 1
        self.allow_dependent_grids()
        gx = self.global_view(x, float32, [n])
        gy = self.global_view(y, float32, [n])
        tile = self.load_global(gx, [self.blockIdx.x * COLUMNS], [COLUMNS])
        self.store_global(gy, tile + 1.0, [self.blockIdx.x * COLUMNS])


def test_the_interpreter_computes_the_same_with_and_without_them():
    rng = np.random.default_rng(0)
    n = 3 * COLUMNS
    w, x = rng.standard_normal((2, n)).astype(np.float32)
    results = []
    for dependent in (True, False):
        y = np.full(n, np.nan, dtype=np.float32)
        anybit.interpret(Scale(dependent), w, x, y, n)
        results.append(y)
    np.testing.assert_array_equal(results[0], w * x)
    np.testing.assert_array_equal(results[1], results[0])


def test_the_program_prints_them():
    text = str(Scale().program(None, None, None, COLUMNS))
    assert "wait_prior_grids()" in text and "allow_dependent_grids()" in text


class StoreBeforeWait(anybit.Script):
    def __call__(self, y: anybit.ptr(float32)):
        self.attrs.blocks = [1]
        gy = self.global_view(y, float32, [COLUMNS])
        self.store_global(gy, self.register_tensor(float32, [COLUMNS], init=0.0), [0])
        self.wait_prior_grids()


class ArriveBeforeWait(anybit.Script):
    def __call__(self, y: anybit.ptr(float32)):
        self.attrs.blocks = [1]
        counters = self.global_tensor(int32, [1], kept_clean=True)
        self.arrive(counters, [0], 1)
        self.wait_prior_grids()


class WorkspaceReadBeforeWait(anybit.Script):
    def __call__(self, y: anybit.ptr(float32)):
        self.attrs.blocks = [1]
        work = self.global_tensor(float32, [COLUMNS])
        tile = self.load_global(work, [0], [COLUMNS])
        self.wait_prior_grids()
        self.store_global(self.global_view(y, float32, [COLUMNS]), tile, [0])


class StoreInsideIfBeforeWait(anybit.Script):
    def __call__(self, y: anybit.ptr(float32), flag: int32):
        self.attrs.blocks = [1]
        gy = self.global_view(y, float32, [COLUMNS])
        if flag == 1:
            self.store_global(gy, self.register_tensor(float32, [COLUMNS], init=0.0), [0])
        self.wait_prior_grids()


class WaitInsideLoop(anybit.Script):
    def __call__(self, y: anybit.ptr(float32), steps: int32):
        self.attrs.blocks = [1]
        for _ in self.range(steps):
            self.wait_prior_grids()


class TwoWaits(anybit.Script):
    def __call__(self, y: anybit.ptr(float32)):
        self.attrs.blocks = [1]
        self.wait_prior_grids()
        self.wait_prior_grids()


@pytest.mark.parametrize(
    ("kernel", "args", "message"),
    [
        (StoreBeforeWait, (None,), r"in `store_global`: writes global tensor .* before wait_prior_grids at"),
        (ArriveBeforeWait, (None,), r"in `arrive`: writes global tensor"),
        (WorkspaceReadBeforeWait, (None,), r"in `load_global`: reads workspace tensor"),
        (StoreInsideIfBeforeWait, (None, 1), r"in `store_global`: writes global tensor"),
        (WaitInsideLoop, (None, 2), r"expected wait_prior_grids as a top-level statement"),
        (TwoWaits, (None,), r"expected at most one wait_prior_grids"),
    ],
)
def test_the_verifier_rejects_memory_touched_before_the_wait(kernel, args, message):
    with pytest.raises(VerificationError, match=message) as error:
        kernel().program(*args)
    assert "test_dependent_launch.py" in str(error.value)  # it points at the kernel's line
    if "writes" in message:
        assert "move it after the wait" in str(error.value)


def test_stores_after_the_wait_and_loads_before_it_are_fine():
    Scale().program(None, None, None, COLUMNS)


def _source(kernel, arch: str, *args):
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    from anybit.runtime import compiler

    return compiler.generate_source(kernel.program(*args), arch)


def test_the_cuda_source_has_griddepcontrol_from_sm_90_on():
    hopper = _source(Scale(), "sm_90a", None, None, None, COLUMNS)
    assert hopper.source.count('asm volatile("griddepcontrol.wait;" ::: "memory");') == 1
    assert hopper.source.count('asm volatile("griddepcontrol.launch_dependents;" ::: "memory");') == 1
    assert hopper.waits_for_prior_grids
    ampere = _source(Scale(), "sm_80", None, None, None, COLUMNS)
    assert "griddepcontrol" not in ampere.source and not ampere.waits_for_prior_grids
    assert not _source(Scale(dependent=False), "sm_90a", None, None, None, COLUMNS).waits_for_prior_grids


@pytest.mark.parametrize("arch", ["sm_90a", "sm_80"])
def test_nvrtc_compiles_them(arch):
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    compiled = anybit.compile(Scale(), None, None, None, COLUMNS, arch=arch)
    assert ("griddepcontrol.wait" in compiled.ptx) == (arch == "sm_90a")
    assert compiled.kernel_source.waits_for_prior_grids == (arch == "sm_90a")


@pytest.mark.gpu
@pytest.mark.parametrize("graph", [False, True], ids=["stream", "cuda_graph"])
def test_a_dependent_launch_sees_the_previous_kernel_s_writes(graph):
    """Producer then dependent consumer, many times in a row (eagerly and inside a CUDA graph): every
    consumer reads what the producer just wrote, whatever the overlap."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    n = 1024 * COLUMNS
    rounds = 20
    w = torch.randn(n, device="cuda")
    xs = [torch.randn(n, device="cuda") for _ in range(rounds)]
    middles = [torch.empty(n, device="cuda") for _ in range(rounds)]
    ys = [torch.empty(n, device="cuda") for _ in range(rounds)]
    producer, consumer = Increment(), Scale()

    def run() -> None:
        for x, middle, y in zip(xs, middles, ys, strict=True):
            producer(x, middle, n)
            consumer(w, middle, y, n)

    run()  # compiles, loads and checks the launch path eagerly
    if graph:
        for y in ys:
            y.fill_(float("nan"))
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            run()
        captured.replay()
    torch.cuda.synchronize()
    for x, y in zip(xs, ys, strict=True):
        torch.testing.assert_close(y, (x + 1.0) * w, rtol=0, atol=0)
