"""From a Script (or a ready ``CudaKernelSource``) to a :class:`CompiledKernel`, and launching Scripts.

``compile(kernel, *arg_specs)`` builds the VM program (``kernel.program(*args)``), generates CUDA C
(``anybit.cuda.generate_cuda``) and compiles it with NVRTC through the cache; it needs no GPU.
``launch_script(kernel, args)`` is what calling a Script runs: it compiles once per specialisation (the
compile-time argument values, the dtypes of the tensor arguments and the architecture) and launches.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from anybit.dtypes import DataType
from anybit.runtime.cache import compile_cached
from anybit.runtime.device import current_arch, default_arch
from anybit.runtime.kernel import CompiledKernel
from anybit.runtime.launch import WORKSPACE_PARAM


@dataclass(frozen=True)
class ArgSpec:
    """A stand-in for a run-time argument when compiling without real tensors.

    ``dtype`` is the element type of a pointer argument (or the type of a scalar); ``shape`` is optional.
    """

    dtype: DataType
    shape: tuple | None = None


def compile_source(
    kernel_source, *, arch: str | None = None, options: tuple[str, ...] = (), program=None
) -> CompiledKernel:
    """Compile a ``CudaKernelSource`` (generated or hand-written) for ``arch`` (default: the device's)."""
    arch = arch or default_arch()
    result = compile_cached(kernel_source.source, kernel_source.name, arch, tuple(options))
    return CompiledKernel(kernel_source, result, program=program)


def compile(
    kernel: Any, *arg_specs: Any, arch: str | None = None, options: tuple[str, ...] = ()
) -> CompiledKernel:
    """Compile a Script kernel for the given arguments, without needing a GPU.

    Parameters
    ----------
    kernel:
        A Script instance (anything with ``program(*args) -> Program``), or a ``CudaKernelSource``.
    arg_specs:
        The kernel's arguments or stand-ins: compile-time parameters as their values, run-time ones as
        tensors, :class:`ArgSpec` or None (they are passed to ``kernel.program`` as given).
    arch:
        Target architecture such as ``"sm_90a"``; default: the current GPU's, or ``sm_90a`` without one.
    options:
        Extra NVRTC options.

    Returns
    -------
    CompiledKernel
        With ``.cuda_source``, ``.ptx``, ``.cubin``, ``.resources``, ``.program``; callable on a GPU.
    """
    if hasattr(kernel, "source") and hasattr(kernel, "params") and hasattr(kernel, "grid"):
        return compile_source(kernel, arch=arch, options=options)
    if not hasattr(kernel, "program"):
        raise TypeError(
            f"expected a Script kernel (with .program(*args)) or a CudaKernelSource, got "
            f"{type(kernel).__name__}"
        )
    arch = arch or default_arch()
    program = kernel.program(*arg_specs)
    return compile_source(generate_source(program, arch), arch=arch, options=options, program=program)


def generate_source(program, arch: str):
    """The code generator's ``CudaKernelSource`` of a VM program (``anybit.cuda.generate_cuda``)."""
    from anybit.cuda import generate_cuda

    return generate_cuda(program, arch=arch)


# -- calling a Script ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArgumentBinding:
    """Which call arguments are compile-time (specialise the program) and which are kernel parameters."""

    constant_positions: tuple[int, ...]
    runtime_positions: tuple[int, ...]  # in the kernel's parameter order


def call_parameter_names(kernel: Any) -> list[str]:
    """Names of the parameters of a Script's block program (``__call__`` without ``self``)."""
    parameters = getattr(kernel, "parameters", None)
    if callable(parameters):
        return [p.name for p in parameters()]
    try:
        return [n for n in inspect.signature(kernel.__call__).parameters if n != "self"]
    except (TypeError, ValueError):
        return []


def bind_arguments(kernel: Any, program, kernel_source, count: int) -> ArgumentBinding:
    """Match ``count`` call arguments of ``kernel`` to compile-time constants and kernel parameters, by name.

    The names come from the Script's block program; ``program.constants`` names the compile-time parameters
    and the kernel's parameters (the workspace aside) name the run-time ones.
    """
    params = [p.name for p in kernel_source.params if p.name != WORKSPACE_PARAM]
    names = call_parameter_names(kernel)
    if len(names) != count:
        if count == len(params):  # no usable signature, but the arguments are exactly the parameters
            return ArgumentBinding((), tuple(range(count)))
        raise TypeError(
            f"{type(kernel).__name__}: cannot match {count} arguments to the parameters "
            f"({', '.join(names)}) of its block program"
        )
    position = {name: index for index, name in enumerate(names)}
    missing = [name for name in params if name not in position]
    if missing:
        raise TypeError(
            f"{type(kernel).__name__}: kernel parameters {missing} are not parameters "
            "of the block "
            f"program ({', '.join(names)})"
        )
    constants = tuple(position[name] for name, _ in program.constants if name in position)
    return ArgumentBinding(constants, tuple(position[name] for name in params))


class _ScriptLaunches:
    """The compiled specialisations of one Script instance and how its arguments map to them."""

    def __init__(self) -> None:
        self.binding: ArgumentBinding | None = None
        self.kernels: dict[tuple, CompiledKernel] = {}
        self.lock = threading.Lock()


_launches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_launches_by_id: dict[int, tuple[Any, _ScriptLaunches]] = {}


def _state_of(kernel: Any) -> _ScriptLaunches:
    try:
        state = _launches.get(kernel)
        if state is None:
            state = _launches[kernel] = _ScriptLaunches()
        return state
    except TypeError:  # neither hashable nor weak-referenceable: keep it alive by id
        entry = _launches_by_id.get(id(kernel))
        if entry is None:
            entry = _launches_by_id[id(kernel)] = (kernel, _ScriptLaunches())
        return entry[1]


def _specialisation(args: tuple, binding: ArgumentBinding | None, arch: str) -> tuple:
    if binding is None:
        return (None, arch)
    return (tuple(args[i] for i in binding.constant_positions), arch)


def positional_arguments(script_class: type, args: tuple, kwargs: dict) -> tuple:
    """``args`` and ``kwargs`` of a call to a Script of ``script_class`` as one tuple (defaults filled in)."""
    block_program = getattr(script_class, "_block_program", None)
    if block_program is None:
        raise TypeError(f"{script_class.__name__}: keyword arguments need a Script kernel")
    bound = inspect.signature(block_program).bind(None, *args, **kwargs)
    bound.apply_defaults()
    return tuple(bound.arguments.values())[1:]


def register_compiled(kernel: Any, args: tuple, compiled: CompiledKernel) -> None:
    """Record ``compiled`` as the kernel :func:`launch_script` uses for ``args`` on ``compiled.arch``."""
    state = _state_of(kernel)
    with state.lock:
        if state.binding is None:
            state.binding = bind_arguments(kernel, compiled.program, compiled.kernel_source, len(args))
        state.kernels[_specialisation(args, state.binding, compiled.arch)] = compiled


def launch(kernel: Any, *args: Any, **kwargs: Any) -> CompiledKernel:
    """Compile (once per specialisation) and launch a Script kernel: what ``kernel(*args)`` runs."""
    if kwargs:
        args = positional_arguments(type(kernel), args, kwargs)
    return launch_script(kernel, args)


def launch_script(kernel: Any, args: tuple, *, arch: str | None = None) -> CompiledKernel:
    """Compile (once per specialisation) and launch a Script kernel with positional ``args``.

    The specialisation is the compile-time arguments' values and the architecture; the run-time arguments
    are checked and launched like :class:`CompiledKernel` calls. Returns the compiled kernel that ran.
    """
    state = _state_of(kernel)
    arch = arch or current_arch()
    key = _specialisation(args, state.binding, arch)
    compiled = state.kernels.get(key)
    if compiled is None:
        compiled = compile(kernel, *args, arch=arch)
        register_compiled(kernel, args, compiled)
    positions = state.binding.runtime_positions
    compiled.launcher.launch(tuple(args[i] for i in positions))
    return compiled


# -- compiling calls in the build workers -------------------------------------------------------------------


def build_call(kernel: Any, stand_ins: tuple, arch: str) -> tuple:
    """(program, CUDA source, NVRTC result) of ``kernel`` traced on ``stand_ins`` (its call's arguments with
    tensors as None) for ``arch``. Runs in a build worker (:mod:`anybit.runtime.build_pool`)."""
    program = kernel.program(*stand_ins)
    source = generate_source(program, arch)
    return program, source, compile_source(source, arch=arch, program=program).compile_result


def precompile_calls(calls: Sequence[tuple[Any, tuple]], *, arch: str | None = None) -> int:
    """Compile Script calls ``(kernel, args)`` side by side in the build workers where they already run and
    register each, so that its first :func:`launch_script` with those arguments compiles nothing here.

    A program depends on its compile-time arguments and the tensors' declared types, not on the tensors, so
    tensors travel as None. Nothing is sent where fewer than two workers run or fewer than two calls are
    left (starting 16 workers costs ~9 s on a 16-core host, more than a few compiles). Returns the calls
    registered; one whose build fails is left to its launch, which compiles it here and says why.
    """
    from anybit.runtime.build_pool import BuildPoolError, run_jobs, running_workers
    from anybit.runtime.cache import remember

    arch = arch or current_arch()
    todo: dict[tuple, tuple[Any, tuple, tuple]] = {}
    for kernel, args in calls:
        stand_ins = tuple(None if hasattr(arg, "data_ptr") else arg for arg in args)
        state = _state_of(kernel)
        if state.binding is not None and _specialisation(args, state.binding, arch) in state.kernels:
            continue  # compiled in this process already
        todo.setdefault((id(kernel), stand_ins), (kernel, args, stand_ins))
    workers = min(running_workers(), len(todo))
    if workers < 2:
        return 0
    jobs = list(todo.values())
    try:
        results = run_jobs(build_call, [(kernel, stand_ins, arch) for kernel, _, stand_ins in jobs], workers)
    except BuildPoolError:  # the workers stopped: each launch compiles here
        return 0
    registered = 0
    for (kernel, args, _), (ok, built) in zip(jobs, results, strict=True):
        if ok:
            program, source, result = built
            remember(source.source, result)
            register_compiled(kernel, args, compile_source(source, arch=arch, program=program))
            registered += 1
    return registered
