"""Runs the blocks of a grid: round-robin over block generators, so a block waiting on a semaphore lets
the others run; when every running block waits and none made progress in a full round, it is a deadlock."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from anybit.interp.errors import DeadlockError
from anybit.interp.handlers.control import SemaphoreWait


def run_grid(blocks: list[tuple[tuple, Callable[[], Iterator[SemaphoreWait]]]]) -> None:
    """Run every block (index, generator factory) to completion; raise :class:`DeadlockError` on a deadlock.

    Blocks start in order (x fastest); a block runs until it finishes or waits.
    """
    waiting: list[tuple[tuple, Iterator[SemaphoreWait], SemaphoreWait]] = []
    for index, start in blocks:
        generator = start()
        wait = next(generator, None)
        if wait is not None:
            waiting.append((index, generator, wait))
    while waiting:
        still_waiting = []
        progress = False
        for index, generator, _ in waiting:
            wait = next(generator, None)
            if wait is None:
                progress = True
                continue
            progress |= not wait.repeated
            still_waiting.append((index, generator, wait))
        if not progress and still_waiting:
            raise _deadlock([wait for _, _, wait in still_waiting])
        waiting = still_waiting


def _deadlock(waits: list[SemaphoreWait]) -> DeadlockError:
    lines = ["  " + _describe(w) for w in waits[:8]]
    more = f"\n  ... and {len(waits) - 8} more blocks" if len(waits) > 8 else ""
    first = waits[0]
    message = (
        f"deadlock: all {len(waits)} running blocks wait on semaphores or cluster barriers no running block "
        "will release:\n" + "\n".join(lines) + more
    )
    return DeadlockError(message, first.instruction, first.block_index)


def _describe(wait) -> str:
    """One line on what a waiting block waits for (a cluster barrier describes itself)."""
    if hasattr(wait, "describe"):
        return wait.describe()
    semaphore = f"{wait.instruction.semaphore.name}{list(wait.index)}"
    return (
        f"block {wait.block_index} waits for {semaphore} == {wait.expected} (it holds {wait.current}) at "
        f"{wait.instruction.source}"
    )
