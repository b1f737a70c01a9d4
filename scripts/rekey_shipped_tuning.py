"""Carry the shipped H200 tuning over a change to the decode kernels' Python source that generates the same
CUDA for every shipped configuration (a refactor, a new option off by default): no GPU needed.

A tuning record's key hashes the kernel's source, so any edit of the decode kernels orphans the shipped
records (``tests/ops/test_shipped_tuning.py`` then fails). Where the edit leaves the generated CUDA of every
shipped configuration byte-identical, the records still describe the same kernels: this script checks that,
in a worktree of the tree the file was made with and in this one, and rewrites the keys.

    git worktree add /tmp/before <the commit the file was made or last re-keyed with>
    python scripts/rekey_shipped_tuning.py /tmp/before

Any configuration whose CUDA differs stops it: tune again on an H200 (the test's message says how).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent.parent
TUNING = HERE / "anybit/runtime/tunings/nvidia-h200-int4-llama-3-8b.json"

# Run in a tree (its path first on sys.path): {projection and M: {identity, sources: {config: CUDA hash}}}.
PROBE = """
import hashlib, json, sys
from tests.ops.test_shipped_tuning import LLAMA_3_8B, llama_tuners
from anybit.runtime.autotune import bucket_text
configs = json.loads(sys.argv[1])
shapes = {name: (n, k) for name, n, k, *_ in LLAMA_3_8B}
result = {}
for m in (1, 16):
    for name, tuner in llama_tuners(m).items():
        n, k = shapes[name]
        sources = {}
        for config in configs.get(bucket_text([m, n, k]), []):
            built = tuner.built(config, (None,) * 6 + (m, n, k), "sm_90a")
            if not isinstance(built, tuple):
                raise SystemExit(f"{name} at M = {m}, {config}: {built}")
            text = built[1].source
            sources[json.dumps(config, sort_keys=True)] = hashlib.sha256(text.encode()).hexdigest()
        result[f"{name} {m}"] = {"identity": tuner.identity, "sources": sources}
print(json.dumps(result))
"""


def probe(tree: pathlib.Path, configs: dict) -> dict:
    """The tuners' identities and the shipped configurations' CUDA hashes, computed in ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(configs)],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("before", type=pathlib.Path, help="a worktree of the commit the file was made with")
    options = parser.parse_args(argv)
    data = json.loads(TUNING.read_text())
    configs: dict[str, list[dict]] = {}
    for record in data["records"]:
        configs.setdefault(record["bucket"], []).append(record["config"])
    before, after = probe(options.before.resolve(), configs), probe(HERE, configs)
    mapping = {after[key]["identity"]: after[key]["identity"] for key in after}  # keyed already
    mapping.update({before[key]["identity"]: after[key]["identity"] for key in before})
    changed = [key for key in before if before[key]["sources"] != after[key]["sources"]]
    if changed:
        print(f"the generated CUDA differs for {changed}: tune again on an H200", file=sys.stderr)
        return 1
    orphans = [record["kernel"] for record in data["records"] if record["kernel"] not in mapping]
    if orphans:
        print(f"records of no projection {orphans}: is {options.before} the file's tree?", file=sys.stderr)
        return 1
    for record in data["records"]:
        record["kernel"] = mapping[record["kernel"]]
    data["records"].sort(key=lambda record: (record["kernel"], record["gpu"], record["bucket"]))
    TUNING.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"{len(data['records'])} records re-keyed, the CUDA of every shipped configuration unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
