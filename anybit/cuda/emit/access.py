"""Shared helpers of the memory emitters: tile indices, bounds conditions, piece loads and stores."""

from __future__ import annotations

from anybit.cuda.emitter import CodegenError, EmitContext, where
from anybit.cuda.expressions import THREAD
from anybit.cuda.registers import read_bits, write_bits
from anybit.cuda.vectorize import Piece
from anybit.ir import Instruction, RegisterTensor
from anybit.ir.expr import binary, constant_value

_PIECE_TYPES = {16: "uint4", 8: "uint2", 4: "uint32_t", 2: "unsigned short", 1: "unsigned char"}
_FIELDS = ("x", "y", "z", "w")


def add(a, b):
    """``a + b`` folding Python ints."""
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    return binary("add", a, b)


def tile_index(layout, offsets, i: int, thread=THREAD) -> tuple:
    """The memory index of local element ``i`` of ``thread``: its logical index plus ``offsets``.

    A tile of lower rank than the tensor covers its trailing dimensions (the leading ones are fixed).
    """
    logical = layout.logical(thread, i)
    lead = len(offsets) - len(logical)
    return tuple(offsets[:lead]) + tuple(add(o, c) for o, c in zip(offsets[lead:], logical, strict=True))


def checked_dims(shape, offsets, tile_shape) -> list[int]:
    """Dimensions whose bounds check cannot be elided (constant shape and offsets proving it in range)."""
    tile_shape = (1,) * (len(shape) - len(tile_shape)) + tuple(tile_shape)
    dims = []
    for k, (extent, offset, size) in enumerate(zip(shape, offsets, tile_shape, strict=True)):
        e, o = constant_value(extent), constant_value(offset)
        if isinstance(e, int) and isinstance(o, int) and 0 <= o and o + size <= e:
            continue
        dims.append(k)
    return dims


def in_bounds(ctx: EmitContext, index, shape, dims) -> list[str]:
    """C conditions that ``index`` lies inside ``shape`` along ``dims`` (``>= 0`` only where not proven).

    Built as expressions, so a loop-invariant condition (a tile's row check) is hoisted out of loops.
    """
    conditions = []
    for k in dims:
        if not ctx.printer.is_nonnegative(index[k]):
            conditions.append(ctx.expr(binary("ge", index[k], 0)))
        conditions.append(ctx.expr(binary("lt", index[k], shape[k])))
    return conditions


def same_layout_mask(inst: Instruction, mask: RegisterTensor | None, value: RegisterTensor) -> None:
    """Masks are read element by element, so they must share the value's layout."""
    if mask is not None and mask.layout != value.layout:
        raise CodegenError(
            f"{inst.name}{where(inst)}: the mask's layout {mask.layout} differs from the data's layout "
            f"{value.layout}; expected the same layout (annotate the mask's layout)"
        )


def load_piece(ctx: EmitContext, array: str, piece: Piece, address: str) -> None:
    """Load ``piece.nbytes`` at C byte address ``address`` into the register bits of ``piece``."""
    ctype = _PIECE_TYPES[piece.nbytes]
    value = ctx.fresh("v")
    ctx.emit(f"{ctype} {value} = *(const {ctype}*)({address});")
    if piece.nbytes >= 4 and piece.local_bit % 32 == 0:
        word = piece.local_bit // 32
        if piece.nbytes == 4:
            ctx.emit(f"{array}[{word}] = {value};")
        else:
            for k in range(piece.nbytes // 4):
                ctx.emit(f"{array}[{word + k}] = {value}.{_FIELDS[k]};")
        return
    if piece.nbytes > 4:
        for k in range(piece.nbytes // 4):
            ctx.emit(*write_bits(array, piece.local_bit + 32 * k, 32, f"{value}.{_FIELDS[k]}"))
    else:
        ctx.emit(*write_bits(array, piece.local_bit, 8 * piece.nbytes, value))


def store_piece(ctx: EmitContext, array: str, piece: Piece, address: str) -> None:
    """Store the register bits of ``piece`` to C byte address ``address``."""
    ctype = _PIECE_TYPES[piece.nbytes]
    if piece.nbytes > 4:
        words = [read_bits(array, piece.local_bit + 32 * k, 32) for k in range(piece.nbytes // 4)]
        ctx.emit(f"*({ctype}*)({address}) = make_{ctype}({', '.join(words)});")
    else:
        bits = read_bits(array, piece.local_bit, 8 * piece.nbytes)
        ctx.emit(f"*({ctype}*)({address}) = ({ctype}){bits};")


def load_element(ctx: EmitContext, array: str, i: int, nbits: int, base: str, element_offset: str) -> None:
    """Load one element (any bit width) at element offset ``element_offset`` of byte pointer ``base``."""
    if nbits % 8 == 0:
        piece = Piece(i * nbits, nbits // 8, 0)
        load_piece(ctx, array, piece, f"{base} + (long long)({element_offset}) * {nbits // 8}")
        return
    bits = f"ab_load_bits({base}, (long long)({element_offset}) * {nbits}, {nbits})"
    ctx.emit(*write_bits(array, i * nbits, nbits, bits))


def store_element(ctx: EmitContext, array: str, i: int, nbits: int, base: str, element_offset: str) -> None:
    """Store one element; sub-byte elements use word atomics (neighbours belong to other threads)."""
    if nbits % 8 == 0:
        piece = Piece(i * nbits, nbits // 8, 0)
        store_piece(ctx, array, piece, f"{base} + (long long)({element_offset}) * {nbits // 8}")
        return
    bits = read_bits(array, i * nbits, nbits)
    ctx.emit(f"ab_store_bits({base}, (long long)({element_offset}) * {nbits}, {nbits}, {bits});")
