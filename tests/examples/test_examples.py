"""Every example at several sizes (ragged edges included), fresh random inputs, outputs poisoned with NaN."""

import matmul_f16
import matmul_int6
import numpy as np
import pytest
import softmax
import vector_add

import anybit


def relative_error(result: np.ndarray, reference: np.ndarray) -> float:
    result = result.astype(np.float64)
    assert not np.isnan(result).any(), "NaN in the output (an element was never written)"
    return float(np.linalg.norm(result - reference) / np.linalg.norm(reference))


@pytest.mark.parametrize("n", [1, 511, 512, 1300])
def test_vector_add(n):
    result, reference = vector_add.run(n, seed=n)
    assert relative_error(result, reference) < 1e-3


@pytest.mark.parametrize("m, n", [(4, 32), (13, 50), (6, 64), (3, 7)])
def test_softmax(m, n):
    result, reference = softmax.run(m, n, seed=m * n)
    assert relative_error(result, reference) < 1e-6


@pytest.mark.parametrize("m, n, k", [(16, 8, 16), (32, 16, 64), (20, 24, 40), (5, 8, 8)])
def test_matmul_f16(m, n, k):
    result, reference = matmul_f16.run(m, n, k, seed=m + n + k)
    assert relative_error(result, reference) < 2e-3


@pytest.mark.parametrize("m, n, k", [(64, 64, 96), (40, 40, 72)])
def test_matmul_f16_multi_warp_pipeline(m, n, k):
    """Several warps, three pipeline stages, swizzled shared tiles; K not a multiple of the tile."""
    config = {"block_m": 32, "block_n": 32, "block_k": 32, "warps": 4, "stages": 3}
    result, reference = matmul_f16.run(m, n, k, seed=m * k, **config)
    assert relative_error(result, reference) < 2e-3


WEIGHT_TYPES = [
    *(getattr(anybit, f"uint{n}") for n in range(1, 9)),
    *(getattr(anybit, f"int{n}") for n in range(2, 9)),
    anybit.float3_e1m1,
    anybit.float4_e2m1,
    anybit.float5_e2m2,
    anybit.float6_e3m2,
    anybit.float6_e2m3,
    anybit.float8_e4m3,
    anybit.float8_e5m2,
]


@pytest.mark.parametrize("wtype", WEIGHT_TYPES, ids=lambda t: t.name)
def test_matmul_lowbit_every_weight_type(wtype):
    result, reference = matmul_int6.run(wtype, 20, 16, 64, seed=wtype.nbits)
    assert relative_error(result, reference) < 2e-3


@pytest.mark.parametrize("wtype", [anybit.int6, anybit.uint3, anybit.float5_e2m2], ids=lambda t: t.name)
def test_weight_packing_program_matches_numpy(wtype):
    """The packing Script puts each thread's B-layout bits contiguously, as the numpy model says."""
    k, n = 64, 16
    rng = np.random.default_rng(0)
    codes = matmul_int6.random_weight(wtype, k, n, rng)
    tiled = np.zeros((k // 32) * (n // 8) * 32 * 8 * wtype.nbits // 8, np.uint8)
    anybit.interpret(matmul_int6.PackWeight(wtype), anybit.dtypes.pack(codes, wtype), tiled, k, n)
    mapping = matmul_int6.B_LAYOUT.map_array()
    byte_map = matmul_int6.byte_layout(wtype.nbits).map_array()[..., 0]  # (32, n) byte index per thread
    expected = np.zeros_like(tiled).reshape(k // 32, n // 8, -1)
    for bk in range(k // 32):
        for bj in range(n // 8):
            tile = codes[bk * 32 : (bk + 1) * 32, bj * 8 : (bj + 1) * 8]
            per_thread = tile[mapping[..., 0], mapping[..., 1]]  # (32 threads, 8 weights)
            stream = anybit.dtypes.pack(per_thread, wtype).reshape(32, wtype.nbits)  # n bytes per thread
            expected[bk, bj][byte_map] = stream
    np.testing.assert_array_equal(tiled, expected.reshape(-1))


def test_examples_main_prints_errors(capsys):
    for module in (vector_add, softmax, matmul_f16, matmul_int6):
        module.main()
    assert "relative error" in capsys.readouterr().out
