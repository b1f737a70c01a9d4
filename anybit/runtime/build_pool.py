"""Worker processes that build kernels (trace a Script, generate CUDA, NVRTC) beside the process that tunes.

Tracing and code generation are Python, so threads run them one at a time: a decode tuning space of ~100
configurations took ~22 s of a 16-core machine's single core before any timing. The workers are plain
``python -m anybit.runtime.build_pool`` processes fed pickled jobs over pipes, not ``multiprocessing``
children: those re-import the caller's ``__main__`` (a user script without an ``if __name__ == "__main__"``
guard would run again in every worker), and forking a process that holds a CUDA context and threads is
unsafe. Workers see no GPU (``CUDA_VISIBLE_DEVICES`` empty): NVRTC needs none.

A job is ``(function, args)`` with ``function`` a module-level callable (sent by its module and name), sent
with the caller's ``ANYBIT_*`` environment (the cache directory among them); its return value (or the first
line of its error) comes back. :func:`run_jobs` starts the pool on first use,
keeps it for the process's life and stops it at exit; a pool that cannot start or a worker that dies
reports :class:`BuildPoolError`, and callers build in their own process instead.
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Environment variable: how many build worker processes to use (default: one per CPU, at most
#: :data:`MAX_DEFAULT_PROCESSES`; 0 or 1: none).
PROCESSES_VARIABLE = "ANYBIT_BUILD_PROCESSES"
#: The default's cap: a worker holds ~240 MB (torch imported), and a tuning builds ~15–25 configurations.
MAX_DEFAULT_PROCESSES = 16

#: Seconds a worker may take over one job before it is taken for hung, stopped, and the job reported (a
#: decode configuration builds in well under a second; NVRTC of the largest kernels takes a few).
JOB_TIMEOUT_S = 600.0

_HEADER = struct.Struct("<Q")


class BuildPoolError(RuntimeError):
    """The worker processes could not start or stopped mid-job (the caller builds in its own process)."""


def default_processes() -> int:
    """Worker processes to use: :data:`PROCESSES_VARIABLE`, else one per CPU this process may run on, at
    most :data:`MAX_DEFAULT_PROCESSES`."""
    value = os.environ.get(PROCESSES_VARIABLE)
    if value is not None:
        try:
            return max(0, int(value))
        except ValueError:
            raise ValueError(
                f"{PROCESSES_VARIABLE}={value!r}: expected a whole number of processes"
            ) from None
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return min(cpus, MAX_DEFAULT_PROCESSES)


def _send(stream, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the other end closed the pipe")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the other end closed the pipe mid-message")
    return pickle.loads(data)


class _Worker:
    """One worker process and the pipe pair to it; one job at a time."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])  # anybit importable from a source tree too
        path = os.environ.get("PYTHONPATH")
        env = dict(
            os.environ,
            CUDA_VISIBLE_DEVICES="",
            PYTHONPATH=os.pathsep.join(filter(None, [package_root, path])),
        )
        # The worker's stderr goes to a file: quiet while it works, its last lines the reason if it dies.
        self.errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "anybit.runtime.build_pool"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            env=env,
        )

    def last_error_line(self) -> str:
        """The last line the worker wrote to stderr ("" if none)."""
        try:
            self.errors.seek(0)
            lines = self.errors.read()[-4096:].decode(errors="replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return lines[-1] if lines else ""

    def run(self, job: tuple) -> tuple[bool, Any]:
        try:
            _send(self.process.stdin, job)
            # One job at a time, each answered by one message: nothing is buffered ahead of the next reply,
            # so waiting on the pipe's descriptor is waiting for it.
            ready, _, _ = select.select([self.process.stdout], [], [], JOB_TIMEOUT_S)
            if not ready:
                self.process.kill()
                raise BuildPoolError(
                    f"build worker {self.process.pid} stopped: no reply in {JOB_TIMEOUT_S:.0f} s"
                )
            return _receive(self.process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as error:
            try:
                self.process.wait(timeout=2)  # its exit status, when it is exiting
            except subprocess.TimeoutExpired:
                pass
            said = self.last_error_line()
            raise BuildPoolError(
                f"build worker {self.process.pid} stopped (exit status {self.process.returncode}): {error}"
                + (f"; its stderr: {said}" if said else "")
            ) from error

    def stop(self) -> None:
        try:
            self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
        self.errors.close()


class BuildPool:
    """A fixed set of worker processes; :meth:`map` spreads jobs over them (each worker's thread feeds it)."""

    def __init__(self, processes: int) -> None:
        self.workers: list[_Worker] = []
        try:
            for _ in range(processes):
                self.workers.append(_Worker())
        except OSError:
            self.stop()  # the ones that did start
            raise
        self._lock = threading.Lock()  # one map at a time: a worker takes one job at a time

    def map(
        self, function: Callable, items: Sequence[tuple], processes: int | None = None
    ) -> list[tuple[bool, Any]]:
        """``function(*item)`` for every item, in the first ``processes`` workers (default all):
        ``(True, result)`` or ``(False, error)``."""
        reference = (function.__module__, function.__qualname__)
        settings = _settings()
        jobs: queue.SimpleQueue = queue.SimpleQueue()
        for index in range(len(items)):
            jobs.put(index)
        results: list[tuple[bool, Any] | None] = [None] * len(items)
        failures: list[BuildPoolError] = []

        def feed(worker: _Worker) -> None:
            while not failures:
                try:
                    index = jobs.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[index] = worker.run((reference, items[index], settings))
                except BuildPoolError as error:
                    failures.append(error)
                except (pickle.PicklingError, TypeError, AttributeError) as error:  # nothing was sent
                    results[index] = (False, f"job not picklable: {type(error).__name__}: {error}")

        with self._lock:
            workers = self.workers[:processes] if processes else self.workers
            threads = [threading.Thread(target=feed, args=(worker,), daemon=True) for worker in workers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if failures:
            raise failures[0]
        return results  # type: ignore[return-value]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


_pool: BuildPool | None = None
_pool_lock = threading.Lock()


def run_jobs(function: Callable, items: Sequence[tuple], processes: int) -> list[tuple[bool, Any]]:
    """``function(*item)`` for every item in ``processes`` worker processes (started once, then kept; a
    pool of more workers is reused, its first ``processes`` taking the jobs, and one of fewer replaced):
    ``(True, result)`` or ``(False, "ErrorType: first line")`` per item, in order.

    Raises
    ------
    BuildPoolError
        When the workers cannot start or one stops mid-job; build in this process instead.
    """
    global _pool
    with _pool_lock:
        # Only a pool too small is replaced: starting workers is a cold tuning's largest fixed cost (on a
        # 16-core H200 host, 2026-11-30, a first tuning of 164 configurations took ~9 s more than a later one
        # of 156 on running workers), and a staged tuning's second round asks for fewer.
        if _pool is not None and len(_pool.workers) < processes:
            _pool.stop()
            _pool = None
        if _pool is None:
            try:
                _pool = BuildPool(processes)
            except OSError as error:
                raise BuildPoolError(f"could not start {processes} build workers: {error}") from error
        pool = _pool
    try:
        return pool.map(function, items, processes)
    except BuildPoolError:
        with _pool_lock:  # a broken pool is not reused
            if _pool is pool:
                pool.stop()
                _pool = None
        raise


def running_workers() -> int:
    """Workers of the running pool, 0 where none runs: a caller with a few jobs sends them only to running
    workers (starting 16 costs ~9 s on a 16-core host, more than a few compiles)."""
    with _pool_lock:
        return 0 if _pool is None else len(_pool.workers)


def stop_pool() -> None:
    """Stop the worker processes (at exit; the next :func:`run_jobs` starts new ones)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.stop()
            _pool = None


atexit.register(stop_pool)


def _settings() -> dict[str, str]:
    """This process's ``ANYBIT_*`` environment, sent with every job: a worker started earlier must build
    and cache as the caller does now (a test or a script may change ``ANYBIT_CACHE_DIR`` between calls)."""
    return {name: value for name, value in os.environ.items() if name.startswith("ANYBIT_")}


def _apply_settings(settings: dict[str, str]) -> None:
    """Make this worker's ``ANYBIT_*`` environment the caller's; when it changes, forget the compiles kept
    in memory, so each lands in the disk cache the caller now names."""
    if settings == _settings():
        return
    for name in [name for name in os.environ if name.startswith("ANYBIT_") and name not in settings]:
        del os.environ[name]
    os.environ.update(settings)
    from anybit.runtime.cache import clear_memory_cache

    clear_memory_cache()


def _serve() -> None:
    """The worker's loop: read a job, run it, send back its result, until the pipe closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the pipe
    while True:
        try:
            (module, name), args, settings = _receive(stdin)
        except EOFError:
            return
        _apply_settings(settings)
        try:
            function = importlib.import_module(module)
            for part in name.split("."):
                function = getattr(function, part)
            reply = (True, function(*args))
        except Exception as error:  # reported per job; the worker serves the next one
            lines = str(error).strip().splitlines()
            reply = (False, f"{type(error).__name__}: {lines[0] if lines else ''}")
        try:
            _send(stdout, reply)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            _send(stdout, (False, f"result not picklable: {error}"))


if __name__ == "__main__":
    _serve()
