"""anybit.ops: torch-facing operators. ``quantized_matmul(x, packed_weight, bias=None)`` is the quantized
linear layer: the decode kernel for few rows, dequantize + cuBLAS for many, a ``torch.library`` custom op
(``torch.ops.anybit.quantized_matmul``) under ``torch.compile``. See ``docs/quantized-matmul.md``.
"""

from anybit.ops import library as library
from anybit.ops.dispatch import DEFAULT_DECODE_MAX_M, choose_path, decode_max_m, set_decode_max_m
from anybit.ops.matmul import (
    gated_mlp_,
    plan_of,
    quantized_matmul,
    quantized_matmul_add_,
    quantized_matmul_path,
    quantized_matmul_rms,
)
from anybit.ops.plan import WeightPlan, clear_plans
from anybit.ops.tuning import TunedDecodeMatmul, m_bucket, precompile_decode

__all__ = [
    "DEFAULT_DECODE_MAX_M",
    "TunedDecodeMatmul",
    "WeightPlan",
    "choose_path",
    "clear_plans",
    "decode_max_m",
    "gated_mlp_",
    "library",
    "m_bucket",
    "plan_of",
    "precompile_decode",
    "quantized_matmul",
    "quantized_matmul_add_",
    "quantized_matmul_path",
    "quantized_matmul_rms",
    "set_decode_max_m",
]
