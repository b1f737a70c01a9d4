"""A measured choice between the tuned decode kernel and another route of a decode call, kept per shape.

The int8 route (:mod:`anybit.ops.int8_choice`) and the bf16-through-fp16 route (:mod:`anybit.ops.half_choice`)
each run a small kernel before a decode kernel of their own; whether that beats the tuned decode kernel
depends on the type, the shape and the GPU, so the first eligible call times both as the decode tuner
times (a row of launches on distinct weight copies from a CUDA graph, :mod:`anybit.ops.row_timing`) and
keeps the faster in the autotune cache (exported, pinned and disabled with the rest: ``ANYBIT_AUTOTUNE=0``).
Where it cannot time — a CUDA graph being captured, tuning disabled with nothing stored — the call takes the
decode kernel.
"""

from __future__ import annotations

from collections.abc import Callable

from anybit.ops.path_choice import MeasuredChoice
from anybit.runtime.autotune import Candidate

#: The decode kernel's route (a choice's other values name a route and its configuration).
DECODE_ROUTE = {"route": "decode"}
#: Milliseconds of timed runs per candidate and round (5 to 100 replays, the L2 flushed before each).
BUDGET_MS = 8.0
#: The decode kernel and the FINALISTS fastest other candidates are timed ROUNDS more times, interleaved,
#: and ranked by their median (one timing cannot tell candidates a few percent apart).
FINALISTS = 2
ROUNDS = 2


class RouteChooser(MeasuredChoice):
    """The measured route per (bucket, GPU) under one kernel ``identity`` (it names the decode kernel and
    the route's kernels, so a changed kernel measures again); ``route`` is the other route's name."""

    def __init__(self, identity: str, route: str) -> None:
        super().__init__(identity, f"quantized_matmul {route} route", "route", ("decode", route))
        self.route = route

    def choose(self, bucket: list, arch: str, measure: Callable[[], list[Candidate]] | None) -> dict:
        """The route for ``bucket`` ([M bucket, N, K]): chosen before, pinned or stored, else measured now by
        ``measure()`` (the timed candidates; None when this call cannot time: then the decode kernel, and a
        later call may measure)."""
        return self._choose(bucket, arch, measure) or DECODE_ROUTE


def measure(
    decode_launch: Callable[[tuple], None], routes: list[tuple[dict, Callable]], rows: list[tuple]
) -> list[Candidate]:
    """Candidates timed as rows of launches from CUDA graphs (:func:`~anybit.ops.row_timing.graph_row` on
    ``rows``, distinct weight copies): the decode kernel's ``decode_launch`` and each other configuration's
    launch (``routes``: (config, launch) pairs); milliseconds a launch."""
    from anybit.ops.row_timing import graph_row
    from anybit.runtime.timing import time_cuda

    def timed(run) -> float:
        return time_cuda(run, budget_ms=BUDGET_MS) / run.launches

    found = [Candidate(dict(DECODE_ROUTE))]
    runs = {0: graph_row(decode_launch, rows)}
    for config, launch in routes:
        candidate = Candidate(dict(config))
        try:
            runs[len(found)] = graph_row(launch, rows)
        except Exception as error:  # a configuration that cannot run only removes itself
            candidate.skipped = f"launch failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
        found.append(candidate)
    timed(runs[0])  # one discarded timing: the first on a fresh weight runs slow
    samples = {index: [timed(run)] for index, run in runs.items()}
    ranked = sorted((index for index in samples if index), key=lambda index: samples[index][0])
    for _ in range(ROUNDS):
        for index in [0, *ranked[:FINALISTS]]:
            samples[index].append(timed(runs[index]))
    for index, values in samples.items():
        found[index].milliseconds = float(sorted(values)[len(values) // 2])
    return found


def prebuild(launches: list, args: tuple) -> int:
    """Compile the kernels of a first call's route ``launches`` (:class:`PreparedLaunch`; others are left
    alone) for the decode launch's ``args`` side by side in the running build workers
    (:func:`~anybit.runtime.compiler.precompile_calls`): the decode tuning before a first call starts them,
    and the route's candidates — up to 8 int8 configurations and their preparation, the fp16 loop's two
    forms — otherwise compile one after another in this process (~0.4 s each) before they are timed.
    Returns the kernels compiled there."""
    from anybit.runtime.compiler import precompile_calls

    calls = [call for launch in launches if isinstance(launch, PreparedLaunch) for call in launch.calls(args)]
    return precompile_calls(calls)


class PreparedLaunch:
    """A route's launch: a kernel that prepares x, then the route's decode kernel (a dependent launch that
    loads its first weight bytes while the first one runs), both compiled on the first call and their
    launchers kept. Subclasses set ``prepare`` and ``kernel`` (Scripts), ``PREPARE_PARAMETERS`` and
    ``KERNEL_PARAMETERS`` (their parameter names in order) and :meth:`arguments`; called with the decode
    launch's arguments ``(x, weight, scales, zeros, bias, y, m, n, k)``."""

    PREPARE_PARAMETERS: tuple[str, ...] = ()
    KERNEL_PARAMETERS: tuple[str, ...] = ()
    prepare: object
    kernel: object
    _compiled: tuple = ()  # (the preparation's compiled kernel, the route kernel's), from the first call
    _launches: tuple[Callable, Callable] | None = None

    def arguments(self, args: tuple) -> tuple[tuple, tuple]:
        """(the preparation's arguments, the route kernel's) for the decode launch's ``args``."""
        raise NotImplementedError

    def calls(self, args: tuple) -> list[tuple[object, tuple]]:
        """The two Script calls of a launch with the decode launch's ``args``: (Script, its arguments)."""
        prepare_args, kernel_args = self.arguments(args)
        return [(self.prepare, prepare_args), (self.kernel, kernel_args)]

    def __call__(self, args: tuple) -> None:
        prepare_args, kernel_args = self.arguments(args)
        if self._launches is None:  # first call: compile (cached) and keep both launchers
            from anybit.ops.plan import launch_function
            from anybit.runtime.compiler import launch_script

            self._compiled = (
                launch_script(self.prepare, prepare_args),
                launch_script(self.kernel, kernel_args),
            )
            self._launches = (
                launch_function(self._compiled[0], self.PREPARE_PARAMETERS),
                launch_function(self._compiled[1], self.KERNEL_PARAMETERS),
            )
            return
        self._launches[0](prepare_args)
        self._launches[1](kernel_args)

    def bind(self, args: tuple) -> Callable[[tuple], None] | None:
        """Both launches bound to the decode launch's ``args`` (:func:`anybit.ops.plan.bound_launch`: their
        scalars fixed, their tensors read unchecked), called like this launch; None before the first call or
        where either cannot be bound."""
        from anybit.ops.plan import bound_launch

        if not self._compiled:
            return None
        prepare_args, kernel_args = self.arguments(args)
        prepare = bound_launch(self._compiled[0], prepare_args, self.PREPARE_PARAMETERS)
        kernel = bound_launch(self._compiled[1], kernel_args, self.KERNEL_PARAMETERS)
        if prepare is None or kernel is None:
            return None
        arguments = self.arguments

        def launch(args: tuple) -> None:
            prepare_args, kernel_args = arguments(args)
            prepare(prepare_args)
            kernel(kernel_args)

        return launch
