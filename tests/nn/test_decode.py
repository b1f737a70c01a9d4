"""Greedy decode with a static cache, logits agreement, the e2e benchmark and the demo, on the CPU."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest
import torch

pytest.importorskip("transformers")

from anybit.cli import main as cli_main  # noqa: E402
from anybit.nn.decode import (  # noqa: E402
    GreedyDecoder,
    build_llama,
    dequantized_copy,
    logits_agreement,
    quantized_copy,
    time_decode,
)
from anybit.nn.linear import QuantizedLinear  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_greedy_decoder_matches_transformers_generate() -> None:
    model = build_llama("tiny", dtype=torch.float32)
    prompt = torch.randint(0, model.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(0))
    expected = model.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False, pad_token_id=0
    )[:, 5:]
    decoder = GreedyDecoder(model, 2, 16)
    assert torch.equal(decoder.generate(prompt, 6), expected)
    assert torch.equal(decoder.generate(prompt, 6), expected)  # the cache resets between generations
    assert decoder.mode == "eager"


def test_time_decode_and_agreement_of_a_quantized_model() -> None:
    reference = build_llama("tiny", layers=1)
    model, summary = quantized_copy(reference, "int4", progress=False)
    assert len(summary.layers) == 7
    timing, tokens = time_decode(model, 1, new_tokens=2, prompt_length=4, repeats=1)
    assert tokens.shape == (1, 2) and timing.tokens_per_second > 0 and timing.mode == "eager"
    same = logits_agreement(reference, reference, prompts=2, prompt_length=4)
    assert same.top1 == 1.0 and same.kl_mean == pytest.approx(0, abs=1e-6) and same.positions == 8
    found = logits_agreement(reference, model, prompts=2, prompt_length=4)
    assert 0 <= found.kl_mean < 0.1 and found.reference_entropy <= found.uniform_entropy + 1e-4
    # The same weights dequantized into float layers: only the kernels' rounding separates the two.
    same_weights = dequantized_copy(model)
    assert not any(isinstance(m, QuantizedLinear) for m in same_weights.modules())
    assert any(isinstance(m, QuantizedLinear) for m in model.modules())  # the original is untouched
    kernels_only = logits_agreement(same_weights, model, prompts=2, prompt_length=4)
    assert kernels_only.top1 == 1.0 and kernels_only.kl_mean < 1e-4 < found.kl_mean
    # One token a forward (the decode path) sees every position as the whole prompt does.
    stepped = logits_agreement(reference, model, prompts=2, prompt_length=4, step_by_step=True)
    assert stepped.positions == 8 and stepped.kl_mean == pytest.approx(found.kl_mean, rel=1e-2, abs=1e-5)


@pytest.mark.parametrize(
    ("lm_head", "fusion"),
    [
        (False, []),
        (True, []),
        (False, ["--fuse", "--gated-mlp"]),
        (False, ["--fuse", "--gated-mlp", "--fold-norms"]),
        (False, ["--no-baseline", "--no-agreement"]),
        (False, ["--fuse", "--fold-norms", "--fuse-attention", "both", "--greedy", "anybit"]),
        (False, ["--fuse", "--gated-mlp", "--fold-norms", "--fuse-mlp", "--fuse-attention", "quantized"]),
    ],
    ids=[
        "lm_head_fp16",
        "lm_head_quantized",
        "gated_mlp",
        "fold_norms",
        "ab_run",
        "attention_greedy",
        "fused_mlp",
    ],
)
def test_e2e_benchmark_tiny_cpu(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, lm_head: bool, fusion: list[str]
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("benchmarks.e2e", None)
    from benchmarks import e2e

    arguments = (
        [
            "--config",
            "tiny-mlp"
            if "--fuse-mlp" in fusion
            else "tiny-attention"
            if "--fuse-attention" in fusion
            else "tiny",
            "--device",
            "cpu",
            "--layers",
            "1",
            "--types",
            "int4",
            "--batches",
            "1",
            "--new-tokens",
            "2",
            "--prompt-length",
            "4",
            "--prompts",
            "2",
            "--agreement-length",
            "4",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ]
        + (["--quantize-lm-head"] if lm_head else [])
        + fusion
    )
    assert e2e.main(arguments) == 0
    report = json.loads((tmp_path / "e2e.json").read_text())
    ab_run = "--no-baseline" in fusion
    assert [row["type"] for row in report["decode"]] == (["int4"] if ab_run else ["fp16", "int4"])
    assert report["agreement"][0]["type"] == "int4" and "std 0.02" in report["model"]["init"]
    assert not any("error" in row for row in report["decode"])
    fused_mlp = {"stages": 4, "split": 1} if "--fuse-mlp" in fusion else False
    assert report["settings"]["fused_mlp"] == fused_mlp
    if "both" in fusion:
        assert report["settings"]["fused_attention"] == "both" and report["settings"]["greedy"] == "anybit"
    if ab_run:  # the quantized model's speed alone: no fp16 timing, no agreement, no speedup
        assert "--no-agreement" in report["agreement"][0]["skipped"]
        assert "speedup" not in report["decode"][0]
    else:
        assert report["agreement"][0]["kernels_only"]["top1"] == 1.0
    assert "| int4 | 1 |" in (tmp_path / "e2e.md").read_text()
    assert report["quantization"][0]["skipped"] == ([] if lm_head else ["lm_head"])
    assert report["settings"]["lm_head"] == ("quantized" if lm_head else "fp16 (skipped)")
    assert report["settings"]["gated_mlp"] == ("--gated-mlp" in fusion)
    assert report["settings"]["fold_norms"] == ("--fold-norms" in fusion)


def test_e2e_benchmark_pins_a_shipped_tuning_and_writes_its_own(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--tuning FILE`` pins the file's configurations before the models are built (the report says so);
    every run with ``--out`` exports its tuning, pinned records included, to ``tuning.json``."""
    from anybit.runtime.autotune import TUNING_FORMAT, clear_pinned

    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("benchmarks.e2e", None)
    from benchmarks import e2e

    record = {"kernel": "decode-test", "gpu": "NVIDIA H200|sm_90a", "bucket": "[1, 4096, 4096]"}
    record["config"] = {"warps": 8, "stages": 4, "split": 8}
    shipped = tmp_path / "h200.json"
    shipped.write_text(json.dumps({"format": TUNING_FORMAT, "records": [record]}))
    out = tmp_path / "run"
    arguments = ["--config", "tiny", "--device", "cpu", "--layers", "1", "--types", "int4", "--batches", "1"]
    arguments += ["--new-tokens", "2", "--prompt-length", "4", "--prompts", "2", "--agreement-length", "4"]
    arguments += ["--repeats", "1", "--no-baseline", "--no-agreement", "--tuning", str(shipped)]
    try:
        assert e2e.main(arguments + ["--out", str(out)]) == 0
        assert json.loads((out / "e2e.json").read_text())["settings"]["tuning"] == str(shipped)
        assert f"pinned from {shipped}" in (out / "e2e.md").read_text()
        assert record in json.loads((out / "tuning.json").read_text())["records"]
    finally:
        clear_pinned()
    with pytest.raises(ValueError, match="expected an anybit tuning file"):
        shipped.write_text(json.dumps({"records": []}))
        e2e.main(arguments)


def test_cpu_demo_runs(capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["demo", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "float6_e3m2" in text and "FAIL" not in text and "__global__" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without a GPU gets")
def test_layer_sequence_benchmark_says_it_needs_a_gpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import layer_sequence

    assert layer_sequence.main(["--types", "int4", "--model-layers", "2"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().out
    assert [name for name, _, _ in layer_sequence.LAYER_SHAPES] == ["qkv", "o", "gate_up", "down"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without a GPU gets")
def test_l2_prefetch_experiment_says_it_needs_a_gpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import l2_prefetch

    assert l2_prefetch.main(["--layers", "1"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().out


def test_e2e_markdown_shows_where_a_profiled_step_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import e2e

    profile = {"us_per_step": {"anybit": 1477.8, "gemm": 240.5, "other": 325.7}, "kernels_per_step": 392}
    graphed = {"us_per_step": {"anybit": 1400.0, "gemm": 240.0, "other": 300.0}, "kernels_per_step": 207}
    profiled = {"type": "int4", "batch": 1, "ms_per_step": 2.553, "profile": profile}
    profiled["profile_graph"] = graphed
    report = {"decode": [profiled, {"type": "fp16", "batch": 1, "ms_per_step": 4.8}]}
    lines = e2e.profile_lines(report)
    header = next(line for line in lines if line.startswith("| type |"))
    assert header.split(" | ")[2:6] == ["anybit", "gemm", "attention", "other"]
    assert "| int4 | 1 | 1477.8 | 240.5 | – | 325.7 | 392 | 2044.0 | 509.0 |" in lines
    assert "| int4 (graph) | 1 | 1400.0 | 240.0 | – | 300.0 | 207 | 1940.0 | 613.0 |" in lines
    assert e2e.profile_lines({"decode": [{"type": "fp16", "batch": 1}]}) == []


def test_greedy_decoder_picks_with_the_anybit_kernel_as_with_argmax():
    """The same tokens with greedy="anybit" (the greedy kernel on the interpreter) as with torch's argmax."""
    from anybit.nn.decode import GreedyDecoder, build_llama

    model = build_llama("tiny", dtype=torch.float32)
    prompt = torch.randint(0, model.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(2))
    tokens = [
        GreedyDecoder(model, 2, 12, use_graph=False, greedy=greedy).generate(prompt, 4)
        for greedy in ("torch", "anybit")
    ]
    assert torch.equal(tokens[0], tokens[1])
    with pytest.raises(ValueError, match="greedy"):
        GreedyDecoder(model, 2, 12, use_graph=False, greedy="sample")
