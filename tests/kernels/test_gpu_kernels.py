"""GPU tier of the kernel library (skipped without a GPU; the lead runs it on the H200): decode and dequantize
on CUDA for every type × group size × act dtype × zero option at a realistic size, against float64."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

import anybit
from anybit.kernels import (
    choose_layout,
    decode_matmul,
    dequantize,
    dequantize_weight,
    pack,
    quantize,
    unpack,
)

from .helpers import TOLERANCE, UINT_TYPES, WEIGHT_TYPES, WIDE_FLOAT, reference_matmul, relative_error

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]

N, K = 1024, 2048
ACTS = (torch.float16, torch.bfloat16)
GROUPS = (32, 64, 128, -1)
CASES = [
    (dtype, group, act, zero)
    for dtype, group, act in itertools.product([*WEIGHT_TYPES, WIDE_FLOAT], GROUPS, ACTS)
    for zero in ((True, False) if dtype in UINT_TYPES else (None,))
    if not (dtype == WIDE_FLOAT and act is torch.float16)
]


def _quantized(dtype, group, act, zero, n=N, k=K):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(n, k, generator=generator).cuda()
    return quantize(weight, dtype, group_size=group, zero_point=zero, act_dtype=act)


@pytest.mark.parametrize("operand", ["a", "b"])
@pytest.mark.parametrize(("dtype", "group", "act", "zero"), CASES)
def test_decode_and_dequantize_on_cuda(dtype, group, act, zero, operand):
    """Both packings (operand "a", the default: the transposed kernel; "b": the decode kernel)."""
    q = _quantized(dtype, group, act, zero)
    layout = choose_layout(dtype, N, K, group, operand=operand, act_dtype=act)  # as pack(q) chooses it
    p = pack(q, layout=layout)
    assert p.data.is_cuda
    # The GPU packing program agrees with the numpy reference and unpacks exactly.
    if group == 128:
        on_cpu = type(q)(q.codes.cpu(), q.dtype, q.group_size, q.scales.cpu(), None)
        cpu = pack(on_cpu, layout=layout, method="numpy")
        assert torch.equal(p.data.cpu(), cpu.data)
    assert torch.equal(unpack(p).codes, q.codes)
    # The default configuration splits K over 4 to 8 blocks at this N (8 to 32 block columns); one warp
    # per block without a split covers the unsplit kernel.
    _check_decode_and_dequantize(q, p, act, ((1, None), (16, None), (1, {"warps": 1, "split": 1})))


def _check_decode_and_dequantize(q, p, act, runs) -> None:
    """decode_matmul for each (M, config) of ``runs`` (with a bias) against float64, outputs poisoned
    first; then the dequantize kernel against the natural dequantization, bit for bit."""
    bias = torch.randn(N, device="cuda").to(act)
    for m, config in runs:
        x = torch.randn(m, K, device="cuda").to(act)
        out = torch.full((m, N), float("nan"), dtype=act, device="cuda")
        decode_matmul(x, p, bias, out=out, config=config)
        assert relative_error(out, reference_matmul(x, q, bias)) <= TOLERANCE[act]
    weight = torch.full((N, K), float("nan"), dtype=act, device="cuda")
    dequantize_weight(p, out=weight)
    assert torch.equal(weight, dequantize(q).to(act))


def test_quantize_on_cuda_matches_cpu():
    weight = torch.randn(256, 512)
    for dtype in ("int4", "uint3", "float6_e3m2", "float8_e4m3"):
        on_gpu = quantize(weight.cuda(), dtype, group_size=64)
        on_cpu = quantize(weight, dtype, group_size=64)
        assert torch.equal(on_gpu.codes.cpu(), on_cpu.codes)
        assert torch.equal(on_gpu.scales.cpu(), on_cpu.scales)


@pytest.mark.parametrize(
    "dtype", ["uint4", "int4", "int8", "uint3", "uint5", "int6", "float4_e2m1", "float5_e2m2", "float6_e3m2"]
)
def test_wide_warp_tiles_on_cuda(dtype):
    """128-byte warp tiles (choose_layout(max_bytes_per_thread=128)): decode and dequantize agree."""
    from anybit.kernels import choose_layout

    q = _quantized(dtype, 128, torch.float16, None)
    p = pack(q, layout=choose_layout(dtype, N, K, 128, max_bytes_per_thread=128))
    assert p.layout.bytes_per_thread > 64
    for m, config in ((1, None), (16, {"warps": 2, "split": 4})):
        x = torch.randn(m, K, device="cuda").half()
        out = torch.full((m, N), float("nan"), dtype=torch.float16, device="cuda")
        decode_matmul(x, p, None, out=out, config=config)
        assert relative_error(out, reference_matmul(x, q, None)) <= TOLERANCE[torch.float16]
    weight = torch.full((N, K), float("nan"), dtype=torch.float16, device="cuda")
    dequantize_weight(p, out=weight)
    assert torch.equal(weight, dequantize(q).half())


TRANSPOSED_CASES = [
    (dtype, act, zero)
    for dtype, act in itertools.product(WEIGHT_TYPES, ACTS)
    for zero in ((True,) if dtype in UINT_TYPES else (None,))
]


@pytest.mark.parametrize(("dtype", "act", "zero"), TRANSPOSED_CASES)
def test_transposed_decode_on_cuda(dtype, act, zero):
    """Weights packed as the A operand (choose_layout(operand="a")): the transposed decode kernel at 8 and
    16 rows, split and unsplit, and the dequantize kernel, against float64 / the natural dequantization."""
    from anybit.kernels import choose_layout

    q = _quantized(dtype, 128, act, zero)
    p = pack(q, layout=choose_layout(dtype, N, K, 128, operand="a", act_dtype=act))
    assert torch.equal(unpack(p).codes, q.codes)
    runs = ((1, None), (5, {"warps": 2, "split": 4, "rows": 8}), (16, None), (12, {"rows": 8}))
    _check_decode_and_dequantize(q, p, act, runs)


@pytest.mark.parametrize("act", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("operand", ["a", "b"])
@pytest.mark.parametrize("dtype", ["float4_e2m1", "float6_e3m2", "float5_e2m2"])
def test_subnormal_weight_values_reach_the_tensor_cores(dtype, operand, act):
    """Float weights go to the mma as value · 2^(bias − 15) with f16 activations and value · 2^(bias − 127)
    with bf16 ones, x lifted by 2^64 (no re-biasing multiply: kernels.decode's float_exponents), which makes
    the type's smallest values subnormals of the activation type: a weight of only those codes must give the
    float64 result, not zero (tensor cores that flushed subnormal inputs would), with x's rows spanning
    1e-4 to 1e4 for bf16 (the lifted products stay f32 normals; 1e2 for f16, whose outputs would overflow)."""
    from anybit.kernels import QuantizedWeight, choose_layout
    from anybit.kernels.decode import float_exponents

    source = anybit.dtype(dtype)
    exponent = float_exponents(source, anybit.dtype(act)).weights
    smallest_normal = 2.0**-14 if act == torch.float16 else 2.0**-126
    values = torch.arange(1 << source.nbits, dtype=torch.uint8)
    decoded = torch.from_numpy(anybit.dtypes.decode(values.numpy(), source))
    tiny = values[(decoded != 0) & (decoded.abs() * 2.0**exponent < smallest_normal)]
    assert exponent and len(tiny) >= 2, (dtype, exponent)
    generator = torch.Generator().manual_seed(random.randrange(2**31))
    codes = tiny[torch.randint(0, len(tiny), (N, K), generator=generator)]
    scales = (torch.rand(K // 128, N, generator=generator) + 0.5).to(act)
    q = QuantizedWeight(codes.cuda(), source, 128, scales.cuda(), None)
    p = pack(q, layout=choose_layout(dtype, N, K, 128, operand=operand))
    for m in (1, 16):
        high = 4 if act == torch.bfloat16 else 2  # f16 outputs overflow past ~1e2 here
        magnitudes = torch.logspace(-4, high, m).unsqueeze(1) if m > 1 else torch.ones(1, 1)
        x = (torch.randn(m, K, generator=generator) * magnitudes).to(act).cuda()
        out = torch.full((m, N), float("nan"), dtype=act, device="cuda")
        decode_matmul(x, p, None, out=out)
        assert relative_error(out, reference_matmul(x, q, None)) <= TOLERANCE[act]


@pytest.mark.parametrize("operand", ["a", "b"])
@pytest.mark.parametrize("dtype", ["int4", "uint4", "float6_e3m2"])
def test_seven_warps_a_block_on_cuda(dtype, operand):
    """7 warps a block (in the tuning space for N = 14336 · 2^i): split and unsplit, M = 1 and 9."""
    n = 448
    weight = torch.randn(n, K, generator=torch.Generator().manual_seed(1)).cuda()
    zero = True if dtype in UINT_TYPES else None
    q = quantize(weight, dtype, group_size=128, zero_point=zero, act_dtype=torch.float16)
    p = pack(q, layout=choose_layout(dtype, n, K, 128, operand=operand))
    for m, split in ((1, 1), (1, 2), (9, 4)):
        x = torch.randn(m, K, device="cuda").half()
        out = torch.full((m, n), float("nan"), dtype=torch.float16, device="cuda")
        decode_matmul(x, p, None, out=out, config={"warps": 7, "split": split})
        assert relative_error(out, reference_matmul(x, q, None)) <= TOLERANCE[torch.float16]


FUSED_GPU_CASES = [
    # dtype, act, m, split, warps, rows, n, warps along K (7 warps: a block count that is no power of two)
    ("int4", torch.float16, 1, 4, 4, 8, N, False),
    ("uint4", torch.bfloat16, 5, 1, 7, 8, 7 * 32 * 8, False),
    ("int6", torch.float16, 16, 2, 8, 16, N, False),
    ("float6_e3m2", torch.float16, 3, 8, 2, 8, N, False),
    ("int4", torch.float16, 1, 1, 8, 8, N, True),
    ("int4", torch.float16, 3, 2, 4, 8, N, True),
    ("int2", torch.bfloat16, 1, 1, 2, 8, N, True),
    ("int3", torch.float16, 12, 1, 4, 16, N, True),
    ("float6_e3m2", torch.float16, 1, 2, 2, 8, N, True),
    ("int8", torch.bfloat16, 5, 1, 8, 8, N, True),
    ("int8", torch.float16, 1, 2, 8, 8, N, True),  # 8 warps on one 16-column tile, split-K
    ("uint4", torch.float16, 1, 2, 4, 8, N, True),  # zero points: each warp its own chunk's
    ("uint5", torch.bfloat16, 12, 1, 4, 16, N, True),
    ("uint2", torch.float16, 3, 1, 8, 8, N, True),
]


@pytest.mark.parametrize(("dtype", "act", "m", "split", "warps", "rows", "n", "along_k"), FUSED_GPU_CASES)
@pytest.mark.parametrize("fusion", ["none", "rms", "accumulate", "both"])
def test_residual_and_rms_norm_on_cuda(dtype, act, m, split, warps, rows, n, along_k, fusion):
    """y (+)= (x / rms(x)) @ W^T on the GPU: the row RMS computed by every block from global x, the residual
    read from y and added before the one rounding, split-K or not, the warps owning columns or splitting K
    (a batched dot, their sums added through shared memory), against float64."""
    accumulate, rms = fusion in ("accumulate", "both"), fusion in ("rms", "both")
    config = {"warps": warps, "stages": 4, "split": split, "rows": rows, "warps_along_k": along_k}
    _check_folded(dtype, act, m, n, "a", config, accumulate, rms)


@pytest.mark.parametrize("fusion", ["none", "both"])
def test_split_16_partials_at_16_rows_on_cuda(fusion):
    """Warps along K at 16 rows with split 16 (K = 16 · 8 warps · 128): the last block adds the partials 8
    at a time (one K group's threads hold a partial), not all 16 at once."""
    config = {"warps": 8, "stages": 4, "split": 16, "rows": 16, "warps_along_k": True}
    _check_folded("int8", torch.float16, 12, N, "a", config, fusion == "both", fusion == "both", k=16384)


def _check_folded(dtype, act, m, n, operand, config, accumulate, rms, k: int = K) -> None:
    """decode_matmul with ``config``, the residual added (``accumulate``) and x's rows RMS-normalised
    (``rms``), against float64."""
    zero = dtype.startswith("u") or None
    q = _quantized(dtype, 128, act, zero, n, k)
    p = pack(q, layout=choose_layout(dtype, n, k, 128, operand=operand))
    x = (torch.randn(m, k, device="cuda") * 3.0).to(act)
    residual = torch.randn(m, n, device="cuda").to(act)
    out = residual.clone() if accumulate else torch.full((m, n), float("nan"), device="cuda", dtype=act)
    y = decode_matmul(x, p, out=out, config=config, accumulate=accumulate, rms_eps=1e-5 if rms else None)
    assert y is out and torch.isfinite(y).all()
    xd = x.double()
    if rms:
        xd = xd / torch.sqrt(xd.pow(2).mean(dim=1, keepdim=True) + 1e-5)
    expected = xd @ dequantize(q).double().t() + (residual.double() if accumulate else 0.0)
    assert relative_error(y, expected) <= TOLERANCE[act]


@pytest.mark.parametrize(
    ("option", "dtype", "act", "m", "split", "warps", "rows", "along_k", "operand"),
    [
        ("split_in_cluster", "int4", torch.float16, 1, 2, 8, 8, False, "a"),
        ("split_in_cluster", "uint4", torch.bfloat16, 5, 8, 2, 8, False, "a"),
        ("split_in_cluster", "int4", torch.float16, 3, 4, 4, 8, True, "a"),
        ("split_in_cluster", "int8", torch.float16, 16, 2, 4, 16, False, "a"),
        ("split_in_cluster", "uint4", torch.float16, 9, 4, 2, None, False, "b"),
        ("split_in_cluster", "int4", torch.float16, 1, 16, 2, 8, False, "a"),  # 16 blocks: non-portable
        ("split_in_cluster", "uint4", torch.float16, 1, 2, 4, 8, True, "a"),  # zero points, warps along K
        ("split_in_cluster", "uint5", torch.bfloat16, 3, 2, 4, 8, True, "a"),
        ("bias_after_dot", "int4", torch.float16, 1, 2, 8, 8, False, "a"),
        ("bias_after_dot", "int4", torch.float16, 1, 1, 4, 8, True, "a"),
        ("bias_after_dot", "int2", torch.bfloat16, 3, 4, 2, 8, False, "a"),
        ("bias_after_dot", "int8", torch.float16, 16, 2, 4, 16, False, "a"),
        ("bias_after_dot", "int4", torch.bfloat16, 5, 2, 2, None, False, "b"),
        # Zero points after the dot too (z · Σx a chunk)
        ("bias_after_dot", "uint1", torch.float16, 1, 2, 8, 8, False, "a"),
        ("bias_after_dot", "uint2", torch.bfloat16, 3, 1, 4, 8, False, "a"),
        ("bias_after_dot", "uint4", torch.float16, 16, 2, 4, 16, False, "a"),
        ("bias_after_dot", "uint2", torch.float16, 5, 2, 2, None, False, "b"),
        ("bias_after_dot", "uint4", torch.float16, 3, 1, 4, 8, True, "a"),  # after the dot, warps along K
        # x read by wgmma from its ring slot (warps in groups of 4)
        ("wgmma", "int4", torch.float16, 1, 4, 8, 8, False, "a"),
        ("wgmma", "uint4", torch.bfloat16, 16, 2, 8, 16, False, "a"),
        ("wgmma", "uint3", torch.float16, 12, 1, 4, 16, False, "a"),
        ("wgmma", "float6_e3m2", torch.float16, 3, 2, 4, 8, False, "a"),
        ("wgmma", "int8", torch.bfloat16, 9, 1, 8, 16, False, "a"),
        ("wgmma", "uint1", torch.float16, 1, 8, 4, 8, False, "a"),
        # the weight bytes straight into registers a chunk ahead (no shared ring for them)
        ("weights_in_registers", "int4", torch.float16, 1, 2, 8, 8, False, "a"),
        ("weights_in_registers", "uint4", torch.bfloat16, 16, 1, 8, 16, False, "a"),
        ("weights_in_registers", "float4_e2m1", torch.float16, 13, 2, 4, 16, False, "a"),
        ("weights_in_registers", "int6", torch.float16, 16, 1, 8, 16, False, "a"),  # bit planes
        ("weights_in_registers", "uint3", torch.bfloat16, 3, 4, 4, 8, True, "a"),  # planes, warps along K
        ("weights_in_registers", "float8_e4m3", torch.float16, 2, 4, 4, 8, False, "a"),
        ("weights_in_registers", "uint2", torch.float16, 5, 2, 4, None, False, "b"),
        ("late_weight_loads", "int4", torch.float16, 16, 4, 8, 16, False, "a"),
        ("late_weight_loads", "uint5", torch.bfloat16, 3, 2, 4, 8, False, "a"),
        ("late_weight_loads", "float6_e3m2", torch.float16, 16, 1, 8, 16, True, "a"),
    ],
)
@pytest.mark.parametrize("fusion", ["none", "both"])
def test_kernel_options_on_cuda(option, dtype, act, m, split, warps, rows, along_k, operand, fusion):
    """Split-K's partials meeting in the block column's thread-block cluster (sm_90), the weights' magic
    number taken off by a second dot (the GPU's bias is its conversions' own; zero points after it too),
    x read by wgmma from shared memory, and the weight bytes loaded straight into registers, folds
    included."""
    both = fusion == "both" and operand == "a"  # the folds need the transposed kernel
    config = {"warps": warps, "stages": 4, "split": split, option: True}
    if option == "late_weight_loads":
        config["weights_in_registers"] = True
    if operand == "a":
        config.update(rows=rows, warps_along_k=along_k)
    _check_folded(dtype, act, m, N, operand, config, both, both)
