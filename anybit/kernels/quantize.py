"""Group-wise round-to-nearest quantization of a weight [N, K] into any 1–8-bit anybit type, and its reference
dequantization.

Scheme (as in the Tilus template, digest §4.4): for each group of ``group_size`` consecutive k of one output
channel n, a scale s (and for unsigned types a zero point z) in the activation dtype; the weight is
``w = (decode(q) − z) · s``. Signed ints and floats are symmetric: s maps the group's absmax onto the type's
largest value. Unsigned ints are asymmetric by default: s = (max − min) / (2^b − 1), z = round(−min / s).

Everything is torch, so it runs on the tensor's device (CPU or CUDA); floats are encoded by a nearest search
over the type's (at most 256) values, ties to the even code (``anybit.dtypes.encode``'s rule for
types with a mantissa).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from anybit.dtypes import DataType, decode
from anybit.dtypes import dtype as resolve_dtype

ACTIVATION_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class QuantizedWeight:
    """A quantized weight in its natural (unpacked) form.

    Attributes
    ----------
    codes
        [N, K] uint8 bit codes of ``dtype`` (values < 2**nbits; two's complement low bits for signed ints).
    dtype
        The anybit weight type (uint1..uint8, int2..int8, floatN_eXmY with N ≤ 8).
    group_size
        Consecutive k sharing one scale (K for per-output-channel scales).
    scales
        [K // group_size, N] in the activation dtype.
    zeros
        [K // group_size, N] in the activation dtype (integers), unsigned types only; else None.
    """

    codes: torch.Tensor
    dtype: DataType
    group_size: int
    scales: torch.Tensor
    zeros: torch.Tensor | None

    @property
    def n(self) -> int:
        """Output features (rows of the weight)."""
        return self.codes.shape[0]

    @property
    def k(self) -> int:
        """Input features (columns of the weight)."""
        return self.codes.shape[1]

    @property
    def act_dtype(self) -> torch.dtype:
        """The activation dtype of the scales."""
        return self.scales.dtype


def check_weight_dtype(dtype) -> DataType:
    """Resolve ``dtype`` and check that it is a 1–8-bit int, uint or float type a weight can have."""
    data_type = resolve_dtype(dtype)
    if data_type.kind not in ("int", "uint", "float") or data_type.nbits > 8:
        raise ValueError(
            f"expected a 1-8-bit weight type (uint1..uint8, int2..int8, floatN_eXmY), got {data_type.name}"
        )
    return data_type


def check_act_dtype(act_dtype) -> torch.dtype:
    """Check that ``act_dtype`` is torch.float16 or torch.bfloat16."""
    if act_dtype not in ACTIVATION_DTYPES:
        raise ValueError(f"expected act_dtype torch.float16 or torch.bfloat16, got {act_dtype}")
    return act_dtype


def decode_table(dtype: DataType, device: torch.device | str = "cpu") -> torch.Tensor:
    """float32 value of every code of ``dtype`` (index = code), on ``device``."""
    codes = np.arange(1 << dtype.nbits, dtype=np.uint8 if dtype.nbits <= 8 else np.uint16)
    return torch.from_numpy(decode(codes, dtype).astype(np.float32)).to(device)


def decode_codes(codes: torch.Tensor, dtype: DataType) -> torch.Tensor:
    """float32 values of integer ``codes`` of ``dtype`` (a table lookup, on the codes' device)."""
    return decode_table(dtype, codes.device)[codes.long()]


def _encode_float(values: torch.Tensor, dtype: DataType) -> torch.Tensor:
    """Nearest code of ``dtype`` for each finite float32 value (ties to the even code; saturating)."""
    table = decode_table(dtype)
    codes = torch.arange(table.numel(), dtype=torch.int64)
    finite = torch.isfinite(table)
    # One code per value; −0 dropped in favour of +0 (equal values; the sign of zero is irrelevant here).
    keep = finite & ~((table == 0) & torch.signbit(table))
    order = torch.argsort(table[keep], stable=True)
    sorted_values = table[keep][order].to(values.device)
    sorted_codes = codes[keep][order].to(values.device)
    midpoints = (sorted_values[1:] + sorted_values[:-1]) / 2
    below = torch.bucketize(values, midpoints, right=False)  # a tie → the lower neighbour
    above = torch.bucketize(values, midpoints, right=True)  # a tie → the upper neighbour
    pick = torch.where((sorted_codes[above] % 2) == 0, above, below)
    return sorted_codes[pick].to(torch.uint8)


def _group_extrema(grouped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return grouped.amin(dim=-1), grouped.amax(dim=-1)


def _as_scale(raw: torch.Tensor, act_dtype: torch.dtype) -> torch.Tensor:
    """Scales rounded to the activation dtype (the dequantizer uses those), never 0 (all-zero groups)."""
    scales = raw.to(act_dtype)
    return torch.where(scales == 0, torch.ones_like(scales), scales)


def _divide(values: torch.Tensor, constant: float) -> torch.Tensor:
    """``values / constant`` correctly rounded on every device.

    torch divides a CUDA tensor by a Python scalar as a multiplication by its reciprocal, which can be one ulp
    off the CPU's true division and then round a scale differently; dividing by a full tensor is IEEE division
    everywhere, so CPU and GPU quantize to the same scales.
    """
    return values / torch.full_like(values, constant)


def quantize(
    weight: torch.Tensor,
    dtype,
    *,
    group_size: int = 128,
    zero_point: bool | None = None,
    act_dtype: torch.dtype = torch.float16,
) -> QuantizedWeight:
    """Quantize ``weight`` [N, K] (torch.nn.Linear convention) group-wise with round-to-nearest.

    Parameters
    ----------
    weight
        Floating-point [N, K] tensor on any device.
    dtype
        The weight type: any anybit 1–8-bit int, uint or float type (or its name).
    group_size
        k per scale group; must divide K. ``-1`` (or K) gives one scale per output channel.
    zero_point
        Asymmetric quantization with zero points; only for unsigned ints. None: True for uint types.
    act_dtype
        torch.float16 or torch.bfloat16: the dtype of scales, zeros and activations.

    Returns
    -------
    QuantizedWeight
        Codes, scales and (for asymmetric quantization) zeros, on the weight's device.
    """
    data_type = check_weight_dtype(dtype)
    check_act_dtype(act_dtype)
    if weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"expected a floating-point [N, K] weight, got {weight.dtype} {list(weight.shape)}")
    n, k = weight.shape
    group_size = k if group_size == -1 else group_size
    if not isinstance(group_size, int) or group_size < 1 or k % group_size:
        raise ValueError(f"expected a group_size dividing K = {k} (or -1 for per channel), got {group_size}")
    if zero_point is None:
        zero_point = data_type.kind == "uint"
    if zero_point and data_type.kind != "uint":
        raise ValueError(f"zero points are for unsigned int types, got {data_type.name}")
    groups = weight.detach().float().reshape(n, k // group_size, group_size)
    low, high = _group_extrema(groups)
    zeros = None
    if data_type.kind == "uint":
        top = float(data_type.max_value)
        if zero_point:
            low, high = low.clamp(max=0), high.clamp(min=0)  # the range holds 0, so z is a code
            scales = _as_scale(_divide(high - low, top), act_dtype)
            zeros = torch.round(-low / scales.float()).clamp(0, top)
            q = torch.round(groups / scales.float()[..., None]) + zeros[..., None]
            zeros = zeros.to(act_dtype)
        else:
            scales = _as_scale(_divide(high.clamp(min=0), top), act_dtype)
            q = torch.round(groups / scales.float()[..., None])
        codes = q.clamp(0, top).to(torch.uint8)
    else:
        absmax = torch.maximum(-low, high)
        scales = _as_scale(_divide(absmax, float(data_type.max_value)), act_dtype)
        scaled = groups / scales.float()[..., None]
        if data_type.kind == "int":
            q = torch.round(scaled).clamp(data_type.min_value, data_type.max_value).to(torch.int16)
            codes = (q & ((1 << data_type.nbits) - 1)).to(torch.uint8)
        else:
            limit = float(data_type.max_value)
            codes = _encode_float(scaled.clamp(-limit, limit), data_type)
    return QuantizedWeight(
        codes=codes.reshape(n, k).contiguous(),
        dtype=data_type,
        group_size=group_size,
        scales=scales.t().contiguous(),
        zeros=None if zeros is None else zeros.t().contiguous(),
    )


def dequantize(q: QuantizedWeight) -> torch.Tensor:
    """The float32 [N, K] weight ``(decode(codes) − zeros) · scales`` of ``q`` (the reference)."""
    values = decode_codes(q.codes, q.dtype).reshape(q.n, q.k // q.group_size, q.group_size)
    scales = q.scales.float().t()[..., None]
    if q.zeros is not None:
        values = values - q.zeros.float().t()[..., None]
    return (values * scales).reshape(q.n, q.k)
