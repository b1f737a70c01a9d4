"""``anybit.compile`` without a GPU, and how Script calls map to kernel parameters."""

from __future__ import annotations

import pytest

import anybit
from anybit.cuda.kernel_source import CudaKernelSource, KernelParam
from anybit.runtime import ArgSpec, CompiledKernel, compiler
from anybit.runtime.compiler import bind_arguments, positional_arguments

from .helpers import axpy_source

VECTOR_ADD = r"""
extern "C" __global__ void vector_add(const float* x, const float* y, float* z, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) z[i] = x[i] + y[i];
}
"""


class VectorAdd(anybit.Script):
    """z = x + y, with a compile-time ``unroll`` to check the split of compile-time and run-time arguments."""

    def __init__(self, block_size: int = 256) -> None:
        super().__init__()
        self.block_size = block_size

    def __call__(
        self,
        x: anybit.ptr(anybit.float32),
        y: anybit.ptr(anybit.float32),
        unroll: int,
        z: anybit.ptr(anybit.float32),
        n: anybit.int32,
    ):
        self.attrs.blocks = [(n + self.block_size - 1) // self.block_size]
        self.attrs.warps = self.block_size // 32


def hand_written_generator(program, arch):
    """Stand-in for anybit.cuda.generate_cuda: the program's launch configuration, a hand-written body."""
    params = tuple(
        KernelParam(
            p.name, "pointer" if p.name != "n" else "scalar", p.type.dtype if p.name != "n" else p.type
        )
        for p in program.params
    )
    return CudaKernelSource(
        name="vector_add",
        source=VECTOR_ADD,
        params=params,
        grid=program.grid,
        block_threads=program.num_threads,
        dynamic_shared_bytes=0,
        workspace_bytes=0,
        workspace_clean=False,
        alignment_requirements=(),
    )


def test_compile_a_hand_written_source_without_gpu():
    compiled = anybit.compile(axpy_source(), arch="sm_90a")
    assert isinstance(compiled, CompiledKernel) and compiled.program is None
    assert compiled.cubin[:4] == b"\x7fELF" and ".entry axpy" in compiled.ptx
    assert compiled.resources.registers > 0 and "axpy" in compiled.cuda_source
    assert compiled.arch == "sm_90a" and "registers" in repr(compiled)


def test_compile_a_script_with_stand_ins(monkeypatch):
    monkeypatch.setattr(compiler, "generate_source", hand_written_generator)
    kernel = VectorAdd(128)
    compiled = anybit.compile(
        kernel, ArgSpec(anybit.float32), None, 4, ArgSpec(anybit.float32), None, arch="sm_80"
    )
    assert compiled.program.constants == (("unroll", 4),)
    assert [p.name for p in compiled.program.params] == ["x", "y", "z", "n"]
    assert compiled.kernel_source.block_threads == 128 and compiled.cubin and compiled.ptx
    assert compiled.launcher.grid((None, None, None, 1000)) == (8, 1, 1)


def test_script_arguments_bind_by_name(monkeypatch):
    monkeypatch.setattr(compiler, "generate_source", hand_written_generator)
    kernel = VectorAdd()
    compiled = anybit.compile(kernel, None, None, 2, None, 10, arch="sm_80")
    binding = bind_arguments(kernel, compiled.program, compiled.kernel_source, 5)
    assert binding.constant_positions == (2,) and binding.runtime_positions == (0, 1, 3, 4)
    with pytest.raises(TypeError, match="cannot match 3 arguments"):
        bind_arguments(kernel, compiled.program, compiled.kernel_source, 3)
    keywords = {"unroll": 1, "z": "z", "n": 3}
    assert positional_arguments(VectorAdd, ("x", "y"), keywords) == ("x", "y", 1, "z", 3)


def test_calling_a_script_compiles_then_checks_arguments(monkeypatch):
    import torch

    monkeypatch.setattr(compiler, "generate_source", hand_written_generator)
    kernel = VectorAdd()
    x = torch.zeros(10)
    with pytest.raises(ValueError, match=r"pointer parameter 'x' \(argument 1\).*expected a CUDA tensor"):
        kernel(x, x, 2, x, 10)  # Script.__call__ -> anybit.runtime.launch -> launch_script
    with pytest.raises(ValueError, match="expected a CUDA tensor"):
        kernel(x, x, 2, z=x, n=10)


def test_a_script_compiles_through_the_code_generator():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))
    from vector_add import VectorAdd as ExampleVectorAdd

    for arch in ("sm_80", "sm_90a"):
        compiled = anybit.compile(ExampleVectorAdd(), None, None, None, 1000, arch=arch)
        assert compiled.cubin[:4] == b"\x7fELF" and compiled.resources.registers > 0
        assert not compiled.resources.spills


def test_a_run_time_workspace_size_compiles_without_a_gpu():
    """A workspace sized by a run-time expression (n * 4 bytes) is evaluated per launch, never as a bool."""
    from tests.runtime.test_gpu import counter_source

    compiled = anybit.compile(counter_source(True), arch="sm_90a")
    assert compiled.launcher.workspace_bytes((None, 1000)) == 4000
