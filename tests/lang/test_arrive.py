"""``self.arrive``: split reductions without waiting; interpreter, CUDA source and the GPU."""

import numpy as np
import pytest

import anybit
from anybit import float32, int32
from anybit.interp import InterpreterError
from anybit.ir import KernelDefinitionError

COLUMNS = 128


class SplitSum(anybit.Script):
    """y[g] = Σ_p x[p, g] over ``parts`` blocks per column block g; ``order[p, g]`` = block (g, p)'s arrival.

    Every block stores its part into a workspace and arrives; the last to arrive adds the parts in p order.
    ``extra`` arrivals are expected beyond the blocks that exist (a broken program, for the clean check).
    """

    def __init__(self, parts: int, extra: int = 0) -> None:
        super().__init__()
        self.parts, self.extra = parts, extra

    def __call__(
        self, x: anybit.ptr(float32), y: anybit.ptr(float32), order: anybit.ptr(int32), groups: int32
    ):
        parts = self.parts
        self.attrs.blocks = [groups, 1, parts]
        self.attrs.warps = 2
        g, p = self.blockIdx.x, self.blockIdx.z
        gx = self.global_view(x, float32, [parts, groups * COLUMNS])
        gy = self.global_view(y, float32, [1, groups * COLUMNS])
        go = self.global_view(order, int32, [parts, groups])
        work = self.global_tensor(float32, [parts, groups * COLUMNS])
        counters = self.global_tensor(int32, [groups], kept_clean=True)
        part = self.load_global(gx, [p, g * COLUMNS], [1, COLUMNS])
        self.store_global(work, part, [p, g * COLUMNS])
        arrival = self.arrive(counters, [g], parts + self.extra)
        self.store_global(go, self.register_tensor(int32, [1, 1], init=0) + arrival, [p, g])
        if arrival == parts + self.extra - 1:
            total = self.load_global(work, [0, g * COLUMNS], [1, COLUMNS])
            for q in range(1, parts):
                total = total + self.load_global(work, [q, g * COLUMNS], [1, COLUMNS])
            self.store_global(gy, total, [0, g * COLUMNS])


def _inputs(parts: int, groups: int):
    rng = np.random.default_rng()
    x = rng.standard_normal((parts, groups * COLUMNS)).astype(np.float32)
    expected = x[0].copy()
    for q in range(1, parts):
        expected = expected + x[q]  # float32, in part order: the kernel's order
    y = np.full((1, groups * COLUMNS), np.nan, dtype=np.float32)
    order = np.full((parts, groups), -1, dtype=np.int32)
    return x, expected, y, order


@pytest.mark.parametrize("parts", [1, 2, 5])
def test_the_last_arrival_combines_every_part(parts):
    groups = 3
    x, expected, y, order = _inputs(parts, groups)
    anybit.interpret(SplitSum(parts), x, y, order, groups)
    np.testing.assert_array_equal(y[0], expected)
    for g in range(groups):  # each block of a column arrived exactly once, in some order
        assert sorted(order[:, g].tolist()) == list(range(parts))


def test_a_counter_left_dirty_is_reported():
    """Expecting more arrivals than blocks leaves the counter non-zero: the next launch would be wrong."""
    x, _, y, order = _inputs(2, 1)
    with pytest.raises(InterpreterError, match="kept_clean"):
        anybit.interpret(SplitSum(2, extra=1), x, y, order, 1)


def test_bad_arrive_arguments_are_named():
    class FloatCounter(anybit.Script):
        def __call__(self, out: anybit.ptr(float32)):
            self.attrs.blocks = [1]
            self.arrive(self.global_view(out, float32, [4]), [0], 2)

    with pytest.raises(KernelDefinitionError, match="int32 global tensor of counters"):
        FloatCounter().program(None)

    class NoBlocks(anybit.Script):
        def __call__(self, out: anybit.ptr(int32)):
            self.attrs.blocks = [1]
            self.arrive(self.global_view(out, int32, [4]), [0], 0)

    with pytest.raises(KernelDefinitionError, match="at least 1 block"):
        NoBlocks().program(None)


def test_arrive_compiles_to_one_atomic_and_a_kept_clean_prefix():
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    from anybit.runtime import compiler

    program = SplitSum(4).program(None, None, None, 3)
    source = compiler.generate_source(program, "sm_90a")
    assert source.source.count("atom.acq_rel.gpu.global.inc.u32") == 1
    assert not source.workspace_clean  # no fill before launches...
    assert str(source.workspace_clean_bytes) != "0"  # ...the counters sit in a prefix zeroed once
    compiled = anybit.compile(SplitSum(4), None, None, None, 3, arch="sm_90a")
    assert compiled.resources.stack_frame_bytes == 0


@pytest.mark.gpu
def test_arrive_on_the_gpu_twice_in_a_row():
    """Launches in a row find the counters wrapped back to 0; a launch with more counters than before finds
    the bytes an earlier launch used as scratch zeroed again (the workspace's kept-clean prefix grew)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    parts = 6
    kernel = SplitSum(parts)
    for groups in (40, 40, 700, 40):
        x, expected, _, _ = _inputs(parts, groups)
        y = torch.full((1, groups * COLUMNS), float("nan"), device="cuda")
        order = torch.full((parts, groups), -1, dtype=torch.int32, device="cuda")
        kernel(torch.from_numpy(x).cuda(), y, order, groups)
        torch.cuda.synchronize()
        np.testing.assert_array_equal(y.cpu().numpy()[0], expected)
        found = order.cpu().numpy()
        for g in range(groups):
            assert sorted(found[:, g].tolist()) == list(range(parts))
