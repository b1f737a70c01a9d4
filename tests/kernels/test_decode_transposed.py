"""The transposed decode kernel (weight packed as the tensor-core A operand) on the interpreter: every
feature of the decode kernel, against float64, outputs poisoned with NaN; its packing; its errors; its PTX."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

import anybit
from anybit.kernels import choose_layout, decode_matmul, dequantize, pack, unpack
from anybit.kernels.decode import DecodeMatmul
from anybit.kernels.decode_transposed import DecodeMatmulTransposed
from anybit.kernels.launch import rms_options
from anybit.kernels.packing import pack_codes_numpy, unpack_codes_numpy

from .helpers import TOLERANCE, fresh_seed, random_quantized, reference_matmul, relative_error

F16, BF16 = torch.float16, torch.bfloat16


# (type, N, K, group, M, zero points, split, warps, rows, bias, act)
CASES = [
    ("uint4", 128, 256, 64, 1, True, 1, 2, 8, False, F16),
    ("uint4", 128, 512, 64, 5, True, 3, 2, 8, False, F16),  # split-K, uneven runs
    ("int4", 256, 256, 128, 12, False, 1, 2, 8, True, F16),  # M > rows: two row blocks
    ("int4", 128, 256, 128, 16, False, 2, 2, 16, False, F16),  # 16 rows: two n8 mma per A tile
    ("uint1", 128, 256, -1, 3, True, 1, 2, 8, False, F16),  # per-channel scales and zero points
    ("int8", 64, 256, 128, 2, False, 2, 2, 8, True, BF16),
    ("float8_e4m3", 64, 256, 64, 1, False, 1, 2, 8, False, F16),
    ("float6_e3m2", 64, 256, -1, 9, False, 1, 2, 16, True, F16),
    ("uint3", 256, 256, 32, 7, True, 1, 4, 8, False, F16),
    ("int2", 128, 128, 128, 1, False, 1, 1, 8, False, BF16),  # K = one chunk, a square 128 × 128 tile
    ("int4", 448, 512, 128, 2, False, 2, 7, 8, False, F16),  # 7 warps: a block of 224 columns, split-K
    ("int4", 128, 3072, 128, 3, False, 12, 2, 8, True, F16),  # split 12: a group of 8 partials, then 4
]


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group", "m", "zeros", "split", "warps", "rows", "bias", "act"), CASES
)
def test_transposed_decode_on_the_interpreter(dtype, n, k, group, m, zeros, split, warps, rows, bias, act):
    _check_transposed(dtype, n, k, group, m, zeros, bias, act, warps=warps, split=split, rows=rows)


def _check_transposed(dtype, n, k, group, m, zeros, bias, act, **options) -> DecodeMatmulTransposed:
    """The transposed kernel with ``options`` on the interpreter against float64 (output poisoned first)."""
    q = random_quantized(dtype, n, k, group, act, zero_point=zeros, seed=fresh_seed())
    p = pack(q, layout=choose_layout(dtype, n, k, group, operand="a"))
    x = torch.randn(m, k).to(act)
    b = torch.randn(n).to(act) if bias else None
    y = torch.full((m, n), float("nan"), dtype=act)
    kernel = DecodeMatmulTransposed(p.layout, act, has_zeros=zeros, has_bias=bias, **options)
    zero_arg = p.zeros if zeros else p.scales  # not read without zero points
    bias_arg = p.scales if b is None else b
    anybit.interpret(kernel, x, p.data, p.scales, zero_arg, bias_arg, y, m, n, k)
    assert torch.isfinite(y).all()
    assert relative_error(y, reference_matmul(x, q, b)) <= TOLERANCE[act]
    return kernel


def test_decode_matmul_and_prefill_take_operand_a_weights():
    """The library entry points pick the transposed kernel (default configuration: 8 rows up to M = 8, then
    16) and the dequantize kernel reads the same packing."""
    q = random_quantized("uint4", 128, 256, 64, F16, zero_point=True, seed=fresh_seed())
    p = pack(q, layout=choose_layout("uint4", 128, 256, 64, operand="a"))
    for m in (1, 12, 40):
        x = torch.randn(m, 256).half()
        y = anybit.ops.quantized_matmul(x, p)
        assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[F16]
    out = torch.full((3, 128), float("nan"), dtype=F16)
    x = torch.randn(3, 256).half()
    decode_matmul(x, p, None, out=out, config={"warps": 1, "split": 2, "rows": 16})
    assert relative_error(out, reference_matmul(x, q, None)) <= TOLERANCE[F16]


@pytest.mark.parametrize("dtype", ["uint1", "uint2", "int3", "uint4", "int5", "int8", "float6_e2m3"])
def test_operand_a_packing_round_trips(dtype):
    """The packing program and the numpy reference agree byte for byte, and unpack inverts both."""
    q = random_quantized(dtype, 128, 256, 128, F16, zero_point=False, seed=fresh_seed())
    layout = choose_layout(dtype, 128, 256, 128, operand="a")
    assert layout.n_per_warp % 16 == 0
    p = pack(q, layout=layout, method="vm")
    assert torch.equal(p.data, torch.from_numpy(pack_codes_numpy(q.codes.numpy(), layout)))
    assert torch.equal(unpack(p, method="vm").codes, q.codes)
    assert torch.equal(torch.from_numpy(unpack_codes_numpy(p.data.numpy(), layout)), q.codes)
    # The same codes in another order: the B packing differs.
    assert not torch.equal(pack(q, layout=choose_layout(dtype, 128, 256, 128, operand="b")).data, p.data)


def test_errors_name_the_fix():
    layout = choose_layout("uint4", 128, 256, 64, operand="b")
    with pytest.raises(ValueError, match=r"operand='a'"):
        DecodeMatmulTransposed(layout, F16)
    with pytest.raises(ValueError, match="expected rows 8 or 16"):
        DecodeMatmulTransposed(choose_layout("uint4", 128, 256, 64, operand="a"), F16, rows=12)
    with pytest.raises(ValueError, match="expected operand 'a' or 'b'"):
        choose_layout("uint4", 128, 256, 64, operand="c")
    b_weight = pack(
        random_quantized("uint4", 128, 256, 64, F16, zero_point=False, seed=fresh_seed()), layout=layout
    )
    with pytest.raises(ValueError, match="applies to weights packed with operand='a'"):
        decode_matmul(torch.randn(1, 256).half(), b_weight, None, config={"warps": 1, "rows": 16})
    with pytest.raises(ValueError, match="n_per_warp % 16 == 0"):
        anybit.kernels.PackedLayout(anybit.uint4, 8, 128, 128, 128, 8, 16, "a")
    # The default packing is "a" where N allows it, else "b" (an explicit "a" there is refused).
    assert choose_layout("uint4", 128, 256, 64).operand == "a"
    assert choose_layout("uint4", 72, 256, 64).operand == "b"
    with pytest.raises(ValueError, match="N a multiple of 16"):
        choose_layout("uint4", 72, 256, 64, operand="a")


def _mma_count(kernel) -> int:
    compiled = anybit.compile(kernel, *(None,) * 6, 1, 8192, 8192, arch="sm_90a")
    return len(re.findall(r"mma\.sync\.aligned\.m16n8k16", compiled.ptx))


@pytest.mark.parametrize("dtype", ["uint4", "int8"])
def test_half_the_mma_at_eight_rows(dtype):
    """The point of the kernel: per K loop step, 8-row blocks issue half the mma of the x-as-A kernel, and
    16-row blocks as many."""
    a = choose_layout(dtype, 8192, 8192, 128, operand="a")
    b = choose_layout(dtype, 8192, 8192, 128, operand="b")
    assert a.n_per_warp == b.n_per_warp
    reference = _mma_count(DecodeMatmul(b, F16, warps=4))
    assert 2 * _mma_count(DecodeMatmulTransposed(a, F16, warps=4, rows=8)) == reference
    assert _mma_count(DecodeMatmulTransposed(a, F16, warps=4, rows=16)) == reference


def test_eight_row_blocks_sum_eight_partials_at_once():
    """At 8 rows a split-K partial is 8 f32 registers a thread, so the last block loads 8 before adding
    (one L2 round trip at split 8); 16-row blocks, and the x-as-A kernel, keep 4."""
    layout = choose_layout("int4", 256, 1024, 128, operand="a")
    assert DecodeMatmulTransposed(layout, F16, rows=8, warps=4, split=8).partials_in_flight == 8
    assert DecodeMatmulTransposed(layout, F16, rows=16, warps=4, split=8).partials_in_flight == 4
    b_layout = choose_layout("int4", 256, 1024, 128, operand="b")
    assert DecodeMatmul(b_layout, F16, warps=4, split=8).partials_in_flight == 4
    # Warps along K: every warp holds the block's whole [block_n, rows] sum (int8: 16 columns a warp), so a
    # partial is 16 · 16 / 32 = 8 f32 a thread at 16 rows, 4 at 8 rows.
    wide = choose_layout("int8", 256, 1024, 128, operand="a")
    along_k = {"warps": 8, "split": 16, "warps_along_k": True}
    assert DecodeMatmulTransposed(wide, F16, rows=16, **along_k).partials_in_flight == 8
    assert DecodeMatmulTransposed(wide, F16, rows=8, **along_k).partials_in_flight == 16


FUSED_CASES = [
    # dtype, n, k, group, m, zeros, split, warps, rows, act, accumulate, rms
    ("int4", 128, 256, 128, 1, False, 1, 2, 8, F16, True, True),
    ("uint4", 128, 512, 64, 5, True, 3, 2, 8, F16, True, False),  # split-K, uneven runs
    ("int4", 256, 384, 128, 12, False, 2, 4, 8, BF16, False, True),  # two row blocks; K not a step multiple
    ("int6", 128, 256, 128, 16, False, 1, 2, 16, F16, True, True),  # bit planes, 16 rows
    ("int4", 448, 512, 128, 2, False, 2, 7, 8, F16, True, True),  # 7 warps: 224 threads, 28 a row
    ("int4", 128, 1024, 128, 3, False, 8, 2, 8, F16, True, True),  # x's rows copied to shared, split 8
    ("int4", 128, 2048, 128, 6, False, 2, 2, 8, F16, False, True),  # 6 rows too many to copy: read first
]


def _folded_kernel(p, act, rms: bool, eps: float, m: int, k: int, *, rows: int, **options):
    """The transposed kernel with the row RMS folded in (``rms``) and the given options."""
    folded = dict(rms_eps=eps, **rms_options(m, rows, k)) if rms else {}
    return DecodeMatmulTransposed(p.layout, act, rows=rows, **options, **folded)


def _fold_inputs(m: int, k: int, width: int, act, accumulate: bool):
    """x (scaled, so the RMS is not 1), a residual [M, width], and y: the residual's copy or NaN poison."""
    x = (torch.randn(m, k) * 3.0).to(act)
    residual = torch.randn(m, width).to(act)
    y = residual.clone() if accumulate else torch.full((m, width), float("nan"), dtype=act)
    return x, residual, y


def _fold_reference(x, q, eps, rms, residual, accumulate, bias=None, gated=False):
    """(x / rms(x) if rms) @ W^T (+ bias), silu(gate) · up for a gated pair, (+ residual), in float64."""
    from anybit.kernels.gated import gated_reference

    xd = x.double()
    if rms:
        xd = xd / torch.sqrt(xd.pow(2).mean(dim=1, keepdim=True) + eps)
    product = xd @ dequantize(q).double().t() + (0.0 if bias is None else bias.double())
    if gated:  # rows 16j … 16j + 7 of the pair are gate's, the next 8 up's
        product = gated_reference(product)
    return product + (residual.double() if accumulate else 0.0)


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group", "m", "zeros", "split", "warps", "rows", "act", "accumulate", "rms"),
    FUSED_CASES,
)
def test_residual_and_rms_norm_fold_into_the_kernel(
    dtype, n, k, group, m, zeros, split, warps, rows, act, accumulate, rms
):
    """y (+)= (x / rms(x)) @ W^T: the residual read from y and added before the one rounding, the rows of x
    normalised by their RMS computed in the kernel (the norm's weight folded into W beforehand)."""
    q = random_quantized(dtype, n, k, group, act, zero_point=zeros, seed=fresh_seed())
    p = pack(q, layout=choose_layout(dtype, n, k, group, operand="a"))
    x, residual, y = _fold_inputs(m, k, n, act, accumulate)
    eps = 1e-5
    kernel = _folded_kernel(
        p, act, rms, eps, m, k, has_zeros=zeros, warps=warps, split=split, rows=rows, accumulate=accumulate
    )
    anybit.interpret(kernel, x, p.data, p.scales, p.zeros if zeros else p.scales, p.scales, y, m, n, k)
    expected = _fold_reference(x, q, eps, rms, residual, accumulate)
    assert torch.isfinite(y).all()
    assert relative_error(y, expected) <= TOLERANCE[act]


def test_fused_options_are_checked():
    q = random_quantized("int4", 128, 256, 128, F16, seed=fresh_seed())
    p = pack(q, layout=choose_layout("int4", 128, 256, 128, operand="a"))
    with pytest.raises(ValueError, match="rms_eps"):
        DecodeMatmulTransposed(p.layout, F16, rms_eps=0.0)
    with pytest.raises(ValueError, match="rms_rows"):
        DecodeMatmulTransposed(p.layout, F16, rms_eps=1e-5, rms_rows=9)
    gated = pack(q, layout=choose_layout("int4", 128, 256, 128, operand="a", gated=True))
    with pytest.raises(ValueError, match="gated"):
        DecodeMatmulTransposed(gated.layout, F16, accumulate=True)
    b_layout = pack(q, layout=choose_layout("int4", 128, 256, 128, operand="b")).layout
    kernel = DecodeMatmul(b_layout, F16, rms_eps=1e-5)
    with pytest.raises(Exception, match="A operand"):
        kernel.program()


@pytest.mark.parametrize(("m", "split", "accumulate"), [(1, 4, False), (3, 8, True)])
def test_decode_matmul_folds_the_rms_through_the_cached_kernel(m, split, accumulate):
    """decode_matmul's cached kernels are K-generic: the launcher passes K, x fits the shared copy."""
    n, k = 256, 2048
    q = random_quantized("int4", n, k, 128, F16, seed=fresh_seed())
    p = pack(q, layout=choose_layout("int4", n, k, 128, operand="a"))
    x = (torch.randn(m, k) * 3.0).to(F16)
    residual = torch.randn(m, n).to(F16)
    out = residual.clone() if accumulate else torch.full((m, n), float("nan"), dtype=F16)
    config = {"warps": 4, "stages": 4, "split": split, "rows": 8}
    y = decode_matmul(x, p, out=out, config=config, accumulate=accumulate, rms_eps=1e-5)
    xd = x.double() / torch.sqrt(x.double().pow(2).mean(dim=1, keepdim=True) + 1e-5)
    expected = xd @ dequantize(q).double().t() + (residual.double() if accumulate else 0.0)
    assert torch.isfinite(y).all()
    assert relative_error(y, expected) <= TOLERANCE[F16]


# (type, N, K, group, M, split, warps, rows, bias, act, accumulate, rms, gated)
ALONG_K_CASES = [
    ("int4", 64, 1024, 128, 1, 1, 4, 8, False, F16, False, False, False),
    ("int4", 96, 1024, 128, 3, 2, 4, 8, True, F16, False, False, False),  # split-K on top: 2 · 4 · 64
    ("int2", 64, 1024, 64, 5, 1, 8, 8, False, BF16, False, False, False),  # a group every chunk
    ("int3", 64, 512, 128, 2, 1, 2, 8, False, F16, False, False, False),  # bit planes
    ("float6_e3m2", 48, 512, -1, 1, 1, 2, 8, False, F16, False, False, False),  # per-channel scales
    ("int4", 32, 512, 128, 12, 1, 2, 16, False, F16, False, False, False),  # 16 rows
    ("int4", 64, 1024, 128, 1, 2, 4, 8, False, F16, True, True, False),  # residual + RMS, split
    ("int8", 64, 512, 128, 2, 1, 2, 8, False, F16, True, False, False),
    ("int4", 64, 512, 128, 1, 1, 2, 8, False, F16, False, True, True),  # gated pair, RMS
    # 8 warps on one 16-column warp tile, split-K: 4 f32 a thread of partial sum, fewer than the warps
    ("int8", 32, 2048, 128, 1, 2, 8, 8, False, F16, False, False, False),
]


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group", "m", "split", "warps", "rows", "bias", "act", "accumulate", "rms", "gated"),
    ALONG_K_CASES,
)
def test_warps_along_k_split_the_chunks_and_sum_through_shared_memory(
    dtype, n, k, group, m, split, warps, rows, bias, act, accumulate, rms, gated
):
    """The block's warps take a chunk each a step (a batched dot) and add their sums after the main loop:
    the same product as the plain kernel, with every fold, split-K, 8 and 16 rows, bit planes and gates."""
    q = random_quantized(dtype, n, k, group, act, zero_point=False, seed=fresh_seed())  # gated: interleaved
    p = pack(q, layout=choose_layout(dtype, n, k, group, operand="a", gated=gated))
    x, residual, y = _fold_inputs(m, k, n // 2 if gated else n, act, accumulate)
    b = torch.randn(n).to(act) if bias else None
    eps = 1e-5
    kernel = _folded_kernel(
        p,
        act,
        rms,
        eps,
        m,
        k,
        has_bias=bias,
        warps=warps,
        split=split,
        rows=rows,
        warps_along_k=True,
        accumulate=accumulate,
    )
    assert kernel.block_n == p.layout.n_per_warp and kernel.k_groups == warps
    anybit.interpret(kernel, x, p.data, p.scales, p.scales, p.scales if b is None else b, y, m, n, k)
    expected = _fold_reference(x, q, eps, rms, residual, accumulate, b, gated)
    assert torch.isfinite(y).all()
    assert relative_error(y, expected) <= TOLERANCE[act]


# (type, N, K, group, M, split, warps, rows, act, options): zero points with the warps along K
ALONG_K_ZERO_CASES = [
    ("uint4", 64, 1024, 128, 1, 2, 4, 8, F16, {}),  # a chunk a group: each warp its own zero row
    ("uint4", 64, 1024, 256, 3, 1, 4, 8, BF16, {}),  # two chunks a group: a row for two warps
    ("uint3", 64, 1024, 128, 12, 1, 2, 16, F16, {}),  # bit planes, 16 rows
    ("uint5", 128, 2048, 256, 2, 2, 4, 8, BF16, {"split_in_cluster": True}),  # planes, split in a cluster
    ("uint2", 128, 1024, 1024, 5, 2, 4, 8, F16, {}),  # per channel: the one row for every warp
    ("uint8", 64, 1024, 128, 1, 1, 8, 8, F16, {}),  # 8 warps, 8 chunks a step
    ("uint4", 64, 1024, 128, 4, 1, 4, 8, F16, {"bias_after_dot": True}),  # zeros after the dot, as scales
]


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group", "m", "split", "warps", "rows", "act", "options"), ALONG_K_ZERO_CASES
)
def test_warps_along_k_take_zero_points(dtype, n, k, group, m, split, warps, rows, act, options):
    """Each warp of a step subtracts the zero points of its own chunk's group (a step's rows copied side by
    side) or, per channel, the one row: the same product as the plain kernel's against float64."""
    kernel = _check_transposed(
        dtype,
        n,
        k,
        group,
        m,
        True,
        False,
        act,
        warps=warps,
        split=split,
        rows=rows,
        warps_along_k=True,
        **options,
    )
    assert kernel.k_groups == warps and kernel.has_zeros


def test_warps_along_k_refuse_uneven_steps():
    q = random_quantized("int4", 64, 384, 128, F16, seed=fresh_seed())
    p = pack(q, layout=choose_layout("int4", 64, 384, 128, operand="a"))
    kernel = DecodeMatmulTransposed(p.layout, F16, warps=4, warps_along_k=True)  # 6 chunks, steps of 4
    y = torch.full((1, 64), float("nan"), dtype=F16)
    with pytest.raises(Exception, match=r"assumes k % 512 == 0 .* pad it to a multiple of 512"):
        anybit.interpret(
            kernel, torch.randn(1, 384).half(), p.data, p.scales, p.scales, p.scales, y, 1, 64, 384
        )


# (type, N, K, group, M, zeros, split, warps, rows, act, accumulate, rms, along K)
CLUSTER_CASES = [
    ("uint4", 128, 512, 64, 5, True, 3, 2, 8, F16, False, False, False),  # uneven runs, zero points
    ("int4", 128, 1024, 128, 1, False, 8, 2, 8, F16, True, True, False),  # a full cluster, folded
    ("int2", 64, 1024, 64, 12, False, 2, 4, 16, BF16, True, False, True),  # 16 rows, warps along K
    ("int4", 64, 4096, 128, 1, False, 16, 2, 8, F16, True, False, False),  # 16 splits: non-portable
]


@pytest.mark.parametrize(
    (
        "dtype",
        "n",
        "k",
        "group",
        "m",
        "zeros",
        "split",
        "warps",
        "rows",
        "act",
        "accumulate",
        "rms",
        "along_k",
    ),
    CLUSTER_CASES,
)
def test_split_k_reduced_in_a_cluster(
    dtype, n, k, group, m, zeros, split, warps, rows, act, accumulate, rms, along_k
):
    """Split-K's partial sums meet in the block column's thread-block cluster (shared memory, no L2 round
    trips): the same result as the reference, residual and RMS folds included."""
    q = random_quantized(dtype, n, k, group, act, zero_point=zeros, seed=fresh_seed())
    p = pack(q, layout=choose_layout(dtype, n, k, group, operand="a"))
    x, residual, y = _fold_inputs(m, k, n, act, accumulate)
    eps = 1e-5
    options = dict(has_zeros=zeros, warps=warps, split=split, accumulate=accumulate, split_in_cluster=True)
    kernel = _folded_kernel(p, act, rms, eps, m, k, rows=rows, warps_along_k=along_k, **options)
    assert kernel.program(*[None] * 6, m, n, k).cluster == (1, 1, split)
    anybit.interpret(kernel, x, p.data, p.scales, p.zeros if zeros else p.scales, p.scales, y, m, n, k)
    expected = _fold_reference(x, q, eps, rms, residual, accumulate)
    assert torch.isfinite(y).all()
    assert relative_error(y, expected) <= TOLERANCE[act]


def test_split_k_in_a_cluster_in_the_x_as_a_kernel_and_its_limits():
    q = random_quantized("uint4", 128, 512, 64, F16, zero_point=True, seed=fresh_seed())
    p = pack(q, layout=choose_layout("uint4", 128, 512, 64, operand="b"))
    x = torch.randn(3, 512).half()
    y = torch.full((3, 128), float("nan"), dtype=F16)
    kernel = DecodeMatmul(p.layout, F16, has_zeros=True, warps=2, split=4, split_in_cluster=True)
    anybit.interpret(kernel, x, p.data, p.scales, p.zeros, p.scales, y, 3, 128, 512)
    assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[F16]
    config = {"warps": 2, "split": 4, "split_in_cluster": True}  # the same through decode_matmul's config
    y = decode_matmul(x, p, out=torch.full((3, 128), float("nan"), dtype=F16), config=config)
    assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[F16]
    with pytest.raises(ValueError, match="split ≤ 16"):
        DecodeMatmul(p.layout, F16, split=32, split_in_cluster=True)
    assert DecodeMatmul(p.layout, F16, split=1, split_in_cluster=True).program(*[None] * 9).cluster == (
        1,
        1,
        1,
    )


@pytest.mark.parametrize(
    ("dtype", "act", "m", "warps", "split", "rows", "along_k", "group", "accumulate"),
    [
        ("int4", F16, 1, 2, 2, 8, False, 128, False),
        ("int4", F16, 3, 4, 1, 8, True, 128, True),  # warps along K, the residual added
        ("int2", BF16, 2, 2, 1, 8, False, 64, False),
        ("int8", F16, 5, 2, 2, 16, False, 128, False),  # 16 rows
        ("int4", F16, 2, 2, 1, 8, False, -1, False),  # per-channel scales: into the accumulator directly
    ],
)
def test_the_conversions_bias_taken_off_by_a_second_dot(
    dtype, act, m, warps, split, rows, along_k, group, accumulate
):
    """``bias_after_dot``: the weights converted with their magic number left in, the biased cast of a zero
    tile's dot subtracted in the same accumulator — the same product (the interpreter's bias is 2^bits, so a
    missing correction would show)."""
    n, k = 128, 1024
    q = random_quantized(dtype, n, k, group, act, zero_point=False, seed=fresh_seed())
    p = pack(q, layout=choose_layout(dtype, n, k, group, operand="a"))
    x, residual, y = _fold_inputs(m, k, n, act, accumulate)
    kernel = DecodeMatmulTransposed(
        p.layout,
        act,
        warps=warps,
        split=split,
        rows=rows,
        warps_along_k=along_k,
        accumulate=accumulate,
        bias_after_dot=True,
    )
    anybit.interpret(kernel, x, p.data, p.scales, p.scales, p.scales, y, m, n, k)
    expected = _fold_reference(x, q, 1e-5, False, residual, accumulate)
    assert torch.isfinite(y).all()
    assert relative_error(y, expected) <= TOLERANCE[act]


@pytest.mark.parametrize(
    ("dtype", "act", "m", "warps", "split", "rows", "group", "operand"),
    [
        ("uint1", F16, 1, 2, 2, 8, 128, "a"),
        ("uint2", BF16, 3, 4, 1, 8, 64, "a"),
        ("uint4", F16, 2, 2, 1, 16, 32, "a"),
        ("uint3", F16, 5, 2, 1, 8, 128, "a"),  # codes whole (not planes): choose_layout(planar=False)
        ("uint8", F16, 4, 2, 2, 8, 128, "a"),
        ("uint2", F16, 3, 2, 2, None, 128, "b"),  # the x-as-A kernel
    ],
)
def test_zero_points_taken_off_after_the_dot(dtype, act, m, warps, split, rows, group, operand):
    """``bias_after_dot`` with zero points: the weights converted with their magic number left in, then per
    chunk the biased zero tile's dot and z · Σx (a dot of ones times the chunk's zeros, shaped as its
    scales) subtracted — the same product as the zeros subtracted in the conversion (the interpreter's
    bias is 2^bits and the zeros reach 2^bits − 1, so a missing correction would show)."""
    n, k = 256, 1024
    q = random_quantized(dtype, n, k, group, act, zero_point=True, seed=fresh_seed())
    layout = choose_layout(dtype, n, k, group, operand=operand, planar=False)
    p = pack(q, layout=layout)
    x = (torch.randn(m, k) * 3.0).to(act)
    y = torch.full((m, n), float("nan"), dtype=act)
    options = dict(has_zeros=True, warps=warps, split=split, bias_after_dot=True)
    if operand == "a":
        kernel = DecodeMatmulTransposed(layout, act, rows=rows, **options)
    else:
        kernel = DecodeMatmul(layout, act, **options)
    assert kernel.zeros_after_dot
    anybit.interpret(kernel, x, p.data, p.scales, p.zeros, p.scales, y, m, n, k)
    assert torch.isfinite(y).all()
    assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[act]


@pytest.mark.parametrize(
    ("act", "m", "split", "bias_after_dot"),
    [(F16, 1, 2, False), (F16, 3, 1, True), (BF16, 2, 2, True)],
)
def test_whole_1bit_codes_stored_pair_interleaved(act, m, split, bias_after_dot):
    """A whole uint1 weight packed as a 1-bit plane is (``plane=True``: each word's pairs 16 bits apart, the
    form ``decode_probe.py --interleave-1bit`` times against the plain order): packed, unpacked and run on
    the interpreter against float64, with zero points, the conversion's bias after the dot or not."""
    n, k = 128, 512
    q = random_quantized("uint1", n, k, 128, act, zero_point=True, seed=fresh_seed())
    plain = choose_layout("uint1", n, k, 128, operand="a")
    layout = dataclasses.replace(plain, plane=True)
    assert layout.interleaved and not plain.interleaved
    p = pack(q, layout=layout)
    assert torch.equal(unpack(p).codes, q.codes)
    assert not torch.equal(p.data, pack(q, layout=plain).data)  # another order of the same codes
    x = torch.randn(m, k).to(act)
    y = torch.full((m, n), float("nan"), dtype=act)
    kernel = DecodeMatmulTransposed(
        layout, act, has_zeros=True, warps=2, split=split, bias_after_dot=bias_after_dot
    )
    anybit.interpret(kernel, x, p.data, p.scales, p.zeros, p.scales, y, m, n, k)
    assert torch.isfinite(y).all()
    assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[act]


def test_bias_after_dot_in_the_x_as_a_kernel_and_its_limits():
    q = random_quantized("int4", 128, 512, 128, F16, zero_point=False, seed=fresh_seed())
    p = pack(q, layout=choose_layout("int4", 128, 512, 128, operand="b"))
    x = torch.randn(3, 512).half()
    y = decode_matmul(
        x, p, out=torch.full((3, 128), float("nan"), dtype=F16), config={"bias_after_dot": True}
    )
    assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[F16]
    for dtype, group, zeros, reason in (
        ("uint4", -1, True, "with per-channel zero points"),
        ("int3", 128, False, "in bit planes"),
    ):
        layout = choose_layout(dtype, 128, 512, group, operand="a")
        with pytest.raises(ValueError, match=reason):
            DecodeMatmulTransposed(layout, F16, has_zeros=zeros, bias_after_dot=True)
    with pytest.raises(ValueError, match="float4_e2m1"):
        DecodeMatmulTransposed(
            choose_layout("float4_e2m1", 128, 512, 128, operand="a"), F16, bias_after_dot=True
        )


@pytest.mark.parametrize("operand", ["a", "b"])
@pytest.mark.parametrize("dtype", ["float4_e2m1", "float5_e2m2", "float6_e3m2", "float6_e2m3"])
def test_bf16_float_weights_keep_their_bits_and_x_is_lifted(dtype, operand):
    """bf16 activations and float weights without inf/NaN: the weights go to the dot as value · 2^(bias −
    127) (no re-biasing multiply), x's tile times 2^64, the loop's sum times the rest (float_exponents); a
    weight of random codes, including the type's subnormals, against float64, x's rows 1e-4 to 1e4 apart."""
    from anybit.kernels.decode import BF16_X_EXPONENT, float_exponents

    source = anybit.dtype(dtype)
    powers = float_exponents(source, anybit.bfloat16)
    assert powers.weights == source.exponent_bias - 127 and powers.x == BF16_X_EXPONENT
    assert powers.weights + powers.x + powers.scales + powers.after == 0
    q = random_quantized(dtype, 128, 512, 128, BF16, seed=fresh_seed())
    p = pack(q, layout=choose_layout(dtype, 128, 512, 128, operand=operand))
    for m in (1, 9):
        x = (torch.randn(m, 512) * torch.logspace(-4, 4, m).unsqueeze(1)).to(BF16)
        y = decode_matmul(x, p, out=torch.full((m, 128), float("nan"), dtype=BF16))
        assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[BF16]


def test_float_exponents_by_activation_type():
    """float16: the weights' and the scales' powers cancel (exact in f32); bfloat16: the sum's; integers
    and floats with inf/NaN: none."""
    from anybit.kernels.decode import FloatExponents, float_exponents

    e2m1 = anybit.dtype("float4_e2m1")
    assert float_exponents(e2m1, anybit.float16) == FloatExponents(weights=-14, scales=14)
    assert float_exponents(e2m1, anybit.bfloat16) == FloatExponents(weights=-126, x=64, after=62)
    for name in ("int4", "uint8", "float8_e5m2"):
        assert float_exponents(anybit.dtype(name), anybit.bfloat16) == FloatExponents()


# (type, N, K, group, M, zeros, split, warps, rows, bias, act)
WGMMA_CASES = [
    ("uint4", 256, 512, 64, 5, True, 2, 4, 8, False, F16),  # zero points, split-K, 8 rows
    ("int4", 256, 512, 128, 16, False, 1, 4, 16, True, BF16),  # 16 rows, bias
    ("uint3", 512, 256, 32, 11, True, 1, 8, 16, False, F16),  # bit planes, two warpgroups
    ("float6_e3m2", 256, 256, -1, 3, False, 1, 4, 8, False, F16),  # per-channel scales
    ("int8", 256, 256, 128, 2, False, 2, 4, 8, False, BF16),
]


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group", "m", "zeros", "split", "warps", "rows", "bias", "act"), WGMMA_CASES
)
def test_wgmma_reads_x_from_its_ring_slot(dtype, n, k, group, m, zeros, split, warps, rows, bias, act):
    """x^T copied in core-matrix form and read by the tensor cores from shared memory (``dot`` with b in
    shared memory): the same product as the plain kernel, every fold it takes."""
    options = dict(warps=warps, split=split, rows=rows, wgmma=True)
    kernel = _check_transposed(dtype, n, k, group, m, zeros, bias, act, **options)
    compiled = anybit.compile(kernel, *(None,) * 6, m, n, k, arch="sm_90a")
    assert compiled.resources.stack_frame_bytes == 0


def test_wgmma_refuses_what_it_cannot_take():
    q = random_quantized("int4", 128, 256, 128, F16, seed=fresh_seed())
    p = pack(q, layout=choose_layout("int4", 128, 256, 128, operand="a"))
    for options in (dict(warps=2), dict(warps=4, warps_along_k=True), dict(warps=4, bias_after_dot=True)):
        with pytest.raises(ValueError, match="wgmma takes warps in groups of 4"):
            DecodeMatmulTransposed(p.layout, F16, wgmma=True, **options)
    q = random_quantized("float4_e2m1", 128, 256, 128, BF16, seed=fresh_seed())
    p = pack(q, layout=choose_layout("float4_e2m1", 128, 256, 128, operand="a"))
    with pytest.raises(ValueError, match="not bf16 activations with float weights"):
        DecodeMatmulTransposed(p.layout, BF16, wgmma=True, warps=4)


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group", "m", "zeros", "split", "warps", "rows", "bias", "act"), CASES
)
def test_weights_in_registers_on_the_interpreter(dtype, n, k, group, m, zeros, split, warps, rows, bias, act):
    """Each thread's weight bytes loaded straight into registers a chunk ahead (no shared ring for them):
    the same product, bit planes, zero points, split-K and uneven runs included."""
    options = dict(warps=warps, split=split, rows=rows, weights_in_registers=True)
    kernel = _check_transposed(dtype, n, k, group, m, zeros, bias, act, **options)
    assert kernel.weights_in_registers


# (type, zero points, M, act, options): weights in registers with the kernel's folds
REGISTER_FOLD_CASES = [
    ("int4", False, 3, F16, dict(warps=4, split=2, warps_along_k=True, accumulate=True, rms=True)),
    ("uint4", True, 1, F16, dict(warps=4, split=1, warps_along_k=True)),  # zero points by K group
    ("int5", False, 2, BF16, dict(warps=2, split=4, split_in_cluster=True, accumulate=True)),  # planes
    ("uint4", True, 5, F16, dict(warps=2, split=2, bias_after_dot=True)),  # zero points after the dot
    ("int4", False, 16, F16, dict(warps=4, split=2, rows=16, wgmma=True)),
]


@pytest.mark.parametrize(("dtype", "zeros", "m", "act", "options"), REGISTER_FOLD_CASES)
def test_weights_in_registers_take_every_fold(dtype, zeros, m, act, options):
    """Weights in registers with the warps along K (a step's chunks, one a warp), split-K in a cluster,
    the bias after the dot, ``wgmma``, the residual and the row RMS: the same result as the reference."""
    n, k, group = 128, 1024, 128
    options = dict(options)
    rms, accumulate, rows = (
        options.pop("rms", False),
        options.get("accumulate", False),
        options.pop("rows", 8),
    )
    q = random_quantized(dtype, n, k, group, act, zero_point=zeros, seed=fresh_seed())
    p = pack(q, layout=choose_layout(dtype, n, k, group, operand="a"))
    x, residual, y = _fold_inputs(m, k, n, act, accumulate)
    eps = 1e-5
    kernel = _folded_kernel(
        p, act, rms, eps, m, k, rows=rows, has_zeros=zeros, weights_in_registers=True, **options
    )
    anybit.interpret(kernel, x, p.data, p.scales, p.zeros if zeros else p.scales, p.scales, y, m, n, k)
    expected = _fold_reference(x, q, eps, rms, residual, accumulate)
    assert torch.isfinite(y).all()
    assert relative_error(y, expected) <= TOLERANCE[act]


def test_weights_in_registers_leave_shared_memory_to_x():
    """The weight ring is gone: the block's shared memory is x's, the scales' and the zero points' rings
    (int4 at 8 warps and 4 stages: 4 × 8 tiles of weight slots less), and nothing spills."""
    p = pack(
        random_quantized("int4", 2048, 1024, 128, F16, seed=fresh_seed()),
        layout=choose_layout("int4", 2048, 1024, 128, operand="a"),
    )
    used = {}
    for in_registers in (False, True):
        kernel = DecodeMatmulTransposed(
            p.layout, F16, warps=8, stages=4, rows=16, weights_in_registers=in_registers
        )
        compiled = anybit.compile(kernel, *(None,) * 6, 16, 2048, 1024, arch="sm_90a")
        assert compiled.resources.stack_frame_bytes == 0
        used[in_registers] = compiled.kernel_source.dynamic_shared_bytes
    assert used[False] - used[True] == 4 * 8 * p.layout.tile_bytes


@pytest.mark.parametrize(("dtype", "m", "split"), [("uint2", 5, 2), ("int5", 16, 1), ("float4_e2m1", 3, 3)])
def test_weights_in_registers_with_the_weight_as_the_b_operand(dtype, m, split):
    """The x-as-A decode kernel (weights packed as the B operand) takes the option too."""
    n, k, group, act = 256, 512, 128, F16
    zeros = dtype.startswith("u")
    q = random_quantized(dtype, n, k, group, act, zero_point=zeros, seed=fresh_seed())
    p = pack(q, layout=choose_layout(dtype, n, k, group, operand="b"))
    x = torch.randn(m, k).to(act)
    out = torch.full((m, n), float("nan"), dtype=act)
    config = dict(warps=2, stages=3, split=split, weights_in_registers=True)
    y = decode_matmul(x, p, out=out, config=config)
    assert y is out and torch.isfinite(y).all()
    assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[act]


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group", "m", "zeros", "split", "warps", "rows", "bias", "act"), CASES[:8]
)
def test_late_weight_loads_on_the_interpreter(dtype, n, k, group, m, zeros, split, warps, rows, bias, act):
    """The next chunk's weight loads issued after this chunk's conversion, into the same registers: the same
    product; without weights in registers the option is refused."""
    options = dict(warps=warps, split=split, rows=rows, weights_in_registers=True, late_weight_loads=True)
    kernel = _check_transposed(dtype, n, k, group, m, zeros, bias, act, **options)
    assert kernel.late_weight_loads
    with pytest.raises(ValueError, match="set weights_in_registers=True"):
        DecodeMatmulTransposed(kernel.layout, act, late_weight_loads=True)


# (type, act, operand, M, config): weights whose top plane's bits are spread (PackedLayout.top_plane_stride)
SPREAD_CASES = [
    ("float6_e2m3", F16, "a", 1, {"warps": 2}),
    ("float6_e2m3", F16, "a", 11, {"warps": 2, "rows": 16, "split": 2}),
    ("float6_e2m3", F16, "a", 3, {"warps": 2, "weights_in_registers": True, "stages": 3}),
    ("float6_e2m3", F16, "a", 2, {"warps": 2, "warps_along_k": True}),
    ("float6_e2m3", F16, "b", 5, {"warps": 2, "split": 2}),
    ("float6_e1m4", BF16, "a", 1, {"warps": 2, "split": 4}),
]


@pytest.mark.parametrize(("dtype", "act", "operand", "m", "config"), SPREAD_CASES)
def test_weights_with_a_spread_top_plane(dtype, act, operand, m, config):
    """``pack`` spreads a float's top-plane bits where the activation dtype's conversion puts them; the decode
    kernels (8 and 16 rows, split-K, weights in registers, warps along K, operand "b") and the dequantize
    path of ``quantized_matmul`` read them, against float64."""
    q = random_quantized(dtype, 128, 512, 128, act, seed=fresh_seed())
    p = pack(q, layout=choose_layout(dtype, 128, 512, 128, operand=operand, act_dtype=act))
    assert p.layout.top_plane_stride > 1
    x = torch.randn(m, 512).to(act)
    y = decode_matmul(x, p, out=torch.full((m, 128), float("nan"), dtype=act), config=config)
    assert relative_error(y, reference_matmul(x, q, None)) <= TOLERANCE[act]
    if m == 11:  # past 16 rows: dequantize + a matmul
        x = torch.randn(40, 512).to(act)
        assert (
            relative_error(anybit.ops.quantized_matmul(x, p), reference_matmul(x, q, None)) <= TOLERANCE[act]
        )
