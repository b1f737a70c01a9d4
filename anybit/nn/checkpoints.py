"""Import GPTQ and AWQ checkpoints into :class:`QuantizedLinear` — codes to codes, never through float.

Formats (``/work/shared/reference/anchors.md`` §4; all integers little-endian, bits LSB-first):

* **GPTQ** (AutoGPTQ / GPTQModel, ``quant_method: gptq``): ``qweight`` int32 [K·b/32, N] holds the b-bit
  codes of each output column n as one bit stream along K (code k at bits [k·b, (k+1)·b) of the column's
  words, so 3-bit codes straddle words); ``qzeros`` int32 [K/G, N·b/32] the zero points as one stream along
  N per group; ``scales`` fp16 [K/G, N]; ``g_idx`` int32 [K] the group of each input feature (act-order).
  ``checkpoint_format: gptq`` (v1) stores zero − 1, ``gptq_v2`` the zero itself. Dequantization:
  ``w[n, k] = scales[g, n] · (q[n, k] − zero[g, n])`` with ``g = g_idx[k]``.
* **AWQ** (AutoAWQ "GEMM" version, ``quant_method: awq``): ``qweight`` int32 [K, N/8], each word the 4-bit
  codes of 8 consecutive output columns in the nibble order [0, 2, 4, 6, 1, 3, 5, 7] (nibble i holds column
  ``order[i]``); ``qzeros`` int32 [K/G, N/8] the same way; ``scales`` fp16 [K/G, N]. Dequantization as GPTQ
  with ``g = k // G`` and the zeros as stored.

Both become ``QuantizedWeight(codes [N, K], uint<b>, group_size, scales, zeros)`` — the anybit convention
``w = (decode(q) − z) · s`` is exactly theirs — and are packed. Two refinements:

* **Symmetric checkpoints** (every zero = 2^(b−1), GPTQ's usual ``sym: true``) become signed ``int<b>``
  codes ``q − 2^(b−1)`` (the bit pattern ``q XOR 2^(b−1)``) with no zero points: the same weights, and the
  kernel skips the zero subtraction (Marlin's ``uint4b8`` idea).
* **Act-order** (``desc_act: true``): GPTQ quantized the input features in a permuted order, so ``g_idx`` is
  not ``k // G``. A stable sort of ``g_idx`` gives the permutation ``perm`` that makes every group
  contiguous; the layer stores the codes with columns ``perm`` (so scale group g covers columns
  [g·G, (g+1)·G)) and ``perm`` itself as ``input_permutation``, and ``forward`` computes
  ``x[..., perm] @ W[:, perm]ᵀ`` = ``x @ Wᵀ``. This needs every group to have exactly G members, which
  GPTQ's act-order always produces; anything else is refused.

:func:`load_quantized_linears` does this for every layer of a model given a checkpoint's state dict and its
``quantization_config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

import anybit
from anybit import kernels
from anybit.nn.convert import _set_submodule
from anybit.nn.linear import QuantizedLinear

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
# AWQ_REVERSE_ORDER[j] = the nibble that holds column j of an 8-column block.
AWQ_REVERSE_ORDER = tuple(AWQ_ORDER.index(j) for j in range(8))


def unpack_int32_stream(words: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Codes from int32 words along the last dim read as one LSB-first bit stream of ``bits``-bit values.

    ``words [..., W]`` → int64 ``[..., count]``, code i at bits [i·bits, (i+1)·bits) of the stream (word w
    holding stream bits [32w, 32w + 32)). Works for any 1–8 bits, including 3 (values straddle words).
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"expected 1 to 8 bits, got {bits}")
    if count * bits > words.shape[-1] * 32:
        raise ValueError(f"expected at least {count * bits} bits of words, got {words.shape[-1] * 32}")
    stream = words.to(torch.int64) & 0xFFFFFFFF  # the words as unsigned 32-bit values
    # A zero word after the end, so that the straddle read of the last code stays in bounds.
    stream = torch.cat([stream, torch.zeros_like(stream[..., :1])], dim=-1)
    start = torch.arange(count, device=words.device) * bits
    word, offset = start // 32, start % 32
    low = stream[..., word] >> offset
    high = stream[..., word + 1] << (32 - offset)
    return (low | high) & ((1 << bits) - 1)


def _as_uint8(codes: torch.Tensor) -> torch.Tensor:
    return codes.to(torch.uint8).contiguous()


def quantized_weight_from_codes(
    codes: torch.Tensor,
    zeros: torch.Tensor,
    scales: torch.Tensor,
    *,
    bits: int,
    group_size: int,
    signed_if_symmetric: bool = True,
) -> kernels.QuantizedWeight:
    """A ``QuantizedWeight`` from unsigned codes [N, K], integer zeros and scales [K/G, N].

    With ``signed_if_symmetric`` and every zero equal to 2^(b−1), the codes become signed ``int<b>`` (the
    same weights, no zero points); otherwise ``uint<b>`` with the zeros, in the scales' dtype.
    """
    scales = scales.contiguous()
    middle = 1 << (bits - 1)
    if signed_if_symmetric and bool((zeros == middle).all()):
        signed = codes.to(torch.int64) ^ middle  # two's complement bits of q − 2^(b−1)
        return kernels.QuantizedWeight(
            _as_uint8(signed), anybit.dtype(f"int{bits}"), group_size, scales, None
        )
    if int(zeros.min()) < 0 or int(zeros.max()) > (1 << bits):
        raise ValueError(
            f"expected zero points in [0, {1 << bits}], got [{int(zeros.min())}, {int(zeros.max())}]"
        )
    return kernels.QuantizedWeight(
        _as_uint8(codes), anybit.dtype(f"uint{bits}"), group_size, scales, zeros.to(scales.dtype).contiguous()
    )


def act_order_permutation(g_idx: torch.Tensor, group_size: int) -> torch.Tensor | None:
    """The input permutation that makes GPTQ's groups contiguous, or None when ``g_idx`` is already k // G.

    Raises
    ------
    ValueError
        When some group does not have exactly ``group_size`` members (no permutation can make the groups
        the contiguous [g·G, (g+1)·G) ranges the kernels use).
    """
    g_idx = g_idx.to(torch.int64)
    expected = torch.arange(g_idx.numel(), device=g_idx.device) // group_size
    if torch.equal(g_idx, expected):
        return None
    permutation = torch.argsort(g_idx, stable=True)
    if not torch.equal(g_idx[permutation], expected):
        counts = torch.bincount(g_idx).tolist()
        raise ValueError(
            f"g_idx: expected every group to hold exactly {group_size} input features, got group sizes "
            f"{counts[:8]}{' ...' if len(counts) > 8 else ''}"
        )
    return permutation


def gptq_linear(
    qweight: torch.Tensor,
    qzeros: torch.Tensor,
    scales: torch.Tensor,
    g_idx: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    bits: int,
    group_size: int,
    checkpoint_format: str = "gptq",
    signed_if_symmetric: bool = True,
) -> QuantizedLinear:
    """A :class:`QuantizedLinear` from one GPTQ layer's tensors (see the module docstring for the format).

    Parameters
    ----------
    qweight, qzeros, scales, g_idx, bias
        The checkpoint's tensors for the layer (on any device; the layer is built there).
    bits
        1–8 (GPTQ uses 2, 3, 4, 8).
    group_size
        G; -1 for one group over all of K.
    checkpoint_format
        ``"gptq"`` (v1: qzeros hold zero − 1) or ``"gptq_v2"`` (qzeros hold the zero).
    signed_if_symmetric
        Store symmetric layers as signed codes without zero points (see the module docstring).
    """
    if checkpoint_format not in ("gptq", "gptq_v2"):
        raise ValueError(f"expected checkpoint_format 'gptq' or 'gptq_v2', got {checkpoint_format!r}")
    k = qweight.shape[0] * 32 // bits
    n = qweight.shape[1]
    group_size = k if group_size == -1 else group_size
    groups = k // group_size
    if tuple(scales.shape) != (groups, n):
        raise ValueError(
            f"GPTQ scales: expected [{groups}, {n}] for K={k}, N={n}, G={group_size}, "
            f"got {list(scales.shape)}"
        )
    codes = unpack_int32_stream(qweight.t().contiguous(), bits, k)  # [N, K]
    zeros = unpack_int32_stream(qzeros, bits, n)  # [K/G, N]
    if checkpoint_format == "gptq":
        # v1 stores zero − 1 (modulo 2^b); its kernels add the 1 back without wrapping, so do we.
        zeros = zeros + 1
    permutation = None
    if g_idx is not None:
        permutation = act_order_permutation(g_idx, group_size)
        if permutation is not None:
            codes = codes[:, permutation]
    quantized = quantized_weight_from_codes(
        codes, zeros, scales, bits=bits, group_size=group_size, signed_if_symmetric=signed_if_symmetric
    )
    return QuantizedLinear.from_quantized(quantized, bias, input_permutation=permutation)


def awq_linear(
    qweight: torch.Tensor,
    qzeros: torch.Tensor,
    scales: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    group_size: int,
    bits: int = 4,
    signed_if_symmetric: bool = True,
) -> QuantizedLinear:
    """A :class:`QuantizedLinear` from one AWQ ("GEMM" version) layer's tensors (4-bit; see the module
    docstring for the format)."""
    if bits != 4:
        raise ValueError(f"AWQ GEMM checkpoints are 4-bit (nibble order {list(AWQ_ORDER)}), got bits={bits}")
    k, n = qweight.shape[0], qweight.shape[1] * 8
    group_size = k if group_size == -1 else group_size
    groups = k // group_size
    if tuple(scales.shape) != (groups, n) or tuple(qzeros.shape) != (groups, n // 8):
        raise ValueError(
            f"AWQ: expected scales [{groups}, {n}] and qzeros [{groups}, {n // 8}], got "
            f"{list(scales.shape)} and {list(qzeros.shape)}"
        )
    reverse = torch.tensor(AWQ_REVERSE_ORDER, device=qweight.device)

    def columns_in_order(words: torch.Tensor) -> torch.Tensor:
        nibbles = unpack_int32_stream(words, 4, n)  # [rows, N], nibble order within each 8-column block
        return nibbles.reshape(words.shape[0], n // 8, 8)[..., reverse].reshape(words.shape[0], n)

    codes = columns_in_order(qweight).t()  # [N, K]
    zeros = columns_in_order(qzeros)  # [K/G, N]
    quantized = quantized_weight_from_codes(
        codes, zeros, scales, bits=4, group_size=group_size, signed_if_symmetric=signed_if_symmetric
    )
    return QuantizedLinear.from_quantized(quantized, bias)


def load_quantized_linears(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    quantization_config: Mapping[str, Any],
    *,
    device: torch.device | str | None = None,
) -> list[str]:
    """Replace every layer of ``model`` that ``state_dict`` holds in GPTQ or AWQ form by a QuantizedLinear.

    A layer ``name`` is converted when ``name.qweight`` is in the state dict (with ``name.qzeros``,
    ``name.scales`` and optionally ``name.g_idx`` and ``name.bias``). Load the remaining (float) tensors with
    ``model.load_state_dict(state_dict, strict=False)`` afterwards; the converted layers' own keys differ.

    Parameters
    ----------
    model
        The model built from the checkpoint's config (e.g. ``LlamaForCausalLM(config)``).
    state_dict
        The checkpoint's tensors (e.g. from ``safetensors.torch.load_file``).
    quantization_config
        The checkpoint's ``quantization_config``: ``quant_method`` ("gptq" or "awq"), ``bits``,
        ``group_size``, and for GPTQ ``checkpoint_format`` ("gptq" or "gptq_v2"; default "gptq").
    device
        Where to build the layers (default: where the checkpoint's tensors are).

    Returns
    -------
    list[str]
        The names of the converted layers.
    """
    method = quantization_config.get("quant_method")
    bits = int(quantization_config.get("bits", quantization_config.get("w_bit", 4)))
    group_size = int(quantization_config.get("group_size", quantization_config.get("q_group_size", 128)))
    if method not in ("gptq", "awq"):
        raise ValueError(f"expected quant_method 'gptq' or 'awq', got {method!r}")
    prefixes = sorted(key.removesuffix(".qweight") for key in state_dict if key.endswith(".qweight"))
    for name in prefixes:

        def tensor(suffix: str, name: str = name) -> torch.Tensor | None:
            value = state_dict.get(f"{name}.{suffix}")
            return value if value is None or device is None else value.to(device)

        if method == "gptq":
            layer = gptq_linear(
                tensor("qweight"),
                tensor("qzeros"),
                tensor("scales"),
                tensor("g_idx"),
                tensor("bias"),
                bits=bits,
                group_size=group_size,
                checkpoint_format=quantization_config.get("checkpoint_format", "gptq"),
            )
        else:
            layer = awq_linear(
                tensor("qweight"),
                tensor("qzeros"),
                tensor("scales"),
                tensor("bias"),
                bits=bits,
                group_size=group_size,
            )
        _set_submodule(model, name, layer)
    return prefixes
