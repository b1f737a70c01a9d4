"""``interpret``: run a VM program (or an ``anybit.Script`` kernel) over its whole grid on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from anybit.interp.arguments import bind, runtime_arguments
from anybit.interp.errors import InterpreterError
from anybit.interp.executor import run_block
from anybit.interp.handlers import check_program
from anybit.interp.scalars import evaluate
from anybit.interp.scheduler import run_grid
from anybit.interp.state import BlockState, LaunchState
from anybit.ir.statements import Program


def _default_print(text: str) -> None:
    print(text, flush=True)


def interpret(
    kernel_or_program: Any,
    *args: Any,
    workspace: np.ndarray | None = None,
    print_fn: Callable[[str], None] | None = None,
) -> None:
    """Execute a VM program on the CPU with numpy, keeping the VM's semantics exactly.

    Parameters
    ----------
    kernel_or_program
        A :class:`anybit.ir.Program`, or an ``anybit.Script`` kernel (its ``program(*args)`` is run).
    *args
        One per parameter: for pointers, numpy arrays or CPU torch tensors whose raw bytes are global memory
        (written in place); for scalars, Python numbers. A Script takes its full call arguments, compile-time
        ones included.
    workspace
        Optional uint8 array that ``allocate_global`` carves its tensors from (else fresh arrays).
    print_fn
        Where ``print`` instructions send their text (default: stdout).

    Raises
    ------
    InterpreterError
        On bad arguments, or on any violation of the VM semantics, naming the instruction and its source.
    """
    if isinstance(kernel_or_program, Program):
        program = kernel_or_program
        runtime = args
    elif hasattr(kernel_or_program, "program"):
        program = kernel_or_program.program(*args)
        runtime = runtime_arguments(kernel_or_program, program, args)
    else:
        raise InterpreterError(
            f"expected a Program or an anybit.Script kernel, got {type(kernel_or_program).__name__}"
        )
    check_program(program.body)
    env = bind(program, runtime)
    grid = tuple(int(evaluate(extent, env, (0, 0, 0))) for extent in program.grid)
    if any(extent < 0 for extent in grid):
        raise InterpreterError(f"{program.name}: the grid {grid} has a negative extent")
    if any(extent % c for extent, c in zip(grid, program.cluster, strict=True)):
        raise InterpreterError(
            f"{program.name}: the grid {list(grid)} is not whole clusters of {list(program.cluster)} blocks; "
            "launch a grid whose extents are multiples of the cluster's"
        )
    if workspace is not None:
        workspace = np.asarray(workspace).reshape(-1).view(np.uint8)
    launch = LaunchState(program, print_fn or _default_print, workspace)
    blocks = []
    for z in range(grid[2]):
        for y in range(grid[1]):
            for x in range(grid[0]):
                index = (x, y, z)
                blocks.append((index, partial(_start_block, launch, index, env)))
    run_grid(blocks)
    _check_kept_clean(launch)


def _check_kept_clean(launch: LaunchState) -> None:
    """A workspace tensor allocated ``kept_clean`` must be all zeros again when the launch ends."""
    for inst, buffer in launch.allocations.items():
        if getattr(inst, "kept_clean", False) and buffer.data.any():
            raise InterpreterError(
                f"{launch.program.name}: workspace tensor {inst.output.name} was allocated kept_clean, but "
                "the "
                "launch left non-zero bytes in it; the next launch would start from them (zero it before the "
                "program ends, e.g. let every counter wrap with arrive, or use requires_clean=True)"
            )


def _start_block(launch: LaunchState, index: tuple, env: dict):
    block = BlockState(launch, index, dict(env))
    launch.blocks[index] = block
    return run_block(block, launch.program.body)
