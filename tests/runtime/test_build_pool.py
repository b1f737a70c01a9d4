"""Build worker processes: jobs run there and come back in order, errors per job, a dead worker reported,
and the caller's script is never run again in a worker."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest

from anybit.runtime import build_pool


@pytest.fixture
def fresh_pool():
    build_pool.stop_pool()
    yield
    build_pool.stop_pool()


def test_jobs_come_back_in_order_with_errors_per_job(fresh_pool):
    values = [7, -1, 12, 3, 0, 9]
    results = build_pool.run_jobs(math.factorial, [(value,) for value in values], 2)
    for value, (ok, result) in zip(values, results, strict=True):
        if value < 0:
            assert not ok and result.startswith("ValueError:")
        else:
            assert ok and result == math.factorial(value)
    # The workers stay for the next call, and run in other processes without a GPU.
    pids = build_pool.run_jobs(os.getpid, [()] * 4, 2)
    assert {pid for _, pid in pids} <= {worker.process.pid for worker in build_pool._pool.workers}
    assert os.getpid() not in {pid for _, pid in pids}
    visible = build_pool.run_jobs(os.getenv, [("CUDA_VISIBLE_DEVICES",)], 2)
    assert visible == [(True, "")]


def test_workers_take_the_callers_anybit_settings_with_each_job(fresh_pool, monkeypatch):
    monkeypatch.setenv("ANYBIT_CACHE_DIR", "/tmp/first")
    assert build_pool.run_jobs(os.getenv, [("ANYBIT_CACHE_DIR",)], 1) == [(True, "/tmp/first")]
    monkeypatch.setenv("ANYBIT_CACHE_DIR", "/tmp/second")  # the same worker, another setting
    monkeypatch.setenv("ANYBIT_AUTOTUNE", "0")
    assert build_pool.run_jobs(os.getenv, [("ANYBIT_CACHE_DIR",), ("ANYBIT_AUTOTUNE",)], 1) == [
        (True, "/tmp/second"),
        (True, "0"),
    ]
    monkeypatch.delenv("ANYBIT_AUTOTUNE")
    assert build_pool.run_jobs(os.getenv, [("ANYBIT_AUTOTUNE",)], 1) == [(True, None)]


def test_a_job_that_cannot_be_sent_fails_alone(fresh_pool):
    results = build_pool.run_jobs(math.factorial, [(lambda: 0,), (5,)], 1)
    assert not results[0][0] and "not picklable" in results[0][1]
    assert results[1] == (True, 120)


def test_a_worker_that_dies_is_reported_and_the_pool_replaced(fresh_pool):
    with pytest.raises(build_pool.BuildPoolError, match="stopped"):
        build_pool.run_jobs(os._exit, [(3,)], 2)
    assert build_pool._pool is None  # not reused
    assert build_pool.run_jobs(math.factorial, [(4,)], 2) == [(True, 24)]


def test_a_worker_that_cannot_start_says_why(fresh_pool, monkeypatch, tmp_path):
    """A worker that exits before serving is reported with its exit status and the last line of its
    stderr (here an interpreter stand-in that fails at once)."""
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: no anybit here' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setattr(build_pool.sys, "executable", str(broken))
    with pytest.raises(build_pool.BuildPoolError, match=r"exit status 3.*no anybit here"):
        build_pool.run_jobs(math.factorial, [(3,)], 1)


def test_a_hung_worker_is_stopped(fresh_pool, monkeypatch):
    import time

    monkeypatch.setattr(build_pool, "JOB_TIMEOUT_S", 1.0)
    with pytest.raises(build_pool.BuildPoolError, match="no reply"):
        build_pool.run_jobs(time.sleep, [(30,)], 1)
    monkeypatch.setattr(build_pool, "JOB_TIMEOUT_S", 600.0)  # a new worker's first reply waits for its start
    assert build_pool.run_jobs(math.factorial, [(3,)], 1) == [(True, 6)]


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    """multiprocessing's spawn would import the caller's ``__main__`` in every worker; these workers
    start from ``-m anybit.runtime.build_pool`` and never do."""
    marker = tmp_path / "runs.txt"
    script = tmp_path / "user_script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import math
            from anybit.runtime import build_pool
            with open({str(marker)!r}, "a") as log:
                log.write("ran\\n")
            print(build_pool.run_jobs(math.factorial, [(5,), (6,)], 2))
            """
        )
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(build_pool.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[(True, 120), (True, 720)]" in done.stdout
    assert marker.read_text() == "ran\n"


def test_the_process_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(build_pool.PROCESSES_VARIABLE, "3")
    assert build_pool.default_processes() == 3
    monkeypatch.setenv(build_pool.PROCESSES_VARIABLE, "many")
    with pytest.raises(ValueError, match="whole number"):
        build_pool.default_processes()
    monkeypatch.delenv(build_pool.PROCESSES_VARIABLE)
    assert build_pool.default_processes() >= 1


def test_a_pool_is_reused_for_fewer_processes_and_replaced_for_more(fresh_pool):
    """A request for fewer workers than are running takes the first of them (no restart: a staged tuning's
    second round asks for fewer than its first); a request for more starts a larger pool.
    ``running_workers`` counts the running pool's workers (0 before one starts)."""
    assert build_pool.running_workers() == 0
    build_pool.run_jobs(os.getpid, [()] * 4, 3)
    assert build_pool.running_workers() == 3
    running = build_pool._pool
    first = {worker.process.pid for worker in running.workers}
    fewer = build_pool.run_jobs(os.getpid, [()] * 6, 2)
    assert build_pool._pool is running
    assert {pid for _, pid in fewer} <= {worker.process.pid for worker in running.workers[:2]}
    assert all(ok for ok, _ in fewer) and len(fewer) == 6
    build_pool.run_jobs(os.getpid, [()] * 4, 4)
    assert build_pool._pool is not running and build_pool.running_workers() == 4
    assert all(worker.process.poll() is not None for worker in running.workers)  # the small pool stopped
    assert first.isdisjoint(worker.process.pid for worker in build_pool._pool.workers)
