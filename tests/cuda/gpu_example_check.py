"""The ``examples/`` kernels launched compiled on the GPU (a Script call: ``anybit.runtime``) against the CPU
interpreter on the same fresh random inputs, outputs poisoned on both sides (``gpu_compare``'s rule).

Each ``check_*`` function raises AssertionError on a mismatch; ``test_examples_gpu`` runs each in its own
process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from gpu_compare import compare, from_device, to_device

import anybit

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

#: MatmulF16 configurations: the default tiles, a multi-warp one and the benchmark's fast one.
MATMUL_F16_CONFIGS = {
    "default": ({}, (40, 40, 72)),
    "warps4": ({"block_m": 32, "block_n": 32, "block_k": 32, "warps": 4, "stages": 3}, (72, 48, 96)),
    "fast": (
        {"block_m": 128, "block_n": 128, "block_k": 32, "warps": 8, "stages": 4},
        (136, 136, 80),
    ),
}
LOW_BIT_TYPES = ("int6", "uint4", "float8_e4m3", "float4_e2m1", "int3")


def _launch_both(kernel, arrays: list, scalars: list, outputs: set[int], *, tolerance=None, label=""):
    """Run ``kernel`` on the interpreter (numpy) and on the GPU (torch) with the same arguments; compare
    the arrays at ``outputs`` (indices into ``arrays``)."""
    import torch

    device = [to_device(a) for a in arrays]
    anybit.interpret(kernel, *arrays, *scalars)
    kernel(*device, *scalars)
    torch.cuda.synchronize()
    for i in sorted(outputs):
        compare(f"{label} output {i}", arrays[i], from_device(device[i], arrays[i]), tolerance=tolerance)


def check_vector_add() -> None:
    """Ragged length: the last block is bounds-checked."""
    from vector_add import VectorAdd

    rng = np.random.default_rng()
    n = 1300
    x, y = (rng.standard_normal(n).astype(np.float16) for _ in range(2))
    z = np.full(n, np.nan, np.float16)
    _launch_both(VectorAdd(), [x, y, z], [n], {2}, label="vector_add")


def check_softmax() -> None:
    """Ragged rows and columns; exp and the sums may round differently: tight tolerance."""
    from softmax import Softmax

    rng = np.random.default_rng()
    m, n = 13, 50
    x = (rng.standard_normal((m, n)) * 3).astype(np.float32)
    y = np.full((m, n), np.nan, np.float32)
    _launch_both(Softmax(64), [x, y], [m, n], {1}, tolerance=1e-5, label="softmax")


def check_matmul_f16(config: str) -> None:
    """One of :data:`MATMUL_F16_CONFIGS`; ragged M, N and K tiles; f32 accumulation order may differ."""
    from matmul_f16 import MatmulF16

    options, (m, n, k) = MATMUL_F16_CONFIGS[config]
    rng = np.random.default_rng()
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((k, n)).astype(np.float16)
    c = np.full((m, n), np.nan, np.float16)
    _launch_both(
        MatmulF16(**options), [a, b, c], [m, n, k], {2}, tolerance=2e-3, label=f"matmul_f16 {config}"
    )


def check_matmul_low_bit(type_name: str) -> None:
    """The packing Script (bit-exact) and then the low-bit matmul on the interpreter's packed weight."""
    import matmul_int6

    wtype = getattr(anybit, type_name)
    rng = np.random.default_rng()
    m, n, k = 20, 16, 64
    codes = matmul_int6.random_weight(wtype, k, n, rng)
    natural = anybit.dtypes.pack(codes, wtype)
    tiled = np.full(k * n * wtype.nbits // 8, 0xEE, np.uint8)
    _launch_both(matmul_int6.PackWeight(wtype), [natural, tiled], [k, n], {1}, label=f"pack {type_name}")
    weight = anybit.dtypes.decode(codes, wtype)
    scale = ((rng.random(n) + 0.5) / max(1.0, float(np.abs(weight).max()))).astype(np.float16)
    a = rng.standard_normal((m, k)).astype(np.float16)
    c = np.full((m, n), np.nan, np.float16)
    _launch_both(
        matmul_int6.MatmulLowBit(wtype),
        [a, tiled, scale, c],
        [m, n, k],
        {3},
        tolerance=2e-3,
        label=f"matmul {type_name}",
    )
