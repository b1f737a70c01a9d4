"""The verifier's rule for programmatic dependent launch: nothing before ``wait_prior_grids`` touches memory
the previous kernels in the stream may still be using.

A program that contains ``wait_prior_grids`` is launched as a dependent on sm_90+: it may start while the
kernel before it is still running. The rule is conservative and simple to state:

* the wait is a top-level statement of the body (not inside a run-time loop or if), so every block
  executes it exactly once, and there is at most one;
* no instruction before it in program order (nested bodies included) writes global memory, waits on a
  semaphore, or reads a workspace tensor (``global_tensor``: every launch of the kernel shares it, and the
  previous launch may still be using it).

Reading other global memory before the wait is allowed: the kernel author promises, by placing the wait,
that the preceding kernels do not write it (weights, not activations). No pass can check that promise.
"""

from __future__ import annotations

from anybit.ir.errors import VerificationError, where
from anybit.ir.instructions import (
    AllocateGlobalInst,
    GlobalViewInst,
    Instruction,
    LockSemaphoreInst,
    WaitPriorGridsInst,
    read_tensors,
    written_tensors,
)
from anybit.ir.statements import Program, instructions
from anybit.ir.tensors import GlobalTensor

_FIX = "move it after the wait (a dependent launch may overlap the previous kernel in the stream)"


def check_dependent_launch(program: Program) -> None:
    """Raise :class:`VerificationError` when ``program`` breaks the rule of the module docstring."""
    waits = [inst for inst in instructions(program.body) if isinstance(inst, WaitPriorGridsInst)]
    if not waits:
        return
    top_level = [i for i, stmt in enumerate(program.body) if isinstance(stmt, WaitPriorGridsInst)]
    nested = [inst for inst in waits if not any(inst is program.body[i] for i in top_level)]
    if nested:
        raise VerificationError(
            "expected wait_prior_grids as a top-level statement of the kernel, got it inside a run-time loop "
            "or if; call it once, before the loop, so that every block waits exactly once",
            instruction=nested[0].name,
            source=nested[0].source,
        )
    if len(waits) > 1:
        raise VerificationError(
            f"expected at most one wait_prior_grids, got a second after the one at {where(waits[0].source)}; "
            "remove it (after the first wait the prior grids have completed)",
            instruction=waits[1].name,
            source=waits[1].source,
        )
    before = program.body[: top_level[0]]
    workspace = {id(inst.output) for inst in instructions(before) if isinstance(inst, AllocateGlobalInst)}
    for inst in instructions(before):
        problem = _problem(inst, workspace)
        if problem:
            raise VerificationError(
                f"{problem} before wait_prior_grids at {where(waits[0].source)}; {_FIX}",
                instruction=inst.name,
                source=inst.source,
            )


def _problem(inst: Instruction, workspace: set[int]) -> str | None:
    """What ``inst`` does that may not happen before the wait, or None."""
    if isinstance(inst, (GlobalViewInst, AllocateGlobalInst)):
        return None  # they define a global tensor; they touch no memory
    if isinstance(inst, LockSemaphoreInst):
        return f"waits on semaphore {inst.semaphore.name}, which another kernel may still be changing,"
    for tensor in written_tensors(inst):
        if isinstance(tensor, GlobalTensor):
            return f"writes global tensor {tensor.name}"
    for tensor in read_tensors(inst):
        if id(tensor) in workspace:
            return f"reads workspace tensor {tensor.name}, which the previous launch may still be using,"
    return None
