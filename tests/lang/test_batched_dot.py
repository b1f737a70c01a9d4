"""``self.dot`` on [B, M, K] x [B, K, N] (batched): the batch spread over warp groups, each group its own
product. Checked on the interpreter against float64, and its tensor-core plan (the ``mma.sync`` calls the
CUDA emitter writes, register by register) replayed on the CPU warp by warp."""

import numpy as np
import pytest

import anybit
from anybit import float16, float32
from anybit.cuda.emit.dot import mma_plan
from anybit.ir import DotInst, KernelDefinitionError
from anybit.ir.statements import instructions
from anybit.passes import DEFAULT_PASSES, run_passes


class BatchedDot(anybit.Script):
    """c [B, M, N] = a [B, M, K] @ b [B, K, N] in one block of ``warps`` warps (B = 1: a rank-2 dot)."""

    def __init__(self, batch: int, m: int, n: int, k: int, warps: int) -> None:
        super().__init__()
        self.batch, self.m, self.n, self.k, self.warps = batch, m, n, k, warps

    def __call__(self, a: anybit.ptr(float16), b: anybit.ptr(float16), c: anybit.ptr(float32)):
        self.attrs.blocks = [1]
        self.attrs.warps = self.warps
        batch, m, n, k = self.batch, self.m, self.n, self.k
        shapes = ([batch, m, k], [batch, k, n], [batch, m, n]) if batch > 1 else ([m, k], [k, n], [m, n])
        dtypes = (float16, float16, float32)
        ga, gb, gc = (self.global_view(p, t, s) for p, t, s in zip((a, b, c), dtypes, shapes, strict=True))
        zero = [0] * len(shapes[0])
        acc = self.register_tensor(float32, shapes[2], init=0.0)
        self.dot(self.load_global(ga, zero, shapes[0]), self.load_global(gb, zero, shapes[1]), acc, out=acc)
        self.store_global(gc, acc, zero)


CASES = [(4, 32, 8, 32, 8), (2, 16, 16, 32, 4), (8, 16, 8, 16, 4), (3, 32, 16, 16, 3), (1, 64, 16, 32, 4)]


def _operands(batch, m, n, k):
    rng = np.random.default_rng()
    shape = (batch,) if batch > 1 else ()
    return (
        rng.standard_normal((*shape, m, k)).astype(np.float16),
        rng.standard_normal((*shape, k, n)).astype(np.float16),
    )


@pytest.mark.parametrize(("batch", "m", "n", "k", "warps"), CASES)
def test_the_interpreter_multiplies_each_batch(batch, m, n, k, warps):
    a, b = _operands(batch, m, n, k)
    c = np.full((*a.shape[:-2], m, n), np.nan, dtype=np.float32)
    anybit.interpret(BatchedDot(batch, m, n, k, warps), a, b, c)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-4)


def _replay_plan(inst: DotInst, num_threads: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """What the emitted ``mma.sync`` calls compute: every thread's registers gathered from the operands by
    their layouts, each call's fragments assembled into the atom's tiles per warp, multiplied, scattered
    back, and the accumulator's registers read out through its layout."""
    atom, calls = mma_plan(inst, num_threads)

    def registers(layout, dense):
        coordinates = layout.map_array()  # [threads, local, rank]
        owners = np.arange(num_threads) % layout.num_threads
        return dense[tuple(np.moveaxis(coordinates[owners], -1, 0))].astype(np.float64)

    ra, rb = registers(inst.a.layout, a), registers(inst.b.layout, b)
    rc = np.zeros((num_threads, inst.c.layout.local_size))
    maps = {name: getattr(atom, name).map_array()[:, :, -2:] for name in ("a", "b", "c")}
    for warp in range(num_threads // 32):
        lanes = np.arange(32) + 32 * warp
        for call in calls:
            tiles = {}
            for name, regs, shape in (("a", ra, (atom.m, atom.k)), ("b", rb, (atom.k, atom.n))):
                tile = np.zeros(shape)
                local = list(getattr(call, name))
                tile[maps[name][..., 0], maps[name][..., 1]] = regs[lanes][:, local]
                tiles[name] = tile
            product = tiles["a"] @ tiles["b"]
            rc[lanes[:, None], list(call.c)] += product[maps["c"][..., 0], maps["c"][..., 1]]
    out = np.full(inst.c.shape, np.nan)
    coordinates = inst.c.layout.map_array()
    for thread in range(num_threads):
        owner = thread % inst.c.layout.num_threads
        out[tuple(coordinates[owner].T)] = rc[thread]
    return out


@pytest.mark.parametrize(("batch", "m", "n", "k", "warps"), CASES)
def test_the_tensor_core_plan_computes_every_batch(batch, m, n, k, warps):
    program = run_passes(BatchedDot(batch, m, n, k, warps).program(None, None, None), DEFAULT_PASSES)
    (inst,) = [i for i in instructions(program.body) if isinstance(i, DotInst)]
    assert mma_plan(inst, program.num_threads) is not None
    a, b = _operands(batch, m, n, k)
    got = _replay_plan(inst, program.num_threads, a, b)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-9, atol=1e-9)


def test_the_batched_dot_compiles_to_mma():
    from anybit.runtime import compiler

    program = BatchedDot(4, 32, 8, 32, 8).program(None, None, None)
    assert "mma.sync.aligned.m16n8k16" in compiler.generate_source(program, "sm_90a").source
    compiled = anybit.compile(BatchedDot(4, 32, 8, 32, 8), None, None, None, arch="sm_90a")
    assert compiled.resources.stack_frame_bytes == 0


def test_mismatched_batches_are_named():
    class Mismatched(anybit.Script):
        def __call__(self, a: anybit.ptr(float16)):
            self.attrs.blocks = [1]
            self.attrs.warps = 4
            x = self.register_tensor(float16, [2, 16, 16], init=0.0)
            y = self.register_tensor(float16, [3, 16, 8], init=0.0)
            self.dot(x, y, self.register_tensor(float32, [2, 16, 8], init=0.0))

    with pytest.raises(KernelDefinitionError, match=r"expected shapes a \[B, M, K\]"):
        Mismatched().program(None)


@pytest.mark.gpu
@pytest.mark.parametrize(("batch", "m", "n", "k", "warps"), CASES)
def test_the_batched_dot_on_the_gpu(batch, m, n, k, warps):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    a, b = (torch.from_numpy(t).cuda() for t in _operands(batch, m, n, k))
    c = torch.full((*a.shape[:-2], m, n), float("nan"), device="cuda")
    BatchedDot(batch, m, n, k, warps)(a, b, c)
    expected = a.double() @ b.double()
    torch.testing.assert_close(c.double(), expected, rtol=1e-5, atol=1e-4)
