"""Run one GPU check in a fresh Python process, so a kernel that kills its CUDA context (an illegal
instruction, a trap, an out-of-bounds access) fails only its own test instead of every later one.

``ANYBIT_GPU_IN_PROCESS=1`` runs the checks in the pytest process instead (faster, easier to debug).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TIMEOUT_S = 120


def run_isolated(module: str, function: str, *args: str) -> None:
    """Call ``module.function(*args)`` (a module of this directory) in a subprocess; raise with its output
    when it fails."""
    if os.environ.get("ANYBIT_GPU_IN_PROCESS") == "1":
        sys.path.insert(0, str(HERE))
        getattr(__import__(module), function)(*args)
        return
    code = (
        f"import sys; sys.path[:0] = [{str(HERE)!r}, {str(ROOT)!r}]; "
        f"import {module}; {module}.{function}(*sys.argv[1:])"
    )
    environment = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=environment,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"{module}.{function}{args} did not finish in {TIMEOUT_S} s") from error
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()
        raise AssertionError(
            f"{module}.{function}{args} failed in its own process (exit {done.returncode}):\n"
            + "\n".join(output[-40:])
        )
