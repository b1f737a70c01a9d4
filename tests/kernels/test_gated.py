"""The fused SiLU · up epilogue of the transposed decode kernel (a gated pair's rows interleaved), on the CPU
interpreter against float64, and the interleaving's round trip and errors."""

from __future__ import annotations

import pytest
import torch

from anybit import kernels
from anybit.kernels.gated import gated_reference, interleave_gated, split_gated


def test_interleave_round_trip_and_errors():
    gate, up = torch.randn(24, 5), torch.randn(24, 5)
    both = interleave_gated(gate, up)
    assert both.shape == (48, 5)
    assert torch.equal(both[0:8], gate[0:8]) and torch.equal(both[8:16], up[0:8])
    assert torch.equal(both[16:24], gate[8:16])
    again = split_gated(both)
    assert torch.equal(again[0], gate) and torch.equal(again[1], up)
    with pytest.raises(ValueError, match="multiple of 8 rows"):
        interleave_gated(torch.randn(12, 5), torch.randn(12, 5))
    with pytest.raises(ValueError, match="same shape"):
        interleave_gated(torch.randn(8, 5), torch.randn(16, 5))
    with pytest.raises(ValueError, match="multiple of 16 rows"):
        split_gated(torch.randn(24, 5))


@pytest.mark.parametrize(
    ("dtype", "m", "config"),
    [
        ("int4", 1, {"warps": 2, "stages": 2, "split": 1}),
        ("uint4", 3, {"warps": 2, "stages": 2, "split": 2}),  # zero points, split-K's reduction first
        ("int8", 12, {"warps": 1, "stages": 3, "split": 1, "rows": 16}),  # 16 rows of x a block
    ],
)
def test_gated_decode_matches_silu_of_gate_times_up(dtype, m, config):
    intermediate, k = 32, 256
    gate = torch.randn(intermediate, k) * 0.05
    up = torch.randn(intermediate, k) * 0.05
    q = kernels.quantize(interleave_gated(gate, up), dtype, group_size=128)
    p = kernels.pack(q, layout=kernels.choose_layout(dtype, 2 * intermediate, k, 128, gated=True))
    assert p.layout.gated and p.layout.operand == "a"
    x = torch.randn(m, k).half()
    out = torch.full((m, intermediate), float("nan"), dtype=torch.float16)
    y = kernels.decode_matmul(x, p, out=out, config=config)
    assert y is out and not y.isnan().any()
    products = x.double() @ kernels.dequantize(q).double().T  # interleaved [m, 2I]
    expected = gated_reference(products)
    error = float((y.double() - expected).norm() / expected.norm())
    assert error < 2e-3, error


def test_gated_needs_the_a_packing():
    with pytest.raises(ValueError, match="operand='a', gated=True"):
        kernels.choose_layout("int4", 32, 256, 128, operand="b", gated=True)


@pytest.mark.parametrize("rows", [8, 16])
def test_gated_kernels_compile(rows):
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    import anybit
    from anybit.kernels.decode_transposed import DecodeMatmulTransposed

    layout = kernels.choose_layout("int4", 28672, 4096, 128, gated=True)
    kernel = DecodeMatmulTransposed(layout, torch.float16, warps=8, split=2, rows=rows)
    compiled = anybit.compile(kernel, *(None,) * 6, rows, 28672, 4096, arch="sm_90a")
    assert compiled.resources.spills == 0 and "ex2" in compiled.ptx  # the sigmoid's exp


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")
@pytest.mark.parametrize("dtype", ["int4", "uint4", "float6_e3m2"])
@pytest.mark.parametrize("m", [1, 8, 16])
def test_gated_decode_on_the_gpu(dtype, m):
    """The tuned gated kernel through quantized_matmul: every M bucket's tuning, against float64."""
    from anybit import ops

    intermediate, k = 1024, 2048
    gate, up = torch.randn(intermediate, k) * 0.02, torch.randn(intermediate, k) * 0.02
    q = kernels.quantize(interleave_gated(gate, up).cuda(), dtype, group_size=128)
    p = kernels.pack(q, layout=kernels.choose_layout(dtype, 2 * intermediate, k, 128, gated=True))
    x = torch.randn(m, k, device="cuda").half()
    y = ops.quantized_matmul(x, p)
    expected = gated_reference(x.double() @ kernels.dequantize(q).double().T.cuda())
    assert y.shape == (m, intermediate) and torch.isfinite(y).all()
    assert float((y.double() - expected).norm() / expected.norm()) < 3e-3
