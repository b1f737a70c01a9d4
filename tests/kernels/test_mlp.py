"""The fused gated MLP kernel (gate/up, SiLU · up and down with the residual add in one kernel) on the CPU
interpreter against float64: every weight family's layout, 1–20 rows, the folded RMSNorm, in place on the
residual stream, launched twice (its workspace and counters left clean), and its errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from anybit import kernels
from anybit.kernels.gated import gated_reference, interleave_gated
from anybit.kernels.mlp import (
    DecodeGatedMLP,
    decode_gated_mlp_,
    fitting_mlp_kernel,
    mlp_warps,
    planned_shared_bytes,
)
from anybit.runtime.device import arch_limits

HIDDEN, INTERMEDIATE, OUT = 256, 256, 256


def _weights(
    dtype: str, seed: int, act: torch.dtype = torch.float16, down_bytes: int | None = None, out: int = OUT
):
    """(quantized gate/up pair, its packing, quantized down, its packing): random normal weights; down's warp
    tiles of at most ``down_bytes`` a thread (default: choose_layout's), ``out`` its rows."""
    generator = torch.Generator().manual_seed(seed)
    gate, up = (torch.randn(INTERMEDIATE, HIDDEN, generator=generator) * 0.05 for _ in range(2))
    down = torch.randn(out, INTERMEDIATE, generator=generator) * 0.05
    q_pair = kernels.quantize(interleave_gated(gate, up), dtype, group_size=128, act_dtype=act)
    pair = kernels.pack(
        q_pair, layout=kernels.choose_layout(dtype, 2 * INTERMEDIATE, HIDDEN, 128, gated=True)
    )
    q_down = kernels.quantize(down, dtype, group_size=128, act_dtype=act)
    packed_down = kernels.pack(
        q_down,
        layout=kernels.choose_layout(
            dtype, out, INTERMEDIATE, 128, operand="a", max_bytes_per_thread=down_bytes
        ),
    )
    return q_pair, pair, q_down, packed_down


def _expected(x, residual, q_pair, q_down, rms_eps):
    """float64: residual + down(h), h = silu(gate)·up of x (RMS-normalised rows with ``rms_eps``) rounded to
    the activation dtype as the two-kernel MLP stores it."""
    xd = x.double()
    if rms_eps is not None:
        xd = xd / torch.sqrt((xd * xd).mean(-1, keepdim=True) + rms_eps)
    h = gated_reference(xd @ kernels.dequantize(q_pair).double().T).to(x.dtype).double()
    return residual.double() + h @ kernels.dequantize(q_down).double().T


@pytest.mark.parametrize(
    ("dtype", "m", "act", "rms_eps", "split"),
    [
        ("int4", 1, torch.float16, None, 1),
        ("int4", 3, torch.bfloat16, 1e-5, 1),
        ("int2", 12, torch.float16, 1e-5, 1),  # 16 rows a block (4 warps: n_per_warp 64)
        ("int3", 1, torch.float16, None, 1),  # bit planes
        ("float4_e2m1", 2, torch.float16, 1e-5, 1),
        ("int8", 1, torch.bfloat16, None, 1),  # 16 warps (n_per_warp 16): phase 2 reuses phase 1's rings
        ("int4", 20, torch.float16, 1e-5, 1),  # two row blocks of 16, a counter each
        ("int4", 2, torch.float16, 1e-5, 2),  # gate/up split along K: the slice's last block goes on
    ],
)
def test_fused_mlp_matches_float64(dtype, m, act, rms_eps, split):
    q_pair, pair, q_down, down = _weights(dtype, seed=m, act=act)
    x = torch.randn(m, HIDDEN, dtype=act)
    for _ in range(2):  # a second launch reads the workspace and counters the first left
        residual = torch.randn(m, OUT, dtype=act)
        y = residual.clone()
        assert decode_gated_mlp_(y, x, pair, down, rms_eps=rms_eps, split=split) is y
        assert not y.isnan().any()
        expected = _expected(x, residual, q_pair, q_down, rms_eps)
        error = float((y.double() - expected).norm() / expected.norm())
        assert error < (4e-3 if act == torch.bfloat16 else 1e-3), error


@pytest.mark.parametrize("dtype", ["int6", "int8"])
def test_fused_mlp_takes_a_wide_down_tile(dtype):
    """down with 128-byte warp tiles (twice the columns a warp), as choose_layout packs a large 6- or 8-bit
    down projection (Llama-3-70B's) by default: phase 2 walks down's N in wider steps (16 warps × 32 columns:
    512 rows of down's output a step)."""
    out = 512
    q_pair, pair, q_down, down = _weights(dtype, seed=5, down_bytes=128, out=out)
    assert down.layout.n_per_warp == 2 * kernels.choose_layout(dtype, out, INTERMEDIATE, 128).n_per_warp
    x = torch.randn(2, HIDDEN, dtype=torch.float16)
    residual = torch.randn(2, out, dtype=torch.float16)
    y = residual.clone()
    decode_gated_mlp_(y, x, pair, down, rms_eps=1e-5)
    assert not y.isnan().any()
    expected = _expected(x, residual, q_pair, q_down, 1e-5)
    assert float((y.double() - expected).norm() / expected.norm()) < 1e-3


def test_fused_mlp_ring_made_shallower_to_fit_shared_memory():
    """Llama-3-8B's MLP with a wide 8-bit down (as a 70B-sized one is packed): 4 ring stages would ask ~400 KB
    of shared memory a block, so on sm_90a (227 KB) the kernel drops to the deepest ring that fits; a narrow
    int4 MLP keeps its 4; a device too small even for 2 stages gets an error naming the fixes."""
    sm90 = arch_limits("sm_90a")

    def fitted(dtype, down_bytes, limits):
        pair = kernels.choose_layout(dtype, 2 * 14336, 4096, 128, gated=True)
        down = kernels.choose_layout(dtype, 4096, 14336, 128, operand="a", max_bytes_per_thread=down_bytes)
        options = {"rows": 8, "stages": 4, "split": 1, "rms_eps": 1e-5, "rms": {}}
        return fitting_mlp_kernel(pair, down, torch.float16, limits=limits, **options)

    wide = fitted("int8", 128, sm90)
    assert wide.stages < 4
    assert (
        planned_shared_bytes(wide)
        <= sm90.max_shared_memory_per_block
        < planned_shared_bytes(fitted("int8", 128, None))
    )
    assert fitted("int4", 64, sm90).stages == 4
    assert fitted("int8", 128, None).stages == 4  # the interpreter: no limit
    with pytest.raises(ValueError, match="expected stages >= 2"):
        fitting_mlp_kernel(
            kernels.choose_layout("int4", 2 * 14336, 4096, 128, gated=True),
            kernels.choose_layout("int4", 4096, 14336, 128, operand="a"),
            torch.float16,
            rows=8,
            stages=1,
            split=1,
            rms_eps=None,
            rms={},
            limits=sm90,
        )
    with pytest.raises(ValueError, match="2-stage copy ring.*max_bytes_per_thread=64"):
        fitted("int8", 128, dataclasses.replace(sm90, max_shared_memory_per_block=64 * 1024))


def test_fused_mlp_in_place_on_the_residual_stream():
    """y is x (the folded model's MLP: its input is the residual stream it adds to)."""
    q_pair, pair, q_down, down = _weights("int4", seed=7)
    stream = torch.randn(2, HIDDEN, dtype=torch.float16)
    expected = _expected(stream, stream, q_pair, q_down, 1e-6)
    decode_gated_mlp_(stream, stream, pair, down, rms_eps=1e-6)
    error = float((stream.double() - expected).norm() / expected.norm())
    assert error < 1e-3, error


def test_fused_mlp_errors_name_the_problem():
    q_pair, pair, q_down, down = _weights("int4", seed=1)
    x, y = torch.randn(1, HIDDEN).half(), torch.randn(1, OUT).half()
    with pytest.raises(ValueError, match=r"x \[\.\.\., K=256\]"):
        decode_gated_mlp_(y, torch.randn(1, 128).half(), pair, down)
    with pytest.raises(ValueError, match="expected y"):
        decode_gated_mlp_(torch.randn(1, OUT + 32).half(), x, pair, down)
    narrow_layout = kernels.choose_layout("int4", OUT, 128, 128, operand="a")
    narrow = kernels.pack(kernels.quantize(torch.randn(OUT, 128), "int4"), layout=narrow_layout)
    with pytest.raises(ValueError, match="I = 256"):
        decode_gated_mlp_(y, x, pair, narrow)
    unsigned = kernels.pack(kernels.quantize(torch.randn(OUT, INTERMEDIATE), "uint4", group_size=128))
    with pytest.raises(ValueError, match="zero points"):
        decode_gated_mlp_(y, x, pair, unsigned)
    with pytest.raises(ValueError, match="choose warps = 8"):
        DecodeGatedMLP(pair.layout, down.layout, torch.float16, warps=4)
    with pytest.raises(ValueError, match="gated pair"):
        DecodeGatedMLP(down.layout, down.layout, torch.float16)
    assert mlp_warps(pair.layout, down.layout) == 8
    with pytest.raises(TypeError, match="PackedWeight"):
        decode_gated_mlp_(y, x, pair, q_down)  # the quantized weight, not packed
    short_layout = kernels.choose_layout("int4", 128, INTERMEDIATE, 128, operand="a")
    short = kernels.pack(kernels.quantize(torch.randn(128, INTERMEDIATE), "int4"), layout=short_layout)
    with pytest.raises(ValueError, match="down's N \\(128\\) a multiple of 256"):
        decode_gated_mlp_(torch.randn(1, 128).half(), x, pair, short)
