"""The benchmark suite in one GPU call: ceilings, the fp16 matmul example vs cuBLAS, launch overhead.

Usage (on a GPU machine, from the repository root): ``python benchmarks/run_all.py --out DIR``.
Writes ``DIR/benchmarks.json`` and ``DIR/benchmarks.md`` (the table BENCHMARKS.md records) and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
import traceback

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))

from benchmarks.ceilings import cublas_tflops, read_bandwidth_bytes_per_s  # noqa: E402
from benchmarks.harness import gpu_description, time_cuda  # noqa: E402

MATMUL_CONFIGS = [
    {"block_m": 128, "block_n": 128, "block_k": 32, "warps": 4, "stages": 3},
    {"block_m": 128, "block_n": 128, "block_k": 32, "warps": 8, "stages": 4},
    {"block_m": 128, "block_n": 128, "block_k": 64, "warps": 8, "stages": 3},
    {"block_m": 128, "block_n": 256, "block_k": 32, "warps": 8, "stages": 3},
    {"block_m": 256, "block_n": 128, "block_k": 32, "warps": 8, "stages": 3},
    {"block_m": 128, "block_n": 256, "block_k": 64, "warps": 8, "stages": 3},
    {"block_m": 64, "block_n": 128, "block_k": 32, "warps": 4, "stages": 4},
]


def matmul_f16_rows(size: int) -> list[dict]:
    """The fp16 matmul example at size³ in several tile configurations, against cuBLAS on the same inputs."""
    from matmul_f16 import MatmulF16

    a = torch.randn(size, size, device="cuda", dtype=torch.float16)
    b = torch.randn(size, size, device="cuda", dtype=torch.float16)
    reference = (a.float() @ b.float()).double()
    cublas = time_cuda(lambda: a @ b, runs=50, flush=True)
    flops = 2 * size**3
    rows = []
    for config in MATMUL_CONFIGS:
        row = {"suite": "matmul_f16", "shape": f"{size}x{size}x{size}", "config": config}
        try:
            kernel = MatmulF16(**config)
            c = torch.full((size, size), float("nan"), device="cuda", dtype=torch.float16)
            kernel(a, b, c, size, size, size)
            torch.cuda.synchronize()
            error = float(torch.linalg.norm(c.double() - reference) / torch.linalg.norm(reference))
            timing = time_cuda(lambda kernel=kernel, c=c: kernel(a, b, c, size, size, size), runs=50)
            row.update(
                relative_error=error,
                anybit_us=timing.median_us,
                cublas_us=cublas.median_us,
                anybit_tflops=flops / timing.median_us / 1e6,
                cublas_tflops=flops / cublas.median_us / 1e6,
                fraction_of_cublas=cublas.median_us / timing.median_us,
                correct=bool(error < 2e-3),
            )
        except Exception as error:  # a failing configuration is a result too: record why and go on
            row.update(error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc(limit=4))
        rows.append(row)
    return rows


def launch_overhead() -> dict:
    """Host µs per eager launch (anybit vs the bare driver call vs small torch ops)."""
    from anybit.runtime.overhead import measure_launch_overhead

    return measure_launch_overhead()


def markdown(results: dict) -> str:
    """The results as the markdown section BENCHMARKS.md keeps."""
    lines = [
        f"GPU: {results['gpu']}  ",
        f"Date: {results['date']}  ",
        f"Read bandwidth ceiling: {results['read_bandwidth_tb_s']:.2f} TB/s; "
        f"cuBLAS fp16 8192³: {results['cublas_tflops_8192']:.0f} TFLOP/s",
        "",
        "| kernel | shape | config | µs | TFLOP/s | cuBLAS µs | cuBLAS TFLOP/s | × cuBLAS | rel. error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["matmul_f16"]:
        config = "{block_m}x{block_n}x{block_k}, {warps} warps, {stages} stages".format(**row["config"])
        if "error" in row:
            failure = row["error"][:80]
            lines.append(f"| fp16 matmul (example) | {row['shape']} | {config} | failed: {failure} |")
            continue
        lines.append(
            f"| fp16 matmul (example) | {row['shape']} | {config} | {row['anybit_us']:.1f} | "
            f"{row['anybit_tflops']:.0f} | {row['cublas_us']:.1f} | {row['cublas_tflops']:.0f} | "
            f"{row['fraction_of_cublas']:.2f} | {row['relative_error']:.1e} |"
        )
    overhead = results.get("launch_overhead", {})
    if overhead:
        lines += ["", "| host time per eager launch | µs |", "|---|---|"]
        lines += [f"| {name} | {value:.2f} |" for name, value in overhead.items() if isinstance(value, float)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="directory for benchmarks.json and benchmarks.md")
    parser.add_argument("--size", type=int, default=4096, help="matmul size (M = N = K)")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "gpu": gpu_description(),
        "date": datetime.date.today().isoformat(),
        "read_bandwidth_tb_s": read_bandwidth_bytes_per_s() / 1e12,
        "cublas_tflops_8192": cublas_tflops(8192),
    }
    results["matmul_f16"] = matmul_f16_rows(args.size)
    try:
        results["launch_overhead"] = launch_overhead()
    except Exception as error:
        results["launch_overhead"] = {"error": f"{type(error).__name__}: {error}"}
    (out / "benchmarks.json").write_text(json.dumps(results, indent=2, default=str))
    table = markdown(results)
    (out / "benchmarks.md").write_text(table + "\n")
    print(table)
    return 0 if all("error" not in row for row in results["matmul_f16"]) else 1


if __name__ == "__main__":
    sys.exit(main())
