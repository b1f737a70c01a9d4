"""GPTQ / AWQ import on synthetic checkpoints packed here, independently, from known codes.

The packers below follow the formats' documented conventions with plain Python integer loops (nothing shared
with ``anybit.nn.checkpoints``): GPTQ streams b-bit codes LSB-first into int32 words along K (qweight) or N
(qzeros), v1 storing zero − 1; AWQ puts 8 columns' nibbles in the order [0, 2, 4, 6, 1, 3, 5, 7].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from anybit.nn import QuantizedLinear, awq_linear, gptq_linear, load_quantized_linears
from anybit.nn.checkpoints import unpack_int32_stream

N, K = 32, 256


def to_int32(value: int) -> int:
    """An unsigned 32-bit word as the signed int32 a checkpoint stores."""
    return value - (1 << 32) if value >= 1 << 31 else value


def pack_stream(values: list[int], bits: int) -> list[int]:
    """LSB-first bit stream of ``values`` cut into int32 words."""
    stream = 0
    for i, value in enumerate(values):
        stream |= int(value) << (i * bits)
    words = -(-len(values) * bits // 32)
    return [to_int32((stream >> (32 * w)) & 0xFFFFFFFF) for w in range(words)]


def gptq_pack(codes: np.ndarray, zeros: np.ndarray, bits: int, v1: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """codes [N, K], zeros [K/G, N] → (qweight [K·b/32, N], qzeros [K/G, N·b/32])."""
    qweight = np.array([pack_stream(list(codes[n]), bits) for n in range(codes.shape[0])], dtype=np.int64).T
    stored = (zeros - 1) % (1 << bits) if v1 else zeros
    qzeros = np.array([pack_stream(list(row), bits) for row in stored], dtype=np.int64)
    return torch.tensor(qweight, dtype=torch.int32), torch.tensor(qzeros, dtype=torch.int32)


def awq_pack(matrix: np.ndarray) -> torch.Tensor:
    """[R, N] 4-bit values → int32 [R, N/8], nibble i of each word holding column ORDER[i] of its block."""
    order = [0, 2, 4, 6, 1, 3, 5, 7]
    rows, n = matrix.shape
    out = np.zeros((rows, n // 8), dtype=np.int64)
    for r in range(rows):
        for block in range(n // 8):
            word = 0
            for i in range(8):
                word |= int(matrix[r, 8 * block + order[i]]) << (4 * i)
            out[r, block] = to_int32(word)
    return torch.tensor(out, dtype=torch.int32)


def reference_weight(codes, zeros, scales, g_idx) -> torch.Tensor:
    """w[n, k] = scales[g, n] · (codes[n, k] − zeros[g, n]) with g = g_idx[k], in float64."""
    g = torch.as_tensor(g_idx, dtype=torch.int64)
    s = scales.double()[g].t()
    z = torch.as_tensor(zeros, dtype=torch.float64)[g].t()
    return s * (torch.as_tensor(codes, dtype=torch.float64) - z)


def random_scales(groups: int, n: int, rng: np.random.Generator) -> torch.Tensor:
    return torch.tensor(rng.uniform(0.002, 0.02, (groups, n)), dtype=torch.float16)


def check_layer(layer: QuantizedLinear, reference: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    """The layer's weight equals the reference exactly, and its output matches x @ referenceᵀ."""
    assert torch.equal(layer.dequantize().double(), reference)
    x = torch.randn(2, reference.shape[1], dtype=torch.float16)
    expected = x.double() @ reference.t() + (0 if bias is None else bias.double())
    assert torch.allclose(layer(x).double(), expected, atol=3e-2, rtol=1e-2)


def test_unpack_int32_stream_reads_straddling_codes() -> None:
    values = list(range(8)) * 4  # 32 three-bit codes: 96 bits over 3 words, codes 10 and 21 straddle
    words = torch.tensor([pack_stream(values, 3)], dtype=torch.int32)
    assert unpack_int32_stream(words, 3, 32).tolist() == [values]


@pytest.mark.parametrize("bits", [4, 8])
def test_gptq_symmetric_v1_becomes_signed_codes(bits: int) -> None:
    rng = np.random.default_rng(bits)
    group = 128
    codes = rng.integers(0, 1 << bits, (N, K))
    zeros = np.full((K // group, N), 1 << (bits - 1))
    scales = random_scales(K // group, N, rng)
    qweight, qzeros = gptq_pack(codes, zeros, bits, v1=True)
    bias = torch.randn(N, dtype=torch.float16)
    layer = gptq_linear(qweight, qzeros, scales, None, bias, bits=bits, group_size=group)
    quantized = layer.quantized()
    assert quantized.dtype.name == f"int{bits}" and quantized.zeros is None
    signed = torch.tensor(codes - (1 << (bits - 1)))
    assert torch.equal(quantized.codes.to(torch.int64), signed & ((1 << bits) - 1))
    assert torch.equal(quantized.scales, scales)
    check_layer(layer, reference_weight(codes, zeros, scales, np.arange(K) // group), bias)


@pytest.mark.parametrize("bits", [4, 8])
def test_gptq_asymmetric_v2_keeps_zero_points(bits: int) -> None:
    rng = np.random.default_rng(10 + bits)
    group = 64
    codes = rng.integers(0, 1 << bits, (N, K))
    zeros = rng.integers(0, 1 << bits, (K // group, N))
    scales = random_scales(K // group, N, rng)
    qweight, qzeros = gptq_pack(codes, zeros, bits, v1=False)
    layer = gptq_linear(qweight, qzeros, scales, bits=bits, group_size=group, checkpoint_format="gptq_v2")
    quantized = layer.quantized()
    assert quantized.dtype.name == f"uint{bits}"
    assert torch.equal(quantized.codes.to(torch.int64), torch.tensor(codes))
    assert torch.equal(quantized.zeros.to(torch.int64), torch.tensor(zeros))
    check_layer(layer, reference_weight(codes, zeros, scales, np.arange(K) // group))


def test_gptq_v1_asymmetric_zero_minus_one() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 16, (N, K))
    zeros = rng.integers(1, 16, (K // 128, N))  # v1 cannot store a zero of 0 (it would wrap to 16)
    scales = random_scales(K // 128, N, rng)
    qweight, qzeros = gptq_pack(codes, zeros, 4, v1=True)
    layer = gptq_linear(qweight, qzeros, scales, bits=4, group_size=128)
    assert torch.equal(layer.quantized().zeros.to(torch.int64), torch.tensor(zeros))
    assert torch.equal(
        layer.dequantize().double(), reference_weight(codes, zeros, scales, np.arange(K) // 128)
    )


@pytest.mark.parametrize("symmetric", [True, False])
def test_gptq_act_order_permutes_codes_and_input(symmetric: bool) -> None:
    rng = np.random.default_rng(7)
    group = 64
    codes = rng.integers(0, 16, (N, K))
    zeros = np.full((K // group, N), 8) if symmetric else rng.integers(1, 16, (K // group, N))
    scales = random_scales(K // group, N, rng)
    g_idx = rng.permutation(K) // group  # act-order: input feature k was quantized in group g_idx[k]
    qweight, qzeros = gptq_pack(codes, zeros, 4, v1=True)
    layer = gptq_linear(
        qweight, qzeros, scales, torch.tensor(g_idx, dtype=torch.int32), bits=4, group_size=group
    )
    assert layer.act_order
    permutation = layer.input_permutation
    assert torch.equal(torch.tensor(g_idx)[permutation], torch.arange(K) // group)  # groups made contiguous
    stored = layer.quantized().codes.to(torch.int64)
    expected = torch.tensor(codes)[:, permutation]
    assert torch.equal(stored ^ 8 if symmetric else stored, expected)
    check_layer(layer, reference_weight(codes, zeros, scales, g_idx))


def test_gptq_trivial_g_idx_needs_no_permutation() -> None:
    rng = np.random.default_rng(8)
    codes, zeros = rng.integers(0, 16, (N, K)), np.full((2, N), 8)
    qweight, qzeros = gptq_pack(codes, zeros, 4, v1=True)
    g_idx = torch.arange(K, dtype=torch.int32) // 128
    layer = gptq_linear(qweight, qzeros, random_scales(2, N, rng), g_idx, bits=4, group_size=128)
    assert not layer.act_order


def test_gptq_uneven_groups_are_refused() -> None:
    rng = np.random.default_rng(9)
    codes, zeros = rng.integers(0, 16, (N, K)), np.full((2, N), 8)
    qweight, qzeros = gptq_pack(codes, zeros, 4, v1=True)
    g_idx = torch.zeros(K, dtype=torch.int32)
    g_idx[-10:] = 1
    with pytest.raises(ValueError, match="exactly 128"):
        gptq_linear(qweight, qzeros, random_scales(2, N, rng), g_idx, bits=4, group_size=128)


def test_awq_nibble_order_and_zero_points() -> None:
    rng = np.random.default_rng(11)
    group = 64
    codes = rng.integers(0, 16, (N, K))
    zeros = rng.integers(0, 16, (K // group, N))
    scales = random_scales(K // group, N, rng)
    qweight, qzeros = awq_pack(codes.T), awq_pack(zeros)
    assert qweight.shape == (K, N // 8) and qzeros.shape == (K // group, N // 8)
    bias = torch.randn(N, dtype=torch.float16)
    layer = awq_linear(qweight, qzeros, scales, bias, group_size=group)
    quantized = layer.quantized()
    assert quantized.dtype.name == "uint4"
    assert torch.equal(quantized.codes.to(torch.int64), torch.tensor(codes))
    assert torch.equal(quantized.zeros.to(torch.int64), torch.tensor(zeros))
    assert torch.equal(quantized.scales, scales)
    check_layer(layer, reference_weight(codes, zeros, scales, np.arange(K) // group), bias)


def test_load_quantized_linears_replaces_layers_in_a_model() -> None:
    rng = np.random.default_rng(12)
    model = nn.Sequential(nn.Linear(K, N), nn.ReLU(), nn.Linear(N, 16))
    codes, zeros = rng.integers(0, 16, (N, K)), np.full((2, N), 8)
    scales = random_scales(2, N, rng)
    qweight, qzeros = gptq_pack(codes, zeros, 4, v1=True)
    state = {"0.qweight": qweight, "0.qzeros": qzeros, "0.scales": scales, "0.bias": torch.zeros(N)}
    converted = load_quantized_linears(model, state, {"quant_method": "gptq", "bits": 4, "group_size": 128})
    assert converted == ["0"]
    assert isinstance(model[0], QuantizedLinear) and isinstance(model[2], nn.Linear)
    assert torch.equal(
        model[0].dequantize().double(), reference_weight(codes, zeros, scales, np.arange(K) // 128)
    )
    with pytest.raises(ValueError, match="quant_method"):
        load_quantized_linears(model, state, {"quant_method": "exl2"})
