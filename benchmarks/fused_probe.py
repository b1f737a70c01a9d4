"""What folding a decoder layer's norms and residual adds into its projections costs the projections.

For each projection of a Llama-3-8B layer (q/k/v 6144×4096 and gate/up 28672×4096 take the RMSNorm of their
input, o 4096×4096 and down 4096×14336 add into the residual stream) it times at M = 1, ``--copies``
distinct weights of a type, the plain ``quantized_matmul`` against its folded form
(``quantized_matmul_rms`` / ``quantized_matmul_add_``): each alone with the L2 flushed, and ``--copies``
calls in a row replayed as one CUDA graph (µs a call), as a model runs them. The difference is what the
kernel's own norm or residual read costs; the norm and add kernels it replaces cost a few µs each.

Usage (GPU)::

    python benchmarks/fused_probe.py [--types int4] [--copies 32] [--out DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402
from benchmarks.layer_sequence import chosen_config, graph_us_per_call  # noqa: E402

#: (name, N, K, the folded form): a Llama-3-8B layer's projections, q/k/v and gate/up fused.
PROJECTIONS = (
    ("qkv", 6144, 4096, "rms"),
    ("o", 4096, 4096, "add"),
    ("gate_up", 28672, 4096, "rms"),
    ("down", 4096, 14336, "add"),
)
EPS = 1e-5


def _weights(type_name: str, n: int, k: int, copies: int) -> list:
    from anybit.kernels import pack, quantize

    weights = []
    for _ in range(copies):
        w = torch.randn(n, k, device="cuda") * 0.02
        weights.append(pack(quantize(w, type_name, group_size=128, act_dtype=torch.float16)))
    return weights


def probe(type_name: str, copies: int) -> list[dict]:
    """One row a projection: plain and folded, alone (flushed) and in a row (graph), µs."""
    from anybit import ops

    rows = []
    for name, n, k, form in PROJECTIONS:
        weights = _weights(type_name, n, k, copies)
        x = torch.randn(1, k, device="cuda", dtype=torch.float16)
        residual = torch.randn(1, n, device="cuda", dtype=torch.float16)
        plain = [lambda w=w, x=x: ops.quantized_matmul(x, w) for w in weights]
        if form == "rms":
            folded = [lambda w=w, x=x: ops.quantized_matmul_rms(x, w, EPS) for w in weights]
        else:
            folded = [lambda w=w, x=x, r=residual: ops.quantized_matmul_add_(r, x, w) for w in weights]
        for call in plain + folded:  # tune and compile outside the timing
            call()
        torch.cuda.synchronize()
        if form == "rms":  # the folded kernel agrees with the norm then the product
            normed = (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + EPS)).half()
            expected = ops.quantized_matmul(normed, weights[0])
            got = ops.quantized_matmul_rms(x, weights[0], EPS)
            error = ((got.float() - expected.float()).norm() / expected.float().norm()).item()
        else:
            before = residual.clone()
            ops.quantized_matmul_add_(residual, x, weights[0])
            expected = before.float() + ops.quantized_matmul(x, weights[0]).float()
            error = ((residual.float() - expected).norm() / expected.norm()).item()
        row = {
            "type": type_name,
            "projection": name,
            "n": n,
            "k": k,
            "form": form,
            "plain_config": chosen_config(weights[0], x),
            "alone_plain_us": harness.time_cuda(plain[0]).median_us,
            "alone_folded_us": harness.time_cuda(folded[0]).median_us,
            "row_plain_us": graph_us_per_call(plain),
            "row_folded_us": graph_us_per_call(folded),
            "relative_error": error,
        }
        rows.append(row)
        print(
            f"{type_name} {name} {n}x{k} {form}: alone {row['alone_plain_us']:.1f} → "
            f"{row['alone_folded_us']:.1f} µs, in a row {row['row_plain_us']:.1f} → "
            f"{row['row_folded_us']:.1f} µs a call (error {error:.1e}, plain {row['plain_config']})",
            flush=True,
        )
        del weights
        torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--types", default="int4")
    parser.add_argument("--copies", type=int, default=32)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    options = parser.parse_args(argv)
    print(harness.gpu_description(), flush=True)
    rows = [row for t in options.types.split(",") if t for row in probe(t, options.copies)]
    harness.write_json(options.out, "fused_probe.json", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
