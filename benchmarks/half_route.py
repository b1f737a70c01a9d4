"""bf16 activations through the fp16 decode loop (:mod:`anybit.ops.half_choice`) against the bf16 decode
kernel, on the same packed bf16 weight, decode rows.

For each type, shape and M: the bf16 decode kernel in its tuned configuration and the route in both forms
(x's fp16 copy and factors, a row or a row and chunk, then ``DecodeMatmulHalfX`` in the fp16 decode
kernel's tuned configuration, and where it differs in the bf16 kernel's, which the dispatch takes where
no fp16 configuration is recorded; the suite's tuning pinned, so nothing tunes) — each by its kernels' own
device time (CUDA graph, L2 flushed, median) and per launch in a row (the dispatch's own measurement:
launches on distinct weight copies from a CUDA graph) — then ``quantized_matmul`` with the route the
dispatch chose, all checked against float64 (outputs poisoned) and reported as % of the read ceiling
measured in the same process.

Usage (repository root, on the GPU machine)::

    python benchmarks/half_route.py [--types int4,float6_e3m2,int8] [--shapes 57344x8192,8192x28672,8192x8192]
        [--ms 1,16] [--out DIR]
"""

from __future__ import annotations

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import anybit  # noqa: E402
from anybit.kernels import dequantize, pack, quantize  # noqa: E402
from anybit.kernels.half_activations import prepare_half_x_on_device, prepare_kernel  # noqa: E402
from anybit.ops import half_choice, route_choice  # noqa: E402
from anybit.ops.int8_choice import Int8RouteLaunch  # noqa: E402
from anybit.ops.row_timing import row_arguments  # noqa: E402
from anybit.ops.tuning import tuner_for  # noqa: E402
from anybit.runtime.compiler import launch_script  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks.harness import kernel_us  # noqa: E402
from benchmarks.matmul_anchors import relative_error  # noqa: E402

TYPES = "uint4,int4,float4_e2m1,uint5,float6_e3m2,float6_e2m3,int8"


def probe(type_name: str, n: int, k: int, m: int, ceiling_tb_s: float) -> dict:
    """One weight at M = m: the bf16 decode kernel, the route and quantized_matmul, timed and checked."""
    from anybit.ops import quantized_matmul

    zeros = type_name.startswith("u")
    weight = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
    q = quantize(weight, type_name, group_size=128, zero_point=zeros, act_dtype=torch.bfloat16)
    packed = pack(q)
    x = (torch.randn(m, k, device="cuda") * 3).to(torch.bfloat16)
    reference = x.double() @ dequantize(q).double().t()
    groups = q.scales.numel() * 2 * (2 if zeros else 1)
    nbytes = n * k * q.dtype.nbits // 8 + groups + x.numel() * 2 + m * n * 2
    y = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
    zero_arg = packed.zeros if zeros else packed.scales
    args = (x, packed.data, packed.scales, zero_arg, packed.scales, y, m, n, k)
    tuner = tuner_for(packed.layout, torch.bfloat16, zeros, False)
    native_config = tuner.select(args)
    native = tuner.instance(native_config)
    launch_script(native, args)
    row: dict = {"type": type_name, "n": n, "k": k, "m": m, "bytes": nbytes, "native_config": native_config}
    row["native_error"] = relative_error(y, reference)
    kernel_us(lambda: launch_script(native, args))  # the first timing on a fresh weight runs slow
    row["native_us"] = kernel_us(lambda: launch_script(native, args))
    # The fp16 kernel's configuration, tuned where none is recorded (the dispatch's default would take the
    # bf16 kernel's there: each form is timed in that configuration too, where it differs)
    half_config = half_choice.fp16_config(packed.layout, args, zeros, False, native_config, tune=True)
    row["half_config"] = half_config
    bf16_config = half_choice.covering(packed.layout, native_config, m, n)
    routes = []

    def timed_route(config: dict, form: str, name: str) -> half_choice.HalfRouteLaunch:
        """The route in ``config`` and ``form``: compiled, checked, its kernels timed (as ``name``)."""
        route = half_choice.HalfRouteLaunch(packed.layout, config, zeros, False, x.device, m, form)
        y.fill_(float("nan"))
        route(args)  # compiles both kernels
        route(args)
        row[f"{name}_error"] = relative_error(y, reference)
        row[f"{name}_us"] = kernel_us(lambda: route(args))
        return route

    for form in half_choice.FORMS:  # each form of the route: its error, kernel time and preparation's time
        route = timed_route(half_config, form, form)
        k_chunk = packed.layout.k_chunk if form == "chunk" else None
        prepare_args = (x, *prepare_half_x_on_device(x, k_chunk), m, k)
        prepare = prepare_kernel(k_chunk)
        row[f"{form}_prepare_us"] = kernel_us(lambda p=prepare, a=prepare_args: launch_script(p, a))
        routes.append(({"route": "half", "factors": form, **half_config}, route))
        row[f"{form}_bf16_config_us"] = None
        if bf16_config != half_config:
            timed_route(bf16_config, form, f"{form}_bf16_config")
    in_a_row = route_choice.measure(
        lambda launch_args: launch_script(native, launch_args), routes, row_arguments(args, zeros)
    )
    row["native_row_us"], row["row_row_us"], row["chunk_row_us"] = (c.milliseconds * 1e3 for c in in_a_row)
    qmm = quantized_matmul(x, packed)  # the dispatch measures its routes on this first call
    row["quantized_matmul_error"] = relative_error(qmm, reference)
    kernel_us(lambda: quantized_matmul(x, packed))  # the first timing on a fresh weight runs slow
    row["quantized_matmul_us"] = kernel_us(lambda: quantized_matmul(x, packed))
    launch = anybit.ops.plan_of(packed).decode_launch(m, has_zeros=zeros, has_bias=False)
    row["chosen"] = {half_choice.HalfRouteLaunch: "half", Int8RouteLaunch: "int8"}.get(type(launch), "decode")
    if row["chosen"] == "half":
        row["chosen"] += f" ({launch.form})"
    for key in ("native", *half_choice.FORMS, "quantized_matmul"):
        us = row[f"{key}_us"]
        row[f"{key}_pct"] = None if not us else nbytes / (us * 1e-6) / (ceiling_tb_s * 1e12) * 100
    return row


def _bf16_config_us(row: dict) -> str:
    """Both forms' µs in the bf16 kernel's configuration ("same" where it is the fp16 kernel's)."""
    if row["row_bf16_config_us"] is None:
        return "same"
    return f"{row['row_bf16_config_us']:.1f} / {row['chunk_bf16_config_us']:.1f}"


def main(argv: list[str] | None = None) -> int:
    options = harness.route_probe_options(__doc__.split("\n\n")[0], argv, "half_route.py", TYPES, "1,16")
    if options is None:
        return 2
    started, pinned, ceilings = harness.start_route_probe(options.tuning)
    ceiling = ceilings["best_tb_s"]
    print(
        "| type | N × K | M | bf16 decode µs | % | route, a factor a row µs | % | route, a factor a chunk µs "
        "| % | x's fp16 copy µs (row / chunk) | in a row: decode / row / chunk µs | quantized_matmul µs | % "
        "| chosen | route in the bf16 kernel's configuration: row / chunk µs "
        "| errors (decode, row, chunk, qmm) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    shapes = [tuple(int(v) for v in shape.split("x")) for shape in options.shapes.split(",")]
    for type_name in options.types.split(","):
        for n, k in shapes:
            for m in (int(v) for v in options.ms.split(",")):
                try:
                    row = probe(type_name, n, k, m, ceiling)
                except Exception as failure:  # one failing weight is a result, not the end of the run
                    print(f"| {type_name} | {n}×{k} | {m} | failed: {type(failure).__name__}: {failure} |")
                    rows.append({"type": type_name, "n": n, "k": k, "m": m, "failure": str(failure)[:500]})
                    continue
                rows.append(row)
                print(
                    f"| {type_name} | {n}×{k} | {m} | {row['native_us']:.1f} | {row['native_pct']:.0f}% | "
                    f"{row['row_us']:.1f} | {row['row_pct']:.0f}% | {row['chunk_us']:.1f} | "
                    f"{row['chunk_pct']:.0f}% | {row['row_prepare_us']:.1f} / "
                    f"{row['chunk_prepare_us']:.1f} | {row['native_row_us']:.1f} / {row['row_row_us']:.1f} / "
                    f"{row['chunk_row_us']:.1f} | {row['quantized_matmul_us']:.1f} | "
                    f"{row['quantized_matmul_pct']:.0f}% | {row['chosen']} | {_bf16_config_us(row)} | "
                    f"{row['native_error']:.1e}, {row['row_error']:.1e}, {row['chunk_error']:.1e}, "
                    f"{row['quantized_matmul_error']:.1e} |",
                    flush=True,
                )
    harness.write_json(options.out, "half_route.json", {"ceilings": ceilings, "pinned": pinned, "rows": rows})
    print(f"total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
