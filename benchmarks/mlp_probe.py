"""A Llama-3-8B MLP's decode step: the two kernels a folded model runs against the fused gated MLP kernel.

For each weight type, ``--copies`` distinct MLPs (gate/up 28672×4096 interleaved, down 4096×14336: 91 MB
a copy at int4, so a row of copies streams from DRAM as a model's layers do), each step in place on a
residual stream with the input RMSNorm folded in:

* **two kernels**: ``quantized_matmul_rms`` (the gated gate/up, silu · up in its epilogue) then
  ``quantized_matmul_add_`` (down, the residual added), tuned as the model's first calls tune them;
* **fused**: :func:`anybit.kernels.mlp.decode_gated_mlp_`, with each of ``--variants`` (stages × gate/up's
  split-K);

replayed as one CUDA graph of copies × calls (µs a MLP, median of 20 replays), at each of ``--m``; the fused
result is checked against the two kernels' (relative error of one step on a fresh stream), and each row
reports the weight bytes' rate against the read ceiling measured in the same run.

Usage (GPU)::

    python benchmarks/mlp_probe.py [--types int4] [--m 1,16] [--copies 16]
        [--variants 4x1,3x1,6x1,4x2] [--out DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from anybit import kernels, ops  # noqa: E402
from anybit.kernels.gated import interleave_gated  # noqa: E402
from anybit.kernels.mlp import decode_gated_mlp_  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks.ceilings import read_bandwidth_bytes_per_s  # noqa: E402
from benchmarks.layer_sequence import graph_us_per_call  # noqa: E402

HIDDEN, INTERMEDIATE = 4096, 14336
EPS = 1e-5


def make_mlp(
    dtype: str, seed: int, hidden: int = HIDDEN, intermediate: int = INTERMEDIATE, device: str = "cuda"
) -> tuple[kernels.PackedWeight, kernels.PackedWeight]:
    """One MLP's packed gate/up pair and down, random normal weights (std 0.02)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    shape = (intermediate, hidden)
    gate, up = (torch.randn(shape, device=device, generator=generator) * 0.02 for _ in range(2))
    down = torch.randn(hidden, intermediate, device=device, generator=generator) * 0.02
    pair_layout = kernels.choose_layout(dtype, 2 * intermediate, hidden, 128, gated=True)
    pair = kernels.pack(kernels.quantize(interleave_gated(gate, up), dtype), layout=pair_layout)
    down_layout = kernels.choose_layout(dtype, hidden, intermediate, 128, operand="a")
    return pair, kernels.pack(kernels.quantize(down, dtype), layout=down_layout)


def fused_against_two_kernels(stream: torch.Tensor, pair, down) -> float:
    """Relative difference of one fused step from the two kernels' step (each on a copy of ``stream``)."""
    expected, found = stream.clone(), stream.clone()
    two_kernels(expected, pair, down)
    decode_gated_mlp_(found, found, pair, down, rms_eps=EPS)
    return float((found.float() - expected.float()).norm() / expected.float().norm())


def two_kernels(stream: torch.Tensor, pair, down) -> None:
    """The folded model's MLP: gate/up (RMS folded, silu · up) then down added into the stream."""
    h = ops.quantized_matmul_rms(stream, pair, EPS)
    ops.quantized_matmul_add_(stream, h, down)


def weight_bytes(pair, down) -> int:
    return sum(t.numel() * t.element_size() for p in (pair, down) for t in (p.data, p.scales))


def run(
    dtype: str,
    rows: list[int],
    copies: int,
    variants: list[tuple[int, int]],
    ceiling: float,
    shape: tuple[int, int] = (HIDDEN, INTERMEDIATE),
    device: str = "cuda",
) -> dict:
    """One weight type's rows (see the module docstring); ``shape`` (hidden, intermediate) and ``device``
    for a check at small sizes."""
    mlps = [make_mlp(dtype, seed, *shape, device=device) for seed in range(copies)]
    bytes_per_mlp = weight_bytes(*mlps[0])
    result: dict = {"type": dtype, "copies": copies, "mb_per_mlp": round(bytes_per_mlp / 1e6, 1), "rows": []}
    for m in rows:
        stream = torch.randn(m, shape[0], dtype=torch.float16, device=device)
        error = fused_against_two_kernels(stream, *mlps[0])
        row: dict = {"m": m, "rel_error_vs_two_kernels": error}
        work = stream.clone()
        row["two_kernels_us"] = graph_us_per_call(
            [lambda p=p, d=d, w=work: two_kernels(w, p, d) for p, d in mlps]
        )
        for stages, split in variants:
            calls = [
                lambda p=p, d=d, w=work, s=stages, k=split: decode_gated_mlp_(
                    w, w, p, d, rms_eps=EPS, stages=s, split=k
                )
                for p, d in mlps
            ]
            row[f"fused_{stages}x{split}_us"] = graph_us_per_call(calls)
        best = min(value for key, value in row.items() if key.startswith("fused"))
        row["fused_best_us"] = best
        row["speedup"] = row["two_kernels_us"] / best
        row["fused_pct_of_ceiling"] = 100 * bytes_per_mlp / (best * 1e-6) / ceiling
        print(
            f"{dtype} M={m}: two kernels {row['two_kernels_us']:.2f} µs, fused "
            + ", ".join(f"{k[6:-3]} {v:.2f}" for k, v in row.items() if k.startswith("fused_") and "x" in k)
            + f" µs ({row['speedup']:.2f}×, {row['fused_pct_of_ceiling']:.0f}% of the read ceiling), "
            f"error vs two kernels {error:.1e}",
            flush=True,
        )
        result["rows"].append(row)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default="int4")
    parser.add_argument("--m", default="1,16", help="comma-separated rows of x")
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument(
        "--variants", default="4x1,3x1,6x1,4x2", help="the fused kernel's stages x split-K to time"
    )
    parser.add_argument("--out", type=pathlib.Path, default=None)
    options = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/mlp_probe.py needs a CUDA GPU")
        return 2
    ceiling = read_bandwidth_bytes_per_s()
    print(f"{harness.gpu_description()}, read ceiling {ceiling / 1e12:.2f} TB/s")
    rows = [int(m) for m in options.m.split(",") if m]
    variants = [tuple(int(v) for v in item.split("x")) for item in options.variants.split(",") if item]
    results = [
        run(dtype, rows, options.copies, variants, ceiling) for dtype in options.types.split(",") if dtype
    ]
    harness.write_json(
        options.out, "mlp_probe.json", {"read_ceiling_bytes_per_s": ceiling, "results": results}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
