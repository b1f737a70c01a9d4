"""benchmarks/tensor_probe.py: its mma.sync and wgmma kernels compile for sm_90a; the product counting."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from benchmarks import tensor_probe  # noqa: E402


@pytest.mark.parametrize("variant", [("mma", 8, 2, 8, 1), ("wgmma", 16, 2, 8, 2)], ids=["mma", "wgmma"])
def test_the_probe_kernels_compile_for_sm90a(variant):
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    from anybit.runtime.nvrtc import compile_cubin

    source = tensor_probe.kernel_source(*variant)
    assert source.block_threads == 32 * variant[3] and source.grid == (132 * variant[4], 1, 1)
    ptx = compile_cubin(source.source, source.name, "sm_90a").ptx
    wgmma = "wgmma.mma_async.sync.aligned.m64n16k16"
    expected = "mma.sync.aligned.m16n8k16" if variant[0] == "mma" else wgmma
    count = ptx.count(expected)  # one per chain and step (nvcc unrolls the step loop)
    assert count >= variant[2] and count % variant[2] == 0


def test_products_per_step():
    assert tensor_probe.products_per_step("mma", 8, 4, 8) == 32  # 8 warps x 4 chains
    # 2 warpgroups x 2 chains, each m64n16k16 = 4 m16 x 2 n8 products of 16x8x16
    assert tensor_probe.products_per_step("wgmma", 16, 2, 8) == 2 * 2 * 4 * 2
