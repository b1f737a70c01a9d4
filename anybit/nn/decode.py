"""Measuring a quantized model: greedy decode with a static KV cache under a CUDA graph, and logits agreement.

Used by ``benchmarks/e2e.py`` and ``anybit demo``. Needs ``transformers`` (the ``test`` extra).

Decode is timed the way a serving engine runs it: the KV cache is a ``transformers.StaticCache`` (fixed
addresses), one decode step — embedding, every layer, the head, the argmax, and the write of the next token
into the input buffer — is captured once in a CUDA graph and replayed per token, so what is measured is kernel
time, not Python. Works with transformers 4.x/5.x forward signatures (``cache_position`` +
``past_key_values`` or ``cache``), detected from the model's ``forward``. On the CPU, steps run eagerly.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from anybit.kernels.greedy import greedy_token

# Model shapes (from the models' published configs); the weights are always random (init std 0.02).
LLAMA_CONFIGS: dict[str, dict] = {
    "llama-3-8b": dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
    ),
    "tinyllama-1.1b": dict(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rope_theta=10000.0,
    ),
    "tiny": dict(
        vocab_size=256,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=10000.0,
    ),
}
#: The tiny model with the 64-wide heads the fused decode attention takes (anybit.fuse_attention).
LLAMA_CONFIGS["tiny-attention"] = dict(LLAMA_CONFIGS["tiny"], head_dim=64)
#: The same, 256 wide: MLP shapes the fused MLP kernel takes at 4 bits (anybit.fuse_mlp).
LLAMA_CONFIGS["tiny-mlp"] = dict(LLAMA_CONFIGS["tiny-attention"], hidden_size=256)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_llama(
    name: str = "tiny",
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float16,
    layers: int | None = None,
    seed: int = 0,
) -> nn.Module:
    """A ``LlamaForCausalLM`` with the shapes of ``LLAMA_CONFIGS[name]`` and random weights.

    The weights come from the config's own initialisation (normal, std ``initializer_range`` = 0.02), made
    directly on ``device`` in ``dtype`` (an 8B model never passes through host memory). ``layers`` overrides
    the number of decoder layers (a shorter model for quick runs: per-token time scales with it).
    """
    import transformers

    settings = dict(LLAMA_CONFIGS[name])
    if layers is not None:
        settings["num_hidden_layers"] = layers
    config = transformers.LlamaConfig(**settings, tie_word_embeddings=False)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    with torch.device(device), _default_dtype(dtype):
        model = transformers.LlamaForCausalLM(config)
    # Parameters are already in ``dtype``; no model-wide .to(dtype), which would also round the float32 RoPE
    # inverse frequencies to ``dtype``.
    return model.to(device).eval()


def _static_cache(model: nn.Module, batch: int, max_length: int):
    """A StaticCache for ``batch`` sequences of up to ``max_length`` tokens (transformers 5.x, else 4.x)."""
    from transformers import StaticCache

    parameter = next(model.parameters())
    try:
        return StaticCache(config=model.config, max_cache_len=max_length)
    except TypeError:  # transformers 4.x wants the batch, device and dtype up front
        return StaticCache(
            config=model.config,
            max_batch_size=batch,
            max_cache_len=max_length,
            device=parameter.device,
            dtype=parameter.dtype,
        )


#: How a decode step may pick its token (GreedyDecoder's ``greedy``).
GREEDY_PICKS = ("torch", "anybit")


class GreedyDecoder:
    """Greedy decoding of a causal LM with a static KV cache; on CUDA one step is a replayed CUDA graph.

    Parameters
    ----------
    model
        A transformers causal LM (a ``LlamaForCausalLM``), possibly quantized.
    batch
        Sequences decoded together.
    max_length
        Prompt plus generated tokens (the cache's size).
    use_graph
        Capture the step in a CUDA graph (CUDA only). If the capture fails, the decoder runs eagerly and
        ``graph_error`` says why.
    compile
        Run the decode step through ``torch.compile`` (Inductor fuses the element-wise work between the
        matrix products: norms, rotary embeddings, residual adds, the cache update) before capturing it. The
        prompt (prefill) runs uncompiled.
    greedy
        How a step picks its token: ``"torch"`` (``argmax``: one block's reduction over the vocabulary) or
        ``"anybit"`` (:func:`anybit.kernels.greedy.greedy_token`: every SM, written straight into the
        input buffer).
    """

    def __init__(
        self,
        model: nn.Module,
        batch: int,
        max_length: int,
        *,
        use_graph: bool = True,
        compile: bool = False,
        greedy: str = "torch",
    ) -> None:
        if greedy not in GREEDY_PICKS:
            raise ValueError(f"expected greedy in {GREEDY_PICKS}, got {greedy!r}")
        self.greedy = greedy
        self.model = model
        self._step_model = torch.compile(model, dynamic=False) if compile else model
        self.batch = batch
        self.max_length = max_length
        self.device = next(model.parameters()).device
        self.cache = _static_cache(model, batch, max_length)
        parameters = inspect.signature(model.forward).parameters
        self._cache_keyword = "cache" if "cache" in parameters else "past_key_values"
        self._pass_cache_position = "cache_position" in parameters
        self.token = torch.zeros(batch, 1, dtype=torch.long, device=self.device)
        self.position = torch.zeros(1, dtype=torch.long, device=self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_error: str | None = None
        self._use_graph = use_graph and self.device.type == "cuda"

    def _forward(
        self, tokens: torch.Tensor, positions: torch.Tensor, model: nn.Module | None = None
    ) -> torch.Tensor:
        """Logits of the last position for ``tokens [B, T]`` at ``positions [T]``."""
        kwargs = {self._cache_keyword: self.cache, "use_cache": True}
        if self._pass_cache_position:
            kwargs["cache_position"] = positions
        position_ids = positions[None].expand(tokens.shape[0], -1)
        output = (self.model if model is None else model)(
            input_ids=tokens, position_ids=position_ids, **kwargs
        )
        return output.logits[:, -1]

    @torch.no_grad()
    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        """Reset the cache, run the prompt [B, P], and put the first generated token in the input buffer."""
        self.cache.reset()
        length = prompt.shape[1]
        logits = self._forward(prompt.to(self.device), torch.arange(length, device=self.device))
        self.token.copy_(logits.argmax(-1, keepdim=True))
        self.position.fill_(length)
        return self.token[:, 0].clone()

    @torch.no_grad()
    def _step(self) -> None:
        logits = self._forward(self.token, self.position, self._step_model)
        if self.greedy == "anybit":
            greedy_token(logits.contiguous(), out=self.token)
        else:
            self.token.copy_(logits.argmax(-1, keepdim=True))
        self.position.add_(1)

    def _capture(self, prompt: torch.Tensor) -> None:
        """Warm the step up on a side stream (loads every kernel, allocates workspaces), then capture it."""
        self.prefill(prompt)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._step()
            self.graph = graph
        except Exception as error:  # a model whose step cannot be captured still decodes, eagerly
            self.graph_error = f"{type(error).__name__}: {error}"
            self._use_graph = False
            torch.cuda.synchronize()

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
        """Greedy continuation [B, new_tokens] of ``prompt`` [B, P] (the first token comes from prefill)."""
        if prompt.shape[1] + new_tokens > self.max_length:
            raise ValueError(
                f"expected prompt + new tokens ≤ {self.max_length}, got {prompt.shape[1]} + {new_tokens}"
            )
        if self._use_graph and self.graph is None:
            self._capture(prompt)
        out = torch.empty(self.batch, new_tokens, dtype=torch.long, device=self.device)
        out[:, 0] = self.prefill(prompt)
        for i in range(1, new_tokens):
            self.replay()
            out[:, i] = self.token[:, 0]
        return out

    def replay(self) -> None:
        """One decode step: the captured graph, or the eager step."""
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step()

    @property
    def mode(self) -> str:
        """How steps run: ``cuda-graph`` or ``eager``."""
        return "cuda-graph" if self.graph is not None else "eager"


@dataclass(frozen=True)
class DecodeTiming:
    """Greedy decode speed of one model at one batch size."""

    batch: int
    new_tokens: int
    seconds: float
    mode: str
    graph_error: str | None

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second, all sequences together."""
        return self.batch * self.new_tokens / self.seconds

    @property
    def ms_per_step(self) -> float:
        """Milliseconds per decode step (one token for every sequence)."""
        return 1000 * self.seconds / self.new_tokens


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_decode(
    model: nn.Module,
    batch: int,
    *,
    new_tokens: int = 128,
    prompt_length: int = 16,
    repeats: int = 3,
    use_graph: bool = True,
    compile: bool = False,
    seed: int = 0,
    greedy: str = "torch",
) -> tuple[DecodeTiming, torch.Tensor]:
    """Time ``new_tokens`` greedy decode steps after a random prompt; best of ``repeats``.

    Only the steps are timed (prefill excluded); ``greedy`` as :class:`GreedyDecoder`'s. Returns the
    timing and the generated tokens [B, new_tokens] (of the last repeat).
    """
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab, (batch, prompt_length), generator=generator)
    decoder = GreedyDecoder(
        model, batch, prompt_length + new_tokens + 1, use_graph=use_graph, compile=compile, greedy=greedy
    )
    decoder.generate(prompt, 2)  # warm-up: compiles and loads every kernel, captures the graph
    best = math.inf
    tokens = None
    for _ in range(repeats):
        decoder.prefill(prompt.to(decoder.device))
        _synchronize(decoder.device)
        started = time.perf_counter()
        for _ in range(new_tokens):
            decoder.replay()
        _synchronize(decoder.device)
        best = min(best, time.perf_counter() - started)
    tokens = decoder.generate(prompt, new_tokens)
    timing = DecodeTiming(
        batch, new_tokens, best, decoder.mode + ("+compile" if compile else ""), decoder.graph_error
    )
    return timing, tokens


@dataclass(frozen=True)
class Agreement:
    """How close a model's next-token distributions are to a reference model's on the same prompts.

    ``reference_entropy`` (nats, mean over positions) against ``uniform_entropy`` = ln(vocab) says how peaked
    the reference is: with random weights it is close to uniform, and top-1 agreement then means little.
    """

    prompts: int
    positions: int
    top1: float
    kl_mean: float
    kl_max: float
    reference_entropy: float
    uniform_entropy: float


@torch.no_grad()
def logits_agreement(
    reference: nn.Module,
    model: nn.Module,
    *,
    prompts: int = 256,
    prompt_length: int = 32,
    chunk: int = 32,
    seed: int = 1,
    step_by_step: bool = False,
) -> Agreement:
    """Top-1 agreement and KL(reference ‖ model) of next-token distributions over every position of
    ``prompts`` random prompts (uniform random tokens) of ``prompt_length`` tokens, in float32.

    The prompts run ``chunk`` at a time, whole (a prefill: ``chunk · prompt_length`` rows a projection), or
    with ``step_by_step`` one token a forward through a static KV cache, as decode runs them (``chunk`` rows:
    at most ``anybit.ops.decode_max_m()`` keeps a quantized model on its decode kernels)."""
    vocab = reference.config.vocab_size
    device = next(reference.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (prompts, prompt_length), generator=generator)
    logits = _logits_step_by_step if step_by_step else _logits_whole
    agree, kl_sum, kl_max, entropy_sum, count = 0, 0.0, 0.0, 0.0, 0
    for start in range(0, prompts, chunk):
        batch = tokens[start : start + chunk].to(device)
        expected = torch.log_softmax(logits(reference, batch).float(), dim=-1)
        found = torch.log_softmax(logits(model, batch).float(), dim=-1)
        kl = (expected.exp() * (expected - found)).sum(-1)
        agree += int((expected.argmax(-1) == found.argmax(-1)).sum())
        kl_sum += float(kl.sum())
        kl_max = max(kl_max, float(kl.max()))
        entropy_sum -= float((expected.exp() * expected).sum())
        count += kl.numel()
    return Agreement(
        prompts, count, agree / count, kl_sum / count, kl_max, entropy_sum / count, math.log(vocab)
    )


@torch.no_grad()
def _logits_whole(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token logits [B, T, V] of every position of ``tokens`` [B, T] in one forward."""
    return model(tokens, use_cache=False).logits


@torch.no_grad()
def _logits_step_by_step(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token logits [B, T, V] of every position, one token a forward through a static cache."""
    batch, length = tokens.shape
    decoder = GreedyDecoder(model, batch=batch, max_length=length, use_graph=False)
    steps = [
        decoder._forward(tokens[:, t : t + 1], torch.tensor([t], device=tokens.device)) for t in range(length)
    ]
    return torch.stack(steps, dim=1)


def dequantized_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every :class:`~anybit.nn.QuantizedLinear` replaced by a float
    ``torch.nn.Linear`` holding its dequantized weight (:meth:`~anybit.nn.QuantizedLinear.to_linear`).

    The same weights computed by cuBLAS instead of anybit's kernels: agreement between the two isolates the
    kernels' error from the quantization's (the original is untouched)."""
    from anybit.nn.linear import QuantizedLinear

    copied = copy.deepcopy(model)
    for name, module in list(copied.named_modules()):
        if isinstance(module, QuantizedLinear):
            parent_name, _, child = name.rpartition(".")
            setattr(copied.get_submodule(parent_name), child, module.to_linear())
    return copied


def quantized_copy(
    model: nn.Module,
    dtype: str,
    *,
    fold_norms: bool = False,
    fuse_attention: bool | dict = False,
    fuse_mlp: bool | dict = False,
    **settings,
) -> tuple[nn.Module, object]:
    """A deep copy of ``model`` quantized with :func:`anybit.quantize_model` (the original is untouched);
    with ``fold_norms``, its RMSNorms and residual adds folded into the projections first
    (:func:`anybit.nn.fold_norms`), with ``fuse_attention`` its decode attention in one kernel
    (:func:`anybit.nn.fuse_attention`), with ``fuse_mlp`` (after folding, with gated MLPs) each MLP in one
    kernel once quantized (:func:`anybit.nn.fuse_mlp`); a dict for either: that function's keyword
    arguments. All need the model's projections fused already."""
    from anybit.nn.attention import fuse_attention as fuse
    from anybit.nn.convert import quantize_model
    from anybit.nn.fold_norms import fold_norms as fold
    from anybit.nn.mlp import fuse_mlp as fuse_mlps

    copied = copy.deepcopy(model)
    if fold_norms:
        fold(copied)
    if fuse_attention:
        fuse(copied, **(fuse_attention if isinstance(fuse_attention, dict) else {}))
    summary = quantize_model(copied, dtype, **settings)
    if fuse_mlp:
        fuse_mlps(copied, **(fuse_mlp if isinstance(fuse_mlp, dict) else {}))
    return copied, summary
