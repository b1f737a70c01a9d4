"""scripts/gpu_check.sh: the default call runs only the GPU tiers; every longer step waits to be named.

A step missing from ONLY_WHEN_NAMED runs in the default call and can push the tiers past the device call's
limit (the demo, the timing floor and the tile probe did on 2026-11-29).
"""

from __future__ import annotations

import pathlib
import re

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
#: The steps of the default call: the environment, the GPU tiers, the CPU tiers beside them, launch overhead.
DEFAULT_STEPS = {
    "environment",
    "gpu_conversions",
    "gpu_programs",
    "gpu_examples",
    "gpu_kernels",
    "gpu_runtime",
    "gpu_ops",
    "gpu_nn",
    "gpu_other",
    "cpu_tiers",
    "launch_overhead",
}


def script_steps(text: str) -> list[str]:
    """Every step name the script defines (``step NAME SECONDS ...`` lines)."""
    return re.findall(r"^\s*step (\w+) \d+ ", text, flags=re.MULTILINE)


def only_when_named(text: str) -> set[str]:
    """The steps the script keeps out of the default call."""
    match = re.search(r'^ONLY_WHEN_NAMED="([^"]*)"', text, flags=re.MULTILINE)
    assert match, "gpu_check.sh lost its ONLY_WHEN_NAMED list"
    return set(match.group(1).split(","))


def test_every_long_step_waits_to_be_named():
    text = SCRIPT.read_text()
    steps = script_steps(text)
    assert DEFAULT_STEPS <= set(steps), f"default steps missing from the script: {DEFAULT_STEPS - set(steps)}"
    named = only_when_named(text)
    runs_by_default = [step for step in steps if step not in named and step not in DEFAULT_STEPS]
    assert not runs_by_default, f"add these to ONLY_WHEN_NAMED in gpu_check.sh: {runs_by_default}"
    assert not named & DEFAULT_STEPS, f"default steps listed as named-only: {named & DEFAULT_STEPS}"
    unknown = named - set(steps)
    assert not unknown, f"ONLY_WHEN_NAMED lists steps the script does not define: {sorted(unknown)}"


def test_the_one_call_suite_asks_for_two_gpus(tmp_path):
    """scripts/bench_gpus.sh splits the suite over the GPUs it sees; with fewer than two it stops, naming
    the two-call route, before it starts anything."""
    import os
    import subprocess
    import sys

    script = SCRIPT.parent / "bench_gpus.sh"
    environment = dict(os.environ, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        ["bash", str(script), str(tmp_path / "out")], capture_output=True, text=True, env=environment
    )
    assert done.returncode == 2
    assert "needs 2 or more" in done.stderr and "bench_70b" in done.stderr
    assert not (tmp_path / "out").exists()


def test_two_commands_side_by_side_or_in_turn(tmp_path):
    """scripts/two_gpus.sh: with two GPUs the second command runs on GPU 1 beside the first (its output in
    the log, printed after); otherwise both run in turn; either failing fails the whole."""
    import os
    import subprocess

    script = SCRIPT.parent / "two_gpus.sh"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho GPU 0\necho GPU 1\n")
    (fake / "nvidia-smi").chmod(0o755)
    log = tmp_path / "second.log"
    show = 'echo "$CUDA_VISIBLE_DEVICES"'
    for path, first, second in (
        (f"{fake}:{os.environ['PATH']}", "0", "1"),  # two GPUs: side by side
        ("/usr/bin:/bin", "", ""),  # none: in turn, GPUs as the caller left them
    ):
        environment = dict(os.environ, PATH=path, CUDA_VISIBLE_DEVICES="")
        done = subprocess.run(
            ["bash", str(script), str(log), f"{show}; echo first", f"{show}; echo second"],
            capture_output=True,
            text=True,
            env=environment,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.split()
        assert "first" in lines and "second" in lines
        if second:
            assert log.read_text().split() == [second, "second"] and lines[0] == first
    failing = subprocess.run(
        ["bash", str(script), str(log), "true", "exit 3"], env=dict(os.environ, PATH="/usr/bin:/bin")
    )
    assert failing.returncode != 0
