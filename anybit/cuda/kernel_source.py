"""The product of code generation: a CUDA C translation unit plus what the runtime needs to launch it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from anybit.dtypes import DataType


@dataclass(frozen=True)
class KernelParam:
    """One kernel parameter in launch order; for a pointer, ``dtype`` is the element type."""

    name: str
    kind: Literal["pointer", "scalar"]
    dtype: DataType


@dataclass(frozen=True)
class CudaKernelSource:
    """A complete CUDA C translation unit for one VM program and its launch configuration.

    ``grid`` holds three expressions over the program's parameters, evaluated by the runtime at launch.
    ``params`` ends with a hidden pointer ``__workspace`` when the program allocates global workspace of
    ``workspace_bytes`` (zeroed before every launch when ``workspace_clean``; its first
    ``workspace_clean_bytes`` hold ``kept_clean`` tensors the program leaves zero, zeroed once).
    ``alignment_requirements`` lists
    ``(param_name, bytes)``: the byte alignment the generated code assumes for each pointer parameter;
    ``divisibility_requirements`` lists ``(param_name, divisor)`` for run-time integers the code assumes to be
    multiples of ``divisor`` (declared with ``self.assume_divisible``). The runtime checks both at launch.
    ``waits_for_prior_grids``: the code executes ``griddepcontrol.wait`` (``wait_prior_grids`` on sm_90+),
    so the runtime may launch it as a dependent of the previous kernel (programmatic stream serialization).
    ``cluster``: see the field.
    """

    name: str
    source: str
    params: tuple[KernelParam, ...]
    grid: tuple
    block_threads: int
    dynamic_shared_bytes: int
    workspace_bytes: object
    workspace_clean: bool
    alignment_requirements: tuple
    divisibility_requirements: tuple = ()
    workspace_clean_bytes: object = 0
    #: Blocks of a thread-block cluster along x, y, z (compiled in with ``__cluster_dims__``): the grid must
    #: be whole clusters, which the runtime checks at launch.
    cluster: tuple = (1, 1, 1)
    waits_for_prior_grids: bool = False
