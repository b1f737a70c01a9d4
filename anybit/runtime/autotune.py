"""Autotuning over a declared schedule space, with results cached per (kernel, shape bucket, GPU).

``@anybit.autotune("block_n", [64, 128])`` on a Script class declares one axis of the schedule space; stacked
decorators span the cartesian product (the top decorator's axis varies slowest), passed as keyword arguments
to ``__init__``. Creating the class without the tuned arguments gives a :class:`TunedKernel`. On its first
call per shape bucket it

1. builds every candidate's program and CUDA source (serially; a build or verify error skips the candidate),
2. compiles all of them with NVRTC in a thread pool (NVRTC releases the GIL) under a progress bar,
3. skips candidates a block cannot hold (registers × threads, shared memory, threads per block),
4. times the rest with CUDA events, the L2 flushed before each run (median of N), and keeps the fastest,

logging each skipped candidate and its reason at INFO. The winner is cached on disk as JSON under
``<cache dir>/tuning/``, keyed by the kernel (class name + a hash of its source and space), the shape bucket
and the GPU (name + arch). :func:`export_tuning` / :func:`load_tuning` ship and pin tuned configurations, so
serving never tunes on the hot path; ``ANYBIT_AUTOTUNE=0`` never tunes: it uses a pinned configuration, else
a cached one, else the first of the space that suits the shape (``TunedKernel.unsuited``).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import json
import logging
import os
import re
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anybit.runtime.cache import atomic_write, cache_dir

logger = logging.getLogger("anybit")

TUNING_FORMAT = 1
_SPACE_ATTRIBUTE = "__anybit_tune_space__"
_BUCKET_ATTRIBUTE = "__anybit_tune_bucket__"
_pinned: dict[tuple[str, str, str], dict] = {}  # (kernel identity, gpu, bucket) -> config
_shipped_used: dict[tuple[str, str, str], dict] = {}  # the shipped records this process has run
_disk_lock = threading.Lock()


# -- declaring the space ---------------------------------------------------------------------------------


def autotune(name: str, values: Sequence[Any], *, bucket: Callable[[tuple], Any] | None = None):
    """Class decorator: tune ``__init__`` keyword ``name`` over ``values`` (stack it for more axes).

    ``bucket`` replaces :func:`default_bucket` (a function of the call arguments returning a JSON-able value)
    to choose which calls share a tuned configuration.
    """
    values = tuple(values)
    if not values:
        raise ValueError(f"autotune({name!r}, ...): expected at least one value")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"autotune: expected a keyword argument name of __init__, got {name!r}")

    def decorate(cls: type) -> type:
        space = getattr(cls, _SPACE_ATTRIBUTE, ())
        if any(existing == name for existing, _ in space):
            raise ValueError(f"{cls.__name__}: '{name}' is autotuned twice")
        init_parameters = inspect.signature(cls.__init__).parameters
        if name not in init_parameters and not any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in init_parameters.values()
        ):
            raise ValueError(f"{cls.__name__}: autotune('{name}') needs an __init__ parameter named '{name}'")
        setattr(cls, _SPACE_ATTRIBUTE, ((name, values), *space))
        if bucket is not None:
            setattr(cls, _BUCKET_ATTRIBUTE, staticmethod(bucket))
        if "__new__" not in cls.__dict__:
            _install_new(cls)
        return cls

    return decorate


def _install_new(cls: type) -> None:
    """Make ``cls(...)`` without the tuned arguments return a :class:`TunedKernel`."""
    parent_new = super(cls, cls).__new__

    def __new__(klass, *args, **kwargs):  # noqa: N807 - installed as the class's __new__
        tuned = {name for name, _ in getattr(klass, _SPACE_ATTRIBUTE)}
        given = _init_arguments(klass, args, kwargs)
        if tuned <= given.keys():
            return parent_new(klass) if parent_new is object.__new__ else parent_new(klass, *args, **kwargs)
        return TunedKernel(klass, **given)

    cls.__new__ = staticmethod(__new__)


def _init_arguments(cls: type, args: tuple, kwargs: dict) -> dict:
    if not args:
        return dict(kwargs)
    signature = inspect.signature(cls.__init__)
    bound = signature.bind_partial(None, *args, **kwargs)
    given = {}
    for i, (name, value) in enumerate(bound.arguments.items()):
        if i == 0:
            continue
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            given.update(value)  # ``**options`` forwarded to the parent: its entries are arguments too
        else:
            given[name] = value
    return given


def tune_space(cls: type) -> tuple[tuple[str, tuple], ...]:
    """The declared ``(name, values)`` axes of a class, top decorator first."""
    return getattr(cls, _SPACE_ATTRIBUTE, ())


def configurations(space: Sequence[tuple[str, Sequence[Any]]]) -> list[dict]:
    """The cartesian product of ``space`` as keyword dictionaries, the first axis varying slowest."""
    names = [name for name, _ in space]
    return [
        dict(zip(names, combination, strict=True))
        for combination in itertools.product(*(values for _, values in space))
    ]


# -- shape buckets ---------------------------------------------------------------------------------------


def bucket_int(value: int, *, exact_up_to: int = 32) -> int:
    """``value`` itself up to ``exact_up_to``, else the next power of two (so 33..64 share 64)."""
    if value <= exact_up_to:
        return value
    return 1 << (value - 1).bit_length()


def default_bucket(args: tuple) -> list:
    """A JSON-able bucket of call arguments: ints bucketed, tensors by dtype and bucketed shape."""
    key: list = []
    for argument in args:
        if isinstance(argument, bool):
            key.append(argument)
        elif isinstance(argument, int):
            key.append(bucket_int(argument))
        elif hasattr(argument, "shape") and hasattr(argument, "dtype"):
            dtype = str(argument.dtype).removeprefix("torch.")
            key.append([dtype, [bucket_int(int(d)) for d in argument.shape]])
        elif isinstance(argument, float):
            key.append("float")
        else:
            key.append(type(argument).__name__)
    return key


def bucket_text(bucket: Any) -> str:
    """The canonical text of a bucket (a JSON dump), used as a dictionary key on disk."""
    return json.dumps(bucket, sort_keys=True, separators=(",", ":"), default=str)


# -- the tuned kernel ------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One configuration's fate during tuning."""

    config: dict
    milliseconds: float | None = None
    skipped: str | None = None  # the reason, when it was not timed
    alone_milliseconds: float | None = None  # one launch by itself, for ties in a row (TIE_WITHIN)
    instance: Any = None
    compiled: Any = None


class TunedKernel:
    """A Script class with its schedule space: picks (tuning if needed) a configuration per shape bucket.

    Parameters
    ----------
    script_class:
        The Script subclass (decorated with :func:`autotune`).
    fixed:
        ``__init__`` keyword arguments that are not tuned (or tuned axes pinned by hand).
    timer:
        ``timer(run, config) -> milliseconds``; default: CUDA events with an L2 flush (:func:`time_cuda`).
    """

    def __init__(self, script_class: type, *, timer: Callable | None = None, **fixed: Any) -> None:
        self.script_class = script_class
        self.fixed = fixed
        self.space = tuple((n, v) for n, v in tune_space(script_class) if n not in fixed)
        self.configs = configurations(self.space) if self.space else [{}]
        self.timer = timer
        self.bucket = getattr(script_class, _BUCKET_ATTRIBUTE, default_bucket)
        self.identity = kernel_identity(script_class, self.space, self.identity_arguments(fixed))
        self._chosen: dict[tuple[str, str], dict] = {}
        self._instances: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any):
        """Launch with the configuration chosen for these arguments' bucket (tuning first if needed)."""
        from anybit.runtime.compiler import launch_script, positional_arguments

        if kwargs:
            args = positional_arguments(self.script_class, args, kwargs)
        return launch_script(self.instance(self.select(args)), args)

    def instance(self, config: dict):
        """The Script instance of one configuration (made once)."""
        key = bucket_text(config)
        found = self._instances.get(key)
        if found is None:
            found = self._instances[key] = self.script_class(**self.fixed, **config)
        return found

    def select(self, args: tuple) -> dict:
        """The configuration for positional ``args``: chosen before, pinned, cached on disk, or tuned now."""
        from anybit.runtime.device import current_arch

        arch = current_arch()
        bucket = bucket_text(self.bucket(args))
        gpu = _gpu_key(arch)
        found = self._chosen.get((gpu, bucket))
        if found is not None:
            return found
        with self._lock:
            config = self._lookup(gpu, bucket)
            if config is None and not tuning_enabled():
                config = self.untuned(args)
            if config is None:
                config = self.tune(args, arch=arch, gpu=gpu, bucket=bucket)
            self._chosen[(gpu, bucket)] = config
            return config

    def _lookup(self, gpu: str, bucket: str) -> dict | None:
        config = stored_config(self.identity, gpu, bucket)
        if config is None and not tuning_enabled():  # pinned for another GPU: better than the default
            config = next((c for (k, _, b), c in _pinned.items() if k == self.identity and b == bucket), None)
        if config is not None and not self.accepts(config):
            logger.info(
                "%s: ignoring the stored configuration %s, which is not in the space", self.identity, config
            )
            config = None
        return config

    def untuned(self, args: tuple) -> dict:
        """The configuration used without tuning (``ANYBIT_AUTOTUNE=0``, nothing pinned or stored): the
        first of the space that suits ``args`` (:meth:`unsuited`), else the first."""
        return next((c for c in self.configs if self.unsuited(c, args) is None), self.configs[0])

    def unsuited(self, config: dict, args: tuple) -> str | None:
        """Why ``config`` is not tried for ``args`` (None: it is; every configuration here, a subclass may
        narrow it)."""
        return None

    def identity_arguments(self, fixed: dict) -> dict:
        """The fixed arguments as the kernel's identity (tuning records' key) hashes them: all of them."""
        return fixed

    def accepts(self, config: dict) -> bool:
        """Whether a stored, pinned or shipped ``config`` can run here (one of the space)."""
        return config in self.configs

    def tune(self, args: tuple, *, arch: str, gpu: str, bucket: str) -> dict:
        """Build, compile, filter and time the configurations round by round (:meth:`first_round`,
        :meth:`next_round`: every one in one round unless a subclass stages them); store and return the
        fastest."""
        candidates = [Candidate(dict(config)) for config in self.configs]
        name = self.script_class.__qualname__
        started = time.perf_counter()
        runs: dict[int, TimedRun] = {}
        batch = self.first_round(candidates, args)
        rounds = 0
        while batch:
            rounds += 1
            self._build(batch, args, arch)
            _compile_all(batch, arch, name)
            _check_limits(batch, arch)
            self._time_round(batch, args, runs, settle=not runs)
            batch = self.next_round(candidates, args)
        _refine(candidates, runs, self.timer or _default_timer)
        for candidate in candidates:
            if candidate.skipped:
                logger.info(
                    "autotune %s %s: skipped %s: %s", name, bucket, candidate.config, candidate.skipped
                )
        timed = [c for c in candidates if c.milliseconds is not None]
        if not timed:
            reasons = "; ".join(f"{c.config}: {c.skipped}" for c in candidates)
            raise RuntimeError(
                f"autotune {name}: no configuration of the space works for {bucket}: {reasons}"
            )
        best = self._break_ties(timed, args)
        logger.info(
            "autotune %s %s on %s: %s (%.4f ms) out of %d timed in %d round(s), %.1f s",
            name,
            bucket,
            gpu,
            best.config,
            best.milliseconds,
            len(timed),
            rounds,
            time.perf_counter() - started,
        )
        _write_record(self.identity, name, gpu, bucket, best, candidates)
        return best.config

    def first_round(self, candidates: list[Candidate], args: tuple) -> list[Candidate]:
        """The candidates :meth:`tune` builds and times first: all of them (a subclass may hold some back
        for :meth:`next_round`, marking the ones it never times ``skipped``)."""
        return candidates

    def next_round(self, candidates: list[Candidate], args: tuple) -> list[Candidate]:
        """The candidates to build and time after a round (none: tuning ends); ``candidates`` holds every
        one with the timings so far."""
        return []

    def _build(self, candidates: list[Candidate], args: tuple, arch: str) -> None:
        """Program and CUDA source of each candidate, serially (the front end is not thread-safe)."""
        from anybit.runtime import compiler

        for candidate in candidates:
            try:
                candidate.instance = self.instance(candidate.config)
                program = candidate.instance.program(*args)
                candidate.compiled = (program, compiler.generate_source(program, arch))
            except Exception as error:  # any build/verify/codegen failure disqualifies only this candidate
                candidate.skipped = f"build failed: {_first_line(error)}"

    def _time_round(self, candidates: list[Candidate], args: tuple, runs: dict, *, settle: bool) -> None:
        """Time every built candidate of a round once (after :data:`SETTLE_TIMINGS` discarded timings of
        the first, with ``settle``); keep each one's run in ``runs`` for :func:`_refine`."""
        from anybit.runtime.compiler import register_compiled

        timer = self.timer or _default_timer
        for candidate in candidates:
            if candidate.skipped:
                continue
            register_compiled(candidate.instance, args, candidate.compiled)
            try:
                run = self.timed_run(candidate.instance, args)
                if settle:  # one discarded timing first (SETTLE_TIMINGS)
                    for _ in range(SETTLE_TIMINGS):
                        timer(run, candidate.config)
                    settle = False
                candidate.milliseconds = float(timer(run, candidate.config)) / run.launches
                runs[id(candidate)] = run
            except Exception as error:
                candidate.skipped = f"launch failed: {_first_line(error)}"

    def timed_run(self, instance: Any, args: tuple) -> TimedRun:
        """What timing a candidate runs: one launch with ``args`` (a subclass may time a row of launches, as
        a model runs them)."""
        from anybit.runtime.compiler import launch_script

        return TimedRun(lambda: launch_script(instance, args))

    def alone_run(self, instance: Any, args: tuple) -> TimedRun | None:
        """One launch by itself where :meth:`timed_run` times a row of them (a subclass's), else None: what
        breaks ties in the row (:meth:`_break_ties`)."""
        return None

    def _break_ties(self, timed: list[Candidate], args: tuple) -> Candidate:
        """The fastest candidate; where a row's timing cannot tell the fastest few apart (up to
        :data:`TIE_CANDIDATES` within :data:`TIE_WITHIN` of the best), the one of them fastest by itself."""
        ranked = sorted(timed, key=lambda c: c.milliseconds)
        ties = [c for c in ranked[:TIE_CANDIDATES] if c.milliseconds <= ranked[0].milliseconds * TIE_WITHIN]
        runs = [self.alone_run(c.instance, args) for c in ties] if len(ties) > 1 else [None]
        if any(run is None for run in runs):
            return ranked[0]
        timer = self.timer or _default_timer
        for candidate, run in zip(ties, runs, strict=True):
            try:
                candidate.alone_milliseconds = float(timer(run, candidate.config)) / run.launches
            except Exception as error:  # it ran in the row: a failure here is logged, the row's rank kept
                logger.warning("autotune: %s alone: %s", candidate.config, _first_line(error))
        alone = [c for c in ties if c.alone_milliseconds is not None]
        return min(alone, key=lambda c: c.alone_milliseconds) if alone else ranked[0]


@dataclass
class TimedRun:
    """A candidate's timed work: ``run()`` makes ``launches`` launches; its time is divided by them."""

    run: Callable[[], None]
    launches: int = 1
    keep: Any = None  # what ``run`` needs alive (a CUDA graph's tensors)

    def __call__(self) -> None:
        self.run()


#: Timings of the first candidate thrown away before the first round: on the H200 the first measurement on
#: a freshly made weight ran 11–13% slow and the next ones did not (benchmarks/rows_probe.py), and tuning is
#: what runs first on a new weight. A slow first candidate could otherwise fall out of the finalists.
SETTLE_TIMINGS = 1

#: The fastest candidates of the first timing within REFINE_WITHIN of the best are timed REFINE_ROUNDS more
#: times, interleaved, and ranked by their median: one short timing each (milliseconds of runs) cannot tell
#: configurations a few percent apart, and a pick a few percent slow is paid on every later call (on the
#: H200, 8-bit weights at M = 1 picked a configuration 6% slower than the best the probe found).
REFINE_FINALISTS = 3
REFINE_WITHIN = 1.15
REFINE_ROUNDS = 2

#: Where a tuner times candidates in a row (:meth:`TunedKernel.alone_run`), the fastest up to TIE_CANDIDATES
#: within TIE_WITHIN of the best are ties, and the one fastest by itself (one launch, the L2 flushed) wins:
#: a row overlaps each launch's start with the previous one's end, which hides the fixed costs a call by
#: itself pays. On the H200 (2026-11-29) uint4 bf16 8192×8192 at M = 1 had four candidates within 0.6% in
#: the row (12.83–12.90 µs) whose own kernel times were 13.1 and 14.5 µs; two runs picked one each.
TIE_CANDIDATES = 4
TIE_WITHIN = 1.01


def _refine(candidates: list[Candidate], runs: dict, timer: Callable) -> None:
    """Re-time the finalists round by round (so drift hits them alike) and keep each one's median."""
    timed = sorted((c for c in candidates if c.milliseconds is not None), key=lambda c: c.milliseconds)
    finalists = [
        c for c in timed[:REFINE_FINALISTS] if c.milliseconds <= timed[0].milliseconds * REFINE_WITHIN
    ]
    if len(finalists) < 2:
        return
    samples = {id(c): [c.milliseconds] for c in finalists}
    for _ in range(REFINE_ROUNDS):
        for candidate in finalists:
            if candidate.skipped:
                continue
            try:
                run = runs[id(candidate)]
                samples[id(candidate)].append(float(timer(run, candidate.config)) / run.launches)
            except Exception as error:  # as in the first round: a failing launch disqualifies only itself
                candidate.skipped, candidate.milliseconds = f"launch failed: {_first_line(error)}", None
    for candidate in finalists:
        if not candidate.skipped:
            candidate.milliseconds = statistics.median(samples[id(candidate)])


def _default_timer(run: Callable[[], None], config: dict) -> float:
    from anybit.runtime.timing import time_cuda

    return time_cuda(run)


def _compile_all(candidates: list[Candidate], arch: str, name: str) -> None:
    """NVRTC for every built candidate, in a thread pool, with a progress bar."""
    from tqdm import tqdm

    from anybit.runtime.compiler import compile_source

    todo = [c for c in candidates if not c.skipped]

    def build(candidate: Candidate):
        program, kernel_source = candidate.compiled
        return compile_source(kernel_source, arch=arch, program=program)

    workers = max(1, min(len(todo), os.cpu_count() or 1))
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(
            total=len(todo), desc=f"anybit: compiling {name}", unit="config", disable=None, leave=False
        ) as progress,
    ):
        futures = [(candidate, pool.submit(build, candidate)) for candidate in todo]
        for candidate, future in futures:
            try:
                candidate.compiled = future.result()
            except Exception as error:
                candidate.skipped = f"compile failed: {_first_line(error)}"
                candidate.compiled = None
            progress.update(1)


def _check_limits(candidates: list[Candidate], arch: str) -> None:
    """Skip candidates a thread block of ``arch`` cannot hold."""
    from anybit.runtime.device import limits_for

    limits = limits_for(arch)
    for candidate in candidates:
        if candidate.skipped:
            continue
        compiled = candidate.compiled
        threads = compiled.kernel_source.block_threads
        resources = compiled.resources
        shared = resources.shared_memory_bytes + compiled.kernel_source.dynamic_shared_bytes
        if threads > limits.max_threads_per_block:
            candidate.skipped = f"{threads} threads per block > {limits.max_threads_per_block}"
        elif resources.registers * threads > limits.registers_per_block:
            candidate.skipped = (
                f"{resources.registers} registers x {threads} threads > "
                f"{limits.registers_per_block} registers per block"
            )
        elif shared > limits.max_shared_memory_per_block:
            candidate.skipped = f"{shared} B shared memory > {limits.max_shared_memory_per_block} B per block"
        elif resources.spills:
            logger.info("autotune: %s spills registers (%s)", candidate.config, resources)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def tuning_enabled() -> bool:
    """False when ``ANYBIT_AUTOTUNE=0``: use pinned, cached or first configurations, never tune."""
    return os.environ.get("ANYBIT_AUTOTUNE", "1") != "0"


def _gpu_key(arch: str) -> str:
    from anybit.runtime.device import gpu_identity, has_gpu

    return gpu_identity() if has_gpu() else f"no GPU|{arch}"


def kernel_identity(script_class: type, space: Sequence, fixed: dict | None = None) -> str:
    """``<name>-<hash>``: a file-name-safe class name, and a hash over the source of the class and of every
    base class it inherits the kernel from (a change to either retunes), the tuned space and the fixed
    arguments."""
    sources = []
    for cls in script_class.__mro__:
        if cls.__module__.startswith("anybit.") or cls is object:
            continue  # the Script machinery itself is not part of the kernel
        try:
            sources.append(inspect.getsource(cls))
        except (OSError, TypeError):
            sources.append(cls.__qualname__)
    text = json.dumps([sources, [[n, list(v)] for n, v in space], fixed or {}], sort_keys=True, default=repr)
    name = re.sub(r"[^A-Za-z0-9_.]+", "_", script_class.__qualname__.replace(".<locals>.", "."))
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


# -- the tuning cache, export and pinning ----------------------------------------------------------------


def tuning_dir() -> Path:
    """Where tuned configurations are cached: ``<cache dir>/tuning``."""
    return cache_dir() / "tuning"


def _record_path(identity: str) -> Path:
    return tuning_dir() / f"{identity}.json"


def stored_config(identity: str, gpu: str, bucket: str) -> dict | None:
    """The configuration pinned for (kernel ``identity``, ``gpu``, ``bucket``), else the one the tuning cache
    holds on disk, else the one anybit ships for that GPU (:func:`shipped_tuning`), else None. For choices
    tuned outside :class:`TunedKernel` (e.g. which path a quantized matmul takes), which share its cache,
    export and pinning."""
    config = _pinned.get((identity, gpu, bucket))
    if config is None:
        record = _read_records(identity).get(gpu, {}).get(bucket)
        config = record["config"] if record else None
    if config is None:
        config = shipped_tuning().get((identity, gpu, bucket))
        if config is not None:
            _shipped_used[(identity, gpu, bucket)] = config
    return config


def store_tuned(identity: str, name: str, gpu: str, bucket: str, candidates: list[Candidate]) -> Candidate:
    """Write the fastest timed candidate to the tuning cache (with every candidate's time) and return it;
    the counterpart of :func:`stored_config`."""
    timed = [candidate for candidate in candidates if candidate.milliseconds is not None]
    if not timed:
        raise ValueError(f"{name} {bucket}: no candidate was timed")
    best = min(timed, key=lambda candidate: candidate.milliseconds)
    _write_record(identity, name, gpu, bucket, best, candidates)
    return best


def gpu_key(arch: str) -> str:
    """The GPU part of a tuning record's key (the device's identity, or "no GPU|arch")."""
    return _gpu_key(arch)


def _read_records(identity: str) -> dict:
    """``{gpu: {bucket: record}}`` of one kernel from disk (empty when missing or unreadable)."""
    path = _record_path(identity)
    try:
        data = json.loads(path.read_text())
        if data.get("format") != TUNING_FORMAT or data.get("identity") != identity:
            raise ValueError("format or identity mismatch")
        return data["results"]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        logger.warning("tuning cache %s is unreadable (%s); ignoring it", path, error)
        return {}


def _write_record(
    identity: str, name: str, gpu: str, bucket: str, best: Candidate, candidates: list[Candidate]
) -> None:
    record = {
        "config": best.config,
        "milliseconds": best.milliseconds,
        "candidates": [
            {"config": c.config, "milliseconds": c.milliseconds, "skipped": c.skipped}
            | ({"alone_milliseconds": c.alone_milliseconds} if c.alone_milliseconds is not None else {})
            for c in candidates
        ],
    }
    with _disk_lock:
        results = _read_records(identity)
        results.setdefault(gpu, {})[bucket] = record
        data = {"format": TUNING_FORMAT, "identity": identity, "kernel": name, "results": results}
        path = _record_path(identity)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode())
        except OSError as error:
            logger.warning("could not write the tuning cache %s: %s", path, error)


def export_tuning(path: str | os.PathLike) -> int:
    """Write every cached and pinned tuned configuration, and the shipped ones this process ran, to one JSON
    file; return how many records.

    Ship the file with a model and :func:`load_tuning` it in serving, so serving never tunes.
    """
    records = {}
    directory = tuning_dir()
    for file in sorted(directory.glob("*.json")) if directory.exists() else []:
        identity = file.stem
        for gpu, buckets in _read_records(identity).items():
            for bucket, record in buckets.items():
                records[(identity, gpu, bucket)] = record["config"]
    for key, config in _shipped_used.items():  # what this process ran from the shipped files
        records.setdefault(key, config)
    records.update(_pinned)
    data = {
        "format": TUNING_FORMAT,
        "records": [
            {"kernel": k, "gpu": g, "bucket": b, "config": c}
            for (k, g, b), c in sorted(records.items(), key=lambda item: item[0])
        ],
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, json.dumps(data, indent=1, sort_keys=True).encode())
    return len(data["records"])


def load_tuning(path: str | os.PathLike) -> int:
    """Pin the configurations of an :func:`export_tuning` file (they win over tuning); return how many."""
    records = read_tuning_file(path)
    _pinned.update(records)
    return len(records)


def read_tuning_file(path: str | os.PathLike) -> dict[tuple[str, str, str], dict]:
    """The records of an :func:`export_tuning` file: ``{(kernel identity, gpu, bucket): config}``."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("format") != TUNING_FORMAT:
        raise ValueError(f"{path}: expected an anybit tuning file of format {TUNING_FORMAT}")
    records = {}
    for record in data["records"]:
        if not isinstance(record.get("config"), dict):
            raise ValueError(f"{path}: a record without a config dictionary: {record}")
        records[(record["kernel"], record["gpu"], record["bucket"])] = record["config"]
    return records


#: Tuning files shipped with anybit (``anybit/runtime/tunings/*.json``, made by :func:`export_tuning` on the
#: GPU each names), consulted after the pins and the cache: a fresh install runs the configurations a
#: careful tuning found instead of its own first-call tuning, which can pick slower ones in noisy timings.
SHIPPED_TUNING_DIR = Path(__file__).parent / "tunings"
#: ``ANYBIT_SHIPPED_TUNING=0`` ignores the shipped files (tune, or use the cache, as without them).
SHIPPED_TUNING_VARIABLE = "ANYBIT_SHIPPED_TUNING"


def shipped_tuning() -> dict[tuple[str, str, str], dict]:
    """The records of every shipped tuning file, ``{(kernel identity, gpu, bucket): config}``; empty with
    ``ANYBIT_SHIPPED_TUNING=0``. A record applies only to the kernel revision that made it (its identity
    hashes the kernel's source), so a changed kernel tunes afresh."""
    if os.environ.get(SHIPPED_TUNING_VARIABLE, "1") == "0":
        return {}
    return _shipped_records()


@functools.cache
def _shipped_records() -> dict[tuple[str, str, str], dict]:
    records: dict[tuple[str, str, str], dict] = {}
    for path in sorted(SHIPPED_TUNING_DIR.glob("*.json")):
        records.update(read_tuning_file(path))
    return records


def clear_pinned() -> None:
    """Forget every pinned configuration."""
    _pinned.clear()
