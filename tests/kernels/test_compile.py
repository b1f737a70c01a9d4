"""The kernels compile with NVRTC for sm_90a (no GPU needed): no spills, no local memory, and the PTX has the
instructions the design relies on (cp.async 16-byte copies, mma.sync, lop3/prmt casts, vector accesses)."""

from __future__ import annotations

import re

import pytest
import torch

import anybit
from anybit.kernels import DecodeMatmul, DequantizeWeight, choose_layout

pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")

# (type, group size, act dtype, zeros): b ∈ {1, 3, 4, 6, 8} and two floats.
DECODE_CONFIGS = [
    ("uint1", 128, torch.float16, True),
    ("int3", 64, torch.float16, False),
    ("int4", 128, torch.float16, False),
    ("uint4", 32, torch.bfloat16, True),
    ("uint6", -1, torch.bfloat16, True),
    ("int8", 128, torch.float16, False),
    ("float6_e3m2", 128, torch.float16, False),
    ("float8_e4m3", 128, torch.bfloat16, False),
]


def _count(pattern: str, ptx: str) -> int:
    return len(re.findall(pattern, ptx))


def _check_resources(compiled) -> None:
    resources = compiled.resources
    assert (
        resources.stack_frame_bytes == 0
        and not resources.spill_store_bytes
        and not resources.spill_load_bytes
    )
    assert _count(r"\bld\.local|\bst\.local", compiled.ptx) == 0


@pytest.mark.parametrize(("dtype", "group_size", "act", "zeros"), DECODE_CONFIGS)
def test_decode_kernel_compiles_to_the_expected_instructions(dtype, group_size, act, zeros):
    layout = choose_layout(dtype, 4096, 4096, group_size, operand="b")
    kernel = DecodeMatmul(layout, act, has_zeros=zeros, has_bias=True, warps=4, stages=4)
    compiled = anybit.compile(kernel, arch="sm_90a")
    _check_resources(compiled)
    ptx = compiled.ptx
    assert _count(r"cp\.async\.cg\.shared\.global \[[^]]+\], \[[^]]+\], 16", ptx) >= 3  # weights, x, scales
    assert _count(r"mma\.sync\.aligned\.m16n8k16", ptx) >= layout.k_chunk // 16 * layout.n_tiles
    # the fast in-register casts (float8 on sm_89+: the native pair conversion)
    assert _count(r"\blop3\.b32|\bprmt\.b32|\bcvt\.rn\.f16x2\.e[45]m[23]x2", ptx) > 0
    if layout.vector_bytes == 16:
        assert _count(r"ld\.shared\.v4", ptx) > 0  # the weight bytes: one 16-byte load per vector
    else:
        assert _count(r"ld\.shared\.v2", ptx) > 0


@pytest.mark.parametrize(
    ("dtype", "group_size", "act"),
    [
        ("uint4", 128, torch.float16),
        ("int8", 128, torch.float16),
        ("int4", -1, torch.bfloat16),
        ("uint3", 32, torch.bfloat16),
        ("uint1", 128, torch.float16),
    ],
)
def test_dequantize_kernel_compiles_to_16_byte_accesses(dtype, group_size, act):
    """Every chunk's weight loads are issued before the first use; the output leaves in 16-byte stores of
    8 consecutive k, through a shared tile written with stmatrix and read back with 16-byte loads."""
    layout = choose_layout(dtype, 8192, 8192, group_size)
    kernel = DequantizeWeight(layout, act, has_zeros=dtype.startswith("u"))
    compiled = anybit.compile(kernel, arch="sm_90a")
    _check_resources(compiled)
    ptx = compiled.ptx
    threads = 32 * kernel.warps
    vectors = kernel.block_k * kernel.block_n // (8 * threads)  # 16-byte output vectors per thread
    assert _count(r"st\.global\.v4\.(b32|u32)|st\.global\.v2\.b64", ptx) == vectors
    assert _count(r"st\.global\.(b32|u32|v2\.(b32|u32))\b", ptx) == 0  # no 4- or 8-byte stores
    assert _count(r"ld\.shared\.v4", ptx) == vectors
    assert _count(r"stmatrix\.sync\.aligned\.m8n8\.x4|st\.shared\.(b32|u32)", ptx) > 0
    assert _count(r"bar\.sync", ptx) == 1
    # Per part (the codes whole, or each bit plane): chunks · its bytes per thread / its vector loads.
    loads: dict[str, int] = {}
    for part in layout.plane_layouts() if layout.planar else (layout,):
        width = {16: r"\.v4", 8: r"\.v2", 4: r"\.(b32|u32)"}[part.vector_bytes]
        loads[width] = loads.get(width, 0) + kernel.chunks * part.bytes_per_thread // part.vector_bytes
    first_use = re.search(r"stmatrix|st\.shared", ptx).start()
    for width, count in loads.items():
        assert _count(rf"ld\.global(\.nc)?{width}", ptx) == count
        assert _count(rf"ld\.global(\.nc)?{width}", ptx[:first_use]) == count  # all in flight together


@pytest.mark.parametrize("split", [1, 4])
@pytest.mark.parametrize("arch", ["sm_90a", "sm_80"])
def test_decode_kernel_waits_for_prior_grids_from_sm_90_on(arch, split):
    """One ``griddepcontrol.wait`` and one ``launch_dependents`` on Hopper (the runtime then launches it as a
    dependent); neither before, where the kernel is an ordinary one."""
    layout = choose_layout("uint4", 4096, 4096, 128, operand="b")
    kernel = DecodeMatmul(layout, torch.float16, has_zeros=True, has_bias=True, split=split)
    compiled = anybit.compile(kernel, arch=arch)
    _check_resources(compiled)
    hopper = arch == "sm_90a"
    assert _count(r"griddepcontrol\.wait;", compiled.ptx) == int(hopper)
    assert _count(r"griddepcontrol\.launch_dependents;", compiled.ptx) == int(hopper)
    assert compiled.kernel_source.waits_for_prior_grids == hopper
    assert compiled.launcher.waits_for_prior_grids == hopper


@pytest.mark.parametrize(
    ("warps_over", "tile", "splits"),
    [("heads", 8, 1), ("heads", 16, 1), ("heads", 8, 10), ("positions", 16, 1), ("positions", 16, 3)],
)
@pytest.mark.parametrize("masked", [False, True])
def test_decode_attention_compiles_without_spills(warps_over, tile, splits, masked):
    """Llama-3-8B's heads: the tile-16 and positions variants hold 240–255 registers, at the edge of
    spilling — a change that tips them over shows up here, not as a slow kernel on the GPU."""
    from anybit.kernels.attention import DecodeAttention

    kernel = DecodeAttention(32, 8, 128, torch.float16, 128**-0.5, tile, splits, warps_over, masked)
    compiled = anybit.compile(kernel, *[None] * 11, arch="sm_90a")
    _check_resources(compiled)
    assert _count(r"griddepcontrol\.wait", compiled.ptx) == 1
    assert _count(r"shfl\.sync\.bfly", compiled.ptx) > 0  # scores reduced across lanes, not through memory


@pytest.mark.parametrize(
    ("warps_over", "tile", "splits"), [("heads", 16, 8), ("heads", 8, 8), ("positions", 16, 2)]
)
def test_decode_attention_in_a_cluster_compiles_without_spills(warps_over, tile, splits):
    """The runs combined in the cluster's shared memory: no spills, the cluster shape in the kernel, two
    cluster barriers and the neighbours' shared memory mapped."""
    from anybit.kernels.attention import DecodeAttention

    kernel = DecodeAttention(32, 8, 128, torch.float16, 128**-0.5, tile, splits, warps_over, True, "cluster")
    compiled = anybit.compile(kernel, *[None] * 11, arch="sm_90a")
    _check_resources(compiled)
    assert f".reqnctapercluster 1, 1, {splits}" in compiled.ptx
    assert _count(r"barrier\.cluster\.wait", compiled.ptx) == 2
    assert "mapa" in compiled.ptx


def test_greedy_kernel_reduces_across_warps_through_partials():
    from anybit.kernels.greedy import GreedyToken

    compiled = anybit.compile(GreedyToken(torch.float16), *[None] * 4, arch="sm_90a")
    _check_resources(compiled)
    assert "if ((tid & 31) == 0)" in compiled.cuda_source  # one partial a warp, no whole-row scan


@pytest.mark.parametrize(
    ("dtype", "rows", "rms", "split"),
    [("int4", 8, True, 1), ("int4", 16, False, 1), ("int8", 8, True, 1), ("int4", 8, True, 2)],
)
def test_fused_mlp_kernel_compiles_without_spills(dtype, rows, rms, split):
    from anybit.kernels.mlp import DecodeGatedMLP, mlp_warps

    gate_up = choose_layout(dtype, 28672, 4096, 128, gated=True)
    down = choose_layout(dtype, 4096, 14336, 128, operand="a")
    options = dict(rms_eps=1e-5, rms_rows=1 if rows == 8 else None, rms_k=4096) if rms else {}
    kernel = DecodeGatedMLP(
        gate_up, down, torch.float16, warps=mlp_warps(gate_up, down), rows=rows, split=split, **options
    )
    compiled = anybit.compile(kernel, *[None] * 10, arch="sm_90a")
    _check_resources(compiled)
    assert _count(r"red\.global\.add\.f32|atom\.global\.add\.f32", compiled.ptx) > 0  # the partial sums
    # Both rings and the intermediate slice: one block an SM (227 KB on an H200).
    assert compiled.kernel_source.dynamic_shared_bytes + compiled.resources.shared_memory_bytes <= 227 * 1024
