"""Would pulling the next projection's weights into L2, while a decoder layer does its other work, pay off?

An experiment for issue #5 before anything is built into the kernels. At batch 1 a Llama-3-8B layer spends
~20 µs on attention and element-wise work during which DRAM is nearly idle, and each of its four quantized
projections pays ~4–5 µs of fixed cost, the first DRAM round trips among it (BENCHMARKS.md, sixth session).
This runs ``--layers`` decoder layers of int4 :class:`anybit.nn.QuantizedLinear` projections (qkv, o,
gate_up, down; distinct weights) with stand-ins for the work between them (attention over a 145-token cache
after qkv, a residual add and RMSNorm after o and after down, SiLU·up after gate_up), captured in one CUDA
graph, five ways:

* ``plain``: projections and stand-ins in order on one stream;
* ``prefetched``: after each projection a second stream, forked inside the graph, reads the first
  ``--prefetch-mb`` MB of the next projection's packed weight (an int32 ``amax``: the bytes land in L2)
  while the first stream runs the stand-in; the next projection waits for both;
* ``bulk``: the same bytes (at most the weight) asked of the L2 by a small kernel of
  ``cp.async.bulk.prefetch.L2`` instructions (:data:`PREFETCH_BLOCKS` blocks, 4 KB each; the copy engine
  fills the L2 after the kernel exits), and nothing waits for it until the end of the pass: a hint that
  never holds the next projection back (measured in the eighth session: ``prefetched`` took a layer from
  72 to 110 µs — a full-GPU reduction competing for the SMs, then a join the next projection waited on);
* ``bulk_joined``: the bulk prefetch with the next projection waiting for it, as ``prefetched`` does;
* ``projections``: the projections alone, in a row (the floor without any work between them).

Prints µs per layer of each and writes ``DIR/l2_prefetch.json``. If a prefetching mode beats ``plain`` by
several µs a layer, building it into the model (a prefetch after each projection) is worth it.

Usage (GPU, repository root)::

    python benchmarks/l2_prefetch.py [--type int4] [--layers 8] [--prefetch-mb 24] [--out DIR]
"""

from __future__ import annotations

import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402
from benchmarks.layer_sequence import LAYER_SHAPES, graph_us_per_call  # noqa: E402

HIDDEN, HEADS, HEAD_DIM, CONTEXT, INTERMEDIATE = 4096, 32, 128, 145, 14336
MODES = ("plain", "prefetched", "bulk", "bulk_joined", "projections")
#: Blocks of 128 threads of the bulk-prefetch kernel, and the bytes one prefetch instruction asks for.
PREFETCH_BLOCKS, PREFETCH_CHUNK = 4, 4096

BULK_PREFETCH = """
extern "C" __global__ void anybit_l2_bulk_prefetch(const unsigned char* data, int chunks) {
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" :: "l"(data + (long long)c * CHUNK), "r"(CHUNK)
                 : "memory");
  }
}
""".replace("CHUNK", str(PREFETCH_CHUNK))


def bulk_prefetch_source():
    """The ``CudaKernelSource`` of the bulk L2 prefetch (sm_90+: ``cp.async.bulk.prefetch.L2.global``)."""
    from anybit.cuda.kernel_source import CudaKernelSource, KernelParam
    from anybit.dtypes import int32, uint8

    return CudaKernelSource(
        name="anybit_l2_bulk_prefetch",
        source=BULK_PREFETCH,
        params=(KernelParam("data", "pointer", uint8), KernelParam("chunks", "scalar", int32)),
        grid=(PREFETCH_BLOCKS, 1, 1),
        block_threads=128,
        dynamic_shared_bytes=0,
        workspace_bytes=0,
        workspace_clean=False,
        alignment_requirements=(("data", 16),),
    )


class Layer:
    """One decoder layer's quantized projections, inputs, outputs and stand-in tensors."""

    def __init__(self, dtype: str) -> None:
        from anybit.nn import QuantizedLinear

        self.projections = {}
        for name, n, k in LAYER_SHAPES:
            linear = torch.nn.Linear(k, n, bias=False, device="cuda", dtype=torch.float16)
            torch.nn.init.normal_(linear.weight, std=0.02)
            self.projections[name] = QuantizedLinear.from_linear(linear, dtype, group_size=128)
            del linear
        self.inputs = {k: torch.randn(1, k, device="cuda", dtype=torch.float16) for _, _, k in LAYER_SHAPES}
        self.keys = torch.randn(1, HEADS, CONTEXT, HEAD_DIM, device="cuda", dtype=torch.float16)
        self.values = torch.randn_like(self.keys)
        self.residual = torch.randn(1, HIDDEN, device="cuda", dtype=torch.float16)
        self.norm_weight = torch.ones(HIDDEN, device="cuda", dtype=torch.float16)

    def project(self, name: str) -> torch.Tensor:
        return self.projections[name](self.inputs[self.projections[name].in_features])

    def stand_in(self, after: str, output: torch.Tensor) -> None:
        """The work a model does between ``after`` and the next projection (on the current stream)."""
        if after == "qkv":
            q = output[:, :HIDDEN].reshape(1, HEADS, 1, HEAD_DIM)
            torch.nn.functional.scaled_dot_product_attention(q, self.keys, self.values)
        elif after == "gate_up":
            gate, up = output.split(INTERMEDIATE, dim=-1)
            torch.nn.functional.silu(gate) * up
        else:  # o, down: the residual add and the next RMSNorm
            hidden = self.residual + output
            torch.nn.functional.rms_norm(hidden, (HIDDEN,), self.norm_weight, 1e-5)

    def weight_bytes(self, name: str, limit: int) -> torch.Tensor:
        """The first ``limit`` bytes of a projection's packed weight, as int32 words."""
        data = self.projections[name].packed_weight.data.view(-1)
        count = min(data.numel(), limit) // 4 * 4
        return data[:count].view(torch.int32)


def layer_calls(
    layers: list[Layer], mode: str, prefetch_bytes: int, side: torch.cuda.Stream, prefetch=None
) -> list:
    """The calls of one pass over ``layers`` in ``mode`` (:data:`MODES`); ``prefetch``: the compiled bulk
    prefetch kernel (the bulk modes). The bulk mode's side stream rejoins once, in the pass's last call."""
    order = [name for name, _, _ in LAYER_SHAPES]
    steps = [(layer, name) for layer in layers for name in order]
    calls = []
    for index, (layer, name) in enumerate(steps):
        following = steps[(index + 1) % len(steps)]
        last = index == len(steps) - 1

        def step(layer=layer, name=name, following=following, last=last) -> None:
            output = layer.project(name)
            if mode == "projections":
                return
            if mode != "plain":
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    data = following[0].weight_bytes(following[1], prefetch_bytes)
                    if mode == "prefetched":
                        data.amax()
                    else:
                        prefetch(data.view(torch.uint8), data.numel() * 4 // PREFETCH_CHUNK)
            layer.stand_in(name, output)
            if mode in ("prefetched", "bulk_joined") or (mode == "bulk" and last):
                torch.cuda.current_stream().wait_stream(side)

        calls.append(step)
    return calls


def main(argv: list[str] | None = None) -> int:
    def arguments(parser) -> None:
        parser.add_argument("--type", default="int4")
        parser.add_argument("--layers", type=int, default=8)
        parser.add_argument("--prefetch-mb", type=float, default=24.0)

    options = harness.gpu_options(__doc__.splitlines()[0], argv, "benchmarks/l2_prefetch.py", arguments)
    if options is None:
        return 2
    layers = [Layer(options.type) for _ in range(options.layers)]
    for layer in layers:  # the first calls tune (or load) each shape's configuration
        for name, _, _ in LAYER_SHAPES:
            layer.project(name)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    prefetch_bytes = int(options.prefetch_mb * 1e6)
    result = {"type": options.type, "layers": options.layers, "prefetch_mb": options.prefetch_mb}
    from anybit.runtime.compiler import compile_source

    prefetch = compile_source(bulk_prefetch_source())
    for mode in MODES:
        calls = layer_calls(layers, mode, prefetch_bytes, side, prefetch)
        per_call = graph_us_per_call(calls)
        result[f"{mode}_us_per_layer"] = round(per_call * len(LAYER_SHAPES), 2)
        print(f"{mode}: {result[f'{mode}_us_per_layer']} µs per layer", flush=True)
    harness.write_json(options.out, "l2_prefetch.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
