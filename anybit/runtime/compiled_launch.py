"""The compiled launch backend: ``compiled_launch.c`` built once with the system C compiler, then imported.

Through ``cuda.bindings`` a bare ``cuLaunchKernel`` takes ~5.5 µs of host time on the H200 hosts the project
measures on, most of it converting the eleven arguments; the C module takes plain ints and calls the driver
directly. It is built the way Triton builds its launchers: ``cc -O2 -shared -fPIC`` against this Python's
headers, into the anybit cache (``$ANYBIT_CACHE_DIR/launch/``, keyed by the source, the Python version and
the platform), so a machine compiles it once. Without a compiler or Python headers :func:`load` raises
:class:`CompiledLaunchUnavailable` and the launcher keeps the ``cuda.bindings`` backend.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType

from anybit.runtime.cache import cache_dir

SOURCE = Path(__file__).with_name("compiled_launch.c")
MODULE_NAME = "anybit_compiled_launch"


class CompiledLaunchUnavailable(RuntimeError):
    """The compiled launch module cannot be built here (no C compiler, no Python headers, a build error)."""


def compiler() -> str:
    """The C compiler to build with: ``$CC``, else ``cc``, ``gcc`` or ``clang`` on the PATH."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    raise CompiledLaunchUnavailable("no C compiler found (set CC, or install gcc) to build the launch module")


def module_path() -> Path:
    """Where the built module lives: the cache, under a name that changes with its source and this Python."""
    source = SOURCE.read_bytes()
    tag = f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}"
    digest = hashlib.sha256(source + tag.encode()).hexdigest()[:16]
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return cache_dir() / "launch" / f"{MODULE_NAME}-{digest}{suffix}"


def build(target: Path) -> None:
    """Compile ``compiled_launch.c`` into ``target`` (written atomically: concurrent builders never see a
    half-written module)."""
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").exists():
        raise CompiledLaunchUnavailable(
            f"Python.h not found under {include}: install this Python's development headers "
            "(e.g. python3-dev) to build the launch module"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch, target.name)
        command = [compiler(), "-O2", "-shared", "-fPIC", f"-I{include}", str(SOURCE), "-o", str(built)]
        command.append("-ldl")
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise CompiledLaunchUnavailable(
                f"building the launch module failed ({' '.join(command)}): {result.stderr.strip()[-800:]}"
            )
        os.replace(built, target)


@functools.cache
def load() -> ModuleType:
    """The compiled launch module, built on first use (raises :class:`CompiledLaunchUnavailable`)."""
    target = module_path()
    if not target.exists():
        build(target)
    spec = importlib.util.spec_from_file_location(MODULE_NAME, target)
    if spec is None or spec.loader is None:
        raise CompiledLaunchUnavailable(f"cannot import the launch module built at {target}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        message = f"cannot import the launch module built at {target}: {error}"
        raise CompiledLaunchUnavailable(message) from error
    return module


class DependentConfig:
    """A dependent launch's settings, set by the launcher as it sets a ``cuda.bindings`` ``CUlaunchConfig``
    (``gridDimX/Y/Z``, ``hStream``); the block and shared bytes are fixed per kernel."""

    __slots__ = ("blockDimX", "gridDimX", "gridDimY", "gridDimZ", "hStream", "sharedMemBytes")

    def __init__(self, block_threads: int, shared_bytes: int) -> None:
        self.gridDimX = self.gridDimY = self.gridDimZ = 1
        self.blockDimX = block_threads
        self.sharedMemBytes = shared_bytes
        self.hStream = 0


def dependent_caller(module: ModuleType):
    """``call_dependent(config, function, params, extra)`` for the launcher, over ``module.launch_dependent``
    (``extra`` is always 0 from the launcher and not passed on)."""
    launch_dependent = module.launch_dependent

    def call_dependent(config: DependentConfig, function: int, params: int, extra: int) -> int:
        return launch_dependent(
            function,
            config.gridDimX,
            config.gridDimY,
            config.gridDimZ,
            config.blockDimX,
            config.sharedMemBytes,
            config.hStream,
            params,
        )

    return call_dependent
