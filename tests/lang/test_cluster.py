"""Thread-block clusters (``self.attrs.cluster``, ``cluster_sync``, ``load_shared(..., rank=...)``): blocks
of a cluster read each other's shared memory after a cluster barrier, on the interpreter and on the GPU;
what is wrong with a cluster program is reported, not run."""

import numpy as np
import pytest

import anybit
from anybit import float32
from anybit.interp import InterpreterError
from anybit.ir import KernelDefinitionError
from anybit.ir.errors import VerificationError

COLUMNS = 64


class NeighbourSums(anybit.Script):
    """y[b] = 2·x[b] + 3·x[next] with ``next`` the block of the next rank in b's cluster (clusters along
    ``axis``), read from that block's shared memory; ``closing`` False leaves out the barrier that keeps a
    block's shared memory alive until its neighbour has read it, ``opening`` False the one before the reads.
    """

    def __init__(self, cluster: tuple, *, opening: bool = True, closing: bool = True) -> None:
        super().__init__()
        self.cluster, self.opening, self.closing = cluster, opening, closing

    def __call__(self, x: anybit.ptr(float32), y: anybit.ptr(float32), gx_blocks: anybit.int32):
        cx, cy = self.cluster
        self.attrs.blocks = [gx_blocks, cy * 2]
        self.attrs.warps = 2
        self.attrs.cluster = self.cluster
        block = self.blockIdx.y * gx_blocks + self.blockIdx.x
        gx = self.global_view(x, float32, [gx_blocks * cy * 2, COLUMNS])
        gy = self.global_view(y, float32, [gx_blocks * cy * 2, COLUMNS])
        mine = self.load_global(gx, [block, 0], [1, COLUMNS])
        staged = self.shared_tensor(float32, [1, COLUMNS])
        self.store_shared(staged, mine * 3.0)
        if self.opening:
            self.cluster_sync()
        neighbour = self.load_shared(staged, rank=(self.cluster_rank + 1) % (cx * cy))
        if self.closing:
            self.cluster_sync()
        self.store_global(gy, mine * 2.0 + neighbour, [block, 0])


def _expected(x: np.ndarray, cluster: tuple, gx_blocks: int) -> np.ndarray:
    cx, cy = cluster
    expected = np.empty_like(x, dtype=np.float64)
    for by in range(cy * 2):
        for bx in range(gx_blocks):
            rank = bx % cx + cx * (by % cy)
            following = (rank + 1) % (cx * cy)
            nx, ny = bx - bx % cx + following % cx, by - by % cy + following // cx
            expected[by * gx_blocks + bx] = 2.0 * x[by * gx_blocks + bx] + 3.0 * x[ny * gx_blocks + nx]
    return expected


@pytest.mark.parametrize(
    ("cluster", "gx_blocks"),
    [((2, 1), 4), ((4, 1), 8), ((2, 2), 6), ((1, 2), 3), ((16, 1), 16), ((5, 2), 10)],
)
def test_blocks_read_their_neighbours_shared_memory(cluster, gx_blocks):
    rng = np.random.default_rng()
    x = rng.standard_normal((gx_blocks * cluster[1] * 2, COLUMNS)).astype(np.float32)
    y = np.full_like(x, np.nan)
    anybit.interpret(NeighbourSums(cluster), x, y, gx_blocks)
    np.testing.assert_allclose(y, _expected(x, cluster, gx_blocks), rtol=1e-6)


def test_a_read_without_the_barrier_after_the_write_is_refused():
    with pytest.raises(VerificationError, match="add self.cluster_sync"):
        NeighbourSums((2, 1), opening=False).program(None, None, 4)


def test_a_block_that_ends_before_its_neighbour_read_it_is_reported():
    x = np.ones((8, COLUMNS), dtype=np.float32)
    with pytest.raises(InterpreterError, match="cluster_sync (before it ends|that the owner passes)"):
        anybit.interpret(NeighbourSums((2, 1), closing=False), x, np.zeros_like(x), 4)


def test_a_grid_of_partial_clusters_is_refused():
    x = np.ones((6, COLUMNS), dtype=np.float32)
    with pytest.raises(InterpreterError, match="not whole clusters"):
        anybit.interpret(NeighbourSums((2, 1)), x, np.zeros_like(x), 3)


@pytest.mark.parametrize("cluster", [(32, 1), (0, 1), (4, 5)])
def test_cluster_shapes_past_the_gpus_limit_are_refused(cluster):
    with pytest.raises(KernelDefinitionError, match="at most 16 blocks"):
        NeighbourSums(cluster).program(None, None, 16)


class RemoteReadWithoutClusters(anybit.Script):
    def __call__(self, y: anybit.ptr(float32)):
        self.attrs.blocks = [2]
        self.attrs.warps = 1
        staged = self.shared_tensor(float32, [32])
        self.store_shared(staged, self.register_tensor(float32, [32], init=1.0))
        self.cluster_sync()
        self.store_global(self.global_view(y, float32, [32]), self.load_shared(staged, rank=1), [0])


class OneBlockLeaves(anybit.Script):
    """The second block of each cluster exits before the cluster barrier the first waits at."""

    def __call__(self, y: anybit.ptr(float32)):
        self.attrs.blocks = [4]
        self.attrs.warps = 1
        self.attrs.cluster = [2]
        if self.cluster_rank == 1:
            self.exit()
        self.cluster_sync()
        self.store_global(
            self.global_view(y, float32, [4, 32]),
            self.register_tensor(float32, [1, 32], init=1.0),
            [self.blockIdx.x, 0],
        )


def test_a_block_that_leaves_before_the_cluster_barrier_is_a_deadlock():
    from anybit.interp.errors import DeadlockError

    with pytest.raises(DeadlockError, match=r"waits at cluster_sync for its cluster \(1 of 2 blocks"):
        anybit.interpret(OneBlockLeaves(), np.zeros((4, 32), dtype=np.float32))


def test_a_remote_read_needs_clusters():
    with pytest.raises(VerificationError, match="without clusters"):
        RemoteReadWithoutClusters().program(None)


def test_cluster_code_for_sm_90a():
    """The kernel carries its cluster shape, barriers the cluster's threads and maps the neighbour's shared
    memory; an architecture without clusters is refused."""
    pytest.importorskip("cuda.bindings", reason="NVRTC bindings (the [cuda] extra) are not installed")
    from anybit.runtime import compiler

    source = compiler.generate_source(NeighbourSums((2, 2)).program(None, None, 6), "sm_90a").source
    assert "__cluster_dims__(2, 2, 1)" in source
    assert source.count("__cluster_barrier_arrive();") == 2
    assert "__cluster_map_shared_rank" in source
    compiled = anybit.compile(NeighbourSums((2, 2)), None, None, 6, arch="sm_90a")
    assert ".reqnctapercluster 2, 2, 1" in compiled.ptx
    assert "barrier.cluster.wait" in compiled.ptx and "mapa" in compiled.ptx
    assert compiled.resources.stack_frame_bytes == 0
    with pytest.raises(ValueError, match="sm_90"):
        compiler.generate_source(NeighbourSums((2, 1)).program(None, None, 4), "sm_80")
    # Past the portable 8 blocks the cluster is compiled in the same way (the opt-in is at load time).
    wide = anybit.compile(NeighbourSums((16, 1)), None, None, 32, arch="sm_90a")
    assert ".reqnctapercluster 16, 1, 1" in wide.ptx and wide.kernel_source.cluster == (16, 1, 1)


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("cluster", "gx_blocks"), [((2, 1), 64), ((4, 2), 40), ((8, 1), 16), ((16, 1), 32), ((5, 2), 20)]
)
def test_blocks_read_their_neighbours_shared_memory_on_the_gpu(cluster, gx_blocks):
    """Portable clusters, and past 8 blocks the H200's non-portable ones (the runtime opts the kernel in)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    x = torch.randn(gx_blocks * cluster[1] * 2, COLUMNS, device="cuda")
    y = torch.full_like(x, float("nan"))
    NeighbourSums(cluster)(x, y, gx_blocks)
    torch.cuda.synchronize()
    expected = _expected(x.cpu().numpy(), cluster, gx_blocks)
    np.testing.assert_allclose(y.cpu().numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="not whole clusters"):
        NeighbourSums(cluster)(x, y, gx_blocks - 1)
