"""A decoder's quantized projections in a row, as a model runs them: isolated times against the sequence.

The end-to-end benchmark profiles whole models; this one isolates what its profile attributes to our
kernels. For each weight type it builds the four fused projections of a Llama-3-8B layer (q/k/v 6144×4096,
o 4096×4096, gate/up 28672×4096, down 4096×14336) as :class:`anybit.nn.QuantizedLinear` layers, ``--copies``
of each (distinct weights, as the model's layers are), and measures at M = 1

* each shape alone: the configuration the first call chose (tuned) and its µs with the L2 flushed;
* the whole sequence (copies × 4 calls) replayed as one CUDA graph: µs per call, next to the sum of the
  isolated times (the difference is what running in a row costs or saves);
* the sequence's kernels under ``torch.profiler``: device µs per call per shape;
* with ``--sweep``: every configuration of the tuning space at M = 1 (warps, split-K) of each shape with
  each of ``--stages`` (and ``--warps``), as ``--copies`` calls in a row in one CUDA graph, next to the
  floors of the same sequence: torch reading the same bytes (an int32 ``amax`` per copy) and cuBLAS fp16
  on the same shapes: which configuration wins in a row, which the isolated tuning picked, how far both
  are from a plain read, and each one with its weight resident in L2 (one copy called again and again:
  ``l2_us``, what the configuration costs where DRAM is not the limit); ``--split-in-cluster`` adds each
  configuration of 2 to 16 splits with its split-K reduced in a thread-block cluster, ``--bias-after-dot``
  each configuration with the weights' conversion leaving its magic number for a second dot;
* with ``--model-layers L`` (first, so that the first calls tune inside the model as in
  ``benchmarks/e2e.py``): an L-layer Llama-3-8B-shape model, fused and quantized with ``quantize_model``,
  timed as the e2e benchmark times it, profiled per projection, and its own modules called in a row.

Usage (GPU)::

    python benchmarks/layer_sequence.py [--types int4,int2] [--copies 32] [--model-layers 32] [--sweep]
        [--split-in-cluster] [--bias-after-dot] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

#: The fused projections of one Llama-3-8B decoder layer: (name, N, K).
LAYER_SHAPES: tuple[tuple[str, int, int], ...] = (
    ("qkv", 6144, 4096),
    ("o", 4096, 4096),
    ("gate_up", 28672, 4096),
    ("down", 4096, 14336),
)


def chosen_config(layer, x: torch.Tensor) -> dict:
    """The decode configuration the first call of ``layer`` (a quantized layer or its packed weight) at
    ``x``'s M chose (from the tuning cache): the plain op's (the folded forms are tuned on their own)."""
    from anybit.ops.tuning import tuner_for

    p = getattr(layer, "packed_weight", layer)
    y = torch.empty(x.shape[0], p.layout.n, dtype=x.dtype, device=x.device)
    zeros = p.scales if p.zeros is None else p.zeros
    args = (x, p.data, p.scales, zeros, p.scales, y, x.shape[0], p.layout.n, p.layout.k)
    return tuner_for(p.layout, x.dtype, p.zeros is not None, False).select(args)


def graph_us_per_call(calls: list, replays: int = 20) -> float:
    """Median µs per call of ``calls`` captured in one CUDA graph (no L2 flush: the sequence is the point)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / len(calls))
    return statistics.median(times)


def profiled_us(calls: list, names: list[str]) -> dict[str, float]:
    """Device µs per call of each shape name, from ``torch.profiler`` over one eager pass of ``calls``
    (the i-th decode kernel of the pass is attributed to ``names[i]``)."""
    from torch.profiler import ProfilerActivity, profile

    for call in calls:
        call()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for call in calls:
            call()
        torch.cuda.synchronize()
    durations = [
        event.device_time
        for event in prof.events()
        if event.device_type == torch.autograd.DeviceType.CUDA and "Decode" in event.name
    ]
    per_name: dict[str, list[float]] = {}
    for name, duration in zip(names, durations, strict=False):
        per_name.setdefault(name, []).append(duration)
    return {name: round(statistics.median(values), 2) for name, values in per_name.items()}


def run_type(dtype: str, copies: int) -> dict:
    """Isolated, sequence and profiled µs of one weight type's layer projections."""
    from anybit.nn import QuantizedLinear
    from anybit.runtime.timing import time_cuda

    result: dict = {"type": dtype, "shapes": {}}
    layers: dict[str, list] = {}
    inputs: dict[str, torch.Tensor] = {}
    for name, n, k in LAYER_SHAPES:
        inputs[name] = torch.randn(1, k, device="cuda", dtype=torch.float16)
        layers[name] = []
        for _ in range(copies):
            linear = torch.nn.Linear(k, n, bias=False, device="cuda", dtype=torch.float16)
            torch.nn.init.normal_(linear.weight, std=0.02)
            layers[name].append(QuantizedLinear.from_linear(linear, dtype, group_size=128))
            del linear
        first = layers[name][0]
        first(inputs[name])  # tunes (or loads) the configuration of this shape at M = 1
        torch.cuda.synchronize()
        isolated = time_cuda(lambda layer=first, x=inputs[name]: layer(x), budget_ms=20.0) * 1000.0
        result["shapes"][name] = {
            "n": n,
            "k": k,
            "config": chosen_config(first, inputs[name]),
            "isolated_us": round(isolated, 2),
        }
        print(dtype, name, result["shapes"][name], flush=True)
    calls, names = [], []
    for index in range(copies):
        for name, _, _ in LAYER_SHAPES:
            calls.append(lambda layer=layers[name][index], x=inputs[name]: layer(x))
            names.append(name)
    result["sequence_us_per_call"] = round(graph_us_per_call(calls), 2)
    result["isolated_mean_us"] = round(
        statistics.mean(entry["isolated_us"] for entry in result["shapes"].values()), 2
    )
    try:
        result["profiled_us"] = profiled_us(calls, names)
    except Exception as error:  # the timings above matter more than the profile
        result["profiled_us"] = f"{type(error).__name__}: {error}"
    print(json.dumps({key: value for key, value in result.items() if key != "shapes"}), flush=True)
    return result


def sweep_shape(
    dtype: str,
    name: str,
    n: int,
    k: int,
    copies: int,
    stages: list[int],
    warps: list[int],
    split_in_cluster: bool = False,
    bias_after_dot: bool = False,
) -> dict:
    """µs per call of every configuration of one shape (the tuning space's splits at M = 1 with each of
    ``warps`` and ``stages``, or the space's own where empty; with ``split_in_cluster`` each of 2 to 16 splits
    also reduced in a thread-block cluster), ``copies`` distinct weights in a row (see the module docstring),
    with the sequence's read and cuBLAS floors; with ``bias_after_dot`` each configuration also with the
    conversion's magic number taken off by a second dot."""
    from anybit.kernels import dequantize_weight
    from anybit.nn import QuantizedLinear
    from anybit.ops.tuning import precompile_configurations, tuner_for
    from anybit.runtime.compiler import launch_script

    x = torch.randn(1, k, device="cuda", dtype=torch.float16)
    packed = []
    for _ in range(copies):
        linear = torch.nn.Linear(k, n, bias=False, device="cuda", dtype=torch.float16)
        torch.nn.init.normal_(linear.weight, std=0.02)
        packed.append(QuantizedLinear.from_linear(linear, dtype, group_size=128).packed_weight)
        del linear
    first = packed[0]
    zeros = first.zeros is not None
    nbytes = first.data.numel() + first.scales.numel() * 2 * (2 if zeros else 1)
    outputs = [torch.empty(1, n, device="cuda", dtype=torch.float16) for _ in range(copies)]
    argument_lists = [
        (x, p.data, p.scales, p.zeros if zeros else p.scales, p.scales, y, 1, n, k)
        for p, y in zip(packed, outputs, strict=True)
    ]
    row: dict = {"type": dtype, "name": name, "n": n, "k": k, "bytes": nbytes, "copies": copies}
    buffers = [
        torch.randint(0, 1 << 20, (nbytes // 4,), dtype=torch.int32, device="cuda") for _ in range(copies)
    ]
    row["read_us_per_call"] = round(graph_us_per_call([lambda b=b: b.amax() for b in buffers]), 2)
    del buffers
    dense = [torch.randn(n, k, device="cuda", dtype=torch.float16) * 0.02 for _ in range(min(copies, 8))]
    row["cublas_fp16_us_per_call"] = round(
        graph_us_per_call([lambda w=w: torch.nn.functional.linear(x, w) for w in dense]), 2
    )
    del dense
    tuner = tuner_for(first.layout, torch.float16, zeros, False)
    row["tuned"] = tuner.select(argument_lists[0])
    reference = (x.double() @ dequantize_weight(first).t().double()).float()
    chunks = k // first.layout.k_chunk

    def swept(config: dict) -> bool:  # every split that runs, warps along K where the kernel takes them
        if config.get("warps_along_k"):
            return tuner.unsuited(config, argument_lists[0]) is None
        return n % (config["warps"] * first.layout.n_per_warp) == 0 and chunks // config["split"] >= 2

    space = tuner.sweep_space(
        warps=warps, stages=stages, split_in_cluster=split_in_cluster, bias_after_dot=bias_after_dot
    )
    space = [c for c in space if c.get("rows", 8) == 8 and swept(c)]
    precompile_configurations((first.layout, torch.float16, zeros, False), space)
    configs = []
    for config in space:
        entry = dict(config)
        try:
            instance = tuner.ready(config, argument_lists[0])
            outputs[0].fill_(float("nan"))
            launch_script(instance, argument_lists[0])
            torch.cuda.synchronize()
            entry["rel_error"] = float((outputs[0].float() - reference).norm() / reference.norm())
            calls = [lambda a=a, i=instance: launch_script(i, a) for a in argument_lists]
            entry["us"] = round(graph_us_per_call(calls), 2)
            # The same launches on one weight, in L2 after the first: what the configuration costs when
            # DRAM is not the limit (its launch, pipeline fill and split-K tail).
            entry["l2_us"] = round(graph_us_per_call([calls[0]] * copies), 2)
        except Exception as failure:  # a failing configuration is a result
            entry["error"] = f"{type(failure).__name__}: {str(failure)[:200]}"
        configs.append(entry)
    row["configs"] = sorted(configs, key=lambda e: e.get("us", 1e9))
    best = row["configs"][0]
    # The best configuration with its weight already in L2: the same copy called ``copies`` times in a row
    # (what prefetching the next projection's weights while attention runs could at most buy).
    if "us" in best:
        config = {key: best[key] for key in row["tuned"]}
        instance = tuner.ready(config, argument_lists[0])
        row["l2_resident_us_per_call"] = round(
            graph_us_per_call([lambda: launch_script(instance, argument_lists[0])] * copies), 2
        )
    print(
        f"{dtype} {name} {n}x{k} {nbytes / 1e6:.1f} MB: read {row['read_us_per_call']} µs, "
        f"cuBLAS fp16 {row['cublas_fp16_us_per_call']} µs, tuned {row['tuned']}, "
        f"ideal {nbytes / 4.46e6:.1f} µs, best with its weight in L2 {row.get('l2_resident_us_per_call')} µs",
        flush=True,
    )
    for entry in row["configs"]:
        print("   ", {key: value for key, value in entry.items()}, flush=True)
    del packed
    torch.cuda.empty_cache()
    return row | {"best": best}


def run_model(dtype: str, layers: int) -> dict:
    """The same projections inside a Llama-3-8B-shape model (fused, quantized with ``quantize_model``):
    the model's own modules called in a row, and one decode step of the model, eager and compiled."""
    import anybit
    from anybit.nn import QuantizedLinear
    from anybit.nn.decode import GreedyDecoder, build_llama, time_decode

    model = build_llama("llama-3-8b", device="cuda", dtype=torch.float16, layers=layers)
    anybit.fuse_projections(model)
    anybit.quantize_model(model, dtype, group_size=128, progress=False)
    modules = [module for module in model.modules() if isinstance(module, QuantizedLinear)]
    shape_names = {(n, k): name for name, n, k in LAYER_SHAPES}
    names = [shape_names.get((m.out_features, m.in_features), "other") for m in modules]
    inputs = {
        m.in_features: torch.randn(1, m.in_features, device="cuda", dtype=torch.float16) for m in modules
    }
    calls = [lambda m=m: m(inputs[m.in_features]) for m in modules]
    result: dict = {"type": dtype, "model_layers": layers, "modules": len(modules)}
    # First as the end-to-end benchmark runs it (the first M = 1 calls, which tune, inside the compiled
    # step's warm-up), then the configurations that chose, then the modules alone.
    timing, _ = time_decode(model, 1, new_tokens=16, repeats=2, use_graph=True, compile=True)
    result["model_ms_per_step"] = round(timing.ms_per_step, 3)
    decoder = GreedyDecoder(model, 1, 64, use_graph=False, compile=True)
    decoder.prefill(torch.randint(0, model.config.vocab_size, (1, 16), device="cuda"))
    try:
        step_names = [name for _ in range(layers) for name, _, _ in LAYER_SHAPES]  # execution order
        result["model_step_profiled_us"] = profiled_us([decoder.replay] * 2, step_names * 2)
    except Exception as error:
        result["model_step_profiled_us"] = f"{type(error).__name__}: {error}"
    configs = {}
    for module, name in zip(modules, names, strict=True):
        configs.setdefault(name, chosen_config(module, inputs[module.in_features]))
    result["configs"] = configs
    result["modules_in_a_row_us_per_call"] = round(graph_us_per_call(calls), 2)
    result["modules_in_a_row_profiled_us"] = profiled_us(calls, names)
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default="int4,int2")
    parser.add_argument("--copies", type=int, default=32)
    parser.add_argument("--model-layers", type=int, default=0, help="also run the projections in a model")
    parser.add_argument("--sweep", action="store_true", help="every configuration of each shape in a row")
    parser.add_argument("--stages", default="4", help="--sweep: comma-separated pipeline stage counts")
    parser.add_argument("--warps", default="", help="--sweep: comma-separated warp counts (default: tuned)")
    parser.add_argument(
        "--split-in-cluster",
        action="store_true",
        help="--sweep: each configuration of 2 to 16 splits also with split-K reduced in a cluster (sm_90)",
    )
    parser.add_argument(
        "--bias-after-dot",
        action="store_true",
        help="--sweep: each configuration also with the conversion's magic number taken off by a second dot",
    )
    parser.add_argument("--out", type=pathlib.Path, default=None)
    options = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/layer_sequence.py needs a CUDA GPU")
        return 2
    types = [dtype for dtype in options.types.split(",") if dtype]
    results = []
    if options.model_layers:  # first: the model's first calls tune, as in benchmarks/e2e.py
        results += [run_model(dtype, options.model_layers) for dtype in types]
    if options.sweep:
        stages = [int(count) for count in options.stages.split(",") if count]
        warps = [int(count) for count in options.warps.split(",") if count]
        results += [
            sweep_shape(
                dtype, *shape, options.copies, stages, warps, options.split_in_cluster, options.bias_after_dot
            )
            for dtype in types
            for shape in LAYER_SHAPES
        ]
    else:
        results += [run_type(dtype, options.copies) for dtype in types]
    harness.write_json(options.out, "layer_sequence.json", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
