"""How many warp-level ``mma.sync`` an SM issues a cycle, for f16 (m16n8k16), int8 (m16n8k32) and binary
(m16n8k256 .and.popc) operands: the binary route's question (is the binary tensor core faster than the f16
one, as on the A100, or not).

Each warp runs ``chains`` independent accumulators (n8 tiles) through ``iters`` steps of ``dot`` on operands
held in registers (no memory in the loop), 4 blocks of 4 warps an SM; the kernel's time by CUDA events
(median) gives mma a cycle an SM at the H200's 1980 MHz, and the products a cycle (m·n·k of the shape).

Usage (repository root, on the GPU machine)::

    python benchmarks/mma_rates.py [--out DIR]
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import anybit  # noqa: E402
from benchmarks import harness  # noqa: E402

#: (name, operand dtype, accumulator dtype, the atom's k, torch storage dtype of an operand element group)
SHAPES = [
    ("f16 m16n8k16", anybit.float16, anybit.float32, 16),
    ("s8 m16n8k32", anybit.int8, anybit.int32, 32),
    ("b1 m16n8k256 and.popc", anybit.uint1, anybit.int32, 256),
]
WARPS = 4
BLOCKS_PER_SM = 4
ITERS = 4096
#: The H200's SM clock under load (the suite's clock log: 1980 MHz).
CLOCK_MHZ = 1980


class MmaLoop(anybit.Script):
    """``iters`` steps of c = a·b + c for every warp: a [16, k] and b [k, 8·chains] loaded once."""

    def __init__(self, dtype, accumulator, k: int, chains: int, iters: int) -> None:
        super().__init__()
        self.dtype, self.accumulator, self.k, self.chains, self.iters = dtype, accumulator, k, chains, iters

    def __call__(self, a: anybit.ptr(anybit.uint8), b: anybit.ptr(anybit.uint8), c: anybit.ptr(anybit.uint8)):
        rows, k, n = 16 * WARPS, self.k, 8 * self.chains
        self.attrs.blocks = [132 * BLOCKS_PER_SM]
        self.attrs.warps = WARPS
        ga = self.global_view(a, self.dtype, [rows, k])
        gb = self.global_view(b, self.dtype, [k, n], strides=[1, k])
        gc = self.global_view(c, self.accumulator, [rows, n])
        x = self.load_global(ga, [0, 0], [rows, k])
        y = self.load_global(gb, [0, 0], [k, n])
        acc = self.register_tensor(self.accumulator, [rows, n], init=0)
        for _ in self.range(self.iters):
            self.dot(x, y, acc, out=acc)
        self.store_global(gc, acc, [0, 0])  # every block the same values


def main(argv: list[str] | None = None) -> int:
    options = harness.gpu_options(__doc__.split("\n\n")[0], argv, "mma_rates.py")
    if options is None:
        return 2
    clock_mhz = CLOCK_MHZ
    print(f"{harness.gpu_description()}; SM clock {clock_mhz} MHz")
    print("| mma | chains a warp | µs | mma a cycle an SM | products a cycle an SM |")
    print("|---|---|---|---|---|")
    rows = []
    buffer = torch.randint(0, 255, (1 << 20,), dtype=torch.uint8, device="cuda")
    for name, dtype, accumulator, k in SHAPES:
        for chains in (2, 4, 8):
            kernel = MmaLoop(dtype, accumulator, k, chains, ITERS)
            out = torch.empty(1 << 20, dtype=torch.uint8, device="cuda")
            kernel(buffer, buffer, out)
            timing = harness.time_cuda(lambda kernel=kernel, out=out: kernel(buffer, buffer, out), runs=30)
            us = timing.median_us
            mmas = 132 * BLOCKS_PER_SM * WARPS * chains * ITERS
            per_cycle = mmas / 132 / (us * 1e-6 * clock_mhz * 1e6)
            products = per_cycle * 16 * 8 * k
            rows.append({"mma": name, "chains": chains, "us": us, "mma_per_cycle_sm": per_cycle})
            print(f"| {name} | {chains} | {us:.1f} | {per_cycle:.3f} | {products:.0f} |", flush=True)
    harness.write_json(options.out, "mma_rates.json", {"gpu": harness.gpu_description(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
