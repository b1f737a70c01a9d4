"""The kernel library: quantization, weight packing, the decode kernel (M ≤ 16, memory-bound) and the
dequantize kernel (prefill: decode the weight once, then cuBLAS); and a decode step's other pieces: its
attention in one kernel (``decode_attention``) and its greedy token pick (``greedy_token``).

Typical use::

    q = quantize(linear.weight, "int4", group_size=128)      # natural codes + scales (+ zeros)
    p = pack(q)                                               # the kernels' byte layout
    y = decode_matmul(x, p, bias)                             # x [M ≤ 16, K] → y [M, N]
    w = dequantize_weight(p)                                  # [N, K] activation-dtype weight
"""

from anybit.kernels.attention import DecodeAttention, decode_attention
from anybit.kernels.decode import DecodeMatmul
from anybit.kernels.dequantize import DequantizeWeight
from anybit.kernels.gated import gated_reference, interleave_gated, split_gated
from anybit.kernels.greedy import GreedyToken, greedy_token
from anybit.kernels.launch import DecodeConfig, decode_matmul, default_decode_config, dequantize_weight
from anybit.kernels.layout import PackedLayout, check_act_compatible, choose_layout, default_bytes_per_thread
from anybit.kernels.pack_scripts import PackWeight, UnpackWeight
from anybit.kernels.packing import PackedWeight, pack, pack_codes_numpy, unpack, unpack_codes_numpy
from anybit.kernels.quantize import QuantizedWeight, dequantize, quantize

__all__ = [
    "DecodeAttention",
    "DecodeConfig",
    "DecodeMatmul",
    "DequantizeWeight",
    "GreedyToken",
    "PackWeight",
    "PackedLayout",
    "PackedWeight",
    "QuantizedWeight",
    "UnpackWeight",
    "check_act_compatible",
    "choose_layout",
    "decode_attention",
    "decode_matmul",
    "default_bytes_per_thread",
    "default_decode_config",
    "dequantize",
    "dequantize_weight",
    "gated_reference",
    "greedy_token",
    "interleave_gated",
    "pack",
    "pack_codes_numpy",
    "quantize",
    "split_gated",
    "unpack",
    "unpack_codes_numpy",
]
