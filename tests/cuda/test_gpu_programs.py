"""Each test program on the GPU against the CPU interpreter: fresh random inputs, poisoned outputs."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_arguments import random_arguments
from cuda_programs import all_programs
from cuda_support import requires_gpu

from anybit.cuda import generate_cuda

#: Programs whose float results may differ from the interpreter by rounding order (sums, mma accumulation).
TOLERANT = {"matmul_f16", "matmul_bf16", "reductions"}
#: Programs with side effects the comparison cannot cover exactly (printing, atomics order).
SKIP = {"split_k"}


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("name", sorted(set(all_programs()) - SKIP))
def test_program_matches_interpreter(name: str) -> None:
    import torch

    from anybit.interp import interpret
    from anybit.runtime import compile_source

    program = all_programs()[name]
    rng = np.random.default_rng()
    args = random_arguments(program, rng)
    device_args = []
    for value in args:
        if isinstance(value, np.ndarray):
            tensor = torch.from_numpy(value.copy()).cuda()
            device_args.append(tensor)
        else:
            device_args.append(value)
    # outputs are poisoned: float arguments start half NaN, identically on both sides
    for value, tensor in zip(args, device_args, strict=True):
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            poison = rng.random(value.shape) < 0.5
            value[poison] = np.nan
            tensor.copy_(torch.from_numpy(value))
    interpret(program, *args, print_fn=lambda text: None)
    compiled = compile_source(generate_cuda(program), program=program)
    compiled(*device_args)
    torch.cuda.synchronize()
    for expected, tensor in zip(args, device_args, strict=True):
        if not isinstance(expected, np.ndarray):
            continue
        got = tensor.cpu().numpy()
        if name in TOLERANT and expected.dtype.kind == "f":
            e, g = expected.astype(np.float64), got.astype(np.float64)
            assert np.array_equal(np.isnan(e), np.isnan(g))
            finite = ~np.isnan(e)
            scale = max(1.0, float(np.linalg.norm(e[finite])))
            assert np.linalg.norm(e[finite] - g[finite]) / scale < 1e-2
        else:
            assert np.array_equal(expected.view(np.uint8), got.view(np.uint8)), f"{name}: bytes differ"
