"""Does the decode kernel's time depend on how many rows of x it is given, and on what ran just before?

For each type, one weight of the shape is made the way the matmul suite makes it, then ``quantized_matmul``
is timed (CUDA graph, L2 flushed, median of 100 replays, twice per M) at M = 1, 4, 1, 2, 8, 16 rows in
that order. Two questions, each found by an earlier run of this probe:

* *The first measurement of a new weight.* Right after the weight is made, the first timing of M = 1 ran
  11–13% slower than the ones after it; ``--settle`` runs the suite's :func:`benchmarks.matmul.settle`
  first (if the first M = 1 row then matches the later ones, the suite's rows and tuning are right).
* *Rows past M.* One kernel and configuration serves M = 1 … 8 (8-row blocks); with rows past M clamped to
  row M − 1 the same kernel took longer the fewer rows were real (int4 57344×8192: 68.8 µs at M = 1, 64.7
  at M = 8). With them zero-filled (no read), the rows at M = 1, 2, 4 and 8 should take the same time.

Usage (GPU, repository root)::

    python benchmarks/rows_probe.py [--types int4,float8_e4m3] [--shape 57344x8192] [--settle] [--out DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import anybit.ops  # noqa: E402
from benchmarks import harness  # noqa: E402
from benchmarks import matmul_cases as cases  # noqa: E402
from benchmarks.matmul import Weight, settle  # noqa: E402
from benchmarks.matmul_timing import graph_us  # noqa: E402

ORDER = (1, 4, 1, 2, 8, 16)


def probe(dtype: str, n: int, k: int, *, settled: bool) -> list[dict]:
    """The rows of one type: M, the two timings, in the order they ran."""
    weight = Weight(cases.Case("layers", f"{n}x{k}", n, k, dtype, "float16", (16,)))
    if settled:
        settle(weight)
    rows = []
    for m in ORDER:
        x = weight.x[:m]
        y = anybit.ops.quantized_matmul(x, weight.packed)  # tunes this M's bucket on its first call
        check = weight.check(y)
        run = lambda x=x, p=weight.packed: anybit.ops.quantized_matmul(x, p)  # noqa: E731
        times = [graph_us(run, runs=100) for _ in (0, 1)]
        rows.append({"type": dtype, "m": m, "us": times, **check})
        print(f"{dtype:12s} M={m:<3d} {times[0]:7.1f} {times[1]:7.1f} µs  err {check['relative_error']:.1e}")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the probe; exit status 1 if any result is wrong, 2 without a GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default="int4,float8_e4m3")
    parser.add_argument("--shape", default="57344x8192", help="N x K of the weight")
    parser.add_argument("--settle", action="store_true", help="settle the weight first, as the suite")
    parser.add_argument("--out", help="directory for rows_probe.json")
    options = parser.parse_args(argv)
    try:
        n, k = (int(side) for side in options.shape.lower().split("x"))
    except ValueError:
        parser.error(f"--shape expects N x K as two integers, e.g. 57344x8192; got {options.shape!r}")
    if not torch.cuda.is_available():
        print("benchmarks/rows_probe.py needs a CUDA GPU")
        return 2
    rows = [row for dtype in options.types.split(",") for row in probe(dtype, n, k, settled=options.settle)]
    harness.write_json(
        pathlib.Path(options.out) if options.out else None,
        "rows_probe.json",
        {"gpu": harness.gpu_description(), "shape": [n, k], "settled": options.settle, "rows": rows},
    )
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
