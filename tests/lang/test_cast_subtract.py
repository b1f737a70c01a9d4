"""``self.cast(codes, dtype, subtract=zeros)``: zero points subtracted inside the conversion."""

import numpy as np
import pytest

import anybit
from anybit import dtypes as dt
from anybit.cuda.conversions import byte_pair_constants, half_word_pair_constants, integer_pair_constants
from anybit.interp import InterpreterError
from anybit.ir import KernelDefinitionError

from .cast_helpers import COLUMNS, ROWS, CastScript, load_codes, pack_codes


class ZeroPointCast(CastScript):
    """out [ROWS, COLUMNS] = decode(codes) − zeros[column], codes of ``source`` packed in uint8 bytes."""

    def __call__(
        self,
        packed: anybit.ptr(anybit.uint8),
        zeros: anybit.ptr(anybit.float32),
        out: anybit.ptr(anybit.float32),
    ):
        self.attrs.blocks = [1]
        self.attrs.warps = 1
        codes = load_codes(self, packed, self.source)
        zero_row = self.cast(
            self.load_global(self.global_view(zeros, anybit.float32, [1, COLUMNS]), [0, 0], [1, COLUMNS]),
            self.target,
        )
        values = self.cast(codes, self.target, subtract=zero_row)
        self.store_global(
            self.global_view(out, anybit.float32, [ROWS, COLUMNS]), self.cast(values, anybit.float32), [0, 0]
        )


def _inputs(source, rng, zeros=None):
    n = source.nbits
    codes = rng.integers(0, 1 << n, size=(ROWS, COLUMNS))
    zeros = rng.integers(0, 1 << n, size=(1, COLUMNS)).astype(np.float32) if zeros is None else zeros
    packed = pack_codes(codes, n)
    return codes, zeros, packed


@pytest.mark.parametrize("target", ["float16", "bfloat16"])
@pytest.mark.parametrize("source", ["uint1", "uint2", "uint3", "uint4", "uint5", "uint6", "uint7"])
def test_subtract_inside_the_cast(source, target):
    """(uint8 codes view bytes as themselves, so this packing cannot express them; the decode kernel's GPU
    sweep covers uint8 zero points.)"""
    rng = np.random.default_rng()
    codes, zeros, packed = _inputs(anybit.dtype(source), rng)
    out = np.full((ROWS, COLUMNS), np.nan, dtype=np.float32)
    anybit.interpret(ZeroPointCast(source, target), packed, zeros, out)
    np.testing.assert_array_equal(out, codes - zeros)


def test_zero_points_that_are_not_codes_are_refused():
    rng = np.random.default_rng()
    codes, zeros, packed = _inputs(dt.uint4, rng, zeros=np.full((1, COLUMNS), 2.5, dtype=np.float32))
    out = np.zeros((ROWS, COLUMNS), dtype=np.float32)
    with pytest.raises(InterpreterError, match=r"integers in \[0, 16\)"):
        anybit.interpret(ZeroPointCast("uint4", "float16"), packed, zeros, out)


def test_bad_subtract_arguments_are_named():
    class Signed(anybit.Script):
        def __call__(self, out: anybit.ptr(anybit.float16)):
            self.attrs.blocks = [1]
            codes = self.register_tensor(anybit.int4, [16, 8], init=1)
            self.cast(codes, anybit.float16, subtract=self.register_tensor(anybit.float16, [1, 8], init=0))

    with pytest.raises(KernelDefinitionError, match="unsigned integer codes"):
        Signed().program(None)

    class WrongType(anybit.Script):
        def __call__(self, out: anybit.ptr(anybit.float16)):
            self.attrs.blocks = [1]
            codes = self.register_tensor(anybit.uint4, [16, 8], init=1)
            self.cast(codes, anybit.float16, subtract=self.register_tensor(anybit.float32, [1, 8], init=0))

    with pytest.raises(KernelDefinitionError, match="in the result type float16"):
        WrongType().program(None)


def _halves(words, target):
    halves = np.stack([words & 0xFFFF, words >> 16], axis=-1).astype(np.uint32)
    if target is dt.float16:
        return halves.astype(np.uint16).view(np.float16)
    return (halves << 16).view(np.float32)


def _round(values, target):
    if target is dt.float16:
        return values.astype(np.float16)
    return (
        (
            values.astype(np.float32).view(np.uint32)
            + 0x7FFF
            + ((values.astype(np.float32).view(np.uint32) >> 16) & 1)
        )
        >> 16
        << 16
    ).view(np.float32)


@pytest.mark.parametrize("target", [dt.float16, dt.bfloat16], ids=lambda t: t.name)
@pytest.mark.parametrize(
    "source", [t for t in dt.all_types() if t.kind == "uint" and t.nbits < 8], ids=lambda t: t.name
)
def test_folded_subtrahend_is_exact_for_every_code_and_zero(source, target):
    """The fold's arithmetic in numpy: S + z is exact and (S + code) − (S + z) = code − z, for every code,
    every zero point in [0, 2^n) and every subtrahend the conversions use (byte pairs and pair-interleaved
    codes at each offset, the general pair form)."""
    n = source.nbits
    if n == 8 and target is dt.bfloat16:
        pytest.skip("uint8 → bf16 converts through f32: no fold")
    values = np.arange(1 << n)
    code, zero = (v.reshape(-1) for v in np.meshgrid(values, values, indexing="ij"))
    subtrahends = [integer_pair_constants(source, target)[2]]
    for lo_bit in range(0, 32 - 2 * n + 1, n):
        constants = byte_pair_constants(source, lo_bit, target)
        if constants is not None:
            subtrahends.append(constants[3])
    for lo_bit in range(0, 16 - n + 1):
        constants = half_word_pair_constants(source, lo_bit, target)
        if constants is not None:
            subtrahends.append(constants[3])
    for word in subtrahends:
        for s in _halves(np.uint32(word), target).reshape(-1).astype(np.float64):
            total = _round(np.float64(s) + zero, target).astype(np.float64)
            np.testing.assert_array_equal(total, s + zero)  # S + z exact
            magic_plus_code = s + code  # what the lop3 leaves: exact by construction
            got = _round(magic_plus_code - total, target).astype(np.float64)
            np.testing.assert_array_equal(got, code - zero)


def test_cast_subtract_compiles_with_the_fold():
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    from anybit.runtime import compiler

    for source in ("uint2", "uint4", "uint6"):
        program = ZeroPointCast(source, "float16").program(None, None, None)
        text = compiler.generate_source(program, "sm_90a").source
        assert "ab_add_rn_f16x2" in text  # the zero added to the subtrahend, not subtracted per element
        compiled = anybit.compile(ZeroPointCast(source, "bfloat16"), None, None, None, arch="sm_90a")
        assert compiled.resources.stack_frame_bytes == 0


@pytest.mark.gpu
@pytest.mark.parametrize("target", ["float16", "bfloat16"])
def test_cast_subtract_on_the_gpu(target):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    rng = np.random.default_rng()
    for source in ("uint1", "uint2", "uint3", "uint4", "uint5", "uint6", "uint7"):
        codes, zeros, packed = _inputs(anybit.dtype(source), rng)
        out = torch.full((ROWS, COLUMNS), float("nan"), device="cuda")
        ZeroPointCast(source, target)(torch.from_numpy(packed).cuda(), torch.from_numpy(zeros).cuda(), out)
        np.testing.assert_array_equal(out.cpu().numpy(), codes - zeros, err_msg=source)
