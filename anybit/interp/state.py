"""The run-time state of one launch (global memory, workspace, output sink) and of one thread block."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from anybit.interp.errors import InterpreterError
from anybit.interp.memory import GlobalBinding, GlobalBuffer, SharedBinding
from anybit.interp.registers import RegisterFile
from anybit.interp.scalars import Scalar, evaluate
from anybit.ir.expr import Expr, Var
from anybit.ir.statements import Program


@dataclass(eq=False)
class PendingCopy:
    """One issued copy_async: the destination elements and the codes read from global memory at issue."""

    destination: SharedBinding
    positions: np.ndarray
    codes: np.ndarray


@dataclass(eq=False)
class LaunchState:
    """State shared by all blocks of one launch: the workspace allocations and the print sink."""

    program: Program
    print_fn: Callable[[str], None]
    workspace: np.ndarray | None
    workspace_used: int = 0
    allocations: dict = field(default_factory=dict)  # AllocateGlobalInst -> GlobalBuffer
    blocks: dict = field(default_factory=dict)  # block index -> BlockState, for a cluster's shared memory
    cluster_arrivals: dict = field(default_factory=dict)  # (cluster, barrier number) -> blocks arrived

    def allocate_workspace(self, key: object, name: str, nbytes: int, clean: bool) -> GlobalBuffer:
        """The buffer of one ``allocate_global`` (the same for every block of the launch)."""
        if key in self.allocations:
            return self.allocations[key]
        if self.workspace is None:
            data = np.zeros(nbytes, dtype=np.uint8) if clean else np.full(nbytes, 0xA5, dtype=np.uint8)
        else:
            start = -(-self.workspace_used // 256) * 256
            if start + nbytes > self.workspace.size:
                raise InterpreterError(
                    f"the workspace holds {self.workspace.size} bytes, but allocating {name} needs bytes "
                    f"[{start}, {start + nbytes}); pass a larger workspace"
                )
            data = self.workspace[start : start + nbytes]
            self.workspace_used = start + nbytes
            if clean:
                data[:] = 0
        buffer = GlobalBuffer(f"workspace tensor {name}", data)
        self.allocations[key] = buffer
        return buffer


@dataclass(eq=False)
class BlockState:
    """Everything one thread block holds while it runs."""

    launch: LaunchState
    block_index: tuple[int, int, int]
    env: dict[Var, Scalar]
    registers: RegisterFile = field(default_factory=RegisterFile)
    global_tensors: dict = field(default_factory=dict)  # GlobalTensor -> GlobalBinding
    shared_tensors: dict = field(default_factory=dict)  # SharedTensor -> SharedBinding
    epoch: int = 0  # sync epoch: incremented by every sync
    uncommitted: list = field(default_factory=list)  # PendingCopy not yet in a group
    groups: list = field(default_factory=list)  # committed groups (lists of PendingCopy), oldest first
    cluster_barriers: int = 0  # cluster_sync barriers this block has passed
    finished: bool = False  # ran to its end or exit: its shared memory is gone
    read_remotely: set = field(default_factory=set)  # cluster barriers after which others read its memory

    @property
    def num_threads(self) -> int:
        return self.launch.program.num_threads

    def scalar(self, expr: Expr | int | float) -> Scalar:
        """Evaluate a scalar expression in this block."""
        return evaluate(expr, self.env, self.block_index)

    def int_scalars(self, exprs) -> tuple[int, ...]:
        """Evaluate a tuple of integer expressions (offsets, shapes)."""
        return tuple(int(self.scalar(e)) for e in exprs)

    def global_binding(self, tensor) -> GlobalBinding:
        """The run-time binding of a global tensor."""
        try:
            return self.global_tensors[tensor]
        except KeyError:
            raise InterpreterError(f"global tensor {tensor.name} is used before it is defined") from None

    def shared_binding(self, tensor) -> SharedBinding:
        """The run-time binding of a shared tensor."""
        try:
            return self.shared_tensors[tensor]
        except KeyError:
            raise InterpreterError(f"shared tensor {tensor.name} is used before it is allocated") from None
