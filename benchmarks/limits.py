"""What limits each decode row of a quantized-matmul suite run, with the evidence, worked out on the CPU.

Issue #6 asks, for every row short of its target, what limits it: achieved bandwidth, SASS, occupancy. The
suite (``python -m anybit bench``) measures the first and writes the configuration it tuned for every row
(``tuning.json``); this script rebuilds each of those kernels, compiles it for sm_90a with NVRTC and reads
its SASS with ``nvdisasm`` — no GPU needed — and puts per row:

* the tuned configuration (at M = 1, the int8 route's where the run's dispatch chose it:
  ``anybit.ops.int8_choice``; for bf16 rows that the dispatch ran through the fp16 loop,
  ``anybit.ops.half_choice``, the route's kernel in its form, in the fp16 kernel's configuration),
  registers a thread, shared memory a block, and the blocks an SM can hold (theoretical occupancy: the
  smallest of the register, shared-memory, warp and block limits of sm_90);
* the main loop's SASS instructions per weight, and from them the **issue time**: every warp's loop
  instructions spread over the 4 schedulers of every SM at the SM clock (a lower bound: one instruction a
  cycle, no stall counted);
* the **memory time**: the bytes that must move at the measured read ceiling (the suite's ``ideal_us``);
* with ``--reads`` (the output of ``benchmarks/read_floor.py``): what the fastest plain read of the row's
  bytes (torch, cuBLAS or the VM's streaming read) takes on the GPU, and its share of the read ceiling: a
  small weight's read does not reach the 4 GiB rate whoever reads it;
* the **tensor time**: the loop's ``mma.sync`` (HMMA, or IMMA on the int8 route) at the rate the tensor cores
  issue them (:data:`MMA_SYNC_PER_SM_CYCLE`, ``benchmarks/mma_rates.py``), another lower bound;
* for each target cell short of its target (:data:`~benchmarks.matmul_report.DECODE_TARGETS`, M = 1 and
  16), the time it **needs** (its memory time over the target share) and the first floor that already
  exceeds it: ``read`` (a plain read of its bytes takes longer), ``tensor`` or ``issue`` — such a cell is
  out of reach of the kernel's design — or none: the kernel's own gap, in the summary with the cells within
  :data:`NEAR_SHARE` of their time;
* the bound these imply against the measured time: ``memory`` where the row reaches 80% of the read
  ceiling or 90% of the rate of a plain read of its bytes (:data:`READ_FLOOR_SHARE`), ``issue`` where the
  issue time is at least half the measured time (:data:`ISSUE_BOUND_SHARE`),
  else ``latency``: neither the memory system nor the schedulers are near full, so launch, first DRAM round
  trips, split-K tails and the dependent chain of each loop step (few warps to hide it) take the time.

Nsight Compute confirmed the classes on seven kernels of the eighth session (``benchmarks/ncu_decode.py``):
DRAM 82–84% busy on the memory-bound rows, the ALU pipe 70% busy on the issue-bound float6 row.

Run it with the code the suite ran: tuning records are keyed by a hash of the kernel's source, so a
record made by other code is not found (the row says so). Usage (repository root)::

    python benchmarks/limits.py DIR [--all] [--clock-mhz 1980] [--reads READ_FLOOR_JSON] [--out DIR2]

``DIR`` holds the suite's ``matmul.json`` and ``tuning.json``; ``--all`` covers every decode row, not only the
issue's target shapes; writes ``limits.json`` and ``limits.md`` (to ``--out``, default ``DIR``).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import multiprocessing
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import anybit  # noqa: E402
from anybit.kernels import choose_layout  # noqa: E402
from anybit.kernels.layout import BYTES_PER_THREAD_CHOICES, MAX_BYTES_PER_THREAD  # noqa: E402
from anybit.ops import half_choice, int8_choice  # noqa: E402
from anybit.ops.half_choice import half_route_chooser  # noqa: E402
from anybit.ops.int8_choice import int8_route_chooser  # noqa: E402
from anybit.ops.tuning import m_bucket, tuner_for  # noqa: E402
from anybit.runtime.autotune import bucket_text  # noqa: E402
from benchmarks.matmul_report import DECODE_TARGETS  # noqa: E402
from benchmarks.sass_counts import chunks_per_pass, main_loop, nvdisasm, opcode  # noqa: E402

TARGET_SHAPES = ((57344, 8192), (8192, 28672), (8192, 8192))
ARCH = "sm_90a"
#: sm_90 per-SM limits: registers, register allocation unit (per warp), warps, blocks, shared memory (bytes),
#: and the shared memory the system reserves per block.
SM90 = {"registers": 65536, "register_unit": 256, "warps": 64, "blocks": 32, "shared": 228 * 1024}
SM90_RESERVED_SHARED = 1024
SMS, SCHEDULERS = 132, 4
MEMORY_BOUND_PCT = 80.0
#: A row is memory-bound too where it runs at this share of the rate of a plain read of its own bytes.
READ_FLOOR_SHARE = 0.9
#: The loop model counts the K loop only; on the seven kernels Nsight Compute profiled (eighth session) the
#: schedulers' measured issue activity was 1.25–1.4× the model's share, so a model share of 0.5 means about
#: 65–70% of the issue slots busy.
ISSUE_BOUND_SHARE = 0.5
#: Warp-level ``mma.sync`` an SM issues a cycle on the H200 (m16n8k16 f16 and m16n8k32 int8 alike; 0.57–0.59
#: measured by ``benchmarks/mma_rates.py``, thirty-fourth session).
MMA_SYNC_PER_SM_CYCLE = 0.58
#: A missed cell "within reach" in the summary: its time at most this share over the time it needs.
NEAR_SHARE = 1.05
#: The rows M the issue's decode targets name.
TARGET_MS = (1, 16)
ROW_KEYS = ("type", "act_dtype", "n", "k", "m", "graph_us", "timed_us", "pct_of_read_ceiling")


def blocks_per_sm(registers: int, warps: int, shared_bytes: int) -> dict[str, int]:
    """How many blocks of ``warps`` warps an sm_90 SM holds, by each limit, and the smallest (``blocks``)."""
    per_warp = math.ceil(registers * 32 / SM90["register_unit"]) * SM90["register_unit"]
    limits = {
        "registers": SM90["registers"] // (per_warp * warps) if registers else SM90["blocks"],
        "shared": SM90["shared"] // (shared_bytes + SM90_RESERVED_SHARED),
        "warps": SM90["warps"] // warps,
        "blocks": SM90["blocks"],
    }
    limits["resident"] = min(limits.values())
    return limits


def warp_iterations(n: int, k: int, m: int, rows: int, weights_per_thread: int) -> float:
    """Main-loop iterations of every warp of a call: N·K over the weights a warp-iteration converts, once per
    block of ``rows`` rows of x."""
    return n * k / (32 * weights_per_thread) * math.ceil(m / rows)


def issue_us(
    n: int, k: int, m: int, rows: int, weights_per_thread: int, loop: int, clock_mhz: float
) -> float:
    """µs to issue every warp's main-loop instructions: :func:`warp_iterations` of ``loop`` instructions each,
    over every scheduler of the GPU at one instruction a cycle."""
    return warp_iterations(n, k, m, rows, weights_per_thread) * loop / (SMS * SCHEDULERS) / clock_mhz


def tensor_us(
    n: int, k: int, m: int, rows: int, weights_per_thread: int, mma_per_iteration: int, clock_mhz: float
) -> float:
    """µs of the tensor cores' work: every warp-iteration's ``mma_per_iteration`` (:func:`warp_iterations`)
    at :data:`MMA_SYNC_PER_SM_CYCLE` on every SM."""
    iterations = warp_iterations(n, k, m, rows, weights_per_thread)
    return iterations * mma_per_iteration / (SMS * MMA_SYNC_PER_SM_CYCLE) / clock_mhz


def target_floor(entry: dict) -> dict:
    """For a target cell (:data:`DECODE_TARGETS` shape, M in :data:`TARGET_MS`): its target share, the µs it
    needs (memory µs over the share) and, when it misses, the first floor past that time (``read``,
    ``tensor``, ``issue``) or None; an empty dict for other rows."""
    share = DECODE_TARGETS.get((entry["n"], entry["k"]))
    if share is None or entry["m"] not in TARGET_MS:
        return {}
    need = entry["memory_us"] * 100.0 / share
    facts = {"target_pct": share, "need_us": need, "met": entry["pct_of_read_ceiling"] >= share}
    if not facts["met"]:
        floors = (("read", entry.get("read_us")), ("tensor", entry["tensor_us"]))
        floors += (("issue", entry["issue_us"]),)
        facts["floor"] = next((name for name, floor in floors if floor is not None and floor > need), None)
    return facts


def classify(pct_of_ceiling: float, issue: float, measured: float, read: float | None = None) -> str:
    """``memory``, ``issue`` or ``latency`` (see the module docstring); ``read``: µs of a plain read of the
    row's bytes, where measured."""
    if pct_of_ceiling >= MEMORY_BOUND_PCT or (read is not None and read >= READ_FLOOR_SHARE * measured):
        return "memory"
    if issue >= ISSUE_BOUND_SHARE * measured:
        return "issue"
    return "latency"


def width_cap(results: dict, row: dict) -> int:
    """The ``max_bytes_per_thread`` that rebuilds the layout ``row`` was packed with: the run's forced width,
    else the narrowest choice holding the row's recorded width (rows from before widths were recorded: the
    narrow default they were packed with), not today's default, which may have changed since."""
    if results.get("max_bytes_per_thread") is not None:
        return results["max_bytes_per_thread"]
    width = row.get("bytes_per_thread", MAX_BYTES_PER_THREAD)
    return min(choice for choice in BYTES_PER_THREAD_CHOICES if choice >= width)


def kernel_facts(
    type_name: str, act_name: str, operand: str, width: int, config: dict, m: int, n: int, k: int
) -> dict:
    """Registers, shared memory and main-loop SASS of one tuned decode configuration (in a worker process:
    NVRTC and nvdisasm, no GPU)."""
    if config.get("route") == "int8":
        return int8_facts(type_name, act_name, config, n, k)
    act = getattr(torch, act_name)
    layout = choose_layout(type_name, n, k, 128, operand=operand, max_bytes_per_thread=width, act_dtype=act)
    if config.get("route") == "half":  # bf16 through the fp16 loop: the route's kernel in its form
        from anybit.kernels.decode_half_x import DecodeMatmulHalfX

        options = {key: value for key, value in config.items() if key not in ("route", "factors")}
        tuner = tuner_for(layout, torch.float16, type_name.startswith("uint"), False)
        kernel = DecodeMatmulHalfX(
            layout, config.get("factors") == "chunk", has_zeros=type_name.startswith("uint"), **options
        )
        compiled = anybit.compile(kernel, *(None,) * 7, m, n, k, arch=ARCH)
    else:
        tuner = tuner_for(layout, act, type_name.startswith("uint"), False)
        compiled = anybit.compile(tuner.instance(config), *(None,) * 6, m, n, k, arch=ARCH)
    fixed = tuner.fixed["layout"]
    return sass_facts(compiled, fixed.k_chunk * fixed.n_per_warp // 32 * chunks_per_pass(config))


def int8_facts(type_name: str, act_name: str, config: dict, n: int, k: int) -> dict:
    """:func:`kernel_facts` of an int8-route choice at M = 1 (``DecodeInt8``, the group-columns form: its
    loop unrolled twice, two chunks of 16·tiles × 128 weights a warp a pass)."""
    from anybit.kernels.decode_int8 import kernel_for

    kernel = kernel_for(
        anybit.dtype(type_name).nbits,
        getattr(torch, act_name),
        config["warps"],
        config["tiles"],
        128,
        config["split"],
        True,
        8,
        1,
        type_name.startswith("uint"),
    )
    compiled = anybit.compile(kernel, *(None,) * 7, 1, n, k, arch=ARCH)
    return sass_facts(compiled, 16 * config["tiles"] * 128 // 32 * 2, mma="IMMA")


def sass_facts(compiled, weights_per_thread: int, mma: str = "HMMA") -> dict:
    """Registers, shared memory and the main loop's SASS (nvdisasm) of a compiled kernel."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.cubin)
        cubin.flush()
        text = subprocess.run(
            [nvdisasm(), "-c", cubin.name], capture_output=True, text=True, check=True
        ).stdout
    loop = main_loop(text)
    resources = compiled.resources
    return {
        "registers": resources.registers,
        "spills": resources.spills,
        "shared_bytes": compiled.kernel_source.dynamic_shared_bytes + resources.shared_memory_bytes,
        "loop_instructions": len(loop),
        "hmma": collections.Counter(opcode(i) for i in loop)[mma],
        "weights_per_thread": weights_per_thread,
    }


def analyse(
    results: dict,
    records: list[dict],
    *,
    every_row: bool,
    clock_mhz: float,
    processes: int | None = None,
    reads: dict | None = None,
) -> list[dict]:
    """One entry per decode row (of the target shapes unless ``every_row``); each distinct configuration is
    compiled once, in a pool of ``processes`` (default: one per CPU). ``reads``: ``read_floor.py``'s record,
    whose cells give the rows of the same type, shape and M their plain read."""
    floors = {
        (c["type"], c["n"], c["k"], c["m"]): c for c in (reads or {}).get("cells", []) if "read_us" in c
    }
    operand = results.get("operand", "a")
    configs = {(r["kernel"], r["bucket"]): r["config"] for r in records}
    entries, jobs = [], {}
    for row in results["rows"]:
        if row.get("suite") != "decode" or row.get("error"):
            continue
        n, k, m = row["n"], row["k"], row["m"]
        if not every_row and (n, k) not in TARGET_SHAPES:
            continue
        act = getattr(torch, row["act_dtype"])
        width = width_cap(results, row)
        layout = choose_layout(
            row["type"], n, k, 128, operand=operand, max_bytes_per_thread=width, act_dtype=act
        )
        tuner = tuner_for(layout, act, row["type"].startswith("uint"), False)
        entry = {key: row[key] for key in ROW_KEYS if key in row}
        config = configs.get((tuner.identity, bucket_text([m_bucket(m), n, k])))
        if int8_choice.eligible(layout, act, m, has_bias=False):  # the int8 route where it was chosen
            route = configs.get((int8_route_chooser(tuner.identity).identity, bucket_text([1, n, k])))
            if route is not None and route.get("route") == "int8":
                config = route
        if half_choice.eligible(layout, act, m) and (config or {}).get("route") != "int8":  # bf16 as fp16
            chooser = half_route_chooser(tuner.identity)
            route = configs.get((chooser.identity, bucket_text([m_bucket(m), n, k])))
            if route is not None and route.get("route") == "half":
                config = route
        if config is None:
            entry["missing"] = "no tuning record for this kernel (tuned by other code?)"
        else:
            entry["config"] = config
            key = (tuner.identity, json.dumps(config, sort_keys=True))
            entry["_job"] = key
            jobs.setdefault(key, (row["type"], row["act_dtype"], operand, width, config, m, n, k))
        floor = floors.get((row["type"], n, k, m))
        if floor is not None:
            entry["read_us"], entry["read_pct_of_ceiling"] = floor["read_us"], floor["read_pct_of_ceiling"]
        entry["_row"] = row
        entries.append(entry)
    facts = _run_jobs(jobs, processes)
    for entry in entries:
        row = entry.pop("_row")
        if "missing" in entry:
            continue
        found = facts[entry.pop("_job")]
        config = entry["config"]
        warps, rows = config["warps"], config.get("rows", 8 if config.get("route") == "int8" else 16)
        occupancy = blocks_per_sm(found["registers"], warps, found["shared_bytes"])
        issue = issue_us(
            row["n"],
            row["k"],
            row["m"],
            rows,
            found["weights_per_thread"],
            found["loop_instructions"],
            clock_mhz,
        )
        entry.update(
            **found,
            blocks_per_sm=occupancy,
            occupancy_pct=100.0 * occupancy["resident"] * warps / SM90["warps"],
            loop_per_weight=found["loop_instructions"] / found["weights_per_thread"],
            issue_us=issue,
            tensor_us=tensor_us(
                row["n"], row["k"], row["m"], rows, found["weights_per_thread"], found["hmma"], clock_mhz
            ),
            memory_us=row["ideal_us"],
            bound=classify(
                row["pct_of_read_ceiling"], issue, row.get("timed_us", row["graph_us"]), entry.get("read_us")
            ),
        )
        entry.update(target_floor(entry))
    return entries


def _run_jobs(jobs: dict, processes: int | None) -> dict:
    """:func:`kernel_facts` of every job, in spawned worker processes when there are several."""
    if not jobs:
        return {}
    workers = min(len(jobs), processes or os.cpu_count() or 1)
    if workers <= 1:
        return {key: kernel_facts(*job) for key, job in jobs.items()}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {key: pool.submit(kernel_facts, *job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def limiting_resource(limits: dict[str, int]) -> str:
    """The limit(s) that set the resident blocks, e.g. ``shared`` or ``registers+shared``."""
    names = ("registers", "shared", "warps", "blocks")
    return "+".join(name for name in names if limits[name] == limits["resident"])


def markdown(entries: list[dict], clock_mhz: float) -> str:
    """The table of :func:`analyse`'s entries and the count of each bound; a plain-read column where the
    entries carry one (``--reads``)."""
    reads = any("read_us" in e for e in entries)
    read_head, read_rule = ("plain read µs (% of ceiling) | ", "---|") if reads else ("", "")
    lines = [
        "| type | act | N × K | M | µs | % of ceiling | config (rows, warps, stages, split) | regs | smem KB "
        f"| blocks/SM (limit) | occupancy | loop instr./weight | memory µs | {read_head}issue µs | tensor µs "
        "| bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|" + read_rule + "---|---|---|",
    ]
    for e in entries:
        timed = e.get("timed_us", e["graph_us"])
        head = f"| {e['type']} | {e['act_dtype']} | {e['n']}×{e['k']} | {e['m']} | {timed:.1f} "
        if "missing" in e:
            cells = f"| {e['pct_of_read_ceiling']:.0f}% | {e['missing']} ||||||||||"
            lines.append(head + cells + "|" * reads)
            continue
        c = e["config"]
        if c.get("route") == "int8":
            shape = f"int8 route: {c['warps']} warps, {c['tiles']} tiles, split {c['split']}"
        elif c.get("route") == "half":
            shape = f"fp16 loop, a factor a {c.get('factors', 'row')}: "
            shape += f"{c.get('rows', 16)}, {c['warps']}, {c['stages']}, {c['split']}"
        else:
            shape = f"{c.get('rows', 16)}, {c['warps']}, {c['stages']}, {c['split']}"
        if c.get("min_blocks"):
            shape += f", {c['min_blocks']}/SM"
        resident = f"{e['blocks_per_sm']['resident']} ({limiting_resource(e['blocks_per_sm'])})"
        read = ""
        if reads:
            read = f"{e['read_us']:.1f} ({e['read_pct_of_ceiling']:.0f}%) | " if "read_us" in e else "– | "
        lines.append(
            head + f"| {e['pct_of_read_ceiling']:.0f}% | {shape} | {e['registers']} "
            f"| {e['shared_bytes'] / 1024:.0f} | {resident} | {e['occupancy_pct']:.0f}% "
            f"| {e['loop_per_weight']:.2f} | {e['memory_us']:.1f} | {read}{e['issue_us']:.1f} "
            f"| {e['tensor_us']:.1f} | {e['bound']} |"
        )
    counts = collections.Counter(e.get("bound", "missing") for e in entries)
    lines += [
        "",
        f"Bounds: {', '.join(f'{name} {count}' for name, count in sorted(counts.items()))} (issue time at "
        f"{clock_mhz:.0f} MHz, {SMS} SMs × {SCHEDULERS} schedulers, one instruction a cycle: a lower bound"
        + (
            f"; memory also where a row runs at {READ_FLOOR_SHARE:.0%} of a plain read of its bytes)."
            if reads
            else ")."
        ),
    ]
    summary = targets_summary(entries)
    return "\n".join(lines + ([""] + summary if summary else []))


def targets_summary(entries: list[dict]) -> list[str]:
    """The target cells among ``entries``: how many are met, and of the missed ones which are past a floor
    (:func:`target_floor`) and which are the kernel's own gap — those within :data:`NEAR_SHARE` of the time
    they need named, and the median missed cell's time over its need."""
    cells = [e for e in entries if "met" in e]
    missed = [e for e in cells if not e["met"]]
    if not cells:
        return []
    text = f"Target cells: {len(cells) - len(missed)} of {len(cells)} met"
    if not missed:
        return [text + "."]
    floors = collections.Counter(e["floor"] for e in missed if e["floor"])
    gaps = {id(e): e.get("timed_us", e["graph_us"]) / e["need_us"] for e in missed}
    near = [e for e in missed if not e["floor"] and gaps[id(e)] <= NEAR_SHARE]
    past = ", ".join(f"{count} the {name} floor" for name, count in sorted(floors.items())) or "none"
    text += (
        f"; of the {len(missed)} missed, past a floor (it already takes longer than the cell's time at its "
        f"target): {past}; the other {len(missed) - sum(floors.values())} are the kernel's gap, "
        f"{len(near)} of them within {NEAR_SHARE - 1:.0%} of the time they need"
    )
    if near:
        text += " (" + ", ".join(f"{e['type']} {e['act_dtype']} {e['n']}×{e['k']} M = {e['m']}" for e in near)
        text += ")"
    median, worst = statistics.median(gaps.values()), max(gaps.values())
    return [text + f"; the median missed cell takes {median:.2f}× its time, the worst {worst:.2f}×."]


def main(argv: list[str] | None = None) -> int:
    """Write limits.json and limits.md; exit status 1 when the suite's files are missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=pathlib.Path, help="the suite's output (matmul.json, tuning.json)")
    parser.add_argument("--all", action="store_true", help="every decode row, not only the target shapes")
    parser.add_argument("--clock-mhz", type=float, default=1980.0, help="the SM clock the rows ran at")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--processes", type=int, default=None, help="compiling workers (default: one a CPU)")
    parser.add_argument("--reads", type=pathlib.Path, default=None, help="read_floor.py's read_floor.json")
    options = parser.parse_args(argv)
    files = [options.directory / name for name in ("matmul.json", "tuning.json")]
    missing = [str(path) for path in files if not path.exists()]
    if missing:
        print(f"benchmarks/limits.py: {', '.join(missing)} not found; point it at a suite's --out directory")
        return 1
    results, tuning = (json.loads(path.read_text()) for path in files)
    entries = analyse(
        results,
        tuning["records"],
        every_row=options.all,
        clock_mhz=options.clock_mhz,
        processes=options.processes,
        reads=json.loads(options.reads.read_text()) if options.reads else None,
    )
    text = markdown(entries, options.clock_mhz)
    out = options.out or options.directory
    out.mkdir(parents=True, exist_ok=True)
    (out / "limits.json").write_text(json.dumps(entries, indent=1))
    (out / "limits.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
