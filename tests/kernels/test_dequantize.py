"""The dequantize kernel on the interpreter: bit-exact with the reference rounded to the activation dtype."""

from __future__ import annotations

import pytest
import torch

from anybit.kernels import dequantize, dequantize_weight, pack

from .helpers import WEIGHT_TYPES, WIDE_FLOAT, random_quantized

GROUPS = (32, 64, 128, -1)
CASES = [
    (dtype, GROUPS[i % 4], (torch.float16, torch.bfloat16)[i % 2]) for i, dtype in enumerate(WEIGHT_TYPES)
]


@pytest.mark.parametrize(("dtype", "group_size", "act"), [*CASES, (WIDE_FLOAT, 128, torch.bfloat16)])
def test_dequantize_is_exact(dtype, group_size, act):
    """(q − z) is exact and (q − z) · s rounds once, so the kernel equals the f32 reference rounded."""
    q = random_quantized(dtype, 64, 256, group_size, act)
    out = torch.full((64, 256), float("nan"), dtype=act)
    result = dequantize_weight(pack(q), out=out)
    assert result is out
    assert torch.equal(out, dequantize(q).to(act))


def test_fresh_output_and_errors():
    p = pack(random_quantized("uint4", 32, 128, 64, torch.float16))
    assert dequantize_weight(p).shape == (32, 128)
    with pytest.raises(ValueError, match=r"expected out torch.float16 \[32, 128\]"):
        dequantize_weight(p, out=torch.empty(128, 32, dtype=torch.float16))
