"""The first call of a new shape (tuning on cold caches) and the cached call after it, on the suite's largest
tuning spaces and on shapes whose first call also times a route (the int8 route's configurations at M = 1,
and for bf16 the fp16 loop's forms); and what the staged tuning of the largest spaces picks against timing
every configuration.

1. **First call** (each case in a fresh process with an empty cache directory, build workers as a user has
   them): wall time of the first ``quantized_matmul`` (the plan, building and compiling the configurations in
   worker processes, timing them, the launch), checked against float64; then **the cached call**: a second
   fresh process on the same cache, its first call's wall time, the NVRTC compiles it ran (target: none)
   and whether it started build workers.
2. **Staged against exhaustive** (``--picks``, one process, ``ANYBIT_TUNE_EXHAUSTIVE=1``): every
   configuration of each case timed as the tuner times them; then the staged rounds
   (:meth:`~anybit.ops.tuning.DecodeTuner.first_round`, ``next_round``) replayed on those timings: the
   configuration they pick, its time over the best's, and how many they build — for the shipped constants
   and, with ``--grid``, other first ring depths and family counts.

Usage (repository root, on the GPU machine)::

    python benchmarks/first_call.py [--cases float6_e2m3:8192x28672:16:fp16,...] [--picks CASES] [--grid]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks import harness  # noqa: E402

#: ``type:NxK:M:act``: the suite's largest spaces (wide tiles with their shorter rings: 167 configurations at
#: 16 rows, 156 at 8).
FIRST_CALL_CASES = (
    "float6_e2m3:8192x28672:16:fp16,float6_e2m3:8192x28672:16:bf16,uint4:57344x8192:1:fp16,"
    "uint1:57344x8192:1:bf16"
)
PICK_CASES = (
    "float6_e2m3:8192x28672:16:fp16,float6_e2m3:8192x28672:1:fp16,int6:57344x8192:16:fp16,"
    "uint5:8192x28672:16:fp16"
)
ACTS = {"fp16": torch.float16, "bf16": torch.bfloat16}


def parse_case(text: str) -> tuple[str, int, int, int, str]:
    """``type:NxK:M:act`` as (type, n, k, m, act)."""
    type_name, shape, m, act = text.split(":")
    n, k = (int(value) for value in shape.split("x"))
    if act not in ACTS:
        raise ValueError(f"{text}: the activation dtype is one of {sorted(ACTS)}")
    return type_name, n, k, int(m), act


def packed_case(type_name: str, n: int, k: int, m: int, act: str):
    """A random weight of the case quantized (zero points for unsigned integers) and packed, and x."""
    from anybit.kernels import pack, quantize

    dtype = ACTS[act]
    weight = torch.randn(n, k, device="cuda", dtype=dtype) * 0.02
    q = quantize(weight, type_name, group_size=128, zero_point=type_name.startswith("u"), act_dtype=dtype)
    x = torch.randn(m, k, device="cuda").to(dtype)
    return q, pack(q), x


def one_call(case: str) -> dict:
    """In this (fresh) process: the first call of ``case``, its wall time, NVRTC compiles, workers, error."""
    from anybit.kernels import dequantize
    from anybit.ops import quantized_matmul
    from anybit.runtime import build_pool, cache

    compiles = []  # NVRTC runs in this process (the disk cache's misses)
    compile_cubin = cache.compile_cubin
    cache.compile_cubin = lambda *a, **k: compiles.append(a[1]) or compile_cubin(*a, **k)
    q, packed, x = packed_case(*parse_case(case))
    torch.cuda.synchronize()
    started = time.perf_counter()
    y = quantized_matmul(x, packed)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    reference = x.double() @ dequantize(q).double().t()
    error = float(torch.linalg.norm(y.double() - reference) / torch.linalg.norm(reference))
    return {
        "seconds": round(seconds, 3),
        "compiles_here": len(compiles),
        "build_workers_started": build_pool._pool is not None,
        "relative_error": error,
    }


def first_calls(cases: list[str]) -> list[dict]:
    """Each case's cold first call and then its cached call, each in a fresh process."""
    rows = []
    for case in cases:
        with tempfile.TemporaryDirectory(prefix="anybit-first-call-") as cache:
            env = dict(os.environ, ANYBIT_CACHE_DIR=cache)
            for name in ("ANYBIT_BUILD_PROCESSES", "ANYBIT_TUNE_EXHAUSTIVE", "ANYBIT_TUNE_HALF_ROUTE"):
                env.pop(name, None)
            row = {"case": case}
            for what in ("cold", "cached"):
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, __file__, "--one", case], env=env, capture_output=True, text=True
                )
                if done.returncode:
                    row[what] = {"failed": done.stderr.strip().splitlines()[-1:]}
                    break
                row[what] = json.loads(done.stdout.strip().splitlines()[-1])
                row[what]["process_s"] = round(time.perf_counter() - started, 1)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def staged_pick(tuner, table: list[dict], shape: tuple[int, int, int]) -> tuple[dict, int]:
    """The configuration the staged rounds pick, replayed on an exhaustive tuning's ``table`` (its
    candidates: config, milliseconds), and how many configurations they build."""
    from anybit.runtime.autotune import Candidate, bucket_text

    timings = {bucket_text(row["config"]): row["milliseconds"] for row in table}
    candidates = [Candidate(dict(row["config"])) for row in table]
    args = (None,) * 6 + shape
    built = 0
    batch = tuner.first_round(candidates, args)
    while batch:
        built += len(batch)
        for candidate in batch:
            candidate.milliseconds = timings[bucket_text(candidate.config)]
        batch = tuner.next_round(candidates, args)
    timed = [c for c in candidates if c.milliseconds is not None]
    return min(timed, key=lambda c: c.milliseconds).config, built


def picks(cases: list[str], grid: bool) -> list[dict]:
    """Each case tuned exhaustively here, then the staged rounds replayed on its timings."""
    from anybit.ops import quantized_matmul, tuning
    from anybit.runtime import autotune
    from anybit.runtime.autotune import bucket_text, gpu_key
    from anybit.runtime.device import current_arch

    os.environ[tuning.TUNE_EXHAUSTIVE_VARIABLE] = "1"
    rows = []
    for case in cases:
        type_name, n, k, m, act = parse_case(case)
        q, packed, x = packed_case(type_name, n, k, m, act)
        started = time.perf_counter()
        quantized_matmul(x, packed)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        tuner = tuning.tuner_for(packed.layout, ACTS[act], packed.zeros is not None, False)
        bucket = bucket_text(tuning.decode_bucket((None,) * 6 + (m, n, k)))
        record = autotune._read_records(tuner.identity)[gpu_key(current_arch())][bucket]
        table = [row for row in record["candidates"] if row["milliseconds"] is not None]
        best = min(table, key=lambda row: row["milliseconds"])
        timings = {bucket_text(row["config"]): row["milliseconds"] for row in table}
        rules = [(tuning.STAGED_FIRST_STAGES, tuning.STAGED_FAMILIES)]
        if grid:
            rules += [(s, f) for s in (2, 3, 4) for f in (2, 4, 6, 8) if (s, f) != rules[0]]
        shipped = (tuning.STAGED_FIRST_STAGES, tuning.STAGED_FAMILIES)
        row = {"case": case, "timed": len(table), "exhaustive_s": round(seconds, 1), "best": best}
        row["rules"] = []
        os.environ[tuning.TUNE_EXHAUSTIVE_VARIABLE] = "0"
        for stages, families in rules:
            tuning.STAGED_FIRST_STAGES, tuning.STAGED_FAMILIES = stages, families
            config, built = staged_pick(tuner, record["candidates"], (m, n, k))
            ratio = timings[bucket_text(config)] / best["milliseconds"]
            row["rules"].append(
                {"first_stages": stages, "families": families, "built": built, "pick": config, "ratio": ratio}
            )
        tuning.STAGED_FIRST_STAGES, tuning.STAGED_FAMILIES = shipped
        os.environ[tuning.TUNE_EXHAUSTIVE_VARIABLE] = "1"
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def markdown(first: list[dict], chosen: list[dict]) -> str:
    """The report's tables."""
    lines = [
        "| case | cold first call s | its error | cached call s | NVRTC compiles (cached) | workers |",
        "|---|---|---|---|---|---|",
    ]
    for row in first:
        cold, cached = row.get("cold", {}), row.get("cached", {})
        lines.append(
            f"| {row['case']} | {cold.get('seconds', cold.get('failed'))} "
            f"| {cold.get('relative_error', 0):.1e} "
            f"| {cached.get('seconds', cached.get('failed'))} | {cached.get('compiles_here')} "
            f"| {cached.get('build_workers_started')} |"
        )
    if chosen:
        lines += [
            "",
            "| case | timed (exhaustive) | exhaustive first call s | first ring depth | families | built | "
            "pick / best |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in chosen:
            for rule in row["rules"]:
                lines.append(
                    f"| {row['case']} | {row['timed']} | {row['exhaustive_s']} | {rule['first_stages']} | "
                    f"{rule['families']} | {rule['built']} | {rule['ratio']:.3f} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    def extra(parser):
        parser.add_argument("--cases", default=FIRST_CALL_CASES, help="first calls: type:NxK:M:act,...")
        parser.add_argument("--picks", default=PICK_CASES, help="staged against exhaustive ('' for none)")
        parser.add_argument("--grid", action="store_true", help="replay other ring depths and family counts")
        parser.add_argument("--one", help=argparse.SUPPRESS)  # one case's call, in a fresh process

    options = harness.gpu_options(__doc__.splitlines()[0], argv, "first_call.py", extra)
    if options is None:
        return 2
    if options.one:
        print(json.dumps(one_call(options.one)))
        return 0
    print(harness.gpu_description(), flush=True)
    first = first_calls([case for case in options.cases.split(",") if case])
    chosen = picks([case for case in options.picks.split(",") if case], options.grid)
    report = markdown(first, chosen)
    print(report)
    harness.write_json(options.out, "first_call.json", {"first_calls": first, "picks": chosen})
    if options.out is not None:
        (options.out / "first_call.md").write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
