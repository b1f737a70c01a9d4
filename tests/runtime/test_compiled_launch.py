"""The compiled launch backend on the CPU: it builds, its driver structs match cuda.h, it checks its inputs,
and where it cannot be built or loaded the launcher keeps another backend (its launches run in
tests/runtime/test_gpu.py)."""

from __future__ import annotations

import ctypes.util
import importlib
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from anybit.runtime import compiled_launch

launch = importlib.import_module("anybit.runtime.launch")  # the package exports a function of that name
load_module = compiled_launch.load  # kept: a test replaces the module's attribute

needs_compiler = pytest.mark.skipif(
    not any(shutil.which(name) for name in ("cc", "gcc", "clang"))
    or not Path(sysconfig.get_paths()["include"], "Python.h").exists(),
    reason="no C compiler or Python headers here: the compiled launch backend cannot be built",
)


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANYBIT_CACHE_DIR", str(tmp_path))
    load_module.cache_clear()
    launch.launch_backend.cache_clear()
    yield tmp_path
    load_module.cache_clear()
    launch.launch_backend.cache_clear()


@needs_compiler
def test_it_builds_once_into_the_cache_and_imports(private_cache):
    module = compiled_launch.load()
    built = compiled_launch.module_path()
    assert built.is_file() and built.is_relative_to(private_cache / "launch")
    assert {"launch", "launch_dependent", "driver", "layout"} <= set(dir(module))
    stamp = built.stat().st_mtime_ns
    compiled_launch.load.cache_clear()
    compiled_launch.load()  # a second process finds it built
    assert built.stat().st_mtime_ns == stamp


@needs_compiler
def test_wrong_arguments_are_refused_before_the_driver_is_touched(private_cache):
    module = compiled_launch.load()
    with pytest.raises(TypeError, match="launch takes 11 ints, got 3"):
        module.launch(1, 2, 3)
    with pytest.raises(TypeError, match="launch_dependent takes 8 ints, got 0"):
        module.launch_dependent()
    with pytest.raises(TypeError, match="argument 4 must be a non-negative int"):
        module.launch(0, 1, 1, 1, -32, 1, 1, 0, 0, 0, 0)
    with pytest.raises(TypeError, match="argument 0 must be a non-negative int"):
        module.launch("kernel", 1, 1, 1, 32, 1, 1, 0, 0, 0, 0)


@needs_compiler
@pytest.mark.skipif(ctypes.util.find_library("cuda") is not None, reason="a CUDA driver is installed here")
def test_without_a_driver_a_launch_says_what_is_missing(private_cache):
    module = compiled_launch.load()
    with pytest.raises(OSError, match="cannot open libcuda.so.1"):
        module.launch(0, 1, 1, 1, 32, 1, 1, 0, 0, 0, 0)
    with pytest.raises(OSError, match="cannot open libcuda.so.1"):
        module.driver()
    with pytest.raises(OSError, match="cannot open libcuda.so.1"):
        launch.launch_backend("compiled")  # so the launcher takes another backend on such a machine


def cuda_header() -> Path | None:
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and Path(root, "include", "cuda.h").exists():
            return Path(root, "include")
    return None


LAYOUT_PROBE = r"""
#include <cuda.h>
#include <stddef.h>
#include <stdio.h>
int main(void) {
    printf("%zu %zu %zu %zu %zu %zu %d\n", sizeof(CUlaunchAttribute), offsetof(CUlaunchAttribute, value),
           sizeof(CUlaunchConfig), offsetof(CUlaunchConfig, hStream), offsetof(CUlaunchConfig, attrs),
           offsetof(CUlaunchConfig, numAttrs), (int)CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
    return 0;
}
"""


@needs_compiler
@pytest.mark.skipif(cuda_header() is None, reason="no CUDA toolkit headers (cuda.h) to compare with")
def test_its_driver_structs_match_cuda_h(private_cache, tmp_path):
    probe = tmp_path / "probe.c"
    probe.write_text(LAYOUT_PROBE)
    binary = tmp_path / "probe"
    subprocess.run(
        [compiled_launch.compiler(), f"-I{cuda_header()}", str(probe), "-o", str(binary)], check=True
    )
    sizes = [int(value) for value in subprocess.run([binary], capture_output=True, text=True).stdout.split()]
    layout = compiled_launch.load().layout()
    assert sizes[:6] == [
        layout["attribute_size"],
        layout["attribute_value_offset"],
        layout["config_size"],
        layout["config_stream_offset"],
        layout["config_attrs_offset"],
        layout["config_num_attrs_offset"],
    ]
    source = compiled_launch.SOURCE.read_text()
    assert f"#define ANYBIT_PROGRAMMATIC_STREAM_SERIALIZATION {sizes[6]}" in source


def test_a_failed_build_names_the_command_and_the_error(private_cache, monkeypatch):
    monkeypatch.setattr(compiled_launch, "compiler", lambda: "false")  # a "compiler" that always fails
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        pytest.skip("no Python headers: the build stops before the compiler")
    with pytest.raises(compiled_launch.CompiledLaunchUnavailable, match="building the launch module failed"):
        compiled_launch.load()
    assert not compiled_launch.module_path().exists()  # nothing half-written left behind


def test_no_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(compiled_launch.shutil, "which", lambda name: None)
    with pytest.raises(compiled_launch.CompiledLaunchUnavailable, match="no C compiler found"):
        compiled_launch.compiler()


def test_the_launcher_falls_back_when_it_cannot_be_built(private_cache, monkeypatch):
    def unavailable():
        raise compiled_launch.CompiledLaunchUnavailable("no compiler")

    monkeypatch.setattr(compiled_launch, "load", unavailable)
    monkeypatch.setenv("ANYBIT_LAUNCH_BACKEND", "compiled")
    assert launch.default_backend() == "bindings"


def test_the_dependent_config_carries_what_the_launcher_sets():
    calls = []

    class Module:
        @staticmethod
        def launch_dependent(*args):
            calls.append(args)
            return 0

    config = compiled_launch.DependentConfig(256, 4096)
    config.gridDimX, config.gridDimY, config.gridDimZ, config.hStream = 132, 2, 1, 77
    assert compiled_launch.dependent_caller(Module)(config, 5, 9000, 0) == 0
    assert calls == [(5, 132, 2, 1, 256, 4096, 77, 9000)]
