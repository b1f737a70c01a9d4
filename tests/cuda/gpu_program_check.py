"""One test program (``cuda_programs``) compiled and launched on the GPU against the CPU interpreter: fresh
random inputs, outputs poisoned identically on both sides (see ``gpu_compare`` for the comparison rule)."""

from __future__ import annotations

import numpy as np
from cuda_arguments import random_arguments
from cuda_programs import all_programs
from gpu_compare import compare, from_device, output_only_pointer_names, poison, to_device

#: Programs whose float results may differ from the interpreter by rounding order (sums, mma accumulation).
TOLERANT = {
    "matmul_f16": 1e-2,
    "matmul_bf16": 1e-2,
    "reductions": 1e-5,
    "products": 1e-5,
    "block_reductions": 1e-5,
}


def check_program(name: str) -> None:
    """Raise AssertionError when the compiled program's outputs differ from the interpreter's."""
    import torch

    from anybit.cuda import generate_cuda
    from anybit.interp import interpret
    from anybit.runtime import compile_source

    program = all_programs()[name]
    rng = np.random.default_rng()
    args = random_arguments(program, rng)
    outputs = output_only_pointer_names(program)
    for var, value in zip(program.params, args, strict=True):
        if var.name in outputs:
            poison(value)
    device_args = [to_device(value) if isinstance(value, np.ndarray) else value for value in args]
    interpret(program, *args, print_fn=lambda text: None)
    compiled = compile_source(generate_cuda(program), program=program)
    compiled(*device_args)
    torch.cuda.synchronize()
    for var, expected, tensor in zip(program.params, args, device_args, strict=True):
        if isinstance(expected, np.ndarray):
            got = from_device(tensor, expected)
            compare(f"{name}: {var.name}", expected, got, tolerance=TOLERANT.get(name))
