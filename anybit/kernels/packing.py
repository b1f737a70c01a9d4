"""Packing a :class:`QuantizedWeight` into the kernels' byte layout (:mod:`anybit.kernels.layout`) and back.

``pack`` runs the VM program :class:`~anybit.kernels.pack_scripts.PackWeight` where the codes live: a GPU
launch for CUDA tensors, the interpreter for small CPU weights. Large CPU weights take the numpy reference
(:func:`pack_codes_numpy`), which the tests check byte for byte against the VM program. A planar layout
(:attr:`~anybit.kernels.PackedLayout.planes`) packs each plane's bits alone with its plane layout and stores
the planes of every warp tile back to back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

import anybit
from anybit.kernels.checks import run_kernel
from anybit.kernels.layout import PackedLayout, check_act_compatible, choose_layout
from anybit.kernels.pack_scripts import pack_script, unpack_script
from anybit.kernels.quantize import QuantizedWeight

Method = Literal["auto", "vm", "numpy"]

# Above this many weights a CPU weight is packed with numpy, ~5x faster than the interpreter (0.3 s for 2M).
INTERPRETER_LIMIT = 1 << 16


def check_zero_points(zeros: torch.Tensor | None, dtype: anybit.DataType) -> None:
    """Zero points must be codes of ``dtype``: integers in [0, 2^bits) (GPTQ's and AWQ's convention)."""
    if zeros is None:
        return
    top = 2**dtype.nbits
    values = zeros.float()
    bad = (values != values.round()) | (values < 0) | (values >= top)
    if bool(bad.any()):
        example = float(values[bad].flatten()[0])
        raise ValueError(
            f"zero points must be integers in [0, {top}) (codes of {dtype.name}, as GPTQ and AWQ store "
            f"them), got {example}; round them, or fold a fractional offset into the bias"
        )


@dataclass(frozen=True)
class PackedWeight:
    """A quantized weight in the kernels' packed byte layout.

    Attributes
    ----------
    data
        uint8 tensor of ``layout.packed_shape``.
    scales, zeros
        As in :class:`QuantizedWeight`: [K // group_size, N] in ``act_dtype`` (zeros: None or unsigned only;
        zero points are codes, integers in [0, 2^bits), as in GPTQ and AWQ: the kernels fold them into the
        conversion, exact for such values; :func:`pack` checks).
    layout
        The packing.
    act_dtype
        torch.float16 or torch.bfloat16.
    """

    data: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor | None
    layout: PackedLayout
    act_dtype: torch.dtype

    @property
    def dtype(self) -> anybit.DataType:
        """The weight type."""
        return self.layout.dtype

    @property
    def shape(self) -> tuple[int, int]:
        """The weight's shape [N, K]."""
        return (self.layout.n, self.layout.k)

    @property
    def device(self) -> torch.device:
        """Where the packed data lives."""
        return self.data.device


def _element_grid(layout: PackedLayout) -> tuple[np.ndarray, np.ndarray]:
    """(k, n) within a warp tile of each thread's local elements, in stored order: two int arrays
    [32, local_size]."""
    coordinates = layout.code_layout.map_array()
    return coordinates[..., 0], coordinates[..., 1]


def _planes(layout: PackedLayout):
    """(plane layout, first byte within a warp tile, first code bit, code mask, bit stride) of each plane
    (the stride: :attr:`~anybit.kernels.PackedLayout.top_plane_stride` for the top plane, else 1)."""
    planes = layout.plane_layouts()
    return [
        (plane, start, offset, (1 << plane.nbits) - 1, layout.top_plane_stride if p == len(planes) - 1 else 1)
        for p, (plane, start, offset) in enumerate(
            zip(planes, layout.plane_byte_offsets, layout.plane_bit_offsets, strict=True)
        )
    ]


def spread_word_bits(words: np.ndarray, stride: int, *, inverse: bool = False) -> np.ndarray:
    """The numpy reference of a spread 2-bit plane: each uint32 word's bit ``2j + b`` (bit b of code slot j,
    as ``uint2`` codes are stored) moved to ``(j mod stride) + stride · b + 2 · stride · (j div stride)``
    (``inverse``: back)."""
    words = np.asarray(words, dtype=np.uint32)
    out = np.zeros_like(words)
    for position in range(32):
        slot, bit = divmod(position, 2)
        spread = slot % stride + stride * bit + 2 * stride * (slot // stride)
        source, target = (spread, position) if inverse else (position, spread)
        out |= ((words >> np.uint32(source)) & np.uint32(1)) << np.uint32(target)
    return out


def _spread_plane_bytes(data: np.ndarray, stride: int, *, inverse: bool = False) -> np.ndarray:
    """A packed plane's bytes [..., tile_bytes] with every thread's words spread (every 4 aligned bytes of a
    plane are one little-endian word of one thread: planes fill whole words, in vectors of 4 to 16 bytes)."""
    if stride == 1:
        return data
    words = np.ascontiguousarray(data).view("<u4")
    return spread_word_bits(words, stride, inverse=inverse).astype("<u4").view(np.uint8).reshape(data.shape)


def pack_codes_numpy(codes: np.ndarray, layout: PackedLayout) -> np.ndarray:
    """The numpy reference of packing: uint8 codes [N, K] → uint8 ``layout.packed_shape``."""
    if layout.planar:
        # [K/KC, N/NPW, 32·bpt_p] per plane: concatenated on the last axis = back to back in each warp tile.
        codes = np.asarray(codes, dtype=np.uint8)
        parts = [
            _spread_plane_bytes(pack_codes_numpy((codes >> at) & mask, plane), stride)
            for plane, _, at, mask, stride in _planes(layout)
        ]
        return np.concatenate(parts, axis=-1)
    n, k = layout.n, layout.k
    kc, npw, b = layout.k_chunk, layout.n_per_warp, layout.nbits
    tile_k, tile_n = _element_grid(layout)
    blocks = np.ascontiguousarray(codes, dtype=np.uint8).reshape(n // npw, npw, k // kc, kc)
    # Advanced indices apart → broadcast dims first: [32, L, N/npw, K/kc] → [K/kc, N/npw, 32, L].
    per_thread = blocks[:, tile_n, :, tile_k].transpose(3, 2, 0, 1)
    bits = np.unpackbits(per_thread[..., None], axis=-1, bitorder="little")[..., :b]
    thread_bytes = np.packbits(bits.reshape(*per_thread.shape[:3], -1), axis=-1, bitorder="little")
    g = layout.vector_bytes
    vectors = thread_bytes.reshape(*thread_bytes.shape[:3], layout.bytes_per_thread // g, g)
    return np.ascontiguousarray(vectors.transpose(0, 1, 3, 2, 4)).reshape(layout.packed_shape)


def unpack_codes_numpy(data: np.ndarray, layout: PackedLayout) -> np.ndarray:
    """The numpy reference of unpacking: uint8 ``layout.packed_shape`` → uint8 codes [N, K]."""
    if layout.planar:
        data = np.asarray(data, dtype=np.uint8).reshape(layout.packed_shape)
        codes = np.zeros((layout.n, layout.k), dtype=np.uint8)
        for plane, start, offset, _, stride in _planes(layout):
            plane_bytes = _spread_plane_bytes(
                data[..., start : start + plane.tile_bytes], stride, inverse=True
            )
            codes |= unpack_codes_numpy(plane_bytes, plane) << offset
        return codes
    n, k = layout.n, layout.k
    kc, npw, b = layout.k_chunk, layout.n_per_warp, layout.nbits
    g = layout.vector_bytes
    chunks, columns = k // kc, n // npw
    vectors = np.asarray(data, dtype=np.uint8).reshape(chunks, columns, layout.bytes_per_thread // g, 32, g)
    thread_bytes = vectors.transpose(0, 1, 3, 2, 4).reshape(chunks, columns, 32, layout.bytes_per_thread)
    bits = np.unpackbits(thread_bytes, axis=-1, bitorder="little").reshape(chunks, columns, 32, -1, b)
    padded = np.zeros((*bits.shape[:-1], 8), dtype=np.uint8)
    padded[..., :b] = bits
    per_thread = np.packbits(padded, axis=-1, bitorder="little")[..., 0]  # [K/kc, N/npw, 32, L]
    tile_k, tile_n = _element_grid(layout)
    blocks = np.empty((columns, npw, chunks, kc), dtype=np.uint8)
    blocks[:, tile_n, :, tile_k] = per_thread.transpose(2, 3, 1, 0)
    return blocks.reshape(n, k)


def _use_vm(device: torch.device, size: int, method: Method) -> bool:
    if method not in ("auto", "vm", "numpy"):
        raise ValueError(f"expected method 'auto', 'vm' or 'numpy', got {method!r}")
    if device.type != "cpu":
        if method == "numpy":
            raise ValueError("method='numpy' needs CPU tensors")
        return True
    return method == "vm" or (method == "auto" and size <= INTERPRETER_LIMIT)


def _pack_vm(codes: torch.Tensor, layout: PackedLayout, stride: int = 1) -> torch.Tensor:
    """The packing program over ``codes`` [N, K] (planar: once per plane on its bits, then concatenated;
    ``stride``: a plane's bit spacing)."""
    if layout.planar:
        parts = [
            _pack_vm((codes >> offset) & mask, plane, stride)
            for plane, _, offset, mask, stride in _planes(layout)
        ]
        return torch.cat(parts, dim=-1)
    data = torch.empty(layout.packed_shape, dtype=torch.uint8, device=codes.device)
    pl = layout
    script = pack_script(pl.nbits, pl.k_chunk, pl.n_per_warp, pl.operand, pl.plane, stride)
    run_kernel(script, codes.contiguous(), data, layout.n, layout.k)
    return data


def _unpack_vm(data: torch.Tensor, layout: PackedLayout, stride: int = 1) -> torch.Tensor:
    """The unpacking program over ``data`` (planar: once per plane, the plane codes shifted and OR-ed)."""
    if layout.planar:
        codes = torch.zeros((layout.n, layout.k), dtype=torch.uint8, device=data.device)
        for plane, start, offset, _, stride in _planes(layout):
            codes |= _unpack_vm(data[..., start : start + plane.tile_bytes], plane, stride) << offset
        return codes
    codes = torch.empty((layout.n, layout.k), dtype=torch.uint8, device=data.device)
    pl = layout
    script = unpack_script(pl.nbits, pl.k_chunk, pl.n_per_warp, pl.operand, pl.plane, stride)
    run_kernel(script, data.contiguous(), codes, layout.n, layout.k)
    return codes


def pack(q: QuantizedWeight, *, layout: PackedLayout | None = None, method: Method = "auto") -> PackedWeight:
    """Pack a quantized weight for the decode and dequantize kernels.

    Parameters
    ----------
    q
        The natural quantized weight (codes [N, K]).
    layout
        The packing; default :func:`choose_layout` for the type, shape, group size and activation dtype.
    method
        "vm": the packing program (a GPU launch, or the interpreter on CPU); "numpy": the reference (CPU
        only); "auto": the VM program, except for large CPU weights.

    Raises
    ------
    ValueError
        For shapes the layout cannot take, a layout that does not match ``q``, a float type the
        activation dtype cannot hold (float16 with float8_e6m1, …), or zero points that are not codes.
    """
    n, k = q.codes.shape
    layout = layout or choose_layout(q.dtype, n, k, q.group_size, act_dtype=q.act_dtype)
    found = (layout.dtype, layout.n, layout.k, layout.group_size)
    if found != (q.dtype, n, k, q.group_size):
        raise ValueError(
            f"expected a layout for {q.dtype.name} [N={n}, K={k}] with group size {q.group_size}, got one "
            f"for {layout.dtype.name} [N={layout.n}, K={layout.k}] with group size {layout.group_size}"
        )
    check_act_compatible(q.dtype, q.act_dtype)
    check_zero_points(q.zeros, q.dtype)
    codes = q.codes.contiguous()
    if codes.dtype != torch.uint8:
        raise ValueError(f"expected uint8 codes, got {codes.dtype}")
    if _use_vm(codes.device, n * k, method):
        data = _pack_vm(codes, layout)
        if data.is_cuda:
            # The decode kernel reads weights before it waits for the kernel launched ahead of it
            # (wait_prior_grids): the packed bytes and the scales must be written before it starts, not
            # by the kernel right before it. Packing is offline: one synchronization costs nothing.
            torch.cuda.synchronize(data.device)
    else:
        data = torch.from_numpy(pack_codes_numpy(codes.numpy(), layout))
    return PackedWeight(data, q.scales, q.zeros, layout, q.act_dtype)


def unpack(p: PackedWeight, *, method: Method = "auto") -> QuantizedWeight:
    """The exact inverse of :func:`pack` (``method`` as there)."""
    layout = p.layout
    n, k = layout.n, layout.k
    data = p.data.contiguous()
    if tuple(data.shape) != layout.packed_shape or data.dtype != torch.uint8:
        raise ValueError(
            f"expected uint8 data of shape {list(layout.packed_shape)}, got {data.dtype} {list(data.shape)}"
        )
    if _use_vm(data.device, n * k, method):
        codes = _unpack_vm(data, layout)
    else:
        codes = torch.from_numpy(unpack_codes_numpy(data.numpy(), layout))
    return QuantizedWeight(codes, layout.dtype, layout.group_size, p.scales, p.zeros)
