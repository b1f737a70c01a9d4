"""Where a decode kernel's time goes: every tuning configuration of a few shapes, next to a plain read.

For each (shape, type) at M = 1 (``--m``: up to 16 rows) this times every configuration of the decode
kernel's tuning space (warps × stages × split-K, the ones :meth:`~anybit.ops.tuning.DecodeTuner.unsuited`
keeps), the same bytes read by a torch reduction (what one kernel can stream at that size), cuBLAS fp16 on
the same shape, and ``quantized_matmul`` itself after it tuned the shape (the configuration it picked, its
time); optionally under both L2 flush modes (``--flush read,write``). Each configuration is timed alone
(CUDA events, and its kernel's own device time from the profiler) and per launch in the tuner's row. A
diagnostic, not a published benchmark: it prints one table and writes ``DIR/decode_probe.json``.

Usage (GPU, repository root)::

    python benchmarks/decode_probe.py --out DIR [--shapes 4096x4096,8192x8192] [--types uint4,uint2]
        [--bytes-per-thread 64,128] [--operands b,a] [--stages 4,8] [--warps 4,7,8] [--m 16]
        [--sm-warps 0,24]   # each configuration also compiled for 24 resident warps an SM (fewer registers)
        [--wgmma]           # each configuration of 4k warps also with x read by wgmma from shared memory
        [--cluster]         # each split configuration also with split-K reduced in a thread-block cluster
        [--weights-in-registers]  # each configuration also with the weight bytes loaded into registers
        [--splits 1,2,3,4,5,6,7,8]  # these split-K counts, any grid size (runs of at least 2 chunks)

``--operands b,a`` compares the weight packed as the tensor-core B operand (x the m16 operand: the decode
kernel) with the A operand (the transposed kernel, x the n8 operand: half the mma at M = 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import anybit  # noqa: E402
from anybit.kernels import choose_layout, dequantize_weight, pack, quantize  # noqa: E402
from anybit.ops.tuning import precompile_configurations, tuner_for  # noqa: E402
from anybit.runtime.compiler import launch_script  # noqa: E402
from benchmarks import harness  # noqa: E402

DEFAULT_SHAPES = "1024x4096,4096x4096,14336x4096,4096x14336,8192x8192,8192x28672,57344x8192"


def read_probe_us(nbytes: int) -> float:
    """µs for torch to read ``nbytes`` (an int32 amax): what one streaming kernel reaches at this size."""
    data = torch.randint(0, 1 << 20, (max(1, nbytes // 4),), dtype=torch.int32, device="cuda")
    return harness.time_cuda_graph(lambda: data.amax(), runs=50).median_us


def eligible_for_planes(type_name: str) -> bool:
    """Whether choose_layout can store ``type_name`` codes as bit planes (3-, 5- and 6-bit types)."""
    try:
        choose_layout(type_name, 1024, 1024, 128, planar=True)
    except ValueError:
        return False
    return True


def probe_suits(tuner, config: dict, args: tuple, any_grid: bool) -> bool:
    """Whether the probe times ``config``: the tuner's :meth:`~anybit.ops.tuning.DecodeTuner.unsuited` check,
    or with ``any_grid`` (``--splits``) that check of the configuration unsplit and runs of at least two
    chunks of K each, whatever the grid's size (the tuner stops splitting at a size the sweep looks past)."""
    if not any_grid:
        return tuner.unsuited(config, args) is None
    chunks = int(args[8]) // tuner.fixed["layout"].k_chunk
    steps = config.get("split", 1) * (config["warps"] if config.get("warps_along_k") else 1)
    unsplit = dict(config, split=1)
    if config.get("warps_along_k"):
        return chunks % steps == 0 and chunks // steps >= 2 and tuner.unsuited(unsplit, args) is None
    return chunks // config.get("split", 1) >= 2 and tuner.unsuited(unsplit, args) is None


def probe(
    n: int,
    k: int,
    type_name: str,
    flush_modes: list[str],
    tile_bytes: int = 64,
    operand: str = "a",
    stages: tuple[int, ...] = (4,),
    warps: tuple[int, ...] = (),
    m: int = 1,
    sm_warps: tuple[int, ...] = (0,),
    planar: bool | None = None,
    bias_after_dot: bool = False,
    wgmma: bool = False,
    cluster: bool = False,
    weights_in_registers: bool = False,
    late_weight_loads: bool = False,
    splits: tuple[int, ...] = (),
    interleaved_1bit: bool = False,
    plain_top_plane: bool = False,
) -> dict:
    weight = torch.randn(n, k, device="cuda", dtype=torch.float16) * 0.02
    q = quantize(weight, type_name, group_size=128)
    layout = choose_layout(
        type_name,
        n,
        k,
        128,
        max_bytes_per_thread=tile_bytes,
        operand=operand,
        planar=planar,
        act_dtype=torch.float16,
    )
    if interleaved_1bit and layout.nbits == 1:
        # 1-bit codes stored pair-interleaved, as a 1-bit plane of a planar layout is: a pair's two codes 16
        # bits apart, one lop3 (after a shift shared by six pairs) where the plain order needs a prmt a byte
        layout = dataclasses.replace(layout, plane=True)
    if plain_top_plane:  # a top plane stored as plain uint2 codes, as before top_plane_stride
        layout = dataclasses.replace(layout, top_plane_stride=1)
    packed = pack(q, layout=layout)
    x = torch.randn(m, k, device="cuda", dtype=torch.float16)
    y = torch.empty(m, n, device="cuda", dtype=torch.float16)
    zeros = packed.zeros if packed.zeros is not None else packed.scales
    args = (x, packed.data, packed.scales, zeros, packed.scales, y, m, n, k)
    tuner = tuner_for(packed.layout, torch.float16, packed.zeros is not None, False)
    nbytes = packed.data.numel() + packed.scales.numel() * 2 * (2 if packed.zeros is not None else 1)
    row: dict = {"n": n, "k": k, "m": m, "type": type_name, "bytes": nbytes, "layout": str(packed.layout)}
    row["read_probe_us"] = read_probe_us(nbytes)
    dense = weight.clone()
    row["cublas_fp16_us"] = harness.time_cuda_graph(
        lambda: torch.nn.functional.linear(x, dense), runs=50
    ).median_us
    configs = []
    reference = (x.double() @ dequantize_weight(packed).t().double()).float()
    # A target of resident warps per SM becomes a launch bound of target // warps blocks (0: no bound).
    space = [
        dict(config, min_blocks=target // config["warps"]) if target else config
        for config in tuner.sweep_space(
            warps=warps,
            stages=stages,
            split_in_cluster=cluster,
            bias_after_dot=bias_after_dot,
            wgmma=wgmma,
            weights_in_registers=weights_in_registers,
            late_weight_loads=late_weight_loads,
            splits=splits,
        )
        if probe_suits(tuner, config, args, bool(splits))
        for target in sm_warps
    ]
    precompile_configurations((packed.layout, torch.float16, packed.zeros is not None, False), space)
    for config in space:
        entry = dict(config)
        try:
            instance = tuner.ready(config, args)
            y.fill_(float("nan"))
            launch_script(instance, args)
            torch.cuda.synchronize()
            error = float((y.float() - reference).norm() / reference.norm())
            entry["rel_error"] = error
            for mode in flush_modes:
                harness.FLUSH_MODE["mode"] = mode
                entry[f"us_{mode}"] = harness.time_cuda_graph(
                    lambda instance=instance: launch_script(instance, args), runs=50
                ).median_us
            harness.FLUSH_MODE["mode"] = flush_modes[0]
            # The same launch alone by its kernel's own device time (no graph launch, no event pair), and
            # per launch in the tuner's row (launches back to back on distinct weight copies, each one's
            # start under the previous one's end): what a single call and a model's layer each see.
            graph = harness.capture_graph(lambda instance=instance: launch_script(instance, args))
            kernel = harness.time_graph_kernels(graph, runs=50)
            entry["us_kernel"] = kernel.median_us if kernel is not None else None
            row_run = tuner.timed_run(instance, args)
            entry["us_row"] = harness.time_cuda(row_run, runs=20).median_us / row_run.launches
        except Exception as failure:  # a failing configuration is a result
            entry["error"] = f"{type(failure).__name__}: {str(failure)[:200]}"
        configs.append(entry)
    harness.FLUSH_MODE["mode"] = flush_modes[0]
    row["configs"] = configs
    # What a user's call gets: quantized_matmul tunes this shape's M bucket (the configuration it keeps),
    # then the same call timed as the suite times it, next to the configurations' own times above.
    from anybit.ops import quantized_matmul

    quantized_matmul(x, packed)
    row["tuned"] = tuner.select(args)
    row["quantized_matmul_us"] = harness.time_cuda_graph(
        lambda: quantized_matmul(x, packed), runs=50
    ).median_us
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES)
    parser.add_argument("--types", default="uint4")
    parser.add_argument("--flush", default="read", help="comma-separated L2 flush modes: read, write")
    parser.add_argument(
        "--bytes-per-thread",
        default="64",
        help="comma-separated warp-tile widths to compare (choose_layout's max_bytes_per_thread: 16 to 256)",
    )
    parser.add_argument(
        "--operands", default="a", help="comma-separated tensor-core operands the weight is packed as: b, a"
    )
    parser.add_argument("--stages", default="4", help="comma-separated pipeline stage counts to time")
    parser.add_argument("--warps", default="", help="comma-separated warp counts to time (default: tuned)")
    parser.add_argument("--m", type=int, default=1, help="rows of x (1 to 16)")
    parser.add_argument(
        "--sm-warps",
        default="0",
        help="comma-separated resident warps an SM to compile for (min_blocks = this // warps; 0: no bound)",
    )
    parser.add_argument(
        "--planar",
        default="auto",
        choices=("auto", "on", "off", "both"),
        help="3-, 5- and 6-bit codes stored as bit planes (on), whole (off), as choose_layout picks (auto), "
        "or both in turn (an A/B in one process)",
    )
    parser.add_argument(
        "--bias-after-dot",
        action="store_true",
        help="every configuration also with the conversion's magic number (and zero points) taken off after "
        "the dot, where the type takes it (an A/B in one process)",
    )
    parser.add_argument(
        "--wgmma",
        action="store_true",
        help="every configuration of warps in groups of 4 also with x read by wgmma from shared memory",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="every configuration of 2 to 16 splits also with its split-K reduced in a thread-block cluster",
    )
    parser.add_argument(
        "--weights-in-registers",
        action="store_true",
        help="every configuration also with the weight bytes loaded straight into registers a chunk ahead "
        "(no shared-memory ring for them)",
    )
    parser.add_argument(
        "--late-weight-loads",
        action="store_true",
        help="every configuration also with the weight bytes in registers, the next chunk's loads issued "
        "after the conversion (one chunk's bytes held)",
    )
    parser.add_argument(
        "--splits",
        default="",
        help="comma-separated split-K counts to time instead of the space's, at any grid size (runs of 2+ "
        "chunks): e.g. 1,2,3,4,5,6,7,8 for grids that fill the last wave",
    )
    parser.add_argument(
        "--interleave-1bit",
        default="off",
        choices=("off", "on", "both"),
        help="1-bit codes stored pair-interleaved as a 1-bit plane is (on), in the plain order (off), or "
        "both in turn (an A/B in one process)",
    )
    parser.add_argument(
        "--top-plane",
        default="auto",
        choices=("auto", "plain", "both"),
        help="a 6-bit type's top plane with its bits spread as choose_layout picks for float16 (auto), "
        "stored as plain uint2 codes (plain), or both in turn (an A/B in one process)",
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out"))
    options = parser.parse_args(argv)
    if not 1 <= options.m <= 16:
        parser.error(f"--m takes 1 to 16 rows (the decode kernels' range), got {options.m}")
    shapes = [tuple(int(v) for v in s.split("x")) for s in options.shapes.split(",") if s]
    types = [t for t in options.types.split(",") if t]
    modes = [m for m in options.flush.split(",") if m]
    widths = [int(w) for w in options.bytes_per_thread.split(",") if w]
    operands = [o for o in options.operands.split(",") if o]
    storage = {"auto": (None,), "on": (True,), "off": (False,), "both": (False, True)}[options.planar]
    interleaved = {"off": (False,), "on": (True,), "both": (False, True)}[options.interleave_1bit]
    top_planes = {"auto": (False,), "plain": (True,), "both": (True, False)}[options.top_plane]
    variants = [
        (width, operand, planar, (pairs, plain))
        for width in widths
        for operand in operands
        for planar in storage
        for pairs in interleaved
        for plain in top_planes
    ]
    stages = tuple(int(count) for count in options.stages.split(",") if count)
    warps = tuple(int(count) for count in options.warps.split(",") if count)
    try:
        sm_warps = tuple(int(count) for count in options.sm_warps.split(",") if count) or (0,)
    except ValueError:
        parser.error(f"--sm-warps takes comma-separated warp counts, e.g. 0,24; got {options.sm_warps!r}")
    if any(count < 0 or count > 64 for count in sm_warps):
        parser.error(f"--sm-warps takes 0 (no bound) to 64 resident warps an SM, got {options.sm_warps!r}")
    started = time.perf_counter()
    rows = []
    for type_name in types:
        for (n, k), (width, operand, planar, (pairs, plain)) in ((s, v) for s in shapes for v in variants):
            if planar and not eligible_for_planes(type_name):
                continue
            if pairs and anybit.dtype(type_name).nbits != 1:
                continue
            row = probe(
                n,
                k,
                type_name,
                modes,
                width,
                operand,
                stages,
                warps,
                options.m,
                sm_warps,
                planar,
                options.bias_after_dot,
                options.wgmma,
                options.cluster,
                options.weights_in_registers,
                options.late_weight_loads,
                tuple(int(count) for count in options.splits.split(",") if count),
                pairs,
                plain,
            )
            row["max_bytes_per_thread"], row["operand"] = width, operand
            rows.append(row)
            stored = "" if planar is None else (", bit planes" if planar else ", whole codes")
            stored += ", pair-interleaved" if pairs else ""
            stored += ", plain top plane" if plain and options.top_plane != "auto" else ""
            print(
                f"\n{type_name} {n}x{k} M={options.m} ({width} B/thread tiles, operand {operand}{stored}): "
                f"{row['bytes'] / 1e6:.1f} MB, "
                f"read probe {row['read_probe_us']:.1f} µs, "
                f"cuBLAS fp16 {row['cublas_fp16_us']:.1f} µs",
                flush=True,
            )
            print(f"  quantized_matmul: {row['quantized_matmul_us']:.1f} µs, tuned {row['tuned']}")
            for entry in sorted(row["configs"], key=lambda e: e.get(f"us_{modes[0]}", 1e9)):
                times = " ".join(
                    f"{m}={entry.get(f'us_{m}') or float('nan'):.1f}" for m in (*modes, "kernel", "row")
                )
                rows_text = f" rows={entry['rows']}" if "rows" in entry else ""
                rows_text += f" min_blocks={entry['min_blocks']}" if entry.get("min_blocks") else ""
                rows_text += " wgmma" if entry.get("wgmma") else ""
                rows_text += " cluster" if entry.get("split_in_cluster") else ""
                rows_text += " registers" if entry.get("weights_in_registers") else ""
                rows_text += " late" if entry.get("late_weight_loads") else ""
                rows_text += " bias_after_dot" if entry.get("bias_after_dot") else ""
                print(
                    f"  warps={entry.get('warps')} stages={entry.get('stages')} split={entry.get('split')}"
                    f"{rows_text}: "
                    f"{times} err={entry.get('rel_error', float('nan')):.1e} {entry.get('error', '')}"
                )
    harness.write_json(options.out, "decode_probe.json", rows)
    print(f"total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
