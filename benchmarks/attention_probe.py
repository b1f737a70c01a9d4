"""The fused decode attention (and the greedy token pick) against what a compiled Llama step runs for the
same work, in a row.

For Llama-3-8B heads (32 query, 8 KV, D = 128) at each batch and cache length: ``--copies`` layers' worth
of caches, one call each, replayed from one CUDA graph (µs a call, median of ``--replays``), for
``anybit.kernels.decode_attention`` (its default runs of the cache, and each ``--splits`` given) and for the
torch sequence a compiled transformers step runs (Inductor's rotary embedding and cache ``index_copy_``, the
mask of positions up to the step's, ``scaled_dot_product_attention`` with grouped-query heads). Both write
the step's k/v at the position and attend over the cache up to it; their outputs are compared.

Usage (GPU)::

    python benchmarks/attention_probe.py [--batches 1,16] [--lengths 80,1024,4096] [--splits 1,4,16] \\
        [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from anybit.kernels.attention import (  # noqa: E402
    GROUP_SLOTS,
    MAX_CLUSTER_SPLITS,
    decode_attention,
    default_combine,
    default_splits,
    default_tile,
    default_warps_over,
)
from anybit.kernels.greedy import greedy_token  # noqa: E402
from benchmarks.layer_sequence import graph_us_per_call  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128


def torch_step(qkv, cos, sin, k_cache, v_cache, position):
    """The step as transformers computes it (rotate_half rotary, index_copy_ into the static cache, SDPA)."""
    batch = qkv.shape[0]
    q, k, v = (
        qkv.view(batch, 1, HEADS + 2 * KV_HEADS, HEAD_DIM)
        .transpose(1, 2)
        .split([HEADS, KV_HEADS, KV_HEADS], dim=1)
    )
    cos, sin = cos[:, None, None, :], sin[:, None, None, :]

    def rotate(x):
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

    k_cache.index_copy_(2, position, rotate(k))
    v_cache.index_copy_(2, position, v)
    mask = (torch.arange(k_cache.shape[2], device=qkv.device) <= position)[None, :]  # [1, L]: one query row
    out = F.scaled_dot_product_attention(rotate(q), k_cache, v_cache, attn_mask=mask, enable_gqa=True)
    return out.transpose(1, 2).reshape(batch, HEADS * HEAD_DIM)


def measure(
    batch: int,
    length: int,
    splits_list: list[int],
    variants: list[tuple],
    copies: int,
    combines: tuple[str, ...] = ("global",),
) -> dict:
    """The torch step and every (warps_over, tile) variant at each run count, 8 layers' caches in a row, with
    the runs combined in each of ``combines`` (``cluster`` only for 2 to 8 runs)."""
    position_value = length - 1  # the longest walk of the cache this length allows
    width = (HEADS + 2 * KV_HEADS) * HEAD_DIM
    qkv = torch.randn(batch, width, device="cuda", dtype=torch.float16)
    angles = torch.rand(batch, HEAD_DIM // 2, device="cuda") * 6.28
    cos = torch.cat([angles.cos(), angles.cos()], -1).half()
    sin = torch.cat([angles.sin(), angles.sin()], -1).half()
    caches = [
        [torch.randn(batch, KV_HEADS, length, HEAD_DIM, device="cuda", dtype=torch.float16) for _ in range(2)]
        for _ in range(copies)
    ]
    position = torch.tensor([position_value], device="cuda")
    row: dict = {"batch": batch, "length": length, "position": position_value, "copies": copies}
    compiled = torch.compile(torch_step, dynamic=False)
    expected = compiled(qkv, cos, sin, *[c.clone() for c in caches[0]], position)
    row["torch_us"] = round(
        graph_us_per_call([lambda c=c: compiled(qkv, cos, sin, *c, position) for c in caches]), 2
    )
    row["anybit"] = []
    every_splits = sorted({default_splits(length, batch * KV_HEADS), *splits_list})
    for warps_over, tile in variants:
        for splits, combine in [
            (splits, combine)
            for splits in every_splits
            for combine in combines
            if combine == "global" or 1 < splits <= MAX_CLUSTER_SPLITS
        ]:
            out = torch.full_like(expected, float("nan"))
            copy = [c.clone() for c in caches[0]]
            options = dict(splits=splits, tile=tile, warps_over=warps_over, combine=combine)
            decode_attention(qkv, cos, sin, *copy, position, HEADS, out=out, **options)
            error = float((out.float() - expected.float()).norm() / expected.float().norm())
            calls = [
                lambda c=c, o=options: decode_attention(qkv, cos, sin, *c, position, HEADS, **o)
                for c in caches
            ]
            chosen = default_splits(length, batch * KV_HEADS)
            chosen_warps = default_warps_over(length, batch, HEADS // KV_HEADS)
            chosen_tile = (
                default_tile(length, chosen, batch * KV_HEADS)
                if chosen_warps == "heads"
                else GROUP_SLOTS * HEADS // KV_HEADS
            )
            default = warps_over == chosen_warps and splits == chosen and tile == chosen_tile
            default = default and combine == default_combine(splits, batch * KV_HEADS, qkv.device)
            entry = {"splits": splits, "tile": tile, "warps_over": warps_over, "default": default}
            entry["combine"] = combine
            entry["rel_error"] = error
            entry["us"] = round(graph_us_per_call(calls), 2)
            row["anybit"].append(entry)
    best = min(row["anybit"], key=lambda e: e["us"])
    print(
        f"batch {batch} length {length}: torch {row['torch_us']} µs, anybit "
        + ", ".join(
            f"{e['us']} ({e['warps_over']}, splits {e['splits']}, tile {e['tile']}"
            f"{', in a cluster' if e['combine'] == 'cluster' else ''}{', default' if e['default'] else ''})"
            for e in row["anybit"]
        )
        + f"; best × torch {row['torch_us'] / best['us']:.2f}, error {best['rel_error']:.1e}"
    )
    return row


def measure_greedy(batch: int, vocab: int = 128256, copies: int = 8) -> dict:
    """The step's token pick: torch's argmax against anybit's greedy kernel, in a row (µs a call)."""
    rows = [torch.randn(batch, vocab, device="cuda").half() for _ in range(copies)]
    out = torch.empty(batch, 1, dtype=torch.int64, device="cuda")
    row = {"batch": batch, "vocab": vocab}
    row["argmax_us"] = round(
        graph_us_per_call([lambda r=r: out.copy_(r.argmax(-1, keepdim=True)) for r in rows]), 2
    )
    row["anybit_us"] = round(graph_us_per_call([lambda r=r: greedy_token(r, out=out) for r in rows]), 2)
    row["same"] = bool(torch.equal(greedy_token(rows[0]), rows[0].argmax(-1, keepdim=True)))
    print(
        f"greedy pick, batch {batch}: argmax {row['argmax_us']} µs, anybit {row['anybit_us']} "
        f"(same: {row['same']})"
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--lengths", default="80,1024,4096")
    parser.add_argument("--splits", default="1,4,16", help="runs of the cache to time besides the default")
    parser.add_argument("--tiles", default="8,16", help="tiles with a warp per query head")
    parser.add_argument(
        "--positions-tiles", default="16", help="tiles with the warps over the positions (multiples of 4·G)"
    )
    parser.add_argument("--copies", type=int, default=8, help="layers' caches in the row")
    parser.add_argument(
        "--combines", default="global", help="where the runs meet: global, cluster (2 to 16 runs), or both"
    )
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("attention_probe needs an NVIDIA GPU")
        return 1
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    splits = [int(s) for s in args.splits.split(",") if s]
    variants = [("heads", int(t)) for t in args.tiles.split(",") if t]
    variants += [("positions", int(t)) for t in args.positions_tiles.split(",") if t]
    rows = [
        measure(int(b), int(n), splits, variants, args.copies, tuple(args.combines.split(",")))
        for b in args.batches.split(",")
        for n in args.lengths.split(",")
    ]
    greedy = [measure_greedy(int(b)) for b in args.batches.split(",")]
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "attention_probe.json").write_text(
            json.dumps({"attention": rows, "greedy": greedy}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
