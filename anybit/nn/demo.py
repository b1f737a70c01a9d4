"""``anybit demo``: what anybit does, with or without a GPU (the CPU path takes seconds; on a GPU the first
run tunes the model's decode kernels, minutes on an H200 with empty caches, and later runs reuse the cache).

* **With a GPU**: a Llama-architecture model (TinyLlama-1.1B shapes, random weights, std 0.02) in fp16 and
  quantized to int4 and int3 by :func:`anybit.quantize_model`; greedy decode tokens/s at batch 1 and 16
  (static KV cache, one step replayed as a CUDA graph) and logits agreement with the fp16 model.
* **Without one**: a quantized matmul of several weight types on the CPU interpreter — the executable
  specification of the GPU kernel — checked against a float64 reference, then the head of the CUDA C the
  code generator writes for the same kernel (no GPU or compiler needed to see it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from anybit import kernels, ops
from anybit.nn.linear import QuantizedLinear, format_bytes

CPU_TYPES = ("int4", "uint4", "int3", "int2", "float6_e3m2", "float4_e2m1")
GPU_TYPES = ("int4", "int3")


def _kernel_excerpt(source: str, lines: int) -> str:
    """The kernel's signature and the first ``lines`` lines of its main loop (past the prelude and setup)."""
    text = source.splitlines()
    signature = next((i for i, line in enumerate(text) if "__global__" in line), 0)
    loop = next(
        (i for i, line in enumerate(text) if i > signature and line.lstrip().startswith("for (")), signature
    )
    return "\n".join([text[signature], "  ...", *text[loop : loop + lines], "  ..."])


def cpu_demo(say: Callable[[str], None] = print, *, m: int = 4, n: int = 64, k: int = 256) -> bool:
    """Quantized matmuls on the CPU interpreter against float64; the CUDA of one kernel. True if all pass."""
    from anybit.kernels.launch import decode_kernel, default_decode_config, kernel_layout
    from anybit.runtime.compiler import generate_source

    say(f"No GPU: running y = x @ Wᵀ for x [{m}, {k}] fp16 and W [{n}, {k}] quantized (group 128) on the CPU")
    say("interpreter, which executes the same VM program the GPU runs, against a float64 reference.\n")
    say(
        f"{'type':<13} {'bits/weight':>11} {'layer bytes':>12} {'max |error|':>12} {'rel. error':>11} "
        f"{'time':>7}"
    )
    torch.manual_seed(0)
    linear = torch.nn.Linear(k, n, bias=True)
    x = torch.randn(m, k, dtype=torch.float16)
    passed = True
    for name in CPU_TYPES:
        layer = QuantizedLinear.from_linear(linear, name, group_size=128)
        started = time.perf_counter()
        y = ops.quantized_matmul(x, layer.packed_weight, layer.bias)
        seconds = time.perf_counter() - started
        reference = x.double() @ layer.dequantize().double().t() + layer.bias.double()
        error = (y.double() - reference).abs()
        relative = float(error.norm() / reference.norm())
        ok = relative < 2e-3 and bool(torch.isfinite(y).all())
        passed &= ok
        say(
            f"{name:<13} {layer.bits_per_weight:>11.2f} {format_bytes(layer.nbytes):>12} "
            f"{float(error.max()):>12.2e} {relative:>11.2e} {seconds:>6.2f}s {'ok' if ok else 'FAIL'}"
        )
    layer = QuantizedLinear.from_linear(linear, "int3", group_size=128)
    layout = layer.layout
    kernel = decode_kernel(kernel_layout(layout), torch.float16, False, True, default_decode_config(layout))
    y = torch.empty(m, n, dtype=torch.float16)
    p = layer.packed_weight
    program = kernel.program(x, p.data, p.scales, p.scales, layer.bias, y, m, n, k)
    source = generate_source(program, "sm_90a")
    say("\nThe VM program of the int3 decode kernel (what the interpreter just ran), its first lines:\n")
    say("\n".join(str(program).splitlines()[:24]) + "\n  ...")
    say(
        f"\nThe CUDA C generated from it ({source.name}, sm_90a, {len(source.source.splitlines())} lines): "
        "the signature and the start of the main loop:\n"
    )
    say(_kernel_excerpt(source.source, 24))
    say(
        "\n(anybit.compile(kernel, ...) turns it into a cubin with NVRTC, no GPU needed; on a GPU, "
        "`anybit demo` decodes a Llama-architecture model.)"
    )
    return passed


def gpu_demo(say: Callable[[str], None] = print, *, layers: int = 8, new_tokens: int = 64) -> bool:
    """fp16 vs int4/int3 decode speed and agreement on a TinyLlama-shaped model. True if every step ran."""
    from anybit.nn.decode import build_llama, dequantized_copy, logits_agreement, quantized_copy, time_decode
    from anybit.nn.fuse import fuse_projections

    say(
        f"GPU: {torch.cuda.get_device_name()}. Model: TinyLlama-1.1B shapes ({layers} of 22 layers), random "
        "weights (normal, std 0.02), fp16."
    )
    say(
        "The first run on a GPU tunes each quantized projection's decode kernel (progress bars; minutes, "
        "cached for the next run under ANYBIT_CACHE_DIR)."
    )
    reference = build_llama("tinyllama-1.1b", device="cuda", layers=layers)
    # q/k/v and gate/up as one layer each, silu · up in the gate/up layer, for fp16 and quantized alike
    fuse_projections(reference, gated_mlp=True)
    results: dict[str, dict[int, float]] = {}
    passed = True
    say(
        f"\n{'model':<8} {'batch':>5} {'tokens/s':>10} {'speedup':>8} {'top-1 agree':>12} {'KL':>8} "
        f"{'bytes':>10} {'kernel check':>13}"
    )
    for name in ("fp16", *GPU_TYPES):
        model, agreement, kernels_only = reference, None, None
        if name != "fp16":
            # The quantized layers also take the norms and residual adds (anybit.fold_norms).
            model, _ = quantized_copy(reference, name, fold_norms=True, group_size=128, progress=False)
            agreement = logits_agreement(reference, model, prompts=64, prompt_length=32)
            # The same quantized weights dequantized into fp16 layers (cuBLAS), one token a forward (the
            # decode kernels; a whole prompt would dequantize + cuBLAS too): only the kernels differ.
            kernels_only = logits_agreement(
                dequantized_copy(model), model, prompts=16, prompt_length=32, chunk=16, step_by_step=True
            )
        from anybit.nn.convert import model_bytes

        for batch in (1, 16):
            timing, _ = time_decode(model, batch, new_tokens=new_tokens, repeats=2)
            results.setdefault(name, {})[batch] = timing.tokens_per_second
            passed &= timing.mode == "cuda-graph"
            speedup = timing.tokens_per_second / results["fp16"][batch]
            agree = f"{100 * agreement.top1:.1f}%" if agreement else "—"
            kl = f"{agreement.kl_mean:.4f}" if agreement else "—"
            check = f"{100 * kernels_only.top1:.1f}% top-1" if kernels_only else "—"
            say(
                f"{name:<8} {batch:>5} {timing.tokens_per_second:>10.1f} {speedup:>7.2f}× {agree:>12} "
                f"{kl:>8} {format_bytes(model_bytes(model)):>10} {check:>13}"
            )
            if timing.graph_error:
                say(f"  (CUDA graph capture failed, eager: {timing.graph_error})")
        if model is not reference:
            del model
            torch.cuda.empty_cache()
    say(
        "\nq/k/v and gate/up fused, silu · up in the gate/up layer (anybit.fuse_projections), the quantized "
        "models' norms and residual adds folded into their layers (anybit.fold_norms); lm_head stays fp16. "
        "Random weights give flat "
        "next-token distributions, so top-1 agreement is a lower bound on what a trained model shows. "
        "Kernel check: top-1 agreement with the same quantized weights dequantized into fp16 layers "
        "(cuBLAS), the kernels' own error. Run benchmarks/e2e.py for Llama-3-8B shapes."
    )
    return passed


def run_demo(*, device: str | None = None, say: Callable[[str], None] = print) -> int:
    """The ``anybit demo`` command: the GPU demo when CUDA is available (or asked for), else the CPU one."""
    use_gpu = torch.cuda.is_available() if device is None else device == "cuda"
    if use_gpu and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    ok = gpu_demo(say) if use_gpu else cpu_demo(say)
    return 0 if ok else 1


__all__ = ["cpu_demo", "gpu_demo", "kernels", "run_demo"]
