"""The int8 route (:mod:`anybit.kernels.decode_int8`) against ``quantized_matmul`` on the same packed
weight: 1-, 2- and 4-bit unsigned codes with zero points, group 128, float16, decode rows.

For each type, shape and M it times every configuration of the int8-route kernel (warps, m16 tiles a warp,
split-K, chunks ahead, form) and ``quantized_matmul``'s tuned decode kernel (the suite's tuning pinned), by
their kernels' own device time (CUDA graph, L2 flushed before each replay, median), checks both against
float64 (outputs poisoned), and reports each as % of the read ceiling measured in the same process for the
bytes that must move. The route's whole call — the ``PrepareX`` kernel that makes x's fixed point, then the
decode kernel, a dependent launch — is timed for each form's best configuration; ``PrepareX`` alone too.

Usage (repository root, on the GPU machine)::

    python benchmarks/int8_route.py [--types uint1,uint2,uint4] [--shapes 57344x8192,8192x28672,8192x8192]
        [--ms 1] [--out DIR]
"""

from __future__ import annotations

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import anybit  # noqa: E402
from anybit.kernels import dequantize, pack, quantize  # noqa: E402
from anybit.kernels.decode_int8 import build_configuration, check_int8_route, kernel_for  # noqa: E402
from anybit.kernels.int8_activations import prepare_kernel_for, prepare_x_on_device  # noqa: E402
from anybit.runtime.compiler import launch_script  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks.harness import kernel_us  # noqa: E402
from benchmarks.matmul_anchors import relative_error  # noqa: E402

WARPS = (4, 8)
SPLITS = (1, 2, 4, 8)
#: Chunks of weight bytes in flight ahead of the converting one (DecodeInt8's ``ahead``).
AHEAD = (1, 2)


def tile_choices(type_name: str, n: int, k: int) -> list[int]:
    """m16 tiles a warp the int8 route can take on the default packing of an [n, k] weight (groups of 128)."""
    from anybit.kernels import choose_layout

    layout = choose_layout(anybit.dtype(type_name), n, k, 128)
    choices = []
    for tiles in (1, 2, 4, 8):
        try:
            check_int8_route(layout, tiles)
        except ValueError:
            continue
        choices.append(tiles)
    return choices


def configurations(type_name: str, n: int, k: int, m: int = 1) -> list[tuple[int, int, int, bool, int]]:
    """(warps, tiles, split, group columns, ahead) the probe times on an [n, k] weight at M = m: tiles the
    packing allows, blocks that divide N, runs of ≥ 4 chunks a block (of ≥ 8, whole runs of 8 chunks, in
    the group-columns form, M = 1 only)."""
    found = []
    for warps in WARPS:
        for tiles in tile_choices(type_name, n, k):
            for split in SPLITS:
                if n % (warps * 16 * tiles):
                    continue
                for ahead in AHEAD:
                    if k // 128 // split >= 4:
                        found.append((warps, tiles, split, False, ahead))
                    if m == 1 and k % 1024 == 0 and k // 1024 // split >= 1:
                        found.append((warps, tiles, split, True, ahead))
    return found


def precompile(jobs: list[tuple]) -> None:
    """Every configuration of the run built in worker processes first (NVRTC is most of a build); where the
    workers cannot start, each builds at its first launch instead."""
    from anybit.runtime.build_pool import BuildPoolError, default_processes, run_jobs

    try:
        results = run_jobs(build_configuration, jobs, default_processes())
    except BuildPoolError as error:
        print(f"build workers unavailable ({error}); building at first launch")
        return
    failed = [job for job, (ok, _) in zip(jobs, results, strict=True) if not ok]
    print(f"precompiled {len(jobs) - len(failed)} of {len(jobs)} configurations", flush=True)


def probe(
    type_name: str, n: int, k: int, m: int, ceiling_tb_s: float, *, device: str = "cuda", timer=kernel_us
) -> dict:
    """One weight: every int8-route configuration and quantized_matmul, timed (``timer``: a call's µs) and
    checked. On ``device="cpu"`` the kernels run on the interpreter (a check of the probe itself)."""
    from anybit.ops import quantized_matmul

    weight = torch.randn(n, k, device=device, dtype=torch.float16) * 0.02
    q = quantize(weight, type_name, group_size=128, zero_point=True, act_dtype=torch.float16)
    x = torch.randn(m, k, device=device, dtype=torch.float16)
    launch = launch_script if device == "cuda" else lambda kernel, args: anybit.interpret(kernel, *args)
    reference = x.double() @ dequantize(q).double().t()
    nbytes = n * k * q.dtype.nbits // 8 + 2 * q.scales.numel() * 2 + x.numel() * 2 + m * n * 2
    row: dict = {"type": type_name, "n": n, "k": k, "m": m, "bytes": nbytes, "configs": []}
    packed = pack(q)
    y = quantized_matmul(x, packed)  # tunes this shape's M bucket first (outside the timing)
    row["quantized_matmul_error"] = relative_error(y, reference)
    # The first timing on a fresh weight runs slow (8-13% on the H200: the autotune's SETTLE_TIMINGS; the
    # thirty-second session's calls 3 and 7 against 4): one discarded, then the one kept.
    timer(lambda: quantized_matmul(x, packed))
    row["quantized_matmul_us"] = timer(lambda: quantized_matmul(x, packed))
    rows = 8 if m <= 8 else 16  # rows of x a block: one n8 tile or two
    nbits = q.dtype.nbits
    prepared, prepare_us = {}, {}
    for columns in (False, True) if m == 1 and k % 1024 == 0 else (False,):
        # x prepared by the PrepareX kernel, timed alone (its launch with the buffers it fills)
        prepared[columns] = prepare_x_on_device(x, 128, nbits, group_columns=columns, rows=rows)
        arguments = (x, *prepared[columns], m, k)
        kernel = prepare_kernel_for(torch.float16, nbits, 128, columns, rows)
        prepare_us[columns] = timer(lambda kernel=kernel, arguments=arguments: launch(kernel, arguments))
    row["prepare_x_us"] = prepare_us[False]
    row["prepare_x_columns_us"] = prepare_us.get(True)

    def arguments_of(columns: bool) -> tuple:
        out = torch.full((m, n), float("nan"), device=device, dtype=torch.float16)
        return (packed.data, *prepared[columns], packed.scales, packed.zeros, out, m, n, k)

    for warps, tiles, split, columns, ahead in configurations(type_name, n, k, m):
        kernel = kernel_for(nbits, torch.float16, warps, tiles, 128, split, columns, rows, ahead)
        entry: dict = {"warps": warps, "tiles": tiles, "split": split, "group_columns": columns}
        entry["ahead"] = ahead
        try:
            args = arguments_of(columns)
            launch(kernel, args)
            entry["error"] = relative_error(args[-4], reference)
            entry["us"] = timer(lambda kernel=kernel, args=args: launch(kernel, args))
        except Exception as failure:  # a failing configuration is a result
            entry["failure"] = f"{type(failure).__name__}: {str(failure)[:200]}"
        row["configs"].append(entry)
    timed = [c for c in row["configs"] if c.get("us")]
    if timed:
        row["best"] = min(timed, key=lambda c: c["us"])
    for columns in prepared:  # the route's whole call, x's preparation and the kernel, for each form's best
        form = [c for c in timed if c["group_columns"] == columns]
        if not form:
            continue
        best = min(form, key=lambda c: c["us"])
        kernel = kernel_for(
            nbits,
            torch.float16,
            best["warps"],
            best["tiles"],
            128,
            best["split"],
            columns,
            rows,
            best["ahead"],
        )
        prepare = prepare_kernel_for(torch.float16, nbits, 128, columns, rows)
        args = arguments_of(columns)

        def whole(kernel=kernel, args=args, prepare=prepare, columns=columns):
            launch(prepare, (x, *prepared[columns], m, k))
            launch(kernel, args)

        best["total_us"] = timer(whole)
        best["total_error"] = relative_error(args[-4], reference)
    totals = [c for c in timed if c.get("total_us")]
    if totals:
        row["best_total"] = min(totals, key=lambda c: c["total_us"])
    for key, us in (
        ("int8", row.get("best", {}).get("us")),
        ("int8_total", row.get("best_total", {}).get("total_us")),
        ("quantized_matmul", row["quantized_matmul_us"]),
    ):
        row[f"{key}_pct"] = None if not us else nbytes / (us * 1e-6) / (ceiling_tb_s * 1e12) * 100
    return row


def describe(config: dict) -> str:
    """(warps, tiles, split, ahead[, group columns]) of a timed configuration."""
    columns = ", group columns" if config.get("group_columns") else ""
    return (
        f"({config.get('warps')}, {config.get('tiles')}, {config.get('split')}, {config.get('ahead')}"
        f"{columns})"
    )


def main(argv: list[str] | None = None) -> int:
    options = harness.route_probe_options(
        __doc__.split("\n\n")[0], argv, "int8_route.py", "uint1,uint2,uint4", "1"
    )
    if options is None:
        return 2
    started, pinned, ceilings = harness.start_route_probe(options.tuning, "quantized_matmul: ")
    ceiling = ceilings["best_tb_s"]
    print(
        "| type | N × K | M | int8 kernel µs (warps, tiles, split, ahead) | % | with x's preparation µs | "
        "% | quantized_matmul µs | % | whole / qmm | errors (int8, qmm) | prepare_x µs (plain, columns) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    from anybit.runtime.device import current_arch

    ms = [int(v) for v in options.ms.split(",")]
    shapes = [tuple(int(v) for v in shape.split("x")) for shape in options.shapes.split(",")]
    precompile(
        [
            (anybit.dtype(type_name).nbits, *config, 8 if m <= 8 else 16, m, n, k, current_arch())
            for type_name in options.types.split(",")
            for n, k in shapes
            for m in ms
            for config in configurations(type_name, n, k, m)
        ]
    )
    rows = []
    for type_name in options.types.split(","):
        for n, k in shapes:
            for m in ms:
                row = probe(type_name, n, k, m, ceiling)
                rows.append(row)
                best, whole = row.get("best", {}), row.get("best_total", {})
                nan = float("nan")
                int8_us, qmm_us = best.get("us", nan), row["quantized_matmul_us"] or nan
                total_us = whole.get("total_us", nan)
                print(
                    f"| {type_name} | {n}×{k} | {m} | {int8_us:.1f} {describe(best)} | "
                    f"{row['int8_pct'] or nan:.0f}% | {total_us:.1f} {describe(whole)} | "
                    f"{row['int8_total_pct'] or nan:.0f}% | {qmm_us:.1f} | "
                    f"{row['quantized_matmul_pct'] or nan:.0f}% | {total_us / qmm_us:.3f} | "
                    f"{best.get('error', nan):.1e}, {row['quantized_matmul_error']:.1e} | "
                    f"{row['prepare_x_us'] or nan:.1f}, {row['prepare_x_columns_us'] or nan:.1f} |",
                    flush=True,
                )
    harness.write_json(
        options.out, "int8_route.json", {"ceilings": ceilings, "tuning_pinned": pinned, "rows": rows}
    )
    print(f"total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
