"""Every test program compiles with NVRTC for sm_80 and sm_90a, selecting the expected instructions."""

from __future__ import annotations

import re

import pytest
from cuda_programs import all_programs
from cuda_support import requires_nvrtc

from anybit.cuda import generate_cuda

#: PTX that must appear in each program's kernel (per architecture family).
EXPECTED = {
    "elementwise": ["ld.global.v4.u32", "st.global.v4.u32"],
    "matmul_f16": [
        "cp.async.cg.shared.global",
        "L2::cache_hint",
        "ldmatrix.sync.aligned.m8n8.x4.shared.b16",
        "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16",
        "mma.sync.aligned.m16n8k16.row.col.f32.f16",
    ],
    "matmul_bf16": ["ldmatrix.sync.aligned.m8n8.x4.trans", "mma.sync.aligned.m16n8k16.row.col.f32.bf16"],
    "matmul_i8": ["mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32", "cp.async.cg"],
    "dequant_int6_f16": ["lop3.b32", "sub.f16x2"],
    "dequant_uint4_bf16": ["lop3.b32", "fma.rn.bf16x2", "st.global.v4.u32"],
    "dequant_e4m3_f16": ["ld.global.v2.u32"],
    "reductions": ["shfl.sync.bfly.b32", "bar.sync", "st.global.v4.f32"],
    "products": ["shfl.sync.bfly.b32", "mul.f32"],
    "split_k": ["atom.global.add.f32", "ld.acquire.gpu", "st.release.gpu"],
    "shared_roundtrip": ["st.global.v4.u32"],
}
ON_SM90 = {
    "shared_roundtrip": ["stmatrix.sync.aligned.m8n8.x4.shared.b16"],
    "dequant_e4m3_f16": ["cvt.rn.f16x2.e4m3x2"],  # one instruction per pair on sm_89+
}
ON_SM80 = {"dequant_e4m3_f16": ["prmt.b32", "lop3.b32", "mul.f16x2"]}  # the bit-aligning conversion
WITH_STACK = {"split_k"}  # printf needs a stack frame


@requires_nvrtc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_program_compiles(name: str, arch: str) -> None:
    from anybit.runtime.nvrtc import compile_cubin

    kernel = generate_cuda(all_programs()[name], arch=arch)
    result = compile_cubin(kernel.source, kernel.name, arch)
    expected = EXPECTED[name] + (ON_SM90 if arch == "sm_90a" else ON_SM80).get(name, [])
    for fragment in expected:
        assert fragment in result.ptx, f"{name}/{arch}: expected {fragment!r} in the PTX"
    assert not result.resources.spills, result.resources
    if name not in WITH_STACK:
        assert result.resources.stack_frame_bytes == 0, result.resources
        assert not re.search(r"\bld\.local|\bst\.local", result.ptx)


def test_kernel_source_fields() -> None:
    programs = all_programs()
    kernel = generate_cuda(programs["elementwise"])
    assert [p.name for p in kernel.params] == ["x", "y", "out", "m"]
    assert kernel.block_threads == 128 and kernel.dynamic_shared_bytes == 0
    assert dict(kernel.alignment_requirements) == {"x": 16, "y": 16, "out": 16}
    split = generate_cuda(programs["split_k"])
    assert split.params[-1].name == "__workspace" and split.workspace_clean and split.workspace_bytes == 256
    matmul = generate_cuda(programs["matmul_f16"])
    assert matmul.dynamic_shared_bytes == 16 * 64 * 2 + 64 * 32 * 2


def test_stmatrix_only_from_sm90() -> None:
    source = generate_cuda(all_programs()["shared_roundtrip"], arch="sm_80").source
    assert "stmatrix" not in source


def test_partial_copy_rounds_are_predicated_without_cache_hint() -> None:
    # ptxas 13.0 mis-encoded a cache-hinted cp.async that only some threads run ("illegal instruction")
    source = generate_cuda(all_programs()["matmul_i8"]).source
    assert "@p_ cp.async.cg.shared.global [" in source
    assert "@p_ cp.async.cg.shared.global.L2::cache_hint" not in source
    assert "if (tid + 0 < 64)" not in source


def test_every_lane_runs_every_shuffle() -> None:
    # a shuffle inside max's conditional expression ran in some lanes only (wrong maxima, hangs)
    source = generate_cuda(all_programs()["reductions"]).source
    assert "__shfl_xor_sync" in source
    assert not re.search(r"\?[^;]*__shfl_xor_sync", source)


def test_reductions_across_warps_combine_partials() -> None:
    # a row spread over lanes and warps: butterflies, then one partial a warp through shared memory (a scan
    # of the whole row by every thread cost ~25 µs for 2048 elements)
    source = generate_cuda(all_programs()["block_reductions"]).source
    assert "if ((tid & 31) == 0)" in source
    assert "row_[8]" not in source  # the partials of a row sit 256 apart: no element-by-element scan


def test_ldmatrix_lane_offsets_are_hoisted() -> None:
    # per-lane ldmatrix addresses are computed once in the prologue, not per instruction
    source = generate_cuda(all_programs()["matmul_f16"]).source
    body = source[source.index("__syncthreads();") :]
    assert "ldmatrix" in body and "(tid % 32) / 8 ==" not in body
