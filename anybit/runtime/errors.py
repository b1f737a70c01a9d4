"""The runtime's exceptions: compile failures, driver failures, and GPUs anybit cannot use."""

from __future__ import annotations


class CompilationError(RuntimeError):
    """NVRTC rejected a CUDA source; the message holds the compiler log and the source lines around errors."""

    def __init__(self, message: str, *, log: str = "", source: str = "") -> None:
        super().__init__(message)
        self.log = log
        self.source = source


class CudaDriverError(RuntimeError):
    """A CUDA driver call failed; ``code`` is the driver's ``CUresult`` value."""

    def __init__(self, message: str, *, code: int = -1) -> None:
        super().__init__(message)
        self.code = code


class UnsupportedDeviceError(RuntimeError):
    """The GPU cannot run anybit kernels (compute capability below 8.0) or the kernel's compiled arch."""
