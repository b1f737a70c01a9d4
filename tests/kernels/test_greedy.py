"""The greedy pick over the whole GPU (anybit.kernels.greedy_token) against torch's argmax, on the
interpreter: ties to the first index, NaN as the largest value, vocabularies that end mid-chunk."""

from __future__ import annotations

import pytest
import torch

from anybit.kernels.greedy import CHUNK, MAX_CHUNKS, greedy_token


@pytest.mark.parametrize("act", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize(("batch", "vocab"), [(1, 5000), (3, 2048), (2, 300)])
def test_greedy_token_matches_argmax(act, batch, vocab):
    logits = torch.randn(batch, vocab, generator=torch.Generator().manual_seed(vocab)).to(act)
    out = torch.full((batch, 1), -1, dtype=torch.int64)
    greedy_token(logits, out=out)
    assert torch.equal(out, logits.argmax(-1, keepdim=True))


def test_ties_go_to_the_first_index_and_nan_counts_as_the_largest():
    logits = torch.randn(3, 4100, generator=torch.Generator().manual_seed(1)).half()
    logits[0, [10, 3000, 4099]] = 60.0  # a tie across chunks: the first wins
    logits[1, [2500, 2049]] = 60.0  # a tie inside a chunk, the lower index second
    logits[2, 3333] = float("nan")
    found = greedy_token(logits)
    assert found[:, 0].tolist() == [10, 2049, 3333]
    assert torch.equal(found, logits.argmax(-1, keepdim=True))


def test_greedy_token_rejects_what_it_cannot_take():
    with pytest.raises(ValueError, match=r"logits \[B, V\]"):
        greedy_token(torch.randn(4))
    with pytest.raises(ValueError, match="vocabulary"):
        greedy_token(torch.empty(1, MAX_CHUNKS * CHUNK + 1, dtype=torch.float16))
    with pytest.raises(ValueError, match="expected out"):
        greedy_token(torch.randn(2, 10).half(), out=torch.empty(2, 1, dtype=torch.int32))
