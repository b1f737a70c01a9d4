"""`CompiledKernel`: generated CUDA source + NVRTC result + launcher, callable on torch tensors."""

from __future__ import annotations

import threading

from anybit.runtime.device import check_arch_runs_on, check_supported
from anybit.runtime.launch import Launcher
from anybit.runtime.module import LoadedFunction, load_function
from anybit.runtime.nvrtc import CompileResult, ResourceUsage


class CompiledKernel:
    """A kernel compiled to a cubin; call it with the run-time arguments to launch it on the current stream.

    Attributes
    ----------
    kernel_source:
        The code generator's ``CudaKernelSource`` (source text, parameters, launch configuration).
    compile_result:
        The NVRTC output: cubin, PTX, log, resource report.
    program:
        The VM program it was generated from (None for hand-written sources).
    """

    def __init__(self, kernel_source, compile_result: CompileResult, *, program=None) -> None:
        self.kernel_source = kernel_source
        self.compile_result = compile_result
        self.program = program
        self._loaded: dict[int, LoadedFunction] = {}
        self._load_lock = threading.Lock()
        self.launcher = Launcher(kernel_source, load=self._load)
        self._launch = self.launcher.launch  # bound once: a call is one attribute lookup shorter

    # -- what compilation produced -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The kernel's name."""
        return self.kernel_source.name

    @property
    def arch(self) -> str:
        """The architecture the cubin was built for."""
        return self.compile_result.arch

    @property
    def cuda_source(self) -> str:
        """The CUDA C source text."""
        return self.kernel_source.source

    @property
    def ptx(self) -> str:
        """The PTX NVRTC produced (for inspection; the cubin is what runs)."""
        return self.compile_result.ptx

    @property
    def cubin(self) -> bytes:
        """The cubin (SASS) for :attr:`arch`."""
        return self.compile_result.cubin

    @property
    def resources(self) -> ResourceUsage:
        """Registers, shared memory, stack frame (from the cubin) and spills (from the ptxas report)."""
        return self.compile_result.resources

    @property
    def log(self) -> str:
        """The NVRTC/ptxas log (warnings included)."""
        return self.compile_result.log

    # -- running it ----------------------------------------------------------------------------------------
    def __call__(self, *args) -> None:
        """Launch on the current CUDA device and stream (asynchronous, capturable in CUDA graphs)."""
        self._launch(args)

    def launch(self, args: tuple) -> None:
        """Like calling the kernel, with the arguments as one tuple."""
        self.launcher.launch(args)

    def check_arguments(self, *args) -> None:
        """Run every argument check without launching (works without a GPU for most mistakes)."""
        from anybit.runtime.launch import current_device

        self.launcher.check(args, current_device())

    def prepare(self, *args) -> None:
        """Load the module and allocate workspace for these arguments, e.g. before CUDA-graph capture."""
        from anybit.runtime.launch import current_device

        self._load(current_device())
        self.launcher.reserve_workspace(args)

    def _load(self, device: int) -> LoadedFunction:
        with self._load_lock:
            loaded = self._loaded.get(device)
            if loaded is None:
                check_supported(device)
                check_arch_runs_on(self.arch, device)
                loaded = load_function(
                    self.cubin,
                    self.compile_result.lowered_name,
                    device=device,
                    dynamic_shared_bytes=self.launcher.dynamic_shared_bytes,
                    cluster_blocks=self.launcher.cluster_blocks,
                )
                self._loaded[device] = loaded
            return loaded

    def __repr__(self) -> str:
        return f"CompiledKernel({self.name!r}, arch={self.arch!r}, {self.resources})"
