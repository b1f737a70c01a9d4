"""The ``examples/`` kernels generate CUDA that compiles for sm_80 and sm_90a, with the expected PTX."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from cuda_support import requires_nvrtc

import anybit
from anybit.cuda import generate_cuda

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))


def _cases() -> dict:
    import matmul_f16
    import matmul_int6
    import softmax
    import vector_add

    def f16(*shape):
        return np.zeros(shape, np.float16)

    cases = {
        "vector_add": (vector_add.VectorAdd(), (f16(1300), f16(1300), f16(1300), 1300), ["ld.global.v2"]),
        "softmax": (
            softmax.Softmax(64),
            (np.zeros((13, 50), np.float32), np.zeros((13, 50), np.float32), 13, 50),
            ["shfl.sync.bfly"],
        ),
        "matmul_f16": (
            matmul_f16.MatmulF16(),
            (f16(32, 64), f16(64, 16), f16(32, 16), 32, 16, 64),
            ["ldmatrix", "mma.sync.aligned.m16n8k16"],
        ),
    }
    for wtype in (anybit.int6, anybit.uint4, anybit.float8_e4m3):
        packed = np.zeros(4096, np.uint8)
        cases[f"pack_{wtype.name}"] = (matmul_int6.PackWeight(wtype), (packed, packed, 64, 16), [])
        cases[f"matmul_{wtype.name}"] = (
            matmul_int6.MatmulLowBit(wtype),
            (f16(20, 64), packed, f16(1, 16), f16(20, 16), 20, 16, 64),
            # The conversion: lop3 placing bits; float8_e4m3 on sm_89+ converts pairs natively instead.
            ["mma.sync.aligned.m16n8k16", "lop3.b32" if wtype is not anybit.float8_e4m3 else "f16x2"],
        )
    return cases


NAMES = ["vector_add", "softmax", "matmul_f16"] + [
    f"{kind}_{t}" for t in ("int6", "uint4", "float8_e4m3") for kind in ("pack", "matmul")
]


@requires_nvrtc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("name", NAMES)
def test_example_compiles(name: str, arch: str) -> None:
    from anybit.runtime.nvrtc import compile_cubin

    script, args, expected = _cases()[name]
    kernel = generate_cuda(script.program(*args), arch=arch)
    result = compile_cubin(kernel.source, kernel.name, arch)
    for fragment in expected:
        assert fragment in result.ptx, f"{name}: expected {fragment!r} in the PTX"
    assert not result.resources.spills and result.resources.stack_frame_bytes == 0, result.resources
    assert not re.search(r"\bld\.local|\bst\.local", result.ptx)
