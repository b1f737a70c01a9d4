"""The statement walker: runs one thread block's body as a generator.

The generator yields only while a ``lock_semaphore`` waits, so the scheduler can interleave blocks; every
other instruction runs to completion. Errors raised by a handler are re-raised as
:class:`InterpreterError` naming the instruction, its source line and the block.
"""

from __future__ import annotations

from collections.abc import Iterator

from anybit.interp.errors import InterpreterError
from anybit.interp.handlers import handler_for
from anybit.interp.handlers.control import BlockExit, SemaphoreWait
from anybit.interp.state import BlockState
from anybit.ir.instructions import Instruction
from anybit.ir.statements import BreakStmt, ForStmt, IfStmt, WhileStmt


class _LoopBreak(Exception):
    """Raised by ``break`` and caught by the innermost loop."""


def run_block(block: BlockState, body: tuple) -> Iterator[SemaphoreWait]:
    """Run ``body`` for ``block`` to its end or its ``exit``."""
    try:
        yield from _run_body(block, body)
    except BlockExit:
        pass
    except _LoopBreak:
        raise InterpreterError("break outside of a loop", None, block.block_index) from None
    finally:
        block.finished = True
    if block.cluster_barriers in block.read_remotely:
        raise InterpreterError(
            "the block ends while other blocks of its cluster read its shared memory after the last "
            "cluster_sync it passed (on the GPU its shared memory may be gone before they read); add a "
            "cluster_sync before it ends",
            None,
            block.block_index,
        )


def _run_body(block: BlockState, body: tuple) -> Iterator[SemaphoreWait]:
    for statement in body:
        if isinstance(statement, Instruction):
            yield from _run_instruction(block, statement)
        elif isinstance(statement, ForStmt):
            yield from _run_for(block, statement)
        elif isinstance(statement, IfStmt):
            chosen = statement.then_body if _condition(block, statement) else statement.else_body
            yield from _run_body(block, chosen)
        elif isinstance(statement, WhileStmt):
            while _condition(block, statement):
                try:
                    yield from _run_body(block, statement.body)
                except _LoopBreak:
                    break
        elif isinstance(statement, BreakStmt):
            raise _LoopBreak()
        else:
            raise InterpreterError(
                f"unknown statement {type(statement).__name__}", statement, block.block_index
            )


def _condition(block: BlockState, statement) -> bool:
    try:
        return bool(block.scalar(statement.condition))
    except InterpreterError as error:
        raise error.located(statement, block.block_index) from None


def _run_for(block: BlockState, statement: ForStmt) -> Iterator[SemaphoreWait]:
    try:
        start, stop, step = block.int_scalars((statement.start, statement.stop, statement.step))
    except InterpreterError as error:
        raise error.located(statement, block.block_index) from None
    if step == 0:
        raise InterpreterError("a for loop with step 0", statement, block.block_index)
    for value in range(start, stop, step):
        block.env[statement.var] = value
        try:
            yield from _run_body(block, statement.body)
        except _LoopBreak:
            break


def _run_instruction(block: BlockState, instruction: Instruction) -> Iterator[SemaphoreWait]:
    try:
        result = handler_for(instruction)(block, instruction)
        if result is not None:
            yield from result
    except (BlockExit, _LoopBreak):
        raise
    except InterpreterError as error:
        raise error.located(instruction, block.block_index) from error
    except Exception as error:  # numpy, layout or dtype errors: report them against the instruction
        raise InterpreterError(f"{type(error).__name__}: {error}", instruction, block.block_index) from error
