"""CUDA code generation: a VM program → a CUDA C translation unit with inline PTX (compiled by the runtime).

``generate_cuda(program, arch=...)`` returns a :class:`CudaKernelSource`. Emitters are registered per
instruction class (``anybit.cuda.emitter``); vectorization, instruction selection, fast conversions and
shared-memory planning live in their own modules.
"""

from anybit.cuda.emitter import CodegenError, missing_emitters
from anybit.cuda.generate import generate_cuda, preflight
from anybit.cuda.kernel_source import CudaKernelSource, KernelParam

__all__ = [
    "CodegenError",
    "CudaKernelSource",
    "KernelParam",
    "generate_cuda",
    "missing_emitters",
    "preflight",
]
