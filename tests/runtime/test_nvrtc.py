"""NVRTC compilation to cubins, the resource report, and compile errors (CPU tier)."""

from __future__ import annotations

import pytest

from anybit.runtime import CompilationError, compile_cubin, nvrtc_version
from anybit.runtime.nvrtc import check_arch, cuda_include_dirs, parse_resource_report

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
    assert result.resources.registers > 0
    assert result.resources.spill_store_bytes == 0 and not result.resources.spills
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


def test_parse_report_picks_the_named_function():
    log = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'first' for 'sm_90a'
ptxas info    : Function properties for first
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function 'second' for 'sm_90a'
ptxas info    : Function properties for second
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 18 registers, 0 bytes smem
"""
    first = parse_resource_report(log, "first")
    assert (first.registers, first.shared_memory_bytes, first.stack_frame_bytes) == (40, 2048, 8)
    assert (first.spill_store_bytes, first.spill_load_bytes, first.barriers) == (4, 12, 1)
    assert first.constant_memory_bytes == 400 and first.spills
    assert parse_resource_report(log, "second").registers == 18
    assert parse_resource_report(log).registers == 40
    assert parse_resource_report("no report").registers == 0
