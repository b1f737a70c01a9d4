"""A streaming read written in the VM: how fast any kernel can read a given number of bytes on this GPU.

``benchmarks/read_floor.py`` times reads of each decode target cell's bytes; torch's reductions (``amax``,
``sum``) are one kind of reader, tuned for large tensors, and cuBLAS's fp16 GEMM over a weight of the same
bytes another. This is the reader with nothing else to do: persistent blocks (a few an SM), each thread
``vectors`` 16-byte loads a step from a grid-strided walk over whole tiles, the loads summed in f32 (so
that none is dead) and one f32 a block written out. Its best configuration over a small sweep is the
floor a decode kernel of the same bytes is held to.
"""

from __future__ import annotations

from collections.abc import Callable

import anybit
from anybit.layout import local

#: (warps, 16-byte loads a thread a step, blocks an SM) the read floor tries; the best counts.
CONFIGURATIONS: tuple[tuple[int, int, int], ...] = ((8, 4, 4), (8, 8, 2), (4, 8, 4), (8, 2, 8), (16, 4, 2))
#: f32 elements one thread loads per 16-byte vector.
VECTOR = 4


class StreamRead(anybit.Script):
    """Sum ``n`` f32 values (``n`` a multiple of :meth:`tile`) with ``grid`` persistent blocks: block b
    reads tiles b, b + grid, ... of [vectors, 32·warps·4] elements (each thread ``vectors`` 16-byte
    vectors a tile) and writes its total to ``out[b]``."""

    def __init__(self, warps: int = 8, vectors: int = 4) -> None:
        super().__init__()
        if warps < 1 or warps > 32 or vectors < 1:
            raise ValueError(
                f"expected 1 to 32 warps and at least one vector a thread, got {warps} and {vectors}"
            )
        self.warps, self.vectors = warps, vectors

    def tile(self) -> int:
        """f32 elements a block reads a step: vectors · threads · 4."""
        return self.vectors * 32 * self.warps * VECTOR

    def __call__(
        self,
        data: anybit.ptr(anybit.float32),
        out: anybit.ptr(anybit.float32),
        n: anybit.int32,
        grid: anybit.int32,
    ):
        threads, vectors = 32 * self.warps, self.vectors
        self.attrs.blocks = [grid]
        self.attrs.warps = self.warps
        self.assume_divisible(n, self.tile())
        layout = local(vectors, 1).spatial(1, threads).local(1, VECTOR)
        rows = self.global_view(data, anybit.float32, [n // (threads * VECTOR), threads * VECTOR])
        totals = self.global_view(out, anybit.float32, [grid, 1])
        acc = self.register_tensor(anybit.float32, [vectors, threads * VECTOR], layout=layout, init=0.0)
        for step in self.range(self.blockIdx.x, n // self.tile(), grid, unroll=2):
            # step < n / tile: every tile lies inside the data, no bounds checks
            tile = self.load_global(
                rows, [step * vectors, 0], [vectors, threads * VECTOR], layout=layout, in_bounds=True
            )
            acc += tile
        total = self.sum(self.sum(acc, 1, keepdim=True), 0, keepdim=True)
        self.store_global(totals, total, [self.blockIdx.x, 0])


def stream_reads(data, nbytes: int) -> dict[str, tuple[Callable[[], object], int]]:
    """Launches of each of :data:`CONFIGURATIONS` reading the first ``nbytes`` of ``data`` (a CUDA f32
    tensor) in whole tiles, as name → (call, the bytes it reads: at most a tile less than ``nbytes``); a
    configuration whose tile is larger than ``nbytes`` is left out."""
    import torch

    from anybit.runtime.compiler import launch_script

    sms = torch.cuda.get_device_properties(data.device).multi_processor_count
    found = {}
    for warps, vectors, per_sm in CONFIGURATIONS:
        kernel = StreamRead(warps=warps, vectors=vectors)
        n = nbytes // 4 - nbytes // 4 % kernel.tile()
        if n == 0:
            continue
        grid = sms * per_sm
        out = torch.empty(grid, device=data.device, dtype=torch.float32)
        args = (data, out, n, grid)
        call = lambda kernel=kernel, args=args: launch_script(kernel, args)  # noqa: E731
        found[f"stream_vm_w{warps}_v{vectors}_b{per_sm}"] = (call, 4 * n)
    return found
