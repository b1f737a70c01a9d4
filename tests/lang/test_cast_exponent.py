"""``self.cast(codes, dtype, exponent=e)``: the value times 2^e, exactly (the bit-aligning float
conversions then skip their re-biasing multiply)."""

from __future__ import annotations

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


class ScaledTile(anybit.Script):
    """out [32, 8] = x [32, 8] (16-bit floats) times a Python constant, in x's dtype."""

    def __init__(self, dtype, factor: float) -> None:
        super().__init__()
        self.dtype, self.factor = anybit.dtype(dtype), factor

    def __call__(self, x: anybit.ptr(self.dtype), out: anybit.ptr(self.dtype)):  # noqa: F821
        self.attrs.blocks = [1]
        self.attrs.warps = 1
        layout = anybit.layout.spatial(32, 1).local(1, 8)
        tile = self.load_global(self.global_view(x, self.dtype, [32, 8]), [0, 0], [32, 8], layout=layout)
        self.store_global(self.global_view(out, self.dtype, [32, 8]), tile * self.factor, [0, 0])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_constant_multiplies_two_elements_an_instruction(dtype):
    """tile · c runs as paired multiplies (a power of two: how the decode kernel lifts bf16 x), the constant
    rounded to the tile's type first as the interpreter rounds it (0.1 is no f16 or bf16 value), so the
    generated code and the interpreter agree; both against numpy."""
    from anybit.cuda import generate_cuda

    target = anybit.dtype(dtype)
    paired = "ab_mul_rn_f16x2" if dtype == "float16" else "ab_fma_bf16x2"

    def body(value: float) -> str:  # the kernel's own code, after the prelude's helper definitions
        return generate_cuda(ScaledTile(dtype, value).program()).source.split('extern "C"')[1]

    rng = np.random.default_rng()
    x = rng.standard_normal((32, 8)).astype(np.float32)
    codes = dt.encode(x, target)
    for value in (2.0**10 if dtype == "float16" else 2.0**64, 0.1):
        assert body(value).count(f"= {paired}(") == 4  # 8 elements a thread: 4 pairs
        out = np.zeros_like(codes)
        anybit.interpret(ScaledTile(dtype, value), codes, out)
        rounded = dt.decode(dt.encode(np.asarray(value), target), target)
        expected = dt.encode(dt.decode(codes, target).astype(np.float64) * rounded, target)
        np.testing.assert_array_equal(out, expected)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_constant_multiplies_alike_on_the_gpu_and_the_interpreter(dtype):
    """Paired multiplies by a constant the type holds and by ones it rounds: bit for bit the interpreter."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    act = getattr(torch, dtype)
    x = torch.randn(32, 8, dtype=torch.float32).to(act)
    for value in (2.0**10 if dtype == "float16" else 2.0**64, 0.1, 3.0):
        expected = torch.zeros_like(x)
        anybit.interpret(ScaledTile(dtype, value), x, expected)
        found = torch.full_like(x, float("nan")).cuda()
        ScaledTile(dtype, value)(x.cuda(), found)
        assert torch.equal(found.cpu(), expected), value
