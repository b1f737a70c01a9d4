"""``self.attrs.min_blocks``: blocks per SM the compiled code leaves room for (``__launch_bounds__``)."""

from __future__ import annotations

import numpy as np
import pytest

import anybit
from anybit.dtypes import float32
from anybit.ir.errors import KernelDefinitionError


class Scale(anybit.Script):
    """out[i] = 2 · x[i] over one block of 128 threads, with an optional bound of blocks per SM."""

    def __init__(self, min_blocks) -> None:
        super().__init__()
        self.min_blocks = min_blocks

    def __call__(self, x: anybit.ptr(float32), out: anybit.ptr(float32)):
        self.attrs.blocks = [1]
        self.attrs.warps = 4
        self.attrs.min_blocks = self.min_blocks
        doubled = self.mul(self.load_global(self.global_view(x, float32, [128]), [0], [128]), 2.0)
        self.store_global(self.global_view(out, float32, [128]), doubled, [0])


@pytest.mark.parametrize("min_blocks", [0, 3])
def test_the_bound_reaches_the_program_and_the_source(min_blocks):
    program = Scale(min_blocks).program(None, None)
    assert program.min_blocks == min_blocks
    from anybit.cuda import generate_cuda

    source = generate_cuda(program, arch="sm_90a").source
    expected = "__launch_bounds__(128, 3)" if min_blocks else "__launch_bounds__(128)"
    assert expected in source


def test_the_bound_changes_no_result_on_the_interpreter():
    x = np.random.default_rng().standard_normal(128).astype(np.float32)
    out = np.full(128, np.nan, dtype=np.float32)
    anybit.interpret(Scale(2), x, out)
    np.testing.assert_array_equal(out, 2 * x)


@pytest.mark.parametrize("bad", [-1, 33, 2.5, True])
def test_a_bad_bound_is_named(bad):
    with pytest.raises(KernelDefinitionError, match="min_blocks to be an int in \\[0, 32\\]"):
        Scale(bad).program(None, None)


def test_the_bound_caps_registers_when_compiled():
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    import torch

    from anybit.kernels import choose_layout
    from anybit.kernels.decode_transposed import DecodeMatmulTransposed

    layout = choose_layout("int4", 8192, 8192, 128, operand="a")
    registers = {}
    for min_blocks in (0, 4):  # 4 blocks of 8 warps: at most 64 registers a thread
        kernel = DecodeMatmulTransposed(layout, torch.float16, warps=8, rows=16, min_blocks=min_blocks)
        compiled = anybit.compile(kernel, *(None,) * 6, 16, 8192, 8192, arch="sm_90a")
        registers[min_blocks] = compiled.resources.registers
    assert registers[4] <= 64 < registers[0]
