"""``self.cast(codes, dtype, biased=True)``: integer codes converted with the conversion's bias left in.

The bias B depends only on the types and each element's place, so ``cast(w, biased) − cast(0, biased)`` is
``cast(w)`` on every executor; the interpreter's B is 2^bits (0 for 8-bit codes to bfloat16), the code
generator's the magic number of each pair's in-register conversion."""

import numpy as np
import pytest

import anybit
from anybit.ir import KernelDefinitionError
from anybit.layout import spatial

from .cast_helpers import COLUMNS, PER_THREAD, ROWS, CastScript, load_codes, pack_codes

SIGNED = ["int2", "int4", "int8"]
UNSIGNED = ["uint2", "uint4"]


class BiasedCast(CastScript):
    """biased [ROWS, COLUMNS] = cast(codes, biased); corrected = biased − cast(zero codes, biased)."""

    def __call__(
        self,
        packed: anybit.ptr(anybit.uint8),
        biased: anybit.ptr(anybit.float32),
        corrected: anybit.ptr(anybit.float32),
    ):
        self.attrs.blocks = [1]
        self.attrs.warps = 1
        codes = load_codes(self, packed, self.source)
        nbytes = PER_THREAD * self.source.nbits // 8
        zero_bytes = self.register_tensor(
            anybit.uint8, [32, nbytes], layout=spatial(32, 1).local(1, nbytes), init=0
        )
        zero_codes = self.view(zero_bytes, dtype=self.source, layout=codes.layout)
        values = self.cast(codes, self.target, biased=True)
        bias = self.cast(zero_codes, self.target, biased=True)
        view = [ROWS, COLUMNS]
        self.store_global(
            self.global_view(biased, anybit.float32, view), self.cast(values, anybit.float32), [0, 0]
        )
        exact = self.cast(values, anybit.float32) - self.cast(bias, anybit.float32)
        self.store_global(self.global_view(corrected, anybit.float32, view), exact, [0, 0])


def _codes(source: anybit.DataType, rng) -> tuple[np.ndarray, np.ndarray]:
    """Random codes of ``source`` (two's complement for signed types), packed, and their values."""
    n = source.nbits
    stored = rng.integers(0, 1 << n, size=(ROWS, COLUMNS))
    values = np.where(stored >= 1 << (n - 1), stored - (1 << n), stored) if source.kind == "int" else stored
    return pack_codes(stored, n), values.astype(np.float32)


@pytest.mark.parametrize("target", ["float16", "bfloat16"])
@pytest.mark.parametrize("source", SIGNED + UNSIGNED)
def test_biased_cast_on_the_interpreter(source, target):
    rng = np.random.default_rng()
    packed, values = _codes(anybit.dtype(source), rng)
    biased = np.full((ROWS, COLUMNS), np.nan, dtype=np.float32)
    corrected = np.full_like(biased, np.nan)
    anybit.interpret(BiasedCast(source, target), packed, biased, corrected)
    bits = anybit.dtype(source).nbits
    bias = 0.0 if target == "bfloat16" and bits == 8 else float(2**bits)
    np.testing.assert_array_equal(biased, values + bias)
    np.testing.assert_array_equal(corrected, values)


@pytest.mark.parametrize(
    ("source", "target", "options", "message"),
    [
        ("float4_e2m1", "float16", {}, "integer codes of at most 8 bits"),
        ("int4", "float32", {}, "float16 or bfloat16"),
        ("int4", "float16", {"exponent": 1}, "no subtract=, exponent="),
    ],
)
def test_casts_that_cannot_keep_their_bias_are_refused(source, target, options, message):
    class Refused(anybit.Script):
        def __call__(self, packed: anybit.ptr(anybit.uint8), out: anybit.ptr(anybit.float32)):
            self.attrs.blocks = [1]
            self.attrs.warps = 1
            codes = load_codes(self, packed, anybit.dtype(source))
            values = self.cast(self.cast(codes, target, biased=True, **options), anybit.float32)
            self.store_global(self.global_view(out, anybit.float32, [ROWS, COLUMNS]), values, [0, 0])

    with pytest.raises(KernelDefinitionError, match=message):
        Refused().program(None, None)


def test_the_biased_cast_leaves_out_the_magic_subtraction():
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    from anybit.runtime import compiler

    class Plain(BiasedCast):
        def __call__(self, packed: anybit.ptr(anybit.uint8), out: anybit.ptr(anybit.float32)):
            self.attrs.blocks = [1]
            self.attrs.warps = 1
            values = self.cast(self.cast(load_codes(self, packed, self.source), self.target), anybit.float32)
            self.store_global(self.global_view(out, anybit.float32, [ROWS, COLUMNS]), values, [0, 0])

    plain = compiler.generate_source(Plain("int4", "float16").program(None, None), "sm_90a").source
    biased = compiler.generate_source(
        BiasedCast("int4", "float16").program(None, None, None), "sm_90a"
    ).source

    def body(source: str) -> str:  # the kernel, not the helpers before it
        return source.split("__global__", 1)[1]

    assert body(plain).count("ab_sub_f16x2") == PER_THREAD // 2  # a subtraction a pair
    assert "ab_sub_f16x2" not in body(biased)


@pytest.mark.gpu
@pytest.mark.parametrize("target", ["float16", "bfloat16"])
def test_biased_cast_corrects_exactly_on_the_gpu(target):
    """The GPU's bias (the magic numbers) is not the interpreter's, but the correction is exact on both."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    rng = np.random.default_rng()
    for source in SIGNED + UNSIGNED:
        packed, values = _codes(anybit.dtype(source), rng)
        biased = torch.full((ROWS, COLUMNS), float("nan"), device="cuda")
        corrected = torch.full_like(biased, float("nan"))
        BiasedCast(source, target)(torch.from_numpy(packed).cuda(), biased, corrected)
        np.testing.assert_array_equal(corrected.cpu().numpy(), values, err_msg=source)
        assert torch.isfinite(biased).all()
