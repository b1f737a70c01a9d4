"""Tensor-core throughput at the decode kernel's shapes: ``mma.sync`` against Hopper's ``wgmma``, small N.

At 16 rows of x the decode kernel issues two ``mma.sync.m16n8k16`` per 16×16 weight tile, and Nsight
Compute found its loop latency-bound with the tensor pipe 32% busy (BENCHMARKS.md, eighth session). Hopper's
``wgmma`` takes the weights as the A operand from registers (as the converted tile already is) and x from
shared memory, asynchronously, for a warpgroup of 4 warps at a time — but at N = 8 or 16 (the rows of x) it
may not run at the rate it reaches on wide tiles. Before the VM grows a ``wgmma`` path, this measures both on
the GPU with nothing else in the loop: every SM runs ``blocks`` blocks whose warps each issue ``chains``
independent accumulations ``iterations`` times (``mma.sync``: one instruction per chain and step;
``wgmma.m64nNk16``: one per chain and step per warpgroup, committed and waited once a step).

Reports per variant: TFLOP/s, and tensor-pipe cycles per 16×8×16 product per SM sub-partition (an
``mma.sync`` is one such product; a ``wgmma.m64nNk16`` is 4·N/8 of them), at the measured SM clock.

Usage (GPU, repository root)::

    python benchmarks/tensor_probe.py [--out DIR]
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks import harness  # noqa: E402

ITERATIONS = 4096
SMS = 132
#: (instruction, N, chains, warps a block, blocks an SM): the decode kernel runs 2–16 warps an SM scheduler.
VARIANTS = [
    *(("mma", 8, chains, 8, blocks) for chains in (1, 2, 4) for blocks in (1, 2, 4)),
    *(("wgmma", n, chains, 8, blocks) for n in (8, 16) for chains in (1, 2, 4) for blocks in (1, 2, 4)),
]


def mma_source(name: str, chains: int) -> str:
    """CUDA C of ``chains`` independent ``mma.sync.m16n8k16`` f32 accumulations per warp, ``n`` steps."""
    body = "\n".join(
        '      asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, '
        '{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};" '
        f': "+f"(acc[{c}][0]), "+f"(acc[{c}][1]), "+f"(acc[{c}][2]), "+f"(acc[{c}][3]) '
        ': "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));'
        for c in range(chains)
    )
    return f"""
extern "C" __global__ void {name}(float* out, int n) {{
  const unsigned a0 = 0x3c003c00u ^ (threadIdx.x & 7u), a1 = a0 ^ 1u, a2 = a0 ^ 2u, a3 = a0 ^ 3u;
  const unsigned b0 = 0x38003800u ^ (threadIdx.x & 3u), b1 = b0 ^ 4u;
  float acc[{chains}][4] = {{}};
  for (int i = 0; i < n; ++i) {{
{body}
  }}
  float s = 0.f;
  for (int c = 0; c < {chains}; ++c) s += acc[c][0] + acc[c][1] + acc[c][2] + acc[c][3];
  out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}}
"""


def wgmma_source(name: str, n: int, chains: int) -> str:
    """CUDA C of ``chains`` independent ``wgmma.m64nNk16`` f32 accumulations per warpgroup (A from
    registers, B from a K-major shared tile without swizzle), committed and waited once per step."""
    regs = n // 2  # f32 accumulators a thread: 64·N / 128
    outs = ", ".join(f"%{i}" for i in range(regs))
    body = []
    for c in range(chains):
        bindings = ", ".join(f'"+f"(acc[{c}][{j}])' for j in range(regs))
        body.append(
            f'      asm volatile("{{\\n.reg .pred p;\\nsetp.ne.b32 p, 1, 0;\\n'
            f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.f16.f16 {{{outs}}}, "
            f'{{%{regs},%{regs + 1},%{regs + 2},%{regs + 3}}}, %{regs + 4}, p, 1, 1, 0;\\n}}" '
            f': {bindings} : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc));'
        )
    lines = "\n".join(body)
    return f"""
extern "C" __global__ void {name}(float* out, int n) {{
  __shared__ __align__(1024) unsigned short tile[4096];
  for (int i = threadIdx.x; i < 4096; i += blockDim.x) tile[i] = (unsigned short)(0x3800 ^ (i & 7));
  __syncthreads();
  // K-major B without swizzle: 8x8 core matrices of 128 contiguous bytes; the next along K 128 bytes on,
  // the next along N 256 bytes on (offsets in 16-byte units in bits 16-29 and 32-45).
  const unsigned address = (unsigned)__cvta_generic_to_shared(tile);
  const unsigned long long desc = (unsigned long long)((address >> 4) & 0x3FFF)
      | ((unsigned long long)(128 >> 4) << 16) | ((unsigned long long)(256 >> 4) << 32);
  const unsigned a0 = 0x3c003c00u ^ (threadIdx.x & 7u), a1 = a0 ^ 1u, a2 = a0 ^ 2u, a3 = a0 ^ 3u;
  float acc[{chains}][{regs}] = {{}};
  for (int i = 0; i < n; ++i) {{
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
{lines}
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
  }}
  float s = 0.f;
  for (int c = 0; c < {chains}; ++c)
    for (int j = 0; j < {regs}; ++j) s += acc[c][j];
  out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}}
"""


def kernel_source(instruction: str, n: int, chains: int, warps: int, blocks: int):
    """The ``CudaKernelSource`` of one variant (grid: ``blocks`` blocks for each of the 132 SMs)."""
    from anybit.cuda.kernel_source import CudaKernelSource, KernelParam
    from anybit.dtypes import float32, int32

    name = f"probe_{instruction}_n{n}_c{chains}"
    source = mma_source(name, chains) if instruction == "mma" else wgmma_source(name, n, chains)
    return CudaKernelSource(
        name=name,
        source=source,
        params=(KernelParam("out", "pointer", float32), KernelParam("n", "scalar", int32)),
        grid=(SMS * blocks, 1, 1),
        block_threads=32 * warps,
        dynamic_shared_bytes=0,
        workspace_bytes=0,
        workspace_clean=False,
        alignment_requirements=(("out", 16),),
    )


def products_per_step(instruction: str, n: int, chains: int, warps: int) -> int:
    """16×8×16 products a block computes per loop step."""
    if instruction == "mma":
        return warps * chains
    return (warps // 4) * chains * 4 * (n // 8)


def measure(variant: tuple, clock_mhz: float) -> dict:
    """Time one variant; TFLOP/s and tensor cycles per 16×8×16 product per SM sub-partition."""
    from anybit.runtime.compiler import compile_source

    instruction, n, chains, warps, blocks = variant
    compiled = compile_source(kernel_source(*variant), arch="sm_90a")
    out = torch.empty(SMS * blocks * 32 * warps, device="cuda")
    compiled(out, ITERATIONS)
    torch.cuda.synchronize()
    us = harness.time_cuda_graph(lambda: compiled(out, ITERATIONS), runs=20).median_us
    products = products_per_step(instruction, n, chains, warps) * blocks * SMS * ITERATIONS
    flops = products * 2 * 16 * 8 * 16
    per_partition = products / (SMS * 4)
    return {
        "instruction": instruction,
        "n": n,
        "chains": chains,
        "warps": warps,
        "blocks_per_sm": blocks,
        "us": us,
        "tflops": flops / us / 1e6,
        "cycles_per_product": us * clock_mhz / per_partition,
        "registers": compiled.resources.registers,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure every variant; exit status 2 without a GPU."""
    options = harness.gpu_options(__doc__.splitlines()[0], argv, "benchmarks/tensor_probe.py")
    if options is None:
        return 2
    from anybit.runtime.timing import gpu_cycles_per_us

    clock_mhz = gpu_cycles_per_us(torch.cuda.current_device())
    rows = []
    print(f"SM clock {clock_mhz:.0f} MHz")
    print(
        "| instruction | N | chains | warps | blocks/SM | µs | TFLOP/s | cycles a 16x8x16 a sub-partition |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for variant in VARIANTS:
        try:
            row = measure(variant, clock_mhz)
        except Exception as error:  # a variant that fails to build or run is a result
            row = dict(zip(("instruction", "n", "chains", "warps", "blocks_per_sm"), variant, strict=True))
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
            print(f"| {' | '.join(str(v) for v in variant)} | failed: {row['error']} |||")
            rows.append(row)
            continue
        rows.append(row)
        print(
            f"| {row['instruction']} | {row['n']} | {row['chains']} | {row['warps']} "
            f"| {row['blocks_per_sm']} | {row['us']:.1f} | {row['tflops']:.0f} "
            f"| {row['cycles_per_product']:.2f} |",
            flush=True,
        )
    harness.write_json(
        options.out,
        "tensor_probe.json",
        {"gpu": harness.gpu_description(), "clock_mhz": clock_mhz, "rows": rows},
    )
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
