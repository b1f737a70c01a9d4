"""Instruction emitters, one module per instruction family; importing this package registers them all."""

from anybit.cuda.emit import (  # noqa: F401
    compute,
    control,
    copy_async,
    dot,
    memory,
    reduce,
    tensors,
)
from anybit.cuda.emit.scratch import scratch_bytes  # noqa: F401
