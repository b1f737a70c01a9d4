"""anybit.runtime: NVRTC compilation, the compile cache, module loading, launching, autotuning.

Without a GPU everything but launching works: ``compile`` returns the CUDA source, PTX, cubin and resource
report. See ``docs/runtime.md``. The autotuning decorator is ``anybit.autotune`` (the name ``autotune`` here
is the module ``anybit.runtime.autotune``, home of ``export_tuning``/``load_tuning``).
"""

from anybit.runtime.arguments import accepted_torch_dtypes
from anybit.runtime.autotune import TunedKernel, export_tuning, load_tuning
from anybit.runtime.cache import cache_dir, cache_key, compile_cached
from anybit.runtime.compiler import ArgSpec, compile, compile_source, launch, launch_script
from anybit.runtime.device import DEFAULT_ARCH, default_arch, device_arch
from anybit.runtime.errors import CompilationError, CudaDriverError, UnsupportedDeviceError
from anybit.runtime.kernel import CompiledKernel
from anybit.runtime.nvrtc import CompileResult, ResourceUsage, compile_cubin, nvrtc_version
from anybit.runtime.overhead import measure_launch_overhead

__all__ = [
    "ArgSpec",
    "CompilationError",
    "CompileResult",
    "CompiledKernel",
    "CudaDriverError",
    "DEFAULT_ARCH",
    "ResourceUsage",
    "TunedKernel",
    "UnsupportedDeviceError",
    "accepted_torch_dtypes",
    "cache_dir",
    "cache_key",
    "compile",
    "compile_cached",
    "compile_cubin",
    "compile_source",
    "default_arch",
    "device_arch",
    "export_tuning",
    "launch",
    "launch_script",
    "load_tuning",
    "measure_launch_overhead",
    "nvrtc_version",
]
