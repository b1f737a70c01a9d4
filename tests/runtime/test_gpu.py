"""GPU tier: launching on torch tensors, shared memory, workspace, CUDA graphs, errors, overhead, autotune."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import anybit
from anybit.cuda.kernel_source import CudaKernelSource, KernelParam
from anybit.dtypes import float32, int32, uint8
from anybit.ir.expr import Var, cdiv
from anybit.runtime import compile_source

from .helpers import axpy_source, requires_gpu

pytestmark = [pytest.mark.gpu, requires_gpu]

torch = pytest.importorskip("torch")

COUNTER = r"""
extern "C" __global__ void counter(int* out, int n, int* workspace) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = atomicAdd(workspace, 1);
}
"""

BIG_SHARED = r"""
extern "C" __global__ void reverse_in_shared(const float* x, float* y, int n) {
    extern __shared__ float buffer[];
    for (int i = threadIdx.x; i < n; i += blockDim.x) buffer[i] = x[i];
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = buffer[n - 1 - i];
}
"""


def counter_source(clean: bool) -> CudaKernelSource:
    n = Var("n", int32)
    return CudaKernelSource(
        name="counter",
        source=COUNTER,
        params=(
            KernelParam("out", "pointer", int32),
            KernelParam("n", "scalar", int32),
            KernelParam("__workspace", "pointer", uint8),
        ),
        grid=(cdiv(n, 128), 1, 1),
        block_threads=128,
        dynamic_shared_bytes=0,
        workspace_bytes=n * 4,
        workspace_clean=clean,
        alignment_requirements=(),
    )


@pytest.fixture(scope="module")
def axpy():
    return compile_source(axpy_source())


def random(n: int, dtype=None):
    return torch.randn(n, device="cuda", dtype=dtype or torch.float32)


@pytest.mark.parametrize("n", [1, 1000, 4096, 100_003])
def test_axpy_with_scalars_and_grid_from_parameters(axpy, n):
    x, y = random(n), random(n)
    expected = 2.5 * x + y
    axpy(2.5, x, y, n)
    torch.cuda.synchronize()
    torch.testing.assert_close(y, expected)


def test_empty_grid_is_a_no_op(axpy):
    x = random(16)
    before = x.clone()
    axpy(1.0, x, x, 0)
    torch.cuda.synchronize()
    assert torch.equal(x, before)


def test_launches_on_the_current_stream(axpy):
    stream = torch.cuda.Stream()
    x, y = random(1 << 20), random(1 << 20)
    expected = 3.0 * x + y
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        axpy(3.0, x, y, x.numel())
    stream.synchronize()
    torch.testing.assert_close(y, expected)


def test_cuda_array_interface_objects_are_accepted(axpy):
    class Wrapped:
        def __init__(self, tensor):
            self.__cuda_array_interface__ = tensor.__cuda_array_interface__

    x, y = random(256), random(256)
    expected = x + y
    axpy(1.0, Wrapped(x), y, 256)
    torch.cuda.synchronize()
    torch.testing.assert_close(y, expected)


def test_more_than_48_kb_of_dynamic_shared_memory():
    n = 100 * 1024 // 4
    source = CudaKernelSource(
        name="reverse_in_shared",
        source=BIG_SHARED,
        params=(
            KernelParam("x", "pointer", float32),
            KernelParam("y", "pointer", float32),
            KernelParam("n", "scalar", int32),
        ),
        grid=(1, 1, 1),
        block_threads=256,
        dynamic_shared_bytes=n * 4,
        workspace_bytes=0,
        workspace_clean=False,
        alignment_requirements=(),
    )
    kernel = compile_source(source)
    x = random(n)
    y = torch.full_like(x, float("nan"))
    kernel(x, y, n)
    torch.cuda.synchronize()
    assert torch.equal(y, x.flip(0))


@pytest.mark.parametrize("clean", [True, False])
def test_workspace_clean_and_dirty(clean):
    kernel = compile_source(counter_source(clean))
    n = 1000
    first = torch.full((n,), -1, dtype=torch.int32, device="cuda")
    second = torch.full((n,), -1, dtype=torch.int32, device="cuda")
    kernel(first, n)
    kernel(second, n)
    torch.cuda.synchronize()
    # A clean workspace is zeroed before every launch; a dirty one starts with whatever memory it got and
    # keeps the first launch's count.
    base = 0 if clean else min(first.tolist())
    assert sorted(first.tolist()) == list(range(base, base + n))
    offset = 0 if clean else base + n
    assert sorted(second.tolist()) == list(range(offset, offset + n))


def test_cuda_graph_capture_and_replay(axpy):
    kernel = compile_source(counter_source(True))
    n = 5000
    x, y = random(n), random(n)
    counts = torch.full((n,), -1, dtype=torch.int32, device="cuda")
    axpy(2.0, x, y, n)  # warm up: module loaded, workspace allocated, outside the capture
    kernel(counts, n)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        axpy(2.0, x, y, n)
        kernel(counts, n)
    for _ in range(3):
        x.copy_(random(n))
        y.copy_(random(n))
        counts.fill_(-1)
        expected = 2.0 * x + y
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(y, expected)
        assert sorted(counts.tolist()) == list(range(n))


def test_bad_arguments_on_the_gpu(axpy):
    x = random(64)
    with pytest.raises(ValueError, match="expected a CUDA tensor"):
        axpy(1.0, x.cpu(), x, 64)
    with pytest.raises(TypeError, match="expected dtype float32 .* got torch.float16"):
        axpy(1.0, x.half(), x, 64)
    with pytest.raises(ValueError, match="not contiguous"):
        axpy(1.0, random(64 * 2)[::2], x, 64)
    with pytest.raises(ValueError, match="not a multiple of 16 bytes"):
        axpy(1.0, random(65)[1:], x, 64)
    with pytest.raises(TypeError, match="expected a Python int, got float"):
        axpy(1.0, x, x, 64.0)
    with pytest.raises(TypeError, match="expected a Python float, got str"):
        axpy("1", x, x, 64)
    with pytest.raises(TypeError, match="takes 4 arguments"):
        axpy(1.0, x, x)
    if torch.cuda.device_count() > 1:
        with pytest.raises(ValueError, match="current device cuda:0"):
            axpy(1.0, x.to("cuda:1"), x, 64)


def test_launch_overhead_is_recorded():
    from anybit.runtime.overhead import measure_launch_overhead

    results = measure_launch_overhead(launches=5000)
    print("\nlaunch overhead (host us per launch):", json.dumps(results, indent=1))
    out = os.environ.get("OUT")
    if out:
        Path(out, "launch_overhead_pytest.json").write_text(json.dumps(results, indent=1))
    assert results["anybit_launch_us"] > 0


def test_script_call_end_to_end():
    sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))
    from vector_add import VectorAdd

    n = 3000
    x, y = random(n, torch.float16), random(n, torch.float16)
    z = torch.full_like(x, float("nan"))
    VectorAdd()(x, y, z, n)
    torch.cuda.synchronize()
    torch.testing.assert_close(z, x + y)


def test_autotune_end_to_end_on_two_configs(private_cache):
    sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))
    from vector_add import VectorAdd

    @anybit.autotune("block_size", [256, 512])
    class TunedAdd(VectorAdd):
        pass

    kernel = TunedAdd()
    n = 1 << 20
    x, y = random(n, torch.float16), random(n, torch.float16)
    z = torch.full_like(x, float("nan"))
    kernel(x, y, z, n)
    torch.cuda.synchronize()
    torch.testing.assert_close(z, x + y)
    files = list((private_cache / "tuning").glob("*TunedAdd-*.json"))
    assert len(files) == 1
    results = json.loads(files[0].read_text())["results"]
    (record,) = next(iter(results.values())).values()
    assert record["config"] in ({"block_size": 256}, {"block_size": 512})
    assert all(c["milliseconds"] is not None for c in record["candidates"])


PRODUCER = r"""
extern "C" __global__ void producer(const float* x, float* y, int n) {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");  // the consumer may start at once
#endif
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] + 1.0f;
}
"""

CONSUMER = r"""
extern "C" __global__ void consumer(const float* y, float* z, int n) {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");  // all that keeps it from reading y too early
#endif
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) z[i] = y[i] * 2.0f;
}
"""


def pair_source(name: str, source: str, dependent: bool) -> CudaKernelSource:
    """A one-thread-per-element kernel (a, b, n) with axpy's grid, a dependent launch if ``dependent``."""
    params = (
        KernelParam("a", "pointer", float32),
        KernelParam("b", "pointer", float32),
        KernelParam("n", "scalar", int32),
    )
    return axpy_source(
        name=name, source=source, params=params, alignment_requirements=(), waits_for_prior_grids=dependent
    )


@pytest.mark.parametrize("backend", ["bindings", "ctypes", "compiled"])
def test_every_launch_backend_runs_plain_dependent_and_captured_launches(backend):
    """Each backend (no skipping: on a GPU machine every one must work) launches axpy correctly, and a
    producer/dependent-consumer pair twenty times in a row eagerly and from a CUDA graph: every consumer
    reads what its producer just wrote."""
    axpy = compile_source(axpy_source())
    producer = compile_source(pair_source("producer", PRODUCER, dependent=False))
    consumer = compile_source(pair_source("consumer", CONSUMER, dependent=True))
    n = 1 << 20
    x, y = random(n), random(n)
    axpy(1.0, x, y, n)  # loads each kernel once, then switch every launcher to the backend under test
    for kernel in (axpy, producer, consumer):
        kernel.launcher.use_backend(backend)
    x, y = random(n), random(n)
    expected = 2.5 * x + y
    axpy(2.5, x, y, n)
    torch.cuda.synchronize()
    torch.testing.assert_close(y, expected)
    rounds = 20
    xs = [random(n) for _ in range(rounds)]
    middles = [torch.empty(n, device="cuda") for _ in range(rounds)]
    zs = [torch.full((n,), float("nan"), device="cuda") for _ in range(rounds)]

    def run() -> None:
        for x, middle, z in zip(xs, middles, zs, strict=True):
            producer(x, middle, n)
            consumer(middle, z, n)

    run()
    torch.cuda.synchronize()
    for x, z in zip(xs, zs, strict=True):
        torch.testing.assert_close(z, (x + 1.0) * 2.0, rtol=0, atol=0)
    assert consumer.launcher.launches_as_dependent(torch.cuda.current_device()) == (backend != "ctypes")
    for z in zs:
        z.fill_(float("nan"))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    for x in xs:
        x.copy_(random(n))
    graph.replay()
    torch.cuda.synchronize()
    for x, z in zip(xs, zs, strict=True):
        torch.testing.assert_close(z, (x + 1.0) * 2.0, rtol=0, atol=0)
