"""``view`` keeps each thread's bits: checked against a numpy model of the per-thread bit concatenation."""

import numpy as np
import pytest
from interp_programs import Builder, reg

import anybit.dtypes as dt
from anybit import ir
from anybit.interp import interpret
from anybit.layout import local, spatial
from anybit.layout.mma import MMA_M16N8K16_F16_B


def thread_bits(codes_per_thread: np.ndarray, nbits: int) -> np.ndarray:
    """(threads, total bits) bit matrix: local element i at bits [i·n, (i+1)·n), little-endian."""
    shifts = np.arange(nbits, dtype=np.uint64)
    planes = (codes_per_thread.astype(np.uint64)[..., None] >> shifts) & np.uint64(1)
    return planes.reshape(codes_per_thread.shape[0], -1)


def per_thread_codes(dense_codes: np.ndarray, layout) -> np.ndarray:
    mapping = layout.map_array()
    return dense_codes[tuple(np.moveaxis(mapping, -1, 0))]


CASES = [
    (dt.uint8, local(3).spatial(32), dt.int6, MMA_M16N8K16_F16_B),
    (dt.uint8, spatial(32).local(2), dt.int4, spatial(32).local(4)),
    (dt.int4, spatial(32).local(4), dt.float4_e2m1, spatial(8, 4).local(1, 4)),
    (dt.uint8, local(2).spatial(32).local(2), dt.uint2, spatial(32).local(16)),
    (dt.uint8, local(5).spatial(32), dt.float5_e2m2, MMA_M16N8K16_F16_B.local(2, 1)),
    (dt.float16, spatial(32).local(2), dt.uint8, spatial(32).local(4)),
]


@pytest.mark.parametrize("source, source_layout, target, target_layout", CASES)
def test_view_round_trip_bit_exact(source, source_layout, target, target_layout):
    rng = np.random.default_rng(11)
    shape = source_layout.shape
    codes = rng.integers(0, 1 << source.nbits, shape).astype(source.code_dtype)
    if source is dt.float16:
        codes &= 0x3BFF  # keep clear of NaN patterns so the float value round-trips through memory
    data = dt.pack(codes, source)
    if source.is_standard:
        data = data.view(source.numpy_dtype)
    b = Builder()
    pin = b.param("x", source, True)
    pmid = b.param("mid", target, True)
    pout = b.param("y", source, True)
    gin = b.global_view(pin, source, shape)
    gmid = b.global_view(pmid, target, target_layout.shape)
    gout = b.global_view(pout, source, shape)
    r = reg(source, source_layout)
    v = reg(target, target_layout)
    back = reg(source, source_layout)
    b.emit(ir.LoadGlobalInst, r, gin, (0,) * len(shape))
    b.emit(ir.ViewInst, v, r)
    b.emit(ir.StoreGlobalInst, gmid, v, (0,) * len(target_layout.shape))
    b.emit(ir.ViewInst, back, v)
    b.emit(ir.StoreGlobalInst, gout, back, (0,) * len(shape))
    mid = np.zeros(dt.packed_size(int(np.prod(target_layout.shape)), target), dtype=np.uint8)
    out = np.zeros_like(data)
    interpret(b.build(), data, mid, out)
    np.testing.assert_array_equal(out.view(np.uint8), data.view(np.uint8))
    # The viewed tensor: each thread's bits equal its source bits, re-cut into target-width codes.
    mid_codes = dt.unpack(mid, target, int(np.prod(target_layout.shape))).reshape(target_layout.shape)
    expected_bits = thread_bits(per_thread_codes(codes, source_layout), source.nbits)
    got_bits = thread_bits(per_thread_codes(mid_codes, target_layout), target.nbits)
    np.testing.assert_array_equal(got_bits, expected_bits)


def test_view_rejects_different_bits_per_thread():
    b = Builder()
    p = b.param("x", dt.uint8, True)
    g = b.global_view(p, dt.uint8, (64,))
    r = reg(dt.uint8, spatial(32).local(2))
    v = reg(dt.int6, spatial(32).local(3))
    b.emit(ir.LoadGlobalInst, r, g, (0,))
    b.emit(ir.ViewInst, v, r)
    with pytest.raises(ir_error(), match=r"view at .*test_view.py:\d+.*expected the same threads and bits"):
        interpret(b.build(), np.zeros(64, np.uint8))


def ir_error():
    from anybit.interp import InterpreterError

    return InterpreterError
