"""The binary route (:mod:`anybit.kernels.decode_popc`: 1- and 2-bit codes on ``mma.m16n8k256 .and.popc``)
against ``quantized_matmul`` and the int8 route's kernel on the same packed weight, one row of x, float16,
zero points, group 128.

For each type and shape it times every binary-route configuration (warps, split-K, chunks ahead) by its
kernel's own device time (CUDA graph, L2 flushed before each replay, median; x's bit planes made once
outside the timing by the torch reference), ``quantized_matmul`` (the suite's tuning pinned: the decode
kernel or the int8 route, as the dispatch chose, with x's preparation) and the int8 route's decode kernel
alone in its pinned configuration, checks each against float64 (outputs poisoned), and reports them as % of
the read ceiling measured in the same process for the bytes that must move.

Usage (repository root, on the GPU machine)::

    python benchmarks/popc_route.py [--types uint1,uint2] [--shapes 57344x8192,8192x8192] [--out DIR]
"""

from __future__ import annotations

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import anybit  # noqa: E402
from anybit.kernels import dequantize, pack, quantize  # noqa: E402
from anybit.kernels.decode_popc import build_configuration, kernel_for  # noqa: E402
from anybit.kernels.popc_activations import prepare_popc_x  # noqa: E402
from anybit.runtime.compiler import launch_script  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks.int8_route import SUITE_TUNING, kernel_us, precompile, relative_error  # noqa: E402
from benchmarks.matmul_anchors import read_ceilings  # noqa: E402

WARPS = (4, 8)
SPLITS = (1, 2, 4, 8)
AHEAD = (1, 2, 3)


def configurations(n: int, k: int) -> list[tuple[int, int, int]]:
    """(warps, split, ahead) timed on an [n, k] weight: blocks that divide N, ≥ 4 chunks a split."""
    return [
        (warps, split, ahead)
        for warps in WARPS
        for split in SPLITS
        for ahead in AHEAD
        if n % (warps * 32) == 0 and k // 128 // split >= 4
    ]


def probe(
    type_name: str, n: int, k: int, ceiling_tb_s: float, *, device: str = "cuda", timer=kernel_us
) -> dict:
    """One weight: every binary-route configuration and quantized_matmul, timed and checked. On
    ``device="cpu"`` the kernels run on the interpreter (a check of the probe itself)."""
    from anybit.ops import quantized_matmul

    weight = torch.randn(n, k, device=device, dtype=torch.float16) * 0.02
    q = quantize(weight, type_name, group_size=128, zero_point=True, act_dtype=torch.float16)
    x = torch.randn(1, k, device=device, dtype=torch.float16)
    launch = launch_script if device == "cuda" else lambda kernel, args: anybit.interpret(kernel, *args)
    reference = x.double() @ dequantize(q).double().t()
    nbytes = n * k * q.dtype.nbits // 8 + 2 * q.scales.numel() * 2 + x.numel() * 2 + n * 2
    row: dict = {"type": type_name, "n": n, "k": k, "m": 1, "bytes": nbytes, "configs": []}
    packed = pack(q)
    y = quantized_matmul(x, packed)
    row["quantized_matmul_error"] = relative_error(y, reference)
    timer(lambda: quantized_matmul(x, packed))  # the first timing on a fresh weight runs slow
    row["quantized_matmul_us"] = timer(lambda: quantized_matmul(x, packed))
    planes, inverse, sums = prepare_popc_x(x, q.dtype.nbits)
    for warps, split, ahead in configurations(n, k):
        kernel = kernel_for(q.dtype.nbits, torch.float16, warps, split, ahead, True)
        entry: dict = {"warps": warps, "split": split, "ahead": ahead}
        try:
            out = torch.full((1, n), float("nan"), device=device, dtype=torch.float16)
            args = (packed.data, planes, inverse, sums, packed.scales, packed.zeros, out, n, k)
            launch(kernel, args)
            entry["error"] = relative_error(out, reference)
            entry["us"] = timer(lambda kernel=kernel, args=args: launch(kernel, args))
        except Exception as failure:  # a failing configuration is a result
            entry["failure"] = f"{type(failure).__name__}: {str(failure)[:200]}"
        row["configs"].append(entry)
    timed = [c for c in row["configs"] if c.get("us")]
    if timed:
        row["best"] = min(timed, key=lambda c: c["us"])
    for key, us in (
        ("popc", row.get("best", {}).get("us")),
        ("quantized_matmul", row["quantized_matmul_us"]),
    ):
        row[f"{key}_pct"] = None if not us else nbytes / (us * 1e-6) / (ceiling_tb_s * 1e12) * 100
    return row


def main(argv: list[str] | None = None) -> int:
    def extra(parser) -> None:
        parser.add_argument("--tuning", type=pathlib.Path, default=SUITE_TUNING)
        parser.add_argument("--types", default="uint1,uint2")
        parser.add_argument("--shapes", default="57344x8192,8192x28672,8192x8192")

    options = harness.gpu_options(__doc__.split("\n\n")[0], argv, "popc_route.py", extra)
    if options is None:
        return 2
    started = time.perf_counter()
    pinned = anybit.runtime.load_tuning(options.tuning) if options.tuning.exists() else 0
    print(f"quantized_matmul: {pinned} tuned configurations pinned from {options.tuning}")
    ceiling = read_ceilings()["best_tb_s"]
    print(f"{harness.gpu_description()}; read ceiling {ceiling:.2f} TB/s", flush=True)
    print("| type | N × K | binary kernel µs (warps, split, ahead) | % | quantized_matmul µs | % | errors |")
    print("|---|---|---|---|---|---|---|")
    shapes = [tuple(int(v) for v in shape.split("x")) for shape in options.shapes.split(",")]
    from anybit.runtime.device import current_arch

    precompile(
        [
            (anybit.dtype(type_name).nbits, *config, n, k, current_arch())
            for type_name in options.types.split(",")
            for n, k in shapes
            for config in configurations(n, k)
        ],
        build_configuration,
    )
    rows = []
    nan = float("nan")
    for type_name in options.types.split(","):
        for n, k in shapes:
            row = probe(type_name, n, k, ceiling)
            rows.append(row)
            best = row.get("best", {})
            print(
                f"| {type_name} | {n}×{k} | {best.get('us', nan):.1f} ({best.get('warps')}, "
                f"{best.get('split')}, {best.get('ahead')}) | {row['popc_pct'] or nan:.0f}% | "
                f"{row['quantized_matmul_us'] or nan:.1f} | "
                f"{row['quantized_matmul_pct'] or nan:.0f}% | {best.get('error', nan):.1e}, "
                f"{row['quantized_matmul_error']:.1e} |",
                flush=True,
            )
            for config in row["configs"]:
                print(f"    {config}")
    harness.write_json(
        options.out,
        "popc_route.json",
        {"gpu": harness.gpu_description(), "ceiling_tb_s": ceiling, "rows": rows},
    )
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
