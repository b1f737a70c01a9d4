"""The per-kernel floor of a chain of small kernels replayed from one CUDA graph, launched plainly and as
programmatic dependents.

A Llama-3-8B decode projection takes 5–6 µs a call in a row even with its weight already in L2
(BENCHMARKS.md, eleventh session): at these sizes a kernel's fixed cost, not DRAM, is the floor. This probe
measures the part of it no kernel body can remove: a chain of ``--length`` kernels, each reading the
previous one's output (one tile per block) and writing its own, with nothing else to do. Each grid size runs
three ways: an anybit kernel with ``wait_prior_grids`` + ``allow_dependent_grids`` launched as a dependent
(the decode kernels' scheme), the same kernel without them (launched plainly), and torch's own ``add`` for
reference. µs a kernel = graph replay time / chain length (median of ``--replays``).

Usage (GPU)::

    python benchmarks/launch_floor.py [--blocks 132,264,528,1056] [--warps 4] [--length 64] [--out DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import anybit  # noqa: E402
from anybit import float32, int32  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks.layer_sequence import graph_us_per_call  # noqa: E402

#: Floats each block reads and writes (one per thread of 4 warps).
TILE = 128


class ChainStep(anybit.Script):
    """y = x + 1, a tile a block; with ``dependent``, the wait for the previous kernel before x is read and
    the next kernel let launch right after it (as the decode kernels do)."""

    def __init__(self, dependent: bool, warps: int) -> None:
        super().__init__()
        self.dependent = dependent
        self.warps = warps

    def __call__(self, x: anybit.ptr(float32), y: anybit.ptr(float32), blocks: int32):
        self.attrs.blocks = [blocks]
        self.attrs.warps = self.warps
        gx = self.global_view(x, float32, [blocks * TILE])
        gy = self.global_view(y, float32, [blocks * TILE])
        if self.dependent:
            self.wait_prior_grids()
            self.allow_dependent_grids()
        tile = self.load_global(gx, [self.blockIdx.x * TILE], [TILE])
        self.store_global(gy, tile + 1.0, [self.blockIdx.x * TILE])


def chain_us(step, blocks: int, length: int) -> float:
    """µs a kernel of ``length`` launches of ``step`` in a row, ping-ponging two buffers, checked."""
    a = torch.zeros(blocks * TILE, device="cuda")
    b = torch.empty_like(a)
    buffers = (a, b)
    calls = [lambda i=i: step(buffers[i % 2], buffers[(i + 1) % 2], blocks) for i in range(length)]
    us = graph_us_per_call(calls)
    a.zero_()
    for call in calls:
        call()
    torch.cuda.synchronize()
    final = buffers[length % 2]
    if not torch.equal(final, torch.full_like(final, float(length))):
        raise RuntimeError(f"the chain of {length} kernels of {blocks} blocks computed the wrong values")
    return us


def torch_chain_us(blocks: int, length: int) -> float:
    """The same chain with torch's ``add`` (out=) kernels."""
    a = torch.zeros(blocks * TILE, device="cuda")
    b = torch.empty_like(a)
    buffers = (a, b)
    calls = [lambda i=i: torch.add(buffers[i % 2], 1.0, out=buffers[(i + 1) % 2]) for i in range(length)]
    return graph_us_per_call(calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", default="132,264,528,1056")
    parser.add_argument("--warps", type=int, default=4)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    options = parser.parse_args(argv)
    print(harness.gpu_description(), flush=True)
    dependent, plain = ChainStep(True, options.warps), ChainStep(False, options.warps)
    rows = []
    for blocks in (int(b) for b in options.blocks.split(",") if b):
        row = {
            "blocks": blocks,
            "warps": options.warps,
            "length": options.length,
            "dependent_us": chain_us(dependent, blocks, options.length),
            "plain_us": chain_us(plain, blocks, options.length),
            "torch_add_us": torch_chain_us(blocks, options.length),
        }
        rows.append(row)
        print(
            f"{blocks} blocks of {options.warps} warps: dependent {row['dependent_us']:.2f} µs a kernel, "
            f"plain {row['plain_us']:.2f}, torch add {row['torch_add_us']:.2f}",
            flush=True,
        )
    harness.write_json(options.out, "launch_floor.json", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
