"""Every example of the VM issue runs compiled on the GPU and agrees with the interpreter (each check in its
own process, see ``gpu_isolation``; the checks are in ``gpu_example_check``)."""

from __future__ import annotations

import pytest
from cuda_support import requires_gpu
from gpu_example_check import LOW_BIT_TYPES, MATMUL_F16_CONFIGS
from gpu_isolation import run_isolated

CASES = [("check_vector_add",), ("check_softmax",)]
CASES += [("check_matmul_f16", config) for config in MATMUL_F16_CONFIGS]
CASES += [("check_matmul_low_bit", name) for name in LOW_BIT_TYPES]


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("case", CASES, ids=["-".join(case).removeprefix("check_") for case in CASES])
def test_example_matches_interpreter(case: tuple[str, ...]) -> None:
    run_isolated("gpu_example_check", *case)
