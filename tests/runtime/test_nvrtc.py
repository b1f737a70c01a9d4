"""NVRTC compilation to cubins, the resource report, and compile errors (CPU tier)."""

from __future__ import annotations

import pytest

from anybit.runtime import CompilationError, compile_cubin, nvrtc_version
from anybit.runtime.nvrtc import check_arch, cuda_include_dirs

from .helpers import AXPY

SPILLING = r"""
extern "C" __global__ void spill(float* out, const int* index, int n) {
    float values[512];
    for (int i = 0; i < 512; ++i) values[i] = out[i * n];
    out[threadIdx.x] = values[index[threadIdx.x] & 511];
}
"""


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_compiles_a_cubin_with_resources_and_ptx(arch):
    result = compile_cubin(AXPY, "axpy", arch)
    assert result.cubin[:4] == b"\x7fELF"
    assert result.lowered_name == "axpy"
    assert result.resources.registers > 0  # from the cubin: known with every NVRTC version
    assert result.resources.spills is not True  # from the ptxas log, which some NVRTC builds leave out
    assert f".target {arch}" in result.ptx
    assert result.nvrtc_version == nvrtc_version() and result.arch == arch


def test_fp16_header_is_found():
    assert cuda_include_dirs(), "the nvidia-cuda-runtime headers should be found through the nvidia package"
    source = '#include <cuda_fp16.h>\nextern "C" __global__ void h(__half* x) { x[0] = __float2half(1.f); }\n'
    assert compile_cubin(source, "h", "sm_90a").cubin


def test_mangled_kernel_names_are_lowered():
    result = compile_cubin("__global__ void plain(int* p) { p[0] = 1; }\n", "plain", "sm_80")
    assert result.lowered_name.startswith("_Z") and "plain" in result.lowered_name


def test_local_memory_use_is_reported():
    resources = compile_cubin(SPILLING, "spill", "sm_90a").resources
    assert resources.stack_frame_bytes >= 2048


def test_compile_error_shows_log_and_numbered_source():
    source = 'extern "C" __global__ void broken(int* p) {\n    int a = 1;\n    p[0] = undefined_name;\n}\n'
    with pytest.raises(CompilationError) as caught:
        compile_cubin(source, "broken", "sm_80")
    message = str(caught.value)
    assert "undefined_name" in caught.value.log
    assert 'identifier "undefined_name" is undefined' in message
    assert ">>    3 |     p[0] = undefined_name;" in message
    assert "    2 |     int a = 1;" in message


@pytest.mark.parametrize("arch", ["sm_70", "compute_90", "90", "", None])
def test_bad_arch_is_rejected(arch):
    with pytest.raises(ValueError, match="expected an architecture like"):
        check_arch(arch)
