"""Carry the shipped tunings over a change to the decode kernels' Python source that generates the same
CUDA for every shipped configuration (a refactor, a new option off by default): no GPU needed.

A tuning record's key hashes the kernel's source, so any edit of the decode kernels orphans the shipped
records (``tests/ops/test_shipped_tuning.py`` then fails). Where the edit leaves the generated CUDA of every
shipped configuration byte-identical, the records still describe the same kernels: this script checks that,
in a worktree of the tree the file was made with and in this one, and rewrites the keys.

    git worktree add /tmp/before <the commit the file was made or last re-keyed with>
    python scripts/rekey_shipped_tuning.py /tmp/before

Any configuration whose CUDA differs stops it: tune again on the GPU the file names (the test's message says
how). ``--carry-changed`` carries the suite's records whose CUDA differs as well, each listed (their
configurations were picked for the code before; the shipped files always need identical CUDA).
The records are matched to the Llama-3-8B model's projections of every weight type, folded as the
end-to-end benchmark folds them (``tests/ops/test_shipped_tuning.py``'s ``llama_tuners``). The suite's
tuning file (``benchmarks/tunings/*.json``, pinned by ``STEPS=bench_gpus_pinned``) is carried over the same
way, its records matched to the suite's weights (every layer shape, type and activation dtype of
``benchmarks/matmul_cases.py``, unfused) and to their quantized-matmul path records.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
from tests.ops.test_shipped_tuning import LLAMA_3_8B, WEIGHT_TYPES  # noqa: E402  (the test's model, here)

TUNINGS = HERE / "anybit/runtime/tunings"
SUITE_TUNINGS = HERE / "benchmarks/tunings"

# The tail both probes share: the CUDA hash of each [key, bucket, config] of argv[1] built by its tuner, and
# the identities, printed as JSON.
SOURCES = """
sources = {}
for key, bucket, config in json.loads(sys.argv[1]):
    if config.get("route") == "int8":  # the int8 route's two kernels (suite probe only)
        sources[f"{key} {bucket} {json.dumps(config, sort_keys=True)}"] = int8_source(key, config)
        continue
    if config.get("route") == "half":  # bf16 through the fp16 loop: its two kernels (suite probe only)
        sources[f"{key} {bucket} {json.dumps(config, sort_keys=True)}"] = half_source(key, bucket, config)
        continue
    built = tuners[key].built(config, (None,) * 6 + tuple(json.loads(bucket)), "sm_90a")
    if not isinstance(built, tuple):
        raise SystemExit(f"{key} {bucket} {config}: {built}")
    sources[f"{key} {bucket} {json.dumps(config, sort_keys=True)}"] = hashlib.sha256(
        built[1].source.encode()).hexdigest()
print(json.dumps({"identities": identities, "sources": sources}))
"""

# Run in a tree (its path first on sys.path), given [[key, bucket, config], ...] to build: {"identities":
# {"<type> <projection> <M>": identity}, "sources": {"<key> <bucket> <config>": CUDA hash}}.
PROBE = (
    """
import hashlib, json, sys
import torch
from anybit import kernels
from anybit.ops.plan import WeightPlan
types, projections = json.loads(sys.argv[2]), json.loads(sys.argv[3])
tuners = {}
for t in types:
    for name, n, k, gated, residual, rms in projections:
        layout = kernels.choose_layout(t, n, k, 128, gated=gated)
        plan = WeightPlan(layout, torch.float16, torch.device("cpu"))
        for m in (1, 16):
            tuner = plan.fused_tuner(m, t.startswith("u"), False, residual, 1e-5 if rms else None)
            tuners[f"{t} {name} {m}"] = tuner
identities = {key: tuner.identity for key, tuner in tuners.items()}
"""
    + SOURCES
)

# The same for the suite's weights: {"identities": {"<type> <N>x<K> <act>": identity, "<...> path": path
# identity, "<...> int8 route": its int8-route choice's identity}, "sources": ...}.
SUITE_PROBE = (
    """
import hashlib, json, sys
import torch
from anybit import kernels
from anybit.ops.path_choice import path_chooser
from anybit.ops.tuning import tuner_for
from benchmarks import matmul_cases as cases
try:  # the int8 route's choice records (a tree from before it has none)
    from anybit.ops.int8_choice import int8_route_chooser
except ImportError:
    int8_route_chooser = None
try:  # the bf16-through-fp16 route's choice records (a tree from before it has none)
    from anybit.ops.half_choice import half_route_chooser
except ImportError:
    half_route_chooser = None
tuners, identities = {}, {}
for t in cases.TYPES:
    for _, n, k in cases.SHAPES:
        for act in ("float16", "bfloat16"):
            layout = kernels.choose_layout(t, n, k, cases.GROUP_SIZE, act_dtype=getattr(torch, act))
            tuner = tuner_for(layout, getattr(torch, act), t.startswith("u"), False)
            key = f"{t} {n}x{k} {act}"
            tuners[key] = tuner
            identities[key] = tuner.identity
            identities[key + " path"] = path_chooser(tuner.identity).identity
            if int8_route_chooser is not None:
                identities[key + " int8 route"] = int8_route_chooser(tuner.identity).identity
            if half_route_chooser is not None and act == "bfloat16":
                identities[key + " half route"] = half_route_chooser(tuner.identity).identity
                # the route's configurations: the fp16 kernel on the bf16 packing (a layout of its own)
                loop = tuner_for(layout, torch.float16, t.startswith("u"), False)
                tuners[key + " half loop"] = loop
                identities[key + " half loop"] = loop.identity


def int8_source(key, config):  # the CUDA hash of an int8-route record's two kernels
    import anybit
    from anybit.kernels.decode_int8 import kernel_for
    from anybit.kernels.int8_activations import prepare_kernel_for
    from anybit.runtime.compiler import generate_source

    t, shape, act = key.split()[:3]
    n, k = (int(v) for v in shape.split("x"))
    nbits, act = anybit.dtype(t).nbits, getattr(torch, act)
    kernel = kernel_for(nbits, act, config["warps"], config["tiles"], 128, config["split"], True, 8, 1, True)
    prepare = prepare_kernel_for(act, nbits, 128, True)
    text = generate_source(kernel.program(*(None,) * 7, 1, n, k), "sm_90a").source
    text += generate_source(prepare.program(None, None, None, None, 1, k), "sm_90a").source
    return hashlib.sha256(text.encode()).hexdigest()


def half_source(key, bucket, config):  # the CUDA hash of a half-route record's two kernels
    from anybit.kernels.decode_half_x import DecodeMatmulHalfX
    from anybit.kernels.half_activations import prepare_kernel
    from anybit.runtime.compiler import generate_source

    t, shape = key.split()[:2]
    m, n, k = json.loads(bucket)
    layout = kernels.choose_layout(t, n, k, cases.GROUP_SIZE, act_dtype=torch.bfloat16)
    options = {name: value for name, value in config.items() if name not in ("route", "factors")}
    # A record without "factors" comes from a tree of the row form alone (whose kernels take no form)
    chunks = {"chunk_factors": True} if config.get("factors") == "chunk" else {}
    kernel = DecodeMatmulHalfX(layout, has_zeros=t.startswith("u"), **chunks, **options)
    text = generate_source(kernel.program(*(None,) * 7, m, n, k), "sm_90a").source
    prepare = prepare_kernel(layout.k_chunk) if chunks else prepare_kernel()
    text += generate_source(prepare.program(None, None, None, m, k), "sm_90a").source
    return hashlib.sha256(text.encode()).hexdigest()
"""
    + SOURCES
)


def probe(tree: pathlib.Path, build: list, program: str = PROBE) -> dict:
    """The Llama-3-8B tuners' identities of every weight type, and the CUDA hashes of ``build``'s
    configurations, computed in ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(
        [sys.executable, "-c", program, json.dumps(build), json.dumps(WEIGHT_TYPES), json.dumps(LLAMA_3_8B)],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("before", type=pathlib.Path, help="a worktree of the commit the files were made with")
    parser.add_argument(
        "--carry-changed",
        action="store_true",
        help="the suite's file only: also carry records whose CUDA changed (their configurations were picked "
        "for the previous code; listed as they are carried). The shipped files always need identical CUDA",
    )
    options = parser.parse_args(argv)
    before_tree = options.before.resolve()
    files = sorted(TUNINGS.glob("*.json"))
    status = rekey(files, before_tree, PROBE) if files else 0
    suite_files = sorted(SUITE_TUNINGS.glob("*.json"))
    if status == 0 and suite_files:
        status = rekey(suite_files, before_tree, SUITE_PROBE, carry_changed=options.carry_changed)
    return status


def rekey(
    files: list[pathlib.Path], before_tree: pathlib.Path, program: str, *, carry_changed: bool = False
) -> int:
    """Re-key the records of ``files`` (tuners named by ``program``'s probe) from ``before_tree``'s kernels
    to this tree's, where every decode configuration's CUDA is unchanged; 1 (and nothing written) where
    not. Path records (``QuantizedMatmulPath-…``: no CUDA of their own) follow their decode kernel, and so
    do the int8 route's and the bf16-through-fp16 route's records (``QuantizedMatmulInt8Route-…``,
    ``QuantizedMatmulHalfRoute-…``) where their own kernels' CUDA is unchanged too. With ``carry_changed``
    records whose CUDA changed are re-keyed as well, each listed."""
    names = {identity: key for key, identity in probe(before_tree, [], program)["identities"].items()}
    after_names = probe(HERE, [], program)["identities"]
    for path in files:
        data = json.loads(path.read_text())
        records = data["records"]
        keyed = {identity: key for key, identity in after_names.items()}  # records keyed already
        orphans = [r["kernel"] for r in records if r["kernel"] not in names and r["kernel"] not in keyed]
        if orphans:
            print(f"{path.name}: records of no projection {orphans}: is {before_tree} the files' tree?")
            return 1
        stale = [r for r in records if r["kernel"] in names]
        build = [
            [names[r["kernel"]], r["bucket"], r["config"]]
            for r in stale
            if "path" not in r["config"] and r["config"].get("route") in (None, "int8", "half")
        ]
        before = probe(before_tree, build, program)["sources"] if build else {}
        after = probe(HERE, build, program)["sources"] if build else {}
        changed = sorted(key for key in before if before[key] != after.get(key))
        if changed and not carry_changed:
            print(f"{path.name}: the generated CUDA differs: tune again on the GPU it names", file=sys.stderr)
            return 1
        for key in changed:
            print(f"{path.name}: carried, its CUDA changed (configuration picked for older code): {key}")
        moved = 0
        for record in stale:
            new = after_names[names[record["kernel"]]]
            moved += new != record["kernel"]
            record["kernel"] = new
        records.sort(key=lambda record: (record["kernel"], record["gpu"], record["bucket"]))
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        unchanged = "" if changed else ", the configurations' CUDA unchanged"
        print(f"{path.name}: {moved} of {len(records)} records re-keyed{unchanged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
