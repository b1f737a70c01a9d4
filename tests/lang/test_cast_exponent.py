"""``self.cast(codes, dtype, exponent=e)``: the value times 2^e, exactly (the bit-aligning float
conversions then skip their re-biasing multiply)."""

import numpy as np
import pytest

import anybit
from anybit import dtypes as dt
from anybit.ir import KernelDefinitionError

from .cast_helpers import COLUMNS, ROWS, load_codes, pack_codes


class ScaledCast(anybit.Script):
    """out [ROWS, COLUMNS] = decode(codes) · 2^exponent, codes of ``source`` packed in uint8 bytes."""

    def __init__(self, source, target, exponent: int) -> None:
        super().__init__()
        self.source, self.target, self.exponent = anybit.dtype(source), anybit.dtype(target), exponent

    def __call__(self, packed: anybit.ptr(anybit.uint8), out: anybit.ptr(anybit.float32)):
        self.attrs.blocks = [1]
        self.attrs.warps = 1
        codes = load_codes(self, packed, self.source)
        values = self.cast(codes, self.target, exponent=self.exponent)
        self.store_global(
            self.global_view(out, anybit.float32, [ROWS, COLUMNS]), self.cast(values, anybit.float32), [0, 0]
        )


def _inputs(source, rng):
    """Random codes [ROWS, COLUMNS] (every code of a 4-bit type appears) and their per-thread packing."""
    n = source.nbits
    codes = rng.integers(0, 1 << n, size=(ROWS, COLUMNS))
    codes.reshape(-1)[: 1 << n] = np.arange(1 << n)
    return codes, pack_codes(codes, n)


CASES = [
    ("float4_e2m1", "float16", -14),  # cancels the re-biasing: subnormal f16 results
    ("float4_e2m1", "float16", -13),
    ("float4_e2m1", "bfloat16", 3),
    ("float8_e4m3", "float16", -8),
    ("uint4", "float16", -2),
    ("int4", "bfloat16", 5),
]


@pytest.mark.parametrize(("source", "target", "exponent"), CASES)
def test_the_value_times_a_power_of_two(source, target, exponent):
    rng = np.random.default_rng()
    codes, packed = _inputs(anybit.dtype(source), rng)
    out = np.full((ROWS, COLUMNS), np.nan, dtype=np.float32)
    anybit.interpret(ScaledCast(source, target, exponent), packed, out)
    expected = dt.decode(codes.astype(np.uint8), anybit.dtype(source)) * 2.0**exponent
    np.testing.assert_array_equal(out, expected.astype(np.float32))


def test_inexact_or_unsupported_exponents_are_named():
    with pytest.raises(KernelDefinitionError, match=r"times 2\^-25 is a float16 value"):
        ScaledCast("float4_e2m1", "float16", -25).program(None, None)  # 0.5 · 2^-25 underflows f16
    with pytest.raises(KernelDefinitionError, match=r"times 2\^20 is a float16 value"):
        ScaledCast("float4_e2m1", "float16", 20).program(None, None)  # 6 · 2^20 overflows f16

    class WithZeros(anybit.Script):
        def __call__(self, out: anybit.ptr(anybit.float16)):
            self.attrs.blocks = [1]
            codes = self.register_tensor(anybit.uint4, [16, 8], init=1)
            zeros = self.register_tensor(anybit.float16, [1, 8], init=0)
            self.cast(codes, anybit.float16, subtract=zeros, exponent=-1)

    with pytest.raises(KernelDefinitionError, match="exponent= and subtract= together"):
        WithZeros().program(None)

    class Wide(anybit.Script):
        def __call__(self, out: anybit.ptr(anybit.float16)):
            self.attrs.blocks = [1]
            self.cast(self.register_tensor(anybit.float32, [16, 8], init=1), anybit.float16, exponent=-1)

    with pytest.raises(KernelDefinitionError, match="at most 16 bits"):
        Wide().program(None)

    class NotAnInt(anybit.Script):
        def __call__(self, out: anybit.ptr(anybit.float16)):
            self.attrs.blocks = [1]
            self.cast(self.register_tensor(anybit.uint4, [16, 8], init=1), anybit.float16, exponent=0.5)

    with pytest.raises(KernelDefinitionError, match="expected exponent a Python int"):
        NotAnInt().program(None)


def test_the_cancelling_exponent_compiles_without_a_multiply():
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    from anybit.runtime import compiler

    text = compiler.generate_source(ScaledCast("float4_e2m1", "float16", -14).program(None, None), "sm_90a")
    assert "ab_mul_f16x2(q_" not in text.source  # the prelude defines it; no conversion calls it
    text = compiler.generate_source(ScaledCast("float4_e2m1", "float16", 0).program(None, None), "sm_90a")
    assert "ab_mul_f16x2(q_" in text.source


@pytest.mark.gpu
@pytest.mark.parametrize(("source", "target", "exponent"), CASES)
def test_the_value_times_a_power_of_two_on_the_gpu(source, target, exponent):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    rng = np.random.default_rng()
    codes, packed = _inputs(anybit.dtype(source), rng)
    out = torch.full((ROWS, COLUMNS), float("nan"), device="cuda")
    ScaledCast(source, target, exponent)(torch.from_numpy(packed).cuda(), out)
    expected = dt.decode(codes.astype(np.uint8), anybit.dtype(source)) * 2.0**exponent
    np.testing.assert_array_equal(out.cpu().numpy(), expected.astype(np.float32))
