"""The quantized-matmul benchmark: ``anybit.ops.quantized_matmul`` against the read ceiling and cuBLAS.

Every Llama-3 layer shape and weight type, against the ceilings and anchors measured in the same run.

Usage (on a GPU machine, from the repository root)::

    python benchmarks/matmul.py [--quick] [--out DIR] [--tuning FILE]
    python -m anybit bench [--quick] [--out DIR]

Suites: ``decode`` (M ∈ {1, 4, 16}: the decode kernel), ``prefill`` (M ∈ {512, 4096}: dequantize + cuBLAS)
and ``crossover`` (both paths over M, to place the dispatch threshold). Every row is checked against a float64
reference and timed three ways (CUDA-graph replay with the L2 flushed; eager wall clock per call; host time
per eager call at M = 1). Writes ``DIR/matmul.json``, ``DIR/matmul.md`` (the section BENCHMARKS.md keeps),
``DIR/matmul_roofline.png`` and ``DIR/tuning.json`` (every tuned configuration: pass it back with
``--tuning`` so the next run does not tune). ``--quick`` runs a subset; a time budget (``--budget-s``,
counted after the warm-up compile, which is reported on its own) skips what is left, saying so, rather than
running past the device call's limit.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import time
import traceback
import zlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from anybit.kernels.layout import BYTES_PER_THREAD_CHOICES, MAX_BYTES_PER_THREAD  # noqa: E402
from anybit.ops import half_choice, tuning  # noqa: E402
from benchmarks import matmul_cases as cases  # noqa: E402
from benchmarks.harness import gpu_description  # noqa: E402
from benchmarks.matmul_anchors import (  # noqa: E402
    CublasAnchors,
    anchor_acts,
    compute_ceilings,
    cublas_call,
    int4pack_rows,
    read_ceilings,
    relative_error,
)
from benchmarks.matmul_timing import (  # noqa: E402
    eager_us,
    graph_and_kernel_us,
    graph_us,
    host_us,
    interleaved_us,
    rotation_count,
)

#: ‖y − ref‖ / ‖ref‖ a row must stay under (the output's rounding dominates: 2^-11 fp16, 2^-8 bf16).
TOLERANCE = {"float16": 3e-3, "bfloat16": 1.5e-2}
REFERENCE_ROWS = 64  # rows of x checked against the float64 reference (all of them up to 64)
DEVICE = "cuda"  # the CPU smoke test of the benchmark's logic sets "cpu"
#: Seconds of measuring in a run (on one GPU the full suite takes two device calls: scripts/gpu_check.sh's
#: bench and bench_70b steps, 580 s each, the warm-up compile in a process pool first; on two or more,
#: scripts/bench_gpus.sh runs it in one call).
FULL_BUDGET_S = 500.0


#: The results a crossover row checks against the float64 reference: each path forced, and the plain call.
CROSSOVER_CHECKS = ("decode", "dequantize", "dispatched")


class Budget:
    """Seconds left for the run; suites check it before each weight and skip the rest once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = self.counting_from = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.started

    def restart(self) -> None:
        """Count the budget from now (the run's elapsed time still counts from its start)."""
        self.counting_from = time.perf_counter()

    def spent(self) -> bool:
        """Whether the budget is used up."""
        return time.perf_counter() - self.counting_from > self.seconds


class Run:
    """One benchmark run: options, anchors, results, and where they are written."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.quick = options.quick
        self.out = pathlib.Path(options.out)
        default_budget = 80.0 if options.quick else FULL_BUDGET_S
        self.budget = Budget(options.budget_s if options.budget_s else default_budget)
        self.cublas = CublasAnchors()
        self.results: dict = {
            "benchmark": "quantized_matmul",
            "quick": self.quick,
            "operand": getattr(options, "operand", "a"),
            # None: choose_layout's default width per weight (each row records the one it packed with).
            "max_bytes_per_thread": getattr(options, "bytes_per_thread", None),
            "gpu": gpu_description(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "group_size": cases.GROUP_SIZE,
            "budget_s": self.budget.seconds,
            # One run split over GPUs (scripts/bench_gpus.sh): the parts share this id; each names itself.
            "run_id": os.environ.get("ANYBIT_BENCH_RUN"),
            "part": os.environ.get("ANYBIT_BENCH_PART"),
            "rows": [],
            "anchors": [],
            "crossover": [],
            "skipped": [],
        }

    # -- bookkeeping -------------------------------------------------------------------------------------
    @property
    def ceiling_tb_s(self) -> float:
        """The measured read ceiling (TB/s)."""
        return self.results["ceilings"]["read"]["best_tb_s"]

    def save(self) -> None:
        """Write what is measured so far (JSON), so a run cut short still leaves its rows."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.results["elapsed_s"] = round(self.budget.elapsed(), 1)
        self.results["anchors"] = sorted(
            list(self.cublas.rows.values()) + self.results.get("int4pack", []),
            key=lambda row: (row["anchor"], row["n"], row["k"], row["m"]),
        )
        (self.out / "matmul.json").write_text(json.dumps(self.results, indent=1, default=str))

    def log(self, text: str) -> None:
        """Progress on stdout with the elapsed time."""
        print(f"[{self.budget.elapsed():6.1f}s] {text}", flush=True)

    # -- the run -----------------------------------------------------------------------------------------
    def run(self) -> int:
        """Ceilings, warm-up compile, then the suites; write JSON, markdown and the roofline plot."""
        import anybit.ops
        from anybit.runtime.autotune import export_tuning, load_tuning

        if self.options.tuning:
            self.results["tuning_loaded"] = load_tuning(self.options.tuning)
        self.log("ceilings")
        self.results["ceilings"] = {"read": read_ceilings(), **compute_ceilings()}
        self.log(f"read ceiling {self.ceiling_tb_s:.2f} TB/s ({self.results['ceilings']['read']['best']})")
        self.results["decode_max_m"] = anybit.ops.decode_max_m()
        options = self.options
        chosen = {"layers": options.layers, "types": options.types, "ms": options.ms, "acts": options.acts}
        layers = cases.only(cases.layer_cases(self.quick), **chosen)
        crossover = cases.only(cases.crossover_cases(self.quick), **chosen)
        self.precompile(layers + crossover)
        self.budget.restart()  # the budget is for measuring; the warm-up compile is reported on its own
        self.save()
        for suite, todo in (("layers", layers), ("crossover", crossover)):
            self.log(f"suite {suite}: {len(todo)} weights")
            for case in todo:
                if self.budget.spent():
                    self.results["skipped"].append(
                        {
                            "suite": suite,
                            "layer": case.layer,
                            "type": case.dtype,
                            "act_dtype": case.act_dtype,
                            "reason": f"time budget of {self.budget.seconds:.0f} s spent",
                        }
                    )
                    continue
                self.run_case(case)
                self.save()
        self.results["tuning_records"] = export_tuning(self.out / "tuning.json")
        self.save()
        self.report()
        failures = [row for row in self.results["rows"] if row.get("error") or row.get("ok") is False]
        failures += [
            row
            for row in self.results["crossover"]
            if row.get("error") or False in (row.get(f"{what}_ok") for what in CROSSOVER_CHECKS)
        ]
        self.log(
            f"done: {len(self.results['rows'])} rows, {len(failures)} failed, "
            f"{len(self.results['skipped'])} weights skipped"
        )
        return 1 if failures else 0

    def layout_of(self, case: cases.Case):
        """The packed layout of ``case``'s weight in this run (operand and warp-tile width as asked)."""
        from anybit.kernels import choose_layout

        return choose_layout(
            case.dtype,
            case.n,
            case.k,
            cases.GROUP_SIZE,
            operand=self.results["operand"],
            max_bytes_per_thread=self.results["max_bytes_per_thread"],
            act_dtype=getattr(torch, case.act_dtype),
        )

    def precompile(self, todo: list[cases.Case]) -> None:
        """Compile every decode specialisation the suites need, and the kernels of the bf16 route's forms
        their first calls will time, NVRTC in parallel (build worker processes)."""
        from anybit.ops import half_choice, precompile_decode

        started = time.perf_counter()
        specialisations = [
            (
                self.layout_of(case),
                getattr(torch, case.act_dtype),
                case.dtype.startswith("uint"),
                False,
                [(m, case.n, case.k) for m in case.ms if m <= 16],
            )
            for case in todo
        ]
        try:
            counts = precompile_decode(specialisations)
            counts["routes"] = half_choice.precompile_routes(specialisations)  # bf16 calls' fp16 loop
        except Exception as error:  # compiling again per shape later still works; say why it did not here
            counts = {"error": f"{type(error).__name__}: {error}"}
        counts["seconds"] = round(time.perf_counter() - started, 1)
        self.results["precompile"] = counts
        self.log(f"precompiled decode kernels: {counts}")

    def run_case(self, case: cases.Case) -> None:
        """Quantize and pack one weight, then measure each M of ``case`` (errors become rows, not crashes)."""
        base = {
            "layer": case.layer,
            "n": case.n,
            "k": case.k,
            "type": case.dtype,
            "act_dtype": case.act_dtype,
        }
        try:
            weight = Weight(case, self.results["operand"], self.results["max_bytes_per_thread"])
            settle(weight)
        except Exception as error:
            self.results["rows"].append(
                {
                    "suite": cases.suite_of(min(case.ms)),
                    **base,
                    "error": f"quantize/pack: {type(error).__name__}: {error}",
                    "traceback": traceback.format_exc(limit=4),
                }
            )
            self.log(f"{case.layer} {case.dtype} {case.act_dtype}: quantize/pack failed: {error}")
            return
        for m in case.ms:
            row = {"suite": "crossover" if case.suite == "crossover" else cases.suite_of(m), **base, "m": m}
            row["bytes_per_thread"] = weight.packed.layout.bytes_per_thread
            try:
                if case.suite == "crossover":
                    self.crossover_row(weight, m, row)
                else:
                    self.measure_row(weight, m, row)
            except Exception as error:
                row["error"] = f"{type(error).__name__}: {error}"
                row["traceback"] = traceback.format_exc(limit=6)
            (self.results["crossover"] if case.suite == "crossover" else self.results["rows"]).append(row)
            self.log(_one_line(row))
        if case.dtype == "uint4" and case.act_dtype == "bfloat16" and case.suite != "crossover":
            xs = {m: weight.x[:m] for m in case.ms if m <= 16 or not self.quick}
            self.results.setdefault("int4pack", []).extend(
                int4pack_rows(weight.q, xs, weight.reference, weight.reference_rows)
            )
        del weight

    def measure_row(self, weight: Weight, m: int, row: dict) -> None:
        """Correctness, graph µs, eager µs (and host µs at M = 1) of ``quantized_matmul`` at M rows."""
        from anybit.ops import choose_path, quantized_matmul

        p = weight.packed
        x = weight.x[:m]
        started = time.perf_counter()
        y = quantized_matmul(x, p)
        torch.cuda.synchronize()
        row["first_call_s"] = round(time.perf_counter() - started, 3)
        row["path"] = choose_path(m)
        row.update(weight.check(y))
        small = m <= 16
        row["graph_us"], kernel_us = graph_and_kernel_us(
            lambda: quantized_matmul(x, p), runs=100 if small else 20
        )
        if kernel_us is not None:
            row["kernel_us"] = kernel_us
        copies = weight.copies() if small else [p]  # prefill: device-bound, the weight is read M/16× anyway
        row["eager_us"] = eager_us(
            [lambda c=c: quantized_matmul(x, c) for c in copies], repeats=100 if small else 10
        )
        if m == 1:
            row["host_us"] = host_us(lambda: quantized_matmul(x, p), launches=1000)
        if row["path"] == "dequantize":
            from anybit.kernels import dequantize_weight

            row["dequantize_us"] = graph_us(lambda: dequantize_weight(p), runs=20)
        if not small:
            row["paired"] = paired_with_cublas(x, p, weight.case.n, weight.case.act_dtype)
        self.derive(row, weight)

    def crossover_row(self, weight: Weight, m: int, row: dict) -> None:
        """Both paths at M rows: µs of each (graph, flushed) and which is faster; then what a plain
        ``quantized_matmul`` call takes there (its path: the rule, or measured on its first call), its µs."""
        from anybit.ops import choose_path, plan_of, quantized_matmul, quantized_matmul_path

        x, p = weight.x[:m], weight.packed
        for path in ("decode", "dequantize"):
            y = quantized_matmul_path(x, p, path=path)
            check = weight.check(y)
            row[f"{path}_relative_error"] = check["relative_error"]
            row[f"{path}_ok"] = check["ok"]
            row[f"{path}_us"] = graph_us(lambda path=path: quantized_matmul_path(x, p, path=path), runs=50)
        row["faster"] = "decode" if row["decode_us"] <= row["dequantize_us"] else "dequantize"
        y = quantized_matmul(x, p)  # the first call of this M may time both paths (outside the graph)
        check = weight.check(y)
        row["dispatched_ok"] = check["ok"]
        has_zeros = p.zeros is not None
        row["dispatched_path"] = plan_of(p)._paths.get((has_zeros, False, m), choose_path(m))
        row["dispatched_us"] = graph_us(lambda: quantized_matmul(x, p), runs=50)

    def derive(self, row: dict, weight: Weight) -> None:
        """Bytes, TB/s, % of the read ceiling, TFLOP/s and speedups over the anchors."""
        case, m = weight.case, row["m"]
        nbits = weight.q.dtype.nbits
        moved = cases.bytes_moved(
            m, case.n, case.k, nbits, group_size=cases.GROUP_SIZE, has_zeros=weight.q.zeros is not None
        )
        row["time_basis"] = "kernel" if "kernel_us" in row else "events"
        row["timed_us"] = row.get("kernel_us", row["graph_us"])
        seconds = row["timed_us"] * 1e-6
        row["nbits"] = nbits
        row["bytes"] = moved
        row["tb_s"] = moved / seconds / 1e12
        row["pct_of_read_ceiling"] = 100.0 * row["tb_s"] / self.ceiling_tb_s
        events_ceiling = max(self.results["ceilings"]["read"]["candidates"].values())
        row["pct_of_read_ceiling_events"] = 100.0 * moved / (row["graph_us"] * 1e-6) / 1e12 / events_ceiling
        row["ideal_us"] = moved / (self.ceiling_tb_s * 1e12) * 1e6
        row["tflops"] = cases.flops(m, case.n, case.k) / seconds / 1e12
        row["intensity_flop_per_byte"] = cases.flops(m, case.n, case.k) / moved
        for act, name in anchor_acts(case.act_dtype):
            ours, theirs, basis = comparable(row, self.cublas.row(m, case.n, case.k, act), name)
            row[f"cublas_{name}_us"] = theirs
            row[f"speedup_vs_cublas_{name}"] = theirs / ours
            row[f"speedup_vs_cublas_{name}_basis"] = basis

    def report(self) -> None:
        """Markdown table and roofline plot from the results (printed and written under --out)."""
        from benchmarks.matmul_report import markdown, roofline

        text = markdown(self.results)
        (self.out / "matmul.md").write_text(text)
        print(text)
        try:
            roofline(self.results, self.out / "matmul_roofline.png")
        except Exception as error:  # the numbers matter more than the picture
            self.log(f"roofline plot failed: {type(error).__name__}: {error}")


class Weight:
    """One random weight of a case, quantized and packed on the GPU, with x and the float64 reference."""

    def __init__(self, case: cases.Case, operand: str = "a", max_bytes_per_thread: int | None = None) -> None:
        from anybit.kernels import choose_layout, dequantize, pack, quantize

        self.case = case
        act = getattr(torch, case.act_dtype)
        seed = zlib.crc32(f"{case.n}x{case.k} {case.dtype} {case.act_dtype}".encode())
        generator = torch.Generator(device=DEVICE).manual_seed(seed)
        full = torch.randn(case.n, case.k, device=DEVICE, generator=generator) * 0.02
        self.q = quantize(full, case.dtype, group_size=cases.GROUP_SIZE, act_dtype=act)
        del full
        layout = choose_layout(
            case.dtype,
            case.n,
            case.k,
            cases.GROUP_SIZE,
            operand=operand,
            max_bytes_per_thread=max_bytes_per_thread,
            act_dtype=act,
        )
        self.packed = pack(self.q, layout=layout)
        self.x = torch.randn(max(case.ms), case.k, device=DEVICE, dtype=act, generator=generator)
        self.reference_rows = min(REFERENCE_ROWS, max(case.ms))
        dequantized = dequantize(self.q).double()
        self.reference = self.x[: self.reference_rows].double() @ dequantized.T
        del dequantized
        self.tolerance = TOLERANCE[case.act_dtype]
        self._copies: list | None = None

    def check(self, y: torch.Tensor) -> dict:
        """Relative error of the first rows of ``y`` against the float64 reference, and whether it passes."""
        rows = min(self.reference_rows, y.shape[0])
        error = relative_error(y[:rows], self.reference[:rows])
        return {"relative_error": error, "ok": bool(error <= self.tolerance)}

    def copies(self) -> list:
        """The packed weight and enough copies of it that a round over them is 3× the L2."""
        if self._copies is None:
            from anybit.kernels import PackedWeight

            p = self.packed
            nbytes = p.data.numel() + p.scales.numel() * 2 * (2 if p.zeros is not None else 1)
            self._copies = [p] + [
                PackedWeight(
                    p.data.clone(),
                    p.scales.clone(),
                    None if p.zeros is None else p.zeros.clone(),
                    p.layout,
                    p.act_dtype,
                )
                for _ in range(rotation_count(nbytes) - 1)
            ]
        return self._copies


def settle(weight: Weight) -> None:
    """Stream the freshly made weight a hundred times (L2 flushed, results discarded) before its first
    tuning and timing.

    Right after a weight is made (randn, quantize, pack, a float64 reference: gigabytes of traffic), the
    first measurement of a kernel on it ran 11–13% slow on the H200 and the next ones did not (int4
    57344×8192, M = 1: 77.5 µs, then 68.8 and 68.7; float8_e4m3 138.6, then 126.7), each a median of 100
    replays. The suite's first row of every weight is M = 1, and the tuner's first timings come even
    earlier: both landed in that window. The cause is not known (that call logged no clocks; through the
    suite the SM clock held 1980 MHz outside the prefill GEMMs); this spends the window on a plain read of
    the same bytes instead."""
    data = weight.packed.data
    graph_us(lambda: torch.count_nonzero(data), runs=100)


def paired_with_cublas(x: torch.Tensor, packed, n: int, act_dtype: str) -> dict:
    """``quantized_matmul(x, packed)`` and cuBLAS at the same shape in each anchor dtype, their graphs
    replayed in turns (``matmul_timing.interleaved_us``): the basis, our µs and each anchor's µs."""
    from anybit.ops import quantized_matmul

    m, k = x.shape
    acts = anchor_acts(act_dtype)
    calls = [lambda: quantized_matmul(x, packed)] + [cublas_call(m, n, k, act) for act, _ in acts]
    times, basis = interleaved_us(calls, runs=20)
    record = {"basis": basis, "us": times[0]}
    for (_, name), us in zip(acts, times[1:], strict=True):
        record[f"cublas_{name}_us"] = us
    return record


def comparable(row: dict, anchor: dict, name: str) -> tuple[float, float, str]:
    """(our µs, the anchor's µs, which basis) on one basis: a prefill row's paired times with the anchor of
    short name ``name`` ("fp16", "bf16": our call and the anchor's timed in turns, see
    ``paired_with_cublas``) where it has them, else both kernel times where both have one, else both event
    times (NaN for an anchor that failed)."""
    paired = row.get("paired")
    if paired is not None and f"cublas_{name}_us" in paired:
        return paired["us"], paired[f"cublas_{name}_us"], f"paired {paired['basis']}"
    if "kernel_us" in row and "kernel_us" in anchor:
        return row["kernel_us"], anchor["kernel_us"], "kernel"
    return row["graph_us"], anchor.get("us", float("nan")), "events"


def _one_line(row: dict) -> str:
    name = f"{row['suite']:9s} {row['layer']:11s} {row['type']:12s} {row['act_dtype']:8s} M={row['m']:<5d}"
    if row.get("error"):
        return f"{name} ERROR {row['error']}"
    if row["suite"] == "crossover":
        return f"{name} decode {row['decode_us']:.1f} us, dequantize+cuBLAS {row['dequantize_us']:.1f} us"
    return (
        f"{name} {row['timed_us']:8.1f} us ({row['time_basis']}; events {row['graph_us']:.1f})  "
        f"{row['pct_of_read_ceiling']:5.1f}% of ceiling  "
        f"x{row['speedup_vs_cublas_fp16']:.2f} vs cuBLAS fp16  err {row['relative_error']:.1e}"
        f"{'' if row['ok'] else '  WRONG'}  eager {row['eager_us']:.1f} us"
    )


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The benchmark's command-line options (``prog``: the name its help and errors give the command)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a subset that runs in under 90 s")
    parser.add_argument("--out", default="out/bench", help="directory for matmul.json/.md/_roofline.png")
    parser.add_argument("--tuning", help="a tuning file (from a previous run's tuning.json) to pin first")
    parser.add_argument(
        "--operand",
        choices=("b", "a"),
        default="a",
        help="pack the weights as the tensor-core A operand (default: the transposed decode kernel) or B",
    )
    parser.add_argument(
        "--layers",
        default="",
        help='only these layer shapes, comma-separated (e.g. "70B gate_up,70B down,70B o")',
    )
    parser.add_argument("--types", default="", help="only these weight types, comma-separated (e.g. int4)")
    parser.add_argument("--ms", default="", help="only these rows M, comma-separated (e.g. 1,16)")
    parser.add_argument("--acts", default="", help="only these activation dtypes (float16, bfloat16)")
    parser.add_argument(
        "--bytes-per-thread",
        type=int,
        choices=BYTES_PER_THREAD_CHOICES,
        default=None,
        help="warp-tile width of the packing for every weight (choose_layout's max_bytes_per_thread; by "
        f"default its choice per weight: {MAX_BYTES_PER_THREAD}, or wider for large 5-, 6- and 8-bit "
        "weights): a packing A/B",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=0.0,
        help="stop starting new weights this many seconds after the warm-up compile "
        f"(default 80 quick, {FULL_BUDGET_S:.0f} full)",
    )
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the benchmark; exit status 1 if a row is wrong or failed, 2 without a GPU."""
    options = build_parser(prog).parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/matmul.py: no CUDA GPU (torch.cuda.is_available() is False); it only runs on a GPU")
        return 2
    # The suite tunes as offline tuning does: a bf16 weight's route in the fp16 kernel's own tuned
    # configuration where the run has none recorded (a library call would take the bf16 kernel's), and
    # every configuration of a large space timed (a library call stages them: tuning.STAGED_ABOVE)
    os.environ.setdefault(half_choice.TUNE_ROUTE_VARIABLE, "1")
    os.environ.setdefault(tuning.TUNE_EXHAUSTIVE_VARIABLE, "1")
    run = Run(options)
    try:
        return run.run()
    finally:
        run.save()


if __name__ == "__main__":
    raise SystemExit(main())
