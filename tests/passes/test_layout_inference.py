"""Layout inference: MMA operand layouts, loads inherit them, broadcasts, element-wise chains, conflicts."""

import pytest

import anybit
from anybit import float16, float32, int32
from anybit.ir import LayoutInferenceError, instructions
from anybit.layout import local, reduce, spatial
from anybit.layout.mma import MMA_M16N8K16_F16_A, MMA_M16N8K16_F16_B, MMA_M16N8K16_F16_C
from anybit.passes import inferred_layouts, mma_layouts

from .kernels import Elementwise, MatmulInt6


def _tensors(program):
    found = {}
    for inst in instructions(program.body):
        for value in vars(inst).values() if hasattr(inst, "__dict__") else []:
            found[value.name] = value
        output = getattr(inst, "output", None)
        if output is not None and hasattr(output, "layout"):
            found[output.name] = output
    return found


def test_matmul_operands_get_mma_layouts_and_loads_inherit_them():
    layouts = inferred_layouts(MatmulInt6().trace(n=64, k=64))
    assert layouts["acc"] == MMA_M16N8K16_F16_C
    assert layouts["a"] == MMA_M16N8K16_F16_A  # the load takes its consumer's (dot's) layout
    assert layouts["b"] == MMA_M16N8K16_F16_B  # int6 view -> cast -> dot operand B
    assert layouts["packed"] == spatial(32).local(3)  # 4 x int6 = 24 bits = 3 bytes per thread
    assert layouts["scale"] == reduce(MMA_M16N8K16_F16_C, [0], keepdims=True)  # broadcast: replicated
    assert layouts["scale"].is_replicated


def test_matmul_over_four_warps_tiles_the_mma_layouts():
    a, b, c = mma_layouts(64, 64, 32, float16, 4)
    assert c == spatial(2, 2) * local(2, 4) * MMA_M16N8K16_F16_C  # 2 x 2 warps of 32 x 32
    assert a.num_threads == b.num_threads == c.num_threads == 128
    assert a.shape == (64, 32) and b.shape == (32, 64)
    assert a.replication == 2 and b.replication == 2  # warps of one row share A, of one column share B


def test_final_program_has_every_layout():
    program = MatmulInt6().program(None, None, None, None, 64, n=64, k=64)
    text = str(program)
    assert "layout=?" not in text
    assert "local(2, 1).spatial(8, 4).local(1, 2)" in text


def test_elementwise_chain_shares_the_default_layout():
    layouts = inferred_layouts(Elementwise().trace(tile=256))
    assert len({layouts[name] for name in ("x", "t_1", "t_2", "y")}) == 1
    assert layouts["x"] == spatial(64).local(4)  # 64 threads, 16-byte contiguous runs


class Conflict(anybit.Script):
    def __call__(self, p: anybit.ptr(float16)):
        self.attrs.blocks = [1]
        self.attrs.warps = 1
        g = self.global_view(p, float16, [16, 16])
        a = self.load_global(g, [0, 0], [16, 16], layout=spatial(8, 4).local(2, 4))
        b = self.load_global(g, [0, 0], [16, 8])
        acc = self.register_tensor(float32, [16, 8], init=0)
        self.dot(a, b, acc)


def test_conflict_names_tensor_instructions_and_lines():
    with pytest.raises(
        LayoutInferenceError,
        match=r"layout conflict for register tensor a .*tensor-core operand A"
        r".*layout given where a was created",
    ) as info:
        inferred_layouts(Conflict().trace())
    assert info.value.instruction == "dot" and info.value.source.text == "self.dot(a, b, acc)"


class Undecidable(anybit.Script):
    def __call__(self, p: anybit.ptr(int32)):
        self.attrs.blocks = [1]
        g = self.global_view(p, int32, [64, 4])
        x = self.load_global(g, [0, 0], [64, 4])
        y = self.view(x, anybit.uint8, shape=[32, 32])
        self.store_global(self.global_view(p, anybit.uint8, [32, 32]), y, [0, 0])


def test_view_that_cannot_be_decided_says_so():
    with pytest.raises(LayoutInferenceError, match=r"cannot infer the layout of x .* from y's"):
        inferred_layouts(Undecidable().trace())


def test_dot_tile_too_small_for_the_warps():
    with pytest.raises(LayoutInferenceError, match=r"over 4 warps"):
        inferred_layouts(MatmulInt6(warps=4).trace(n=64, k=64))
