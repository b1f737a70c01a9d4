"""The decode kernel on the interpreter: every type family, group sizes, zeros, bias, M, activation dtypes,
against the float64 product with the dequantized weight (outputs start as NaN: a skipped store fails)."""

from __future__ import annotations

import importlib

import pytest
import torch

import anybit
from anybit import ir
from anybit.interp import InterpreterError
from anybit.ir import instructions
from anybit.kernels import DecodeConfig, DecodeMatmul, choose_layout, decode_matmul, pack
from anybit.kernels.launch import default_decode_config

from .helpers import TOLERANCE, WEIGHT_TYPES, WIDE_FLOAT, random_quantized, reference_matmul, relative_error

F16, BF16 = torch.float16, torch.bfloat16
GROUPS = (32, 64, 128, -1)

# (type, group size, act dtype, M, bias, K): every type once, cycling the other knobs.
CASES = [
    (
        dtype,
        GROUPS[i % 4],
        (F16, BF16)[i % 2 if i % 5 else 0],
        (1, 3, 16)[i % 3],
        i % 2 == 0,
        (256, 512)[i % 2],
    )
    for i, dtype in enumerate(WEIGHT_TYPES)
] + [(WIDE_FLOAT, 64, BF16, 5, True, 256), ("uint4", 128, BF16, 16, False, 1024)]


def _pack_b(q):
    """The weight packed for this module's kernel, DecodeMatmul (operand "b"; the default packing is "a")."""
    n, k = q.codes.shape
    return pack(q, layout=choose_layout(q.dtype, n, k, q.group_size, operand="b"))


def _run(dtype, group_size, act, m, with_bias, k, *, zero_point=None, config=None, n=64, tile_bytes=64):
    q = random_quantized(dtype, n, k, group_size, act, zero_point=zero_point)
    p = pack(q, layout=choose_layout(dtype, n, k, group_size, max_bytes_per_thread=tile_bytes, operand="b"))
    generator = torch.Generator().manual_seed(m)
    x = torch.randn(m, k, generator=generator).to(act)
    bias = torch.randn(n, generator=generator).to(act) if with_bias else None
    out = torch.full((m, n), float("nan"), dtype=act)
    result = decode_matmul(x, p, bias, out=out, config=config)
    assert result is out
    return relative_error(out, reference_matmul(x, q, bias))


@pytest.mark.parametrize(("dtype", "group_size", "act", "m", "with_bias", "k"), CASES)
def test_decode_matches_the_float64_reference(dtype, group_size, act, m, with_bias, k):
    assert _run(dtype, group_size, act, m, with_bias, k) <= TOLERANCE[act]


@pytest.mark.parametrize("zero_point", [True, False])
@pytest.mark.parametrize("group_size", [64, -1])
def test_unsigned_with_and_without_zero_points(zero_point, group_size):
    assert _run("uint5", group_size, F16, 3, True, 256, zero_point=zero_point) <= TOLERANCE[F16]


@pytest.mark.parametrize(
    "config",
    [
        DecodeConfig(warps=1, stages=2),
        DecodeConfig(warps=2, stages=6),
        {"warps": 2},
        DecodeConfig(warps=1, stages=3, split=3),
        {"warps": 2, "split": 2},
    ],
)
def test_configs(config):
    assert _run("int4", 32, F16, 2, False, 512, config=config, n=128) <= TOLERANCE[F16]


def test_seven_warps_a_block():
    """A warp count that is not a power of two (the tuning space's 7: N = 14336 · 2^i grids)."""
    assert _run("uint4", 64, F16, 3, True, 256, config={"warps": 7, "split": 2}, n=448) <= TOLERANCE[F16]


@pytest.mark.parametrize(("dtype", "n"), [("uint4", 128), ("int8", 64), ("int3", 128), ("float6_e3m2", 64)])
def test_wide_warp_tiles(dtype, n):
    """Warp tiles of up to 128 bytes per thread (choose_layout(max_bytes_per_thread=128)): more columns."""
    default = choose_layout(dtype, n, 256, 128, operand="b")
    layout = choose_layout(dtype, n, 256, 128, max_bytes_per_thread=128, operand="b")
    assert (
        default.bytes_per_thread < layout.bytes_per_thread <= 128 and layout.n_per_warp > default.n_per_warp
    )
    assert _run(dtype, 128, F16, 3, True, 256, n=n, tile_bytes=128) <= TOLERANCE[F16]
    with pytest.raises(ValueError, match="max_bytes_per_thread"):
        choose_layout(dtype, n, 256, 128, max_bytes_per_thread=100, operand="b")


# (type, group size, M, split, warps, K): per-group and per-channel scales, M > 16 (two row blocks), and more
# splits than chunks (a split with no chunk adds zeros).
SPLIT_CASES = [
    ("uint4", 64, 1, 2, 1, 512),
    ("int3", -1, 3, 3, 2, 512),
    ("uint2", 32, 20, 4, 1, 256),
    ("int8", 128, 16, 5, 1, 512),
]


@pytest.mark.parametrize("reverse", [False, True], ids=["in_order", "last_split_first"])
@pytest.mark.parametrize(("dtype", "group_size", "m", "split", "warps", "k"), SPLIT_CASES)
def test_split_k_reduces_in_f32_whatever_the_block_order(
    monkeypatch, dtype, group_size, m, split, warps, k, reverse
):
    """Split-K over several blocks per column; with the blocks started in reverse (the last split first),
    the semaphore makes every split's add land before the last split reads the sum back."""
    if reverse:
        interpret_module = importlib.import_module("anybit.interp.interpret")
        run_grid = interpret_module.run_grid
        monkeypatch.setattr(interpret_module, "run_grid", lambda blocks: run_grid(list(reversed(blocks))))
    config = DecodeConfig(warps=warps, stages=3, split=split)
    assert _run(dtype, group_size, F16, m, True, k, config=config) <= TOLERANCE[F16]


def test_default_config_splits_k_for_few_block_columns():
    """Split-K up to about 264 blocks, while each split runs at least two chunks."""

    def uint4(n: int, k: int):
        return choose_layout("uint4", n, k, 128, operand="b")

    layout = uint4(8192, 8192)  # 32-column warp tiles: 64 blocks of 4 warps
    assert default_decode_config(layout) == DecodeConfig(warps=4, stages=4, split=8)
    assert default_decode_config(layout, 20) == DecodeConfig(warps=4, stages=4, split=4)  # two row blocks
    assert default_decode_config(uint4(57344, 8192)) == DecodeConfig(4, 4, 1)
    assert default_decode_config(uint4(8192, 1024)).split == 4  # 8 chunks: runs of 2
    assert default_decode_config(uint4(8192, 256)).split == 1  # 2 chunks


def test_more_than_sixteen_rows_use_a_second_grid_axis():
    assert _run("int6", 128, F16, 20, True, 256) <= TOLERANCE[F16]


def test_leading_dimensions_and_a_fresh_output():
    q = random_quantized("int4", 64, 128, 128, F16)
    p = _pack_b(q)
    x = torch.randn(2, 3, 128).to(F16)
    y = decode_matmul(x, p)
    assert y.shape == (2, 3, 64) and y.dtype == F16
    assert relative_error(y.reshape(6, 64), reference_matmul(x.reshape(6, 128), q, None)) <= TOLERANCE[F16]


@pytest.mark.parametrize("dtype", ["int4", "int3"])
def test_program_layouts_are_the_packed_ones(dtype):
    """The kernel's weight view has the block's tensor-core B layout and its byte loads the byte layouts
    (of the codes, or of each bit plane: int3 is stored as planes of 2 and 1 bits)."""
    p = _pack_b(random_quantized(dtype, 64, 256, 128, F16))
    program = DecodeMatmul(p.layout, F16, warps=2).program()
    text = str(program)
    parts = p.layout.plane_layouts() if p.layout.planar else (p.layout,)
    assert p.layout.planar == (dtype == "int3")
    assert str(p.layout.block_tile_layout(2)) in text
    assert all(str(part.block_byte_layout(2)) in text for part in parts)


def test_argument_errors():
    q = random_quantized("int4", 64, 128, 128, F16)
    p = _pack_b(q)
    x = torch.randn(1, 128).to(F16)
    with pytest.raises(ValueError, match=r"x \[..., K=128\]"):
        decode_matmul(torch.randn(1, 64).to(F16), p)
    with pytest.raises(ValueError, match="expected x torch.float16"):
        decode_matmul(x.to(BF16), p)
    with pytest.raises(ValueError, match="expected bias torch.float16 \\[64\\]"):
        decode_matmul(x, p, bias=torch.zeros(32, dtype=F16))
    with pytest.raises(ValueError, match="expected out"):
        decode_matmul(x, p, out=torch.zeros(1, 64))
    with pytest.raises(
        ValueError, match=r"multiple of the block's 512 columns \(warps · n_per_warp = 16 · 32"
    ):
        decode_matmul(x, p, config=DecodeConfig(warps=16))
    with pytest.raises(ValueError, match="warps_along_k=True applies to weights packed with operand='a'"):
        decode_matmul(x, p, config=DecodeConfig(warps_along_k=True))
    with pytest.raises(ValueError, match="stages >= 2"):
        DecodeMatmul(p.layout, F16, stages=1)
    with pytest.raises(ValueError, match="split >= 1"):
        DecodeMatmul(p.layout, F16, split=0)


def test_runtime_checks_divisibility():
    """K and N are run-time arguments with declared multiples; the executors refuse others."""
    p = _pack_b(random_quantized("int4", 64, 256, 128, F16))
    kernel = DecodeMatmul(p.layout, F16, warps=2)
    x = torch.zeros(1, 200, dtype=F16)
    y = torch.zeros(1, 64, dtype=F16)
    with pytest.raises(InterpreterError, match="multiple of 128"):
        anybit.interpret(kernel, x, p.data, p.scales, p.scales, p.scales, y, 1, 64, 200)


# -- programmatic dependent launch -----------------------------------------------------------------------
def _global_reads(body) -> set[str]:
    return {
        inst.tensor.name
        for inst in instructions(body)
        if isinstance(inst, ir.CopyAsyncInst | ir.LoadGlobalInst)
    }


@pytest.mark.parametrize(("split", "zeros", "group_size"), [(1, True, 64), (2, True, 64), (1, True, -1)])
def test_only_weights_are_read_before_the_wait(split, zeros, group_size):
    """The prologue copies weight tiles, scale and zero rows before the wait; x only after it; nothing is
    written before it (the verifier checks that part); the next kernel is allowed in right after the wait,
    before the K loop (one kernel ahead at most)."""
    layout = choose_layout("uint4", 256, 512, group_size, operand="b")
    body = DecodeMatmul(layout, F16, has_zeros=zeros, warps=2, split=split).program().body
    (wait,) = [i for i, stmt in enumerate(body) if isinstance(stmt, ir.WaitPriorGridsInst)]
    before = _global_reads(body[:wait])
    assert before and "gx" not in before and before <= {"gw", "gs", "gz"}
    assert "gx" in _global_reads(body[wait:])
    (allow,) = [i for i, stmt in enumerate(body) if isinstance(stmt, ir.AllowDependentGridsInst)]
    (loop,) = [i for i, stmt in enumerate(body) if isinstance(stmt, ir.ForStmt)][:1]
    assert allow == wait + 1 and allow < loop


def test_without_dependent_launch_the_results_are_the_same():
    """Both variants on the interpreter, split and unsplit: the same bits (only the wait and the trigger
    differ, and the interpreter runs them as no-ops)."""
    p = _pack_b(random_quantized("uint4", 128, 512, 64, F16, zero_point=True))
    x = torch.randn(3, 512).to(F16)
    for split in (1, 2):
        results = []
        for dependent in (True, False):
            kernel = DecodeMatmul(
                p.layout, F16, has_zeros=True, warps=2, split=split, dependent_launch=dependent
            )
            y = torch.full((3, 128), float("nan"), dtype=F16)
            anybit.interpret(kernel, x, p.data, p.scales, p.zeros, p.scales, y, 3, 128, 512)
            results.append(y)
        assert torch.equal(results[0], results[1]) and not results[0].isnan().any()
    program = DecodeMatmul(p.layout, F16, warps=2, dependent_launch=False).program()
    kinds = {type(inst) for inst in instructions(program.body)}
    assert ir.WaitPriorGridsInst not in kinds and ir.AllowDependentGridsInst not in kinds
