"""Merge tuning files (``export_tuning``'s JSON: a suite part's ``tuning.json``) into one.

A later file's record of the same (kernel, GPU, bucket) replaces an earlier one's. The suite pins the result
with ``BENCH_TUNING`` (``scripts/bench_gpus.sh``) so that a later run neither tunes nor precompiles more than
each weight's configuration: ``benchmarks/tunings/`` keeps the latest full run's, which must come from the
current kernels (a record of an older kernel names another identity and is simply not found).

Usage::

    python benchmarks/merge_tuning.py A/tuning.json B/tuning.json ... --out benchmarks/tunings/FILE.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from anybit.runtime.autotune import TUNING_FORMAT, read_tuning_file  # noqa: E402


def merge_tuning(paths: list[pathlib.Path]) -> dict:
    """The records of every file at ``paths``, a later file's winning, as one tuning file's JSON."""
    records: dict[tuple[str, str, str], dict] = {}
    for path in paths:
        records.update(read_tuning_file(path))
    return {
        "format": TUNING_FORMAT,
        "records": [
            {"kernel": kernel, "gpu": gpu, "bucket": bucket, "config": config}
            for (kernel, gpu, bucket), config in sorted(records.items(), key=lambda item: item[0])
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=pathlib.Path, help="tuning files, earliest first")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    options = parser.parse_args(argv)
    merged = merge_tuning(options.files)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    print(f"{len(merged['records'])} records from {len(options.files)} files → {options.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
