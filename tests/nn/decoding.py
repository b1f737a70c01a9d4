"""What the nn tests share: a relative error, and two models decoded side by side through a static cache."""

from __future__ import annotations

import torch

from anybit.nn.decode import GreedyDecoder


def relative(found: torch.Tensor, expected: torch.Tensor) -> float:
    """‖found − expected‖ / ‖expected‖ in float64."""
    return float((found.double() - expected.double()).norm() / expected.double().norm())


def decode_side_by_side(
    reference, model, *, batch, prompt_length, steps, tolerance, compile: bool = False
) -> list[GreedyDecoder]:
    """Prefill both models with one random prompt, then ``steps`` decode steps (``compile``: the step
    torch.compile-d) each fed the reference's token, asserting the model's logits stay within ``tolerance``
    of the reference's; returns the decoders."""
    prompt = torch.randint(0, 128, (batch, prompt_length), generator=torch.Generator().manual_seed(4))
    decoders = [
        GreedyDecoder(m, batch=batch, max_length=prompt_length + steps + 1, use_graph=False, compile=compile)
        for m in (reference, model)
    ]
    with torch.no_grad():
        for decoder in decoders:
            decoder.prefill(prompt)
        for _ in range(steps):
            expected, found = (d._forward(d.token, d.position, d._step_model) for d in decoders)
            assert not torch.isnan(found).any()
            assert relative(found, expected) < tolerance
            for decoder in decoders:  # both continue with the reference's token
                decoder.token.copy_(expected.argmax(-1, keepdim=True))
                decoder.position.add_(1)
    return decoders
