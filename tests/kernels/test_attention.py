"""The fused decode attention (rotary embedding, KV-cache write, attention over the cache) against a float64
reference of what a Llama attention block computes for one decode token with a static cache."""

from __future__ import annotations

import pytest
import torch

from anybit.kernels import attention
from anybit.kernels.attention import (
    MAX_SPLITS,
    DecodeAttention,
    decode_attention,
    default_combine,
    default_splits,
    default_tile,
    default_warps_over,
)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Llama's rotary embedding (rotate_half form) of x [..., D] with cos/sin broadcast over the heads."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def reference(qkv, cos, sin, k_cache, v_cache, position, heads, kv_heads, head_dim, scale, mask=None):
    """float64: (out [B, heads·D], k_cache, v_cache after the step's write); ``mask`` bool [B, L]."""
    qkv, cos, sin = qkv.double(), cos.double()[:, None, :], sin.double()[:, None, :]
    k_cache, v_cache = k_cache.double().clone(), v_cache.double().clone()
    batch = qkv.shape[0]
    q = qkv[:, : heads * head_dim].view(batch, heads, head_dim)
    k = qkv[:, heads * head_dim : (heads + kv_heads) * head_dim].view(batch, kv_heads, head_dim)
    v = qkv[:, (heads + kv_heads) * head_dim :].view(batch, kv_heads, head_dim)
    q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    k_cache[:, :, position] = k
    v_cache[:, :, position] = v
    group = heads // kv_heads
    keys = k_cache[:, :, : position + 1].repeat_interleave(group, dim=1)  # [B, H, P+1, D]
    values = v_cache[:, :, : position + 1].repeat_interleave(group, dim=1)
    scores = torch.einsum("bhd,bhpd->bhp", q, keys) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, : position + 1].cpu(), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    out = torch.einsum("bhp,bhpd->bhd", weights, values).reshape(batch, heads * head_dim)
    return out, k_cache, v_cache


def make_case(batch, heads, kv_heads, head_dim, length, act=torch.float16, seed=0, device="cpu"):
    """Fresh random inputs of one step: qkv, the rotary tables, and caches filled with random history."""
    generator = torch.Generator().manual_seed(seed)
    width = (heads + 2 * kv_heads) * head_dim
    qkv = torch.randn(batch, width, generator=generator)
    angles = torch.rand(batch, head_dim // 2, generator=generator) * 6.28
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1)
    sin = torch.cat([angles.sin(), angles.sin()], dim=-1)
    k_cache = torch.randn(batch, kv_heads, length, head_dim, generator=generator)
    v_cache = torch.randn(batch, kv_heads, length, head_dim, generator=generator)
    return [t.to(device=device, dtype=act) for t in (qkv, cos, sin, k_cache, v_cache)]


def run_case(
    batch,
    heads,
    kv_heads,
    head_dim,
    length,
    position,
    act=torch.float16,
    tile=8,
    seed=0,
    device="cpu",
    splits=1,
    warps_over="heads",
    mask=None,
    combine="global",
):
    """The kernel (interpreted on the CPU, launched on CUDA) and the float64 reference of one step (``mask``:
    bool [B, L], True where a sequence attends)."""
    qkv, cos, sin, k_cache, v_cache = make_case(batch, heads, kv_heads, head_dim, length, act, seed, device)
    scale = head_dim**-0.5
    expected = reference(
        qkv.cpu(),
        cos.cpu(),
        sin.cpu(),
        k_cache.cpu(),
        v_cache.cpu(),
        position,
        heads,
        kv_heads,
        head_dim,
        scale,
        mask,
    )
    out = torch.full((batch, heads * head_dim), float("nan"), dtype=act, device=device)
    position_tensor = torch.tensor([position], device=device)
    options = dict(
        scale=scale, out=out, splits=splits, tile=tile, warps_over=warps_over, mask=mask, combine=combine
    )
    decode_attention(qkv, cos, sin, k_cache, v_cache, position_tensor, heads, **options)
    return (out.cpu(), k_cache.cpu(), v_cache.cpu()), expected


def check_case(found, expected) -> None:
    (out, k_after, v_after), (out_ref, k_ref, v_ref) = found, expected
    assert not torch.isnan(out).any()
    error = (out.double() - out_ref).norm() / out_ref.norm()
    assert error < 3e-3, error
    # The step's k (rotated, rounded to the activation dtype) and v landed at the position; every other
    # cache row is untouched.
    assert torch.allclose(k_after.double(), k_ref, atol=3e-2, rtol=1e-2)
    assert torch.equal(v_after.double(), v_ref)


@pytest.mark.parametrize(
    ("batch", "heads", "kv_heads", "head_dim", "length", "position", "tile"),
    [
        (1, 8, 2, 128, 24, 0, 8),  # the first token: one position, the rest of the tile masked
        (1, 8, 2, 128, 24, 13, 8),  # a ragged last tile
        (2, 4, 4, 64, 40, 39, 8),  # multi-head (G = 1), the last position of the cache, two sequences
        (1, 8, 1, 128, 33, 20, 8),  # G = 8 warps
        (1, 8, 2, 128, 40, 33, 16),  # a larger tile
    ],
)
def test_decode_attention_matches_reference(batch, heads, kv_heads, head_dim, length, position, tile):
    found, expected = run_case(
        batch, heads, kv_heads, head_dim, length, position, tile=tile, seed=position + heads
    )
    check_case(found, expected)


@pytest.mark.parametrize(
    ("batch", "heads", "kv_heads", "length", "position", "splits"),
    [
        (1, 8, 2, 64, 50, 4),  # the position in the last run; three full runs before it
        (2, 4, 4, 40, 5, 3),  # runs past the position (and past the cache) left without a position
        (1, 8, 1, 300, 299, 16),  # sixteen runs, the last position of the cache
        (1, 8, 2, 64, 16, 4),  # the position on a run's first row
    ],
)
def test_decode_attention_split_over_the_cache(batch, heads, kv_heads, length, position, splits):
    found, expected = run_case(batch, heads, kv_heads, 64, length, position, seed=position, splits=splits)
    check_case(found, expected)


@pytest.mark.parametrize(
    ("batch", "heads", "kv_heads", "length", "position", "splits", "warps_over"),
    [
        (1, 8, 2, 64, 50, 4, "heads"),  # the position in the last run
        (2, 4, 4, 40, 5, 3, "heads"),  # runs past the position left without one
        (1, 16, 4, 300, 299, 8, "heads"),  # a full portable cluster, the last position of the cache
        (1, 8, 2, 170, 160, 10, "heads"),  # past the portable 8 blocks (the H200's non-portable clusters)
        (1, 8, 4, 300, 299, 16, "positions"),  # the largest cluster
        (1, 16, 4, 70, 61, 2, "positions"),
    ],
)
def test_decode_attention_runs_combined_in_a_cluster(
    batch, heads, kv_heads, length, position, splits, warps_over
):
    """The runs' sums meet in the cluster's shared memory instead of global memory: the same result."""
    options = dict(seed=position, splits=splits, tile=16 if warps_over == "positions" else 8)
    check_case(
        *run_case(
            batch, heads, kv_heads, 64, length, position, warps_over=warps_over, combine="cluster", **options
        )
    )


@pytest.mark.parametrize(
    ("splits", "blocks", "expected"),
    [
        (1, 8, "global"),  # one run: nothing to combine
        (2, 8, "cluster"),
        (8, 8, "cluster"),  # a full portable cluster
        (10, 8, "global"),  # more runs than a cluster holds
        (2, 128, "cluster"),  # 256 blocks: one wave of two an SM on 132 SMs
        (4, 128, "global"),  # 512 blocks: a cluster's blocks wait to be placed together
    ],
)
def test_auto_combines_in_a_cluster_where_the_runs_fit_one_and_the_grid_one_wave(splits, blocks, expected):
    assert default_combine(splits, blocks, torch.device("cpu"), sms=132) == expected


def test_decode_attention_auto_picks_the_cluster_for_a_few_runs(monkeypatch):
    """``combine="auto"`` (the default) compiles the cluster kernel for 4 runs of one sequence and the global
    one for 10 (the kernel's combine is what its launch received)."""
    made = []
    real = attention.attention_kernel

    def record(*args):
        made.append(args[-1])
        return real(*args)

    monkeypatch.setattr(attention, "attention_kernel", record)
    for splits in (4, 10):
        found, expected = run_case(1, 8, 2, 64, 40, 39, seed=splits, splits=splits, combine="auto")
        check_case(found, expected)
    assert made == ["cluster", "global"]
    with pytest.raises(ValueError, match="combine one of"):
        run_case(1, 8, 2, 64, 40, 39, seed=0, combine="shared")


def test_decode_attention_combines_at_most_a_cluster_of_runs():
    with pytest.raises(ValueError, match="at most 16 runs"):
        DecodeAttention(32, 8, 128, torch.float16, 128**-0.5, 8, 17, "heads", False, "cluster")
    with pytest.raises(ValueError, match="combine one of"):
        DecodeAttention(32, 8, 128, torch.float16, 128**-0.5, 8, 4, "heads", False, "shared")


@pytest.mark.parametrize(
    ("batch", "heads", "kv_heads", "head_dim", "length", "position", "tile", "splits"),
    [
        (1, 8, 4, 128, 24, 0, 8, 1),  # G = 2: 8 slots a block, the first token
        (1, 8, 2, 128, 40, 33, 32, 1),  # G = 4, two positions a lane, a ragged last tile
        (2, 4, 4, 64, 40, 39, 4, 1),  # multi-head (G = 1: one warp of 4 slots), the last position
        (1, 16, 4, 128, 70, 61, 16, 3),  # Llama-3-8B's group of 4, split into runs
        (1, 8, 1, 64, 33, 20, 32, 1),  # G = 8 warps
    ],
)
def test_decode_attention_with_warps_over_positions(
    batch, heads, kv_heads, head_dim, length, position, tile, splits
):
    case = (batch, heads, kv_heads, head_dim, length, position)
    found, expected = run_case(*case, tile=tile, seed=position + 1, splits=splits, warps_over="positions")
    check_case(found, expected)


@pytest.mark.parametrize(
    ("warps_over", "tile", "splits"), [("heads", 8, 1), ("heads", 8, 4), ("positions", 16, 3)]
)
def test_decode_attention_with_a_padding_mask(warps_over, tile, splits):
    """A left-padded batch: each sequence attends only where its mask is True (the first sequence's padding
    and a masked position in the middle, the second sequence unpadded; the mask's rows at a stride)."""
    batch, heads, kv_heads, length, position = 2, 16, 4, 48, 37
    padded = torch.ones(batch, length + 5, dtype=torch.bool)
    padded[0, :9] = False
    padded[0, 20] = False
    mask = padded[:, :length]  # rows length + 5 apart
    found, expected = run_case(
        batch,
        heads,
        kv_heads,
        64,
        length,
        position,
        tile=tile,
        seed=5,
        splits=splits,
        warps_over=warps_over,
        mask=mask,
    )
    check_case(found, expected)
    unmasked, _ = run_case(batch, heads, kv_heads, 64, length, position, tile=tile, seed=5, splits=splits)
    assert not torch.allclose(found[0][0], unmasked[0][0], atol=1e-2)  # the mask changed sequence 0
    assert torch.equal(found[0][1], unmasked[0][1])  # and left sequence 1 alone


@pytest.mark.parametrize(
    ("warps_over", "tile", "splits"), [("heads", 8, 1), ("heads", 16, 3), ("positions", 16, 2)]
)
def test_decode_attention_mask_drops_the_steps_own_position(warps_over, tile, splits):
    """A mask that drops the step's own position drops its score (the step's k and v are still written to
    the cache row for the next steps), in the run that holds the position and with the cache in runs."""
    batch, heads, kv_heads, length, position = 2, 16, 4, 48, 30
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, position] = False
    mask[1, 3] = False
    options = dict(tile=tile, seed=9, splits=splits, warps_over=warps_over)
    found, expected = run_case(batch, heads, kv_heads, 64, length, position, mask=mask, **options)
    check_case(found, expected)
    unmasked, _ = run_case(batch, heads, kv_heads, 64, length, position, **options)
    assert torch.equal(found[0][0], unmasked[0][0])  # sequence 0 attends everywhere either way
    assert not torch.allclose(found[0][1], unmasked[0][1], atol=1e-2)


def test_decode_attention_takes_transformers_mask_and_one_row_for_the_batch():
    """The mask as transformers passes it ([B, 1, 1, L]) and one row for every sequence ([1, L] or
    [1, 1, 1, L]) give what the same rows as [B, L] give, and a mask of one row applies to every sequence."""
    batch, heads, kv_heads, length, position = 2, 8, 2, 24, 19
    qkv, cos, sin, k_cache, v_cache = make_case(batch, heads, kv_heads, 64, length, seed=6)
    row = torch.ones(1, length, dtype=torch.bool)
    row[0, 2:7] = False

    def attend(mask):
        out = torch.full((batch, heads * 64), float("nan"), dtype=qkv.dtype)
        caches = k_cache.clone(), v_cache.clone()
        decode_attention(qkv, cos, sin, *caches, torch.tensor([position]), heads, out=out, mask=mask)
        return out

    expected = attend(row.expand(batch, length).contiguous())
    assert not torch.isnan(expected).any()
    for form in (row, row[:, None, None, :], row.expand(batch, length)[:, None, None, :]):
        assert torch.equal(attend(form), expected)
    assert not torch.equal(attend(None), expected)  # the mask mattered


def test_decode_attention_checks_the_mask():
    qkv, cos, sin, k_cache, v_cache = make_case(1, 4, 2, 64, 12, seed=4)
    position = torch.tensor([3])
    with pytest.raises(TypeError, match="bool"):
        decode_attention(qkv, cos, sin, k_cache, v_cache, position, heads=4, mask=torch.ones(1, 12))
    with pytest.raises(ValueError, match=r"L = 12 .* got \[1, 11\]"):
        decode_attention(
            qkv, cos, sin, k_cache, v_cache, position, heads=4, mask=torch.ones(1, 11, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="contiguous"):
        strided = torch.ones(1, 24, dtype=torch.bool)[:, ::2]
        decode_attention(qkv, cos, sin, k_cache, v_cache, position, heads=4, mask=strided)


def test_default_splits_grow_with_the_cache_and_fill_the_gpu():
    assert default_splits(10, 8, 132) == 1  # shorter than a run
    assert default_splits(145, 8, 132) == 10  # runs of 16 positions at least
    assert default_splits(1024, 8, 132) == MAX_SPLITS  # as many as the combination takes
    assert default_splits(32768, 128, 132) == 2  # 16 sequences: 2 blocks an SM with 2 runs
    assert default_splits(32768, 256, 132) == 1  # 32 sequences fill the GPU unsplit
    assert default_tile(145, 10, 8, 132) == 8 and default_tile(4096, 16, 8, 132) == 16  # long runs: 16
    assert default_tile(145, 2, 128, 132) == 16  # 16 sequences in 2 runs of 73 positions
    assert default_tile(4096, 3, 128, 132) == 8  # long runs but a large grid: registers cost blocks


def test_the_warps_go_over_positions_for_large_batch_caches():
    assert default_warps_over(145, 1) == "heads" and default_warps_over(1024, 1) == "heads"
    assert default_warps_over(4096, 1) == "positions" and default_warps_over(1024, 16) == "positions"
    assert default_warps_over(145, 16) == "heads"
    assert default_warps_over(4096, 16, group=8) == "heads"  # 8 query heads a lane would cost registers


@pytest.mark.parametrize("warps_over", ["heads", "positions"])
def test_decode_attention_bfloat16_and_the_entry_point(warps_over):
    qkv, cos, sin, k_cache, v_cache = make_case(1, 8, 2, 64, 20, torch.bfloat16, seed=3)
    expected = reference(qkv, cos, sin, k_cache, v_cache, 11, 8, 2, 64, 64**-0.5)
    position = torch.tensor([11])
    out = decode_attention(
        qkv, cos[:, None], sin[:, None], k_cache, v_cache, position, heads=8, warps_over=warps_over
    )
    check_case((out, k_cache, v_cache), expected)


def test_decode_attention_position_outside_the_cache_gives_nan_and_writes_nothing():
    qkv, cos, sin, k_cache, v_cache = make_case(1, 4, 2, 64, 12, seed=4)
    before = k_cache.clone(), v_cache.clone()
    for splits in (1, 3):  # every block of a split launch leaves before arriving: the counters stay clean
        out = decode_attention(qkv, cos, sin, k_cache, v_cache, torch.tensor([12]), heads=4, splits=splits)
        assert torch.isnan(out).all()
    assert torch.equal(k_cache, before[0]) and torch.equal(v_cache, before[1])


def test_decode_attention_rejects_shapes_it_cannot_take():
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        DecodeAttention(6, 4, 128, torch.float16, 0.1)
    with pytest.raises(ValueError, match="multiple of 64"):
        DecodeAttention(8, 2, 96, torch.float16, 0.1)
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        DecodeAttention(8, 2, 128, torch.float32, 0.1)
    with pytest.raises(ValueError, match="splits"):
        DecodeAttention(8, 2, 128, torch.float16, 0.1, splits=MAX_SPLITS + 1)
    with pytest.raises(ValueError, match="multiple of 8 positions"):
        DecodeAttention(8, 2, 128, torch.float16, 0.1, tile=12)
    with pytest.raises(ValueError, match="multiple of 16 positions"):
        DecodeAttention(16, 4, 128, torch.float16, 0.1, tile=8, warps_over="positions")
    with pytest.raises(ValueError, match="warps_over"):
        DecodeAttention(8, 2, 128, torch.float16, 0.1, warps_over="lanes")
    qkv, cos, sin, k_cache, v_cache = make_case(1, 8, 2, 64, 16)
    position = torch.tensor([3])
    with pytest.raises(ValueError, match="expected qkv"):
        decode_attention(qkv[:, :-64], cos, sin, k_cache, v_cache, position, heads=8)
    with pytest.raises(ValueError, match="expected cos"):
        decode_attention(qkv, cos[:, :32], sin, k_cache, v_cache, position, heads=8)
    with pytest.raises(ValueError, match="expected position"):
        decode_attention(qkv, cos, sin, k_cache, v_cache, position.int(), heads=8)
    huge = torch.empty(1, 2, 2**25, 64, dtype=torch.float16, device="meta")
    with pytest.raises(ValueError, match="2\\^31"):
        decode_attention(qkv, cos, sin, huge, huge, position, heads=8)
    with pytest.raises(ValueError, match="expected v_cache"):
        decode_attention(qkv, cos, sin, k_cache, v_cache.float(), position, heads=8)


def test_attention_probe_times_the_same_step():
    """The benchmark's torch sequence (what a compiled transformers step runs) computes the reference."""
    from benchmarks.attention_probe import torch_step

    qkv, cos, sin, k_cache, v_cache = make_case(2, 32, 8, 128, 50, act=torch.float32, seed=1)
    out_ref, k_ref, v_ref = reference(qkv, cos, sin, k_cache, v_cache, 30, 32, 8, 128, 128**-0.5)
    out = torch_step(qkv, cos, sin, k_cache, v_cache, torch.tensor([30]))
    assert float((out.double() - out_ref).norm() / out_ref.norm()) < 1e-5
    assert torch.allclose(k_cache.double(), k_ref, atol=1e-5) and torch.allclose(v_cache.double(), v_ref)
