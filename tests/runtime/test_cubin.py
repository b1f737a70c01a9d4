"""Resources read from the cubin's ELF sections agree with the ptxas report, kernel by kernel and arch."""

from __future__ import annotations

import dataclasses

import pytest

from anybit.runtime.cubin import CubinFormatError, cubin_resources, kernel_names, read_sections
from anybit.runtime.nvrtc import compile_cubin, kernel_resources
from anybit.runtime.resources import parse_resource_report

from .helpers import AXPY
from .test_nvrtc import SPILLING

# Kernels that exercise each number: static shared memory (one and two arrays, dynamic only), named barriers,
# a stack frame, high register pressure, a call to a non-inlined device function (a mangled name).
KERNELS = (
    SPILLING
    + AXPY
    + r"""
extern "C" __global__ void tile(float* out) {
    __shared__ float t[300];
    t[threadIdx.x] = out[threadIdx.x];
    __syncthreads();
    out[threadIdx.x] = t[299 - threadIdx.x];
}
extern "C" __global__ void two_arrays(float* out) {
    __shared__ double u[7];
    __shared__ char c[3];
    u[threadIdx.x] = out[threadIdx.x];
    c[threadIdx.x] = 1;
    __syncthreads();
    out[threadIdx.x] = u[6 - threadIdx.x] + c[2];
}
extern "C" __global__ void dynamic_only(float* out) {
    extern __shared__ float d[];
    d[threadIdx.x] = 1;
    __syncthreads();
    out[0] = d[3];
}
extern "C" __global__ void named_barriers(float* out) {
    asm volatile("bar.sync 3, 64;");
    asm volatile("bar.sync 5, 64;");
    out[threadIdx.x] = 1;
}
extern "C" __global__ void pressure(float* out, int n) {
    __shared__ float4 tile[2048];
    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = out[i * n + threadIdx.x];
    tile[threadIdx.x] = make_float4(acc[0], acc[1], acc[2], acc[3]);
    __syncthreads();
    float s = 0;
#pragma unroll
    for (int i = 0; i < 64; ++i) s += acc[i] * tile[(threadIdx.x + i) & 2047].x;
    out[threadIdx.x] = s;
}
__device__ __noinline__ float helper(float* p, int i) {
    float v[64];
    for (int j = 0; j < 64; ++j) v[j] = p[j * i];
    return v[i & 63];
}
__global__ void calls(float* out, int n) { out[threadIdx.x] = helper(out, n); }
"""
)
COMPARED = ("registers", "shared_memory_bytes", "stack_frame_bytes", "barriers")


@pytest.fixture(scope="module", params=[("sm_80", ()), ("sm_90a", ()), ("sm_90a", ("-maxrregcount=32",))])
def compiled(request):
    arch, options = request.param
    return compile_cubin(KERNELS, "axpy", arch, options)


def test_cubin_numbers_agree_with_the_ptxas_report(compiled):
    kernels = [name for name in kernel_names(compiled.cubin) if "helper" not in name]
    assert len(kernels) == 8, kernels
    for name in kernels:
        from_cubin = cubin_resources(compiled.cubin, name)
        merged = kernel_resources(compiled.cubin, compiled.log, name)
        from_log = parse_resource_report(compiled.log, name)
        if from_log is None:  # an NVRTC that leaves the report out of the log: spills are unknown
            assert merged == from_cubin and merged.spills is None, (name, compiled.log)
            continue
        for field in COMPARED:
            assert getattr(from_cubin, field) == getattr(from_log, field), (name, field, from_cubin, from_log)
        if from_log.constant_memory_bytes:  # ptxas prints cmem[0] for sm_8x only
            assert from_cubin.constant_memory_bytes == from_log.constant_memory_bytes, name
        assert merged == dataclasses.replace(
            from_cubin,
            spill_store_bytes=from_log.spill_store_bytes,
            spill_load_bytes=from_log.spill_load_bytes,
        )


def test_what_the_cubin_says_without_any_log(compiled):
    def usage(name):
        return kernel_resources(compiled.cubin, "", name)

    assert usage("tile").shared_memory_bytes == 1200 and usage("tile").barriers == 1
    assert usage("two_arrays").shared_memory_bytes == 64  # 56 B of doubles, then 3 chars, rounded up
    assert usage("dynamic_only").shared_memory_bytes == 0  # dynamic shared memory is a launch setting
    assert usage("named_barriers").barriers == 6  # barriers 0 to 5
    assert usage("pressure").shared_memory_bytes == 2048 * 16
    assert usage("spill").stack_frame_bytes >= 2048  # the indexed array lives in local memory
    assert usage("axpy").stack_frame_bytes == 0 and usage("axpy").constant_memory_bytes > 0
    for name in kernel_names(compiled.cubin):
        assert 0 < usage(name).registers <= 255 and usage(name).spills is None


def test_sm80_cubins_also_keep_the_register_count_in_the_text_section_header():
    result = compile_cubin(AXPY, "axpy", "sm_80")
    assert read_sections(result.cubin)[".text.axpy"].info >> 24 == result.resources.registers > 0


def test_an_unknown_kernel_or_a_non_cubin():
    result = compile_cubin(AXPY, "axpy", "sm_90a")
    assert cubin_resources(result.cubin, "not_there") is None
    with pytest.raises(CubinFormatError, match="expected a 64-bit little-endian ELF cubin"):
        read_sections(b"not an ELF file at all, just some bytes" * 2)
    with pytest.raises(CubinFormatError, match="outside the file"):
        read_sections(result.cubin[:200])
    assert kernel_resources(b"garbage", "", "axpy").registers == 0  # a warning, never an exception
