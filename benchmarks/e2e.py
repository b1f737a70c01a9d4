"""End-to-end decode: a Llama-architecture model in fp16 against anybit int4 / int3 / int2 / float6_e3m2.

The model is built with ``transformers`` from a config (random weights from the config's own init, normal
with std 0.02; no download). For each weight type, a copy of the fp16 model has every decoder linear layer
quantized (``lm_head`` stays fp16, group size 128) and is measured for

* greedy decode speed: ``--new-tokens`` steps at each ``--batches`` size with a static KV cache, one step
  replayed as a CUDA graph (kernel time, not Python); tokens/s and speedup over fp16;
* logits agreement with the fp16 model: top-1 agreement and KL(fp16 ‖ quantized) over every position of
  ``--prompts`` random prompts, with the fp16 model's mean entropy next to ln(vocab) so the reader can see
  how peaked (how meaningful) the random model's distributions are;
* the kernels' share of that: the same agreement between the quantized model and a copy of it whose layers
  hold the dequantized weights in fp16 (cuBLAS computes them), which random weights cannot blur.

Usage (repository root)::

    python benchmarks/e2e.py --out DIR                    # GPU: Llama-3-8B shapes, 32 layers
    python benchmarks/e2e.py --quick --out DIR            # GPU: 4 layers, 32 tokens, 32 prompts (short call)
    python benchmarks/e2e.py --config tiny --device cpu   # CPU interpreter: tiny model (CI smoke run)

Writes ``DIR/e2e.json`` and ``DIR/e2e.md`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import anybit  # noqa: E402
from anybit.nn.convert import model_bytes  # noqa: E402
from anybit.nn.decode import (  # noqa: E402
    LLAMA_CONFIGS,
    GreedyDecoder,
    build_llama,
    dequantized_copy,
    logits_agreement,
    quantized_copy,
    time_decode,
)
from anybit.nn.linear import format_bytes  # noqa: E402
from anybit.ops.tuning import tunes_bias_after_dot, tunes_split_in_cluster  # noqa: E402

DEFAULT_TYPES = ("int4", "int3", "int2", "float6_e3m2")


#: Prompts the kernels-only check feeds one token a forward (the agreement with fp16 takes all of them).
KERNEL_CHECK_PROMPTS = 32


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="llama-3-8b", choices=sorted(LLAMA_CONFIGS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: the config's)")
    parser.add_argument("--types", default=",".join(DEFAULT_TYPES), help="comma-separated anybit types")
    parser.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-length", type=int, default=16, help="prompt tokens before timed decode")
    parser.add_argument("--prompts", type=int, default=256, help="random prompts for logits agreement")
    parser.add_argument("--agreement-length", type=int, default=32, help="tokens per agreement prompt")
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed decodes per row (best is kept)")
    parser.add_argument("--no-graph", action="store_true", help="decode eagerly (no CUDA graph)")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the decode step (fuses the element-wise work)"
    )
    parser.add_argument(
        "--fuse",
        action="store_true",
        help="fuse q/k/v and gate/up into one layer each (anybit.fuse_projections), fp16 and quantized alike",
    )
    parser.add_argument(
        "--gated-mlp",
        action="store_true",
        help="with --fuse: the MLP's silu(gate) · up in the gate/up layer's epilogue (fuse_projections' "
        "gated_mlp; fp16 pairs them in torch)",
    )
    parser.add_argument(
        "--fold-norms",
        action="store_true",
        help="with --fuse: the quantized models' RMSNorms and residual adds folded into their projections "
        "(anybit.fold_norms: no element-wise kernels between projections; fp16 keeps its layers)",
    )
    parser.add_argument(
        "--attention-combine",
        choices=("global", "cluster", "auto"),
        default="auto",
        help="with --fuse-attention: where a cache's runs meet (anybit.fuse_attention's combine: cluster "
        "combines up to 16 runs in a thread-block cluster's shared memory, sm_90; auto, the default, "
        "where the runs fit a portable cluster and the grid one wave; global through global memory)",
    )
    parser.add_argument(
        "--fuse-attention",
        choices=("quantized", "both"),
        default=None,
        help="with --fuse: a decode step's rotary embedding, cache write and attention in one kernel "
        "(anybit.fuse_attention) in the quantized models, or in the fp16 baseline as well (the like-for-like "
        "comparison)",
    )
    parser.add_argument(
        "--fuse-mlp",
        action="store_true",
        help="with --fuse --gated-mlp --fold-norms: each quantized MLP (gate/up, silu · up, down and the "
        "residual add) in one decode kernel (anybit.fuse_mlp)",
    )
    parser.add_argument(
        "--mlp-launch",
        default="4x1",
        help="with --fuse-mlp: the kernel's copy-ring stages x gate/up's split-K (benchmarks/mlp_probe.py "
        "times them)",
    )
    parser.add_argument(
        "--greedy",
        choices=("torch", "anybit"),
        default="torch",
        help="each step's token pick, in every model alike: torch's argmax (one block over the vocabulary) "
        "or anybit.kernels.greedy_token (every SM)",
    )
    parser.add_argument(
        "--quantize-lm-head",
        action="store_true",
        help="quantize lm_head too (quantize_model skips it by default; 1 GB of fp16 read per token at 8B)",
    )
    parser.add_argument(
        "--operand",
        choices=("b", "a"),
        default="a",
        help="pack quantized weights as the tensor-core A operand (default: transposed decode kernel) or B",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="do not time the fp16 model (A/B runs of the quantized model: no speedup column)",
    )
    parser.add_argument(
        "--no-agreement", action="store_true", help="skip the logits agreement (A/B runs of the kernels)"
    )
    parser.add_argument("--quick", action="store_true", help="4 layers, 32 tokens, 32 prompts, 1 repeat")
    parser.add_argument(
        "--profile", action="store_true", help="GPU time per kernel group of one step (torch.profiler)"
    )
    parser.add_argument(
        "--tuning",
        type=pathlib.Path,
        default=None,
        help="pin the decode kernels' configurations from an anybit.runtime.export_tuning file (they win "
        "over tuning, as in a deployment that ships its GPU's tuning); every run with --out writes its own "
        "to OUT/tuning.json",
    )
    parser.add_argument(
        "--out", type=pathlib.Path, default=None, help="directory for e2e.json / e2e.md / tuning.json"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.layers = args.layers or 4
        args.new_tokens, args.prompts, args.repeats = 32, 32, 1
    if args.device == "cpu" and not args.config.startswith("tiny"):
        parser.error("the CPU interpreter runs only the tiny configs (tiny, tiny-attention, tiny-mlp)")
    return args


class _Skipped(Exception):
    """A measurement the options left out (recorded as skipped, not as an error)."""


def environment() -> dict:
    """Versions and the device, for the report header."""
    import transformers

    info = {
        "anybit": anybit.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    # Inductor's own dependent launches of its Triton kernels (TORCHINDUCTOR_ENABLE_PDL=1, both models
    # alike), where this torch has them: they change what overlaps around the decode kernels.
    triton_config = getattr(torch._inductor.config, "triton", None)
    info["inductor_pdl"] = getattr(triton_config, "enable_pdl", None)
    return info


def cache_files() -> dict[str, int]:
    """Files in anybit's cache (compiled kernels, tuning) and Inductor's when the run starts: 0 on a fresh
    machine. The first end-to-end process on a fresh machine has run slower at steady state (BENCHMARKS.md,
    seventeenth session), so reports say which kind of process they are."""
    from anybit.runtime.cache import cache_dir

    try:  # a private helper of Inductor's: fall back to its documented variable and default
        from torch._inductor.runtime.runtime_utils import cache_dir as inductor_cache_dir
    except ImportError:

        def inductor_cache_dir() -> str:
            user = getpass.getuser()
            return os.environ.get("TORCHINDUCTOR_CACHE_DIR", f"{tempfile.gettempdir()}/torchinductor_{user}")

    def count(directory) -> int:
        root = pathlib.Path(directory)
        return sum(1 for path in root.rglob("*") if path.is_file()) if root.exists() else 0

    return {"anybit": count(cache_dir()), "inductor": count(inductor_cache_dir())}


def _caches_text(files: dict | None) -> str:
    """The report's words for the caches a run started with."""
    if not files:
        return ""
    return f"; cache files at the start: anybit {files['anybit']}, Inductor {files['inductor']}"


def mlp_launch(args: argparse.Namespace) -> dict | None:
    """``anybit.fuse_mlp``'s settings from ``--fuse-mlp`` / ``--mlp-launch`` (None: the MLPs stay two
    kernels; it needs the fused, gated, folded model)."""
    if not (args.fuse and args.gated_mlp and args.fold_norms and args.fuse_mlp):
        return None
    stages, split = (int(value) for value in args.mlp_launch.split("x"))
    return {"stages": stages, "split": split}


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def measure_model(name: str, model, args, batches: list[int], fp16_rows: dict[int, float]) -> list[dict]:
    """Decode speed rows of one model (one per batch size); errors are recorded, not raised."""
    rows = []
    for batch in batches:
        row: dict = {"type": name, "batch": batch}
        if args.compile:
            fresh_compiler()
        try:
            timing, _ = time_decode(
                model,
                batch,
                new_tokens=args.new_tokens,
                prompt_length=args.prompt_length,
                repeats=args.repeats,
                use_graph=not args.no_graph,
                compile=args.compile,
                greedy=args.greedy,
            )
            row.update(
                tokens_per_s=timing.tokens_per_second,
                ms_per_step=timing.ms_per_step,
                mode=timing.mode,
                graph_error=timing.graph_error,
            )
            if name == "fp16":
                fp16_rows[batch] = timing.tokens_per_second
            if batch in fp16_rows:
                row["speedup"] = timing.tokens_per_second / fp16_rows[batch]
        except Exception as error:  # one failing row is a result: record it and go on
            row["error"] = f"{type(error).__name__}: {error}"
            row["traceback"] = traceback.format_exc(limit=8)
        print(json.dumps({key: value for key, value in row.items() if key != "traceback"}), flush=True)
        rows.append(row)
    return rows


def fresh_compiler() -> None:
    """Forget what ``torch.compile`` traced for earlier models: every model (and batch) shares the Llama
    code, so their graphs pile up on the same frames until Dynamo's recompile limit (8) makes it run the
    rest eagerly — which cut a float6_e3m2 row's fusion on 2026-11-28."""
    torch._dynamo.reset()


def decode_configs(model, batch: int) -> dict[str, dict]:
    """The decode configuration each quantized layer shape runs at M = ``batch`` ("N×K" → config)."""
    from anybit.nn import QuantizedLinear
    from benchmarks.layer_sequence import chosen_config

    configs: dict[str, dict] = {}
    for module in model.modules():
        if isinstance(module, QuantizedLinear):
            x = torch.randn(batch, module.in_features, device="cuda", dtype=torch.float16)
            configs.setdefault(f"{module.out_features}x{module.in_features}", chosen_config(module, x))
    return configs


KERNEL_GROUPS = (  # (group, substrings of the kernel name), first match wins
    ("anybit", ("decode", "dequant", "anybit")),
    ("gemm", ("gemm", "gemv", "xmma", "cutlass", "cublas", "splitk", "nvjet")),  # nvjet: cuBLAS on Hopper
    ("attention", ("flash", "fmha", "attention", "sdpa", "softmax")),
)


def profile_step(
    model,
    batch: int,
    args: argparse.Namespace,
    steps: int = 4,
    compile: bool = False,
    use_graph: bool = False,
) -> dict:
    """GPU microseconds per decode step by kernel group, and the 16 costliest kernels (eager steps of the
    timed run's cache length and token pick; with ``use_graph`` replays of the captured step, as timed)."""
    from torch.profiler import ProfilerActivity, profile

    length = args.prompt_length + args.new_tokens + 1
    decoder = GreedyDecoder(model, batch, length, use_graph=use_graph, compile=compile, greedy=args.greedy)
    prompt = torch.randint(0, model.config.vocab_size, (batch, args.prompt_length))
    decoder.prefill(prompt.to(decoder.device))
    decoder.replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            decoder.replay()
        torch.cuda.synchronize()
    groups: dict[str, float] = {}
    kernels: dict[str, tuple[float, int]] = {}
    for event in prof.key_averages():
        total = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0.0)
        if not total or event.key.startswith("ProfilerStep"):
            continue
        name = event.key.lower()
        group = next((g for g, keys in KERNEL_GROUPS if any(key in name for key in keys)), "other")
        groups[group] = groups.get(group, 0.0) + total / steps
        kernels[event.key[:90]] = (total / steps, event.count // steps)
    top = sorted(kernels.items(), key=lambda item: -item[1][0])[:16]
    return {
        "us_per_step": {group: round(value, 1) for group, value in groups.items()},
        "kernels_per_step": sum(count for _, count in kernels.values()),
        "top": [{"kernel": name, "us": round(us, 1), "count": count} for name, (us, count) in top],
    }


def _attention_text(fused: str | None, combine: str = "global") -> str:
    """The report's words for ``--fuse-attention`` (and ``--attention-combine``)."""
    if not fused:
        return ""
    which = "the quantized models" if fused == "quantized" else "every model, fp16 included"
    where = {
        "cluster": ", a cache's runs combined in a thread-block cluster",
        "auto": ", a cache's runs combined in a thread-block cluster where they fit one and the grid a wave",
    }.get(combine, "")
    return f"; decode attention in one anybit kernel (rotary, cache write, attention{where}) in {which}"


def shipped_records_here(device: torch.device) -> int:
    """How many shipped tuning records name this run's GPU (0 on the CPU or with ANYBIT_SHIPPED_TUNING=0):
    where a record covers a launch the model runs it instead of tuning."""
    if device.type != "cuda":
        return 0
    from anybit.runtime.autotune import gpu_key, shipped_tuning
    from anybit.runtime.device import current_arch

    gpu = gpu_key(current_arch())
    return sum(1 for _, record_gpu, _ in shipped_tuning() if record_gpu == gpu)


def run(args: argparse.Namespace, save=None) -> dict:
    device = torch.device(args.device)
    if args.tuning is not None:
        pinned = anybit.runtime.load_tuning(args.tuning)
        print(f"{pinned} decode configurations pinned from {args.tuning}", flush=True)
    types = [name for name in args.types.split(",") if name]
    batches = [int(batch) for batch in args.batches.split(",") if batch]
    started = time.perf_counter()
    caches_at_start = cache_files()
    reference = build_llama(args.config, device=device, dtype=torch.float16, layers=args.layers)
    if args.fuse:
        anybit.fuse_projections(reference, gated_mlp=args.gated_mlp)
        if args.fuse_attention == "both":
            anybit.fuse_attention(reference, combine=args.attention_combine)
    config = reference.config
    report: dict = {
        "environment": {**environment(), "cache_files_at_start": caches_at_start},
        "model": {
            "config": args.config,
            "layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size,
            "intermediate_size": config.intermediate_size,
            "vocab_size": config.vocab_size,
            "init": f"random, normal std {config.initializer_range} (the config's default init)",
            "fp16_bytes": model_bytes(reference),
        },
        "settings": {
            "group_size": args.group_size,
            "new_tokens": args.new_tokens,
            "prompt_length": args.prompt_length,
            "prompts": args.prompts,
            "agreement_length": args.agreement_length,
            "repeats": args.repeats,
            "device": str(device),
            "graph": not args.no_graph,
            "compile": args.compile,
            "fused_projections": args.fuse,
            "gated_mlp": args.fuse and args.gated_mlp,
            "fold_norms": args.fuse and args.fold_norms,
            "fused_attention": (args.fuse and args.fuse_attention) or None,
            "attention_combine": args.attention_combine,
            "tune_split_in_cluster": tunes_split_in_cluster(),
            "tune_bias_after_dot": tunes_bias_after_dot(),
            "tuning": str(args.tuning) if args.tuning else None,
            "shipped_tuning": shipped_records_here(device),
            "fused_mlp": mlp_launch(args) or False,
            "greedy": args.greedy,
            "lm_head": "quantized" if args.quantize_lm_head else "fp16 (skipped)",
            "operand": args.operand,
        },
        "decode": [],
        "agreement": [],
        "quantization": [],
    }
    fp16_rows: dict[int, float] = {}
    if not args.no_baseline:
        report["decode"] += measure_model("fp16", reference, args, batches, fp16_rows)
    # Profiled after every model is timed: a torch.profiler session earlier in the process made the decode
    # kernel's first-call tuning pick slow configurations (H200, 2026-11-28: int4 at 1.36x instead of
    # 1.72x), so no profiler runs before the last tuning.
    profiling = args.profile and device.type == "cuda"
    to_profile = [("fp16", reference)] if profiling and not args.no_baseline else []
    for name in types:
        entry: dict = {"type": name}
        try:
            began = time.perf_counter()
            skip = () if args.quantize_lm_head else ("lm_head",)
            model, summary = quantized_copy(
                reference,
                name,
                fold_norms=args.fuse and args.fold_norms,
                fuse_attention=(
                    {"combine": args.attention_combine} if args.fuse and args.fuse_attention else False
                ),
                fuse_mlp=mlp_launch(args),
                group_size=args.group_size,
                skip=skip,
                operand=args.operand,
                progress=False,
            )
            entry.update(
                seconds=time.perf_counter() - began,
                model_bytes=summary.model_bytes_after,
                linear_bytes=summary.linear_bytes_after,
                skipped=[layer for layer, _ in summary.skipped],
            )
        except Exception as error:
            entry["error"] = f"{type(error).__name__}: {error}"
            entry["traceback"] = traceback.format_exc(limit=8)
            report["quantization"].append(entry)
            print(json.dumps({key: value for key, value in entry.items() if key != "traceback"}), flush=True)
            continue
        report["quantization"].append(entry)
        report["decode"] += measure_model(name, model, args, batches, fp16_rows)
        try:
            if args.no_agreement:
                raise _Skipped("not measured (--no-agreement)")
            settings = dict(prompts=args.prompts, prompt_length=args.agreement_length)
            agreement = logits_agreement(reference, model, chunk=min(32, args.prompts), **settings)
            # The same weights through cuBLAS (dequantized to fp16), one token a forward so the quantized
            # model runs its decode kernels (a whole prompt would take the dequantize + cuBLAS path, the
            # baseline's own): what differs is the decode kernels alone. On the first KERNEL_CHECK_PROMPTS
            # prompts (a forward a token is slow eagerly; this checks the kernels, not the quantization).
            stepped = dict(settings, prompts=min(KERNEL_CHECK_PROMPTS, args.prompts))
            kernels_only = logits_agreement(
                dequantized_copy(model), model, chunk=min(16, args.prompts), step_by_step=True, **stepped
            )
            report["agreement"].append(
                {"type": name, **agreement.__dict__, "kernels_only": kernels_only.__dict__}
            )
        except _Skipped as skipped:
            report["agreement"].append({"type": name, "skipped": str(skipped)})
        except Exception as error:
            report["agreement"].append({"type": name, "error": f"{type(error).__name__}: {error}"})
        print(json.dumps(report["agreement"][-1]), flush=True)
        if save is not None:  # a run cut short by its time limit keeps every model measured so far
            report["seconds"] = time.perf_counter() - started
            save(report)
        if profiling:
            to_profile.append((name, model))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for name, model in to_profile:
        for row in report["decode"]:
            if row["type"] == name and "error" not in row:
                if args.compile:
                    fresh_compiler()
                row["profile"] = profile_step(model, row["batch"], args, compile=args.compile)
                # The same step as the timing replays it (the kernels inside the CUDA graph, where the
                # profiler sees them): what differs between the eager and the graphed step shows here.
                row["profile_graph"] = profile_step(
                    model, row["batch"], args, compile=args.compile, use_graph=True
                )
                if name != "fp16":
                    row["decode_configs"] = decode_configs(model, row["batch"])
                profiles = {key: row[key] for key in ("profile", "profile_graph")}
                print(json.dumps({"type": name, "batch": row["batch"], **profiles}), flush=True)
    report["seconds"] = time.perf_counter() - started
    return report


def markdown(report: dict) -> str:
    """The report as markdown tables."""
    model, settings = report["model"], report["settings"]
    graphed = settings["graph"] and settings["device"].startswith("cuda")
    pinned = f"; the decode configurations pinned from {settings['tuning']}" if settings.get("tuning") else ""
    if settings.get("shipped_tuning"):
        shipped = settings["shipped_tuning"]
        pinned += f"; {shipped} decode configurations shipped for this GPU (anybit/runtime/tunings)"
    lines = [
        f"## End-to-end greedy decode: {model['config']} shapes, {model['layers']} layers",
        "",
        f"{report['environment'].get('gpu', settings['device'])}, torch {report['environment']['torch']}, "
        f"transformers {report['environment']['transformers']}. Weights: {model['init']}. "
        f"Decoder linear layers quantized with group size {settings['group_size']}, "
        f"lm_head {settings['lm_head']}"
        f"{', weights as the B operand (x-as-A decode kernel)' if settings.get('operand') == 'b' else ''}. "
        f"{settings['new_tokens']} decode steps after a {settings['prompt_length']}-token prompt, "
        "static KV cache, "
        f"{'one step replayed as a CUDA graph' if graphed else 'eager steps'}"
        f"{' (the step torch.compile-d)' if settings.get('compile') else ''}"
        f"{', q/k/v and gate/up fused' if settings.get('fused_projections') else ''}"
        f"{' (silu · up in the gate/up epilogue)' if settings.get('gated_mlp') else ''}"
        f"{'; quantized layers with norms and residual adds folded in' if settings.get('fold_norms') else ''}"
        f"{'; each quantized MLP in one kernel' if settings.get('fused_mlp') else ''}"
        f"{_attention_text(settings.get('fused_attention'), settings.get('attention_combine', 'global'))}"
        f"{'; the token picked by anybit greedy_token' if settings.get('greedy') == 'anybit' else ''}"
        f"{'; split-K in a cluster tuned too' if settings.get('tune_split_in_cluster') else ''}"
        f"{'; the bias after the dot tuned too' if settings.get('tune_bias_after_dot') else ''}{pinned}"
        f"{'; Inductor kernels launched as dependents' if report['environment'].get('inductor_pdl') else ''}"
        "; best of "
        f"{settings['repeats']}{_caches_text(report['environment'].get('cache_files_at_start'))}.",
        "",
        "| type | batch | tokens/s | ms/step | speedup vs fp16 | mode |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["decode"]:
        if "error" in row:
            lines.append(f"| {row['type']} | {row['batch']} | error: {row['error'][:80]} | | | |")
            continue
        speedup = f"{row['speedup']:.2f}×" if "speedup" in row else "—"
        lines.append(
            f"| {row['type']} | {row['batch']} | {row['tokens_per_s']:.1f} | {row['ms_per_step']:.3f} | "
            f"{speedup} | {row['mode']} |"
        )
    lines += [
        "",
        f"Logits agreement with fp16 over every position of {settings['prompts']} random prompts of "
        f"{settings['agreement_length']} tokens. fp16 entropy vs uniform (ln vocab) shows how peaked the "
        "random model's next-token distributions are: the closer to uniform, the less top-1 agreement means. "
        '"kernels only": the quantized model against the same model with its dequantized weights in fp16 '
        f"(cuBLAS), the first {min(KERNEL_CHECK_PROMPTS, settings['prompts'])} prompts fed one token a "
        "forward through a static cache (the decode kernels, at most 16 rows): the error of anybit's "
        "kernels, without the quantization's.",
        "",
        "| type | top-1 agreement | KL mean (nats) | KL max | fp16 entropy / uniform | model bytes "
        "| kernels only: top-1 | kernels only: KL mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    sizes = {entry["type"]: entry.get("model_bytes") for entry in report["quantization"]}
    for row in report["agreement"]:
        if "error" in row or "skipped" in row:
            reason = f"error: {row['error'][:80]}" if "error" in row else row["skipped"]
            lines.append(f"| {row['type']} | {reason} | | | | | | |")
            continue
        size = sizes.get(row["type"])
        kernels_only = row.get("kernels_only")
        own = (
            f"{100 * kernels_only['top1']:.1f}% | {kernels_only['kl_mean']:.2e}" if kernels_only else "— | —"
        )
        lines.append(
            f"| {row['type']} | {100 * row['top1']:.1f}% | {row['kl_mean']:.4f} | {row['kl_max']:.4f} | "
            f"{row['reference_entropy']:.2f} / {row['uniform_entropy']:.2f} | "
            f"{format_bytes(size) if size else '—'} | {own} |"
        )
    lines.append(f"\nfp16 model: {format_bytes(model['fp16_bytes'])}. Total run {report['seconds']:.0f} s.")
    lines += profile_lines(report)
    return "\n".join(lines)


def profile_lines(report: dict) -> list[str]:
    """Where a step's GPU time goes (``--profile``), per profiled row: µs per kernel group, the kernels a
    step launches, and the step's time not covered by any kernel (the gaps between them); [] without."""
    rows = [row for row in report["decode"] if row.get("profile")]
    if not rows:
        return []
    groups = [group for group, _ in KERNEL_GROUPS] + ["other"]
    lines = [
        "",
        "GPU time per step by kernel group (`torch.profiler` over eager steps of the same model, and over "
        'replays of its CUDA graph, "graph"; µs). "between kernels": the timed step (graph replay) less the '
        "kernels' sum.",
        "",
        "| type | batch | " + " | ".join(groups) + " | kernels a step | kernels' sum | between kernels |",
        "|---|---|" + "---|" * (len(groups) + 3),
    ]
    for row in rows:
        for key, label in (("profile", ""), ("profile_graph", " (graph)")):
            profile = row.get(key)
            if not profile:
                continue
            per_group = profile["us_per_step"]
            total = sum(per_group.values())
            between = 1000 * row["ms_per_step"] - total
            cells = " | ".join(f"{per_group[group]:.1f}" if group in per_group else "–" for group in groups)
            lines.append(
                f"| {row['type']}{label} | {row['batch']} | {cells} | {profile['kernels_per_step']} | "
                f"{total:.1f} | {between:.1f} |"
            )
    return lines


def write_report(report: dict, out: pathlib.Path) -> str:
    """Write ``out/e2e.json``, ``out/e2e.md`` and the run's tuned configurations, ``out/tuning.json``
    (:func:`anybit.runtime.export_tuning`: ``--tuning`` pins them in a later run); returns the markdown."""
    text = markdown(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "e2e.json").write_text(json.dumps(report, indent=2))
    (out / "e2e.md").write_text(text + "\n")
    anybit.runtime.export_tuning(out / "tuning.json")
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    save = None if args.out is None else (lambda report: write_report(report, args.out))
    report = run(args, save)
    text = markdown(report) if args.out is None else write_report(report, args.out)
    print(text)
    failed = any("error" in row for row in report["decode"] + report["agreement"] + report["quantization"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
