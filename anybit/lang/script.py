"""``anybit.Script``: the base class of kernels. ``__init__`` takes compile-time parameters, ``__call__`` is
the block program, and ``program(*args)`` builds the VM program (cached per compile-time arguments).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from anybit.dtypes import DataType
from anybit.ir.errors import KernelDefinitionError
from anybit.ir.expr import BlockIndex, Expr, PointerType, Var, as_expr
from anybit.ir.instructions import SourceLocation
from anybit.ir.statements import Program
from anybit.ir.tensors import set_operator_handler
from anybit.lang import compute, memory
from anybit.lang.builder import Builder
from anybit.lang.compute import elementwise, operator_handler
from anybit.lang.control import RangeSpec
from anybit.lang.transpiler import transpile

COMPILE_TIME_TYPES = (int, float, bool)


def runtime_helper(method: Callable) -> Callable:
    """Decorate a Script helper method whose body has run-time control flow, as ``__call__`` may.

    Undecorated, a helper runs as plain Python: its ``if`` must be on compile-time values and ``==`` compares
    objects. Decorated, it is transpiled like ``__call__`` (``for … in self.range(...)``, ``if`` on run-time
    values, ``==`` building expressions; its ``return`` outside run-time control flow), so a long block
    program can be split into helpers a subclass reuses. Call it only while a kernel is being traced.
    """

    def traced(self, *args, **kwargs):
        return transpile(method)(self, *args, **kwargs)

    traced.__name__, traced.__qualname__, traced.__doc__ = (
        method.__name__,
        method.__qualname__,
        method.__doc__,
    )
    traced.__wrapped__ = method
    return traced


set_operator_handler(operator_handler)


#: Blocks a thread-block cluster may hold: 8 everywhere clusters run (portable); 16 on the H100 and H200
#: (non-portable: the runtime opts the kernel in when it loads it; a GPU without them refuses the launch).
MAX_PORTABLE_CLUSTER_BLOCKS = 8
MAX_CLUSTER_BLOCKS = 16


class Attributes:
    """``self.attrs``: ``blocks`` (1-3 grid extents, ints or expressions of the parameters), ``warps``, and
    ``min_blocks``: blocks per SM the compiled code must leave room for (``__launch_bounds__``'s second
    argument: the compiler caps registers a thread so that many blocks fit; 0 leaves the choice to it), and
    ``cluster``: blocks of a thread-block cluster along each grid axis (sm_90: up to 8 blocks anywhere, 16 on
    the H100/H200; scheduled together on one GPU processing cluster, with ``cluster_sync`` and each other's
    shared memory; the grid must be whole clusters)."""

    def __init__(self) -> None:
        self.blocks: list | None = None
        self.warps: int = 4
        self.min_blocks: int = 0
        self.cluster: tuple[int, ...] = (1, 1, 1)


class BlockIndices:
    """``self.blockIdx``: ``.x``, ``.y``, ``.z``; unpacks into as many indices as the grid has extents."""

    def __init__(self, script: Script) -> None:
        self._script = script

    x = property(lambda self: BlockIndex(0), doc="Block index along grid axis x.")
    y = property(lambda self: BlockIndex(1), doc="Block index along grid axis y.")
    z = property(lambda self: BlockIndex(2), doc="Block index along grid axis z.")

    def __iter__(self):
        blocks = self._script.attrs.blocks
        count = 3 if blocks is None else len(blocks)
        return iter([BlockIndex(axis) for axis in range(count)])


class Parameter:
    """One parameter of ``__call__``: run-time (dtype or pointer) or compile-time (int/float/bool)."""

    def __init__(self, name: str, annotation: Any) -> None:
        self.name, self.annotation = name, annotation

    @property
    def is_runtime(self) -> bool:
        return isinstance(self.annotation, (DataType, PointerType))


def _parameters(cls: type, function: Callable, instance: Any = None) -> list[Parameter]:
    signature = inspect.signature(function)
    globalns = dict(function.__globals__)
    # String annotations may name compile-time attributes: `x: anybit.ptr(self.act_dtype)`.
    globalns["self"] = instance
    if function.__closure__:
        cells = (c.cell_contents for c in function.__closure__)
        globalns.update(zip(function.__code__.co_freevars, cells, strict=False))
    result = []
    code = function.__code__
    for index, (name, parameter) in enumerate(signature.parameters.items()):
        if index == 0:
            continue  # self
        where = SourceLocation(code.co_filename, code.co_firstlineno)
        annotation = parameter.annotation
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise KernelDefinitionError(
                f"{cls.__name__}.__call__ cannot take *args or **kwargs", source=where
            )
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, globalns)  # noqa: S307 - the author's own annotation
            except Exception as error:
                raise KernelDefinitionError(
                    f"cannot evaluate the annotation of parameter `{name}`: {error}", source=where
                ) from None
        empty = inspect.Parameter.empty
        if annotation is empty or not (
            isinstance(annotation, (DataType, PointerType)) or annotation in COMPILE_TIME_TYPES
        ):
            raise KernelDefinitionError(
                f"expected parameter `{name}` of {cls.__name__}.__call__ to be annotated with a dtype "
                f"(anybit.int32), a pointer (anybit.ptr(anybit.float16)) or int/float/bool for a "
                "compile-time "
                f"value, got {'no annotation' if annotation is empty else repr(annotation)}",
                source=where,
            )
        result.append(Parameter(name, annotation))
    return result


class Script:
    """Base class of anybit kernels.

    Subclasses take compile-time parameters in ``__init__`` (which must call ``super().__init__()``) and write
    the block program as ``__call__``; :meth:`program` turns it into a VM :class:`~anybit.ir.Program`.
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        block_program = cls.__dict__.get("__call__")
        if block_program is not None:
            cls._block_program = block_program
            cls.__call__ = Script._launch

    def __init__(self) -> None:
        self.attrs = Attributes()
        self._programs: dict[tuple, Program] = {}
        self._traces: dict[tuple, Program] = {}

    # ----------------------------------------------------------------------------------- building
    def _check_ready(self) -> Callable:
        if not hasattr(self, "_programs"):
            raise KernelDefinitionError(f"{type(self).__name__}.__init__ must call super().__init__()")
        block_program = getattr(type(self), "_block_program", None)
        if block_program is None:
            raise KernelDefinitionError(f"{type(self).__name__} must define __call__, the block program")
        return block_program

    def parameters(self) -> list[Parameter]:
        """The parameters of ``__call__`` (without ``self``)."""
        return _parameters(type(self), self._check_ready(), self)

    def _bind(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Split arguments into the compile-time key and the values passed to the transpiled body."""
        block_program = self._check_ready()
        parameters = self.parameters()
        signature = inspect.signature(block_program)
        bound = signature.bind_partial(self, *args, **kwargs).arguments
        for name, declared in signature.parameters.items():
            if name not in bound and declared.default is not inspect.Parameter.empty:
                bound[name] = declared.default
        key, values = [], {}
        for parameter in parameters:
            if parameter.is_runtime:
                values[parameter.name] = Var(parameter.name, parameter.annotation)
                continue
            if parameter.name not in bound:
                raise TypeError(
                    f"{type(self).__name__}: expected a value for the compile-time parameter "
                    f"`{parameter.name}`"
                )
            value = bound[parameter.name]
            expected = parameter.annotation
            if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
                if not (expected is float and isinstance(value, int) and not isinstance(value, bool)):
                    raise TypeError(
                        f"{type(self).__name__}: expected {expected.__name__} for the compile-time "
                        f"parameter `{parameter.name}`, got {value!r}"
                    )
            key.append((parameter.name, value))
            values[parameter.name] = value
        return tuple(key), values

    def trace(self, *args, **kwargs) -> Program:
        """The raw program recorded from ``__call__``, before layout inference and verification."""
        key, values = self._bind(args, kwargs)
        if key not in self._traces:
            self._traces[key] = self._record(key, values)
        return self._traces[key]

    def program(self, *args, **kwargs) -> Program:
        """The final VM program: traced, layouts inferred, verified (cached per compile-time arguments).

        Run-time arguments (arrays, pointers, run-time scalars) may be passed and are ignored, so executors
        can call ``kernel.program(*launch_args)``; compile-time parameters must be given.
        """
        key, _ = self._bind(args, kwargs)
        if key not in self._programs:
            from anybit.passes import compile_program

            self._programs[key] = compile_program(self.trace(*args, **kwargs))
        return self._programs[key]

    def _record(self, key: tuple, values: dict) -> Program:
        block_program = self._check_ready()
        body_function = transpile(block_program)
        self.attrs = Attributes()
        builder = Builder(type(self).__name__)
        builder.params = tuple(v for v in values.values() if isinstance(v, Var))
        builder.on_first_instruction = lambda inst: self._check_attrs(inst)
        params = tuple(v for v in values.values() if isinstance(v, Var))
        for param in params:
            builder.fresh_name(param.name)
        with builder:
            body_function(self, **values)
        # Checked at the first instruction (so errors point there) and again here: a program may have no
        # instruction, and attributes set after the first one count too.
        self._check_attrs(None)
        grid = self._grid()
        divisibility = tuple(builder.divisibility.items())
        return Program(
            type(self).__name__,
            params,
            grid,
            self.attrs.warps,
            tuple(builder.root.body),
            key,
            divisibility,
            self.attrs.min_blocks,
            self._cluster(),
        )

    def _check_attrs(self, inst) -> None:
        source = getattr(inst, "source", None)
        where = f" before the first instruction (`{inst.name}`)" if inst is not None else ""
        blocks = self.attrs.blocks
        if blocks is None:
            raise KernelDefinitionError(
                f"set self.attrs.blocks = [...] (1 to 3 grid extents){where}", source=source
            )
        blocks = [blocks] if isinstance(blocks, (int, Expr)) else list(blocks)
        if not 1 <= len(blocks) <= 3 or any(
            isinstance(b, bool) or not isinstance(b, (int, Expr)) or (isinstance(b, int) and b < 1)
            for b in blocks
        ):
            raise KernelDefinitionError(
                f"expected self.attrs.blocks to be 1 to 3 positive ints or int "
                f"expressions, got {self.attrs.blocks!r}",
                source=source,
            )
        warps = self.attrs.warps
        if isinstance(warps, bool) or not isinstance(warps, int) or not 1 <= warps <= 32:
            raise KernelDefinitionError(
                f"expected self.attrs.warps to be an int in [1, 32], got {warps!r}", source=source
            )
        min_blocks = self.attrs.min_blocks
        if isinstance(min_blocks, bool) or not isinstance(min_blocks, int) or not 0 <= min_blocks <= 32:
            raise KernelDefinitionError(
                f"expected self.attrs.min_blocks to be an int in [0, 32] (blocks per SM; 0: no bound), "
                f"got {min_blocks!r}",
                source=source,
            )
        self._cluster(source)
        self.attrs.blocks = blocks

    def _cluster(self, source=None) -> tuple[int, int, int]:
        """``self.attrs.cluster`` as three extents (checked: positive ints, at most 16 blocks in all)."""
        cluster = self.attrs.cluster
        cluster = [cluster] if isinstance(cluster, int) else list(cluster)
        if (
            not 1 <= len(cluster) <= 3
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in cluster)
            or math.prod(cluster) > MAX_CLUSTER_BLOCKS
        ):
            raise KernelDefinitionError(
                f"expected self.attrs.cluster to be 1 to 3 positive ints of at most {MAX_CLUSTER_BLOCKS} "
                f"blocks in all ({MAX_PORTABLE_CLUSTER_BLOCKS} portable, {MAX_CLUSTER_BLOCKS} on the "
                f"H100/H200), got {self.attrs.cluster!r}",
                source=source,
            )
        return tuple(cluster + [1] * (3 - len(cluster)))

    @property
    def cluster_rank(self) -> Expr:
        """This block's rank in its thread-block cluster, 0 … blocks a cluster − 1 (x fastest, as CUDA's
        ``%cluster_ctarank``); 0 without clusters."""
        cx, cy, cz = self._cluster()
        x, y, z = (BlockIndex(axis) for axis in range(3))
        return x % cx + cx * (y % cy) + cx * cy * (z % cz)

    def _grid(self) -> tuple:
        blocks = list(self.attrs.blocks)
        blocks += [1] * (3 - len(blocks))
        return tuple(as_expr(b) for b in blocks)

    def _launch(self, *args, **kwargs):
        """Run the kernel on the GPU (provided by ``anybit.runtime``)."""
        try:
            from anybit.runtime import launch
        except ImportError:
            raise NotImplementedError(
                "launching on a GPU needs anybit.runtime; run on the CPU with anybit.interpret(kernel, *args)"
            ) from None
        return launch(self, *args, **kwargs)

    # ------------------------------------------------------------------------------- vocabulary
    @property
    def blockIdx(self) -> BlockIndices:  # noqa: N802 - the CUDA name kernel authors know
        """The indices of this thread block (``.x``, ``.y``, ``.z``)."""
        return BlockIndices(self)

    def range(self, start, stop=None, step=1, *, unroll=None) -> RangeSpec:
        """A run-time loop ``for i in self.range(...)`` (Python's range arguments; ``unroll`` is a hint)."""
        if stop is None:
            start, stop = 0, start
        if unroll is not None and not isinstance(unroll, (bool, int)):
            raise TypeError(f"expected unroll to be None, a bool or an int factor, got {unroll!r}")
        return RangeSpec(start, stop, step, unroll)

    scalar = staticmethod(memory.scalar)
    assume_divisible = staticmethod(memory.assume_divisible)
    global_view = staticmethod(memory.global_view)
    global_tensor = staticmethod(memory.global_tensor)
    shared_tensor = staticmethod(memory.shared_tensor)
    register_tensor = staticmethod(memory.register_tensor)
    load_global = staticmethod(memory.load_global)
    load_scalar = staticmethod(memory.load_scalar)
    store_global = staticmethod(memory.store_global)
    atomic_add = staticmethod(memory.atomic_add)
    lock_semaphore = staticmethod(memory.lock_semaphore)
    release_semaphore = staticmethod(memory.release_semaphore)
    arrive = staticmethod(memory.arrive)
    wait_prior_grids = staticmethod(memory.wait_prior_grids)
    allow_dependent_grids = staticmethod(memory.allow_dependent_grids)
    load_shared = staticmethod(memory.load_shared)
    store_shared = staticmethod(memory.store_shared)
    copy_async = staticmethod(memory.copy_async)
    copy_async_commit_group = staticmethod(memory.copy_async_commit_group)
    copy_async_wait_group = staticmethod(memory.copy_async_wait_group)
    copy_async_wait_all = staticmethod(memory.copy_async_wait_all)
    free_shared = staticmethod(memory.free_shared)
    sync = staticmethod(memory.sync)
    cluster_sync = staticmethod(memory.cluster_sync)
    exit = staticmethod(memory.exit_block)
    print = staticmethod(memory.print_value)
    annotate_layout = staticmethod(memory.annotate_layout)
    cast = staticmethod(compute.cast)
    view = staticmethod(compute.view)
    dot = staticmethod(compute.dot)
    assign = staticmethod(compute.assign)
    index = staticmethod(compute.index)
    arange = staticmethod(compute.arange)

    def sum(self, tensor, dim: int, keepdim: bool = False):
        """Sum over ``dim``."""
        return compute.reduce("sum", tensor, dim, keepdim)

    def prod(self, tensor, dim: int, keepdim: bool = False):
        """Product over ``dim`` (floats in float32, as ``sum``; e.g. gate · up of a fused projection)."""
        return compute.reduce("prod", tensor, dim, keepdim)

    def max(self, tensor, dim: int, keepdim: bool = False):
        """Maximum over ``dim``."""
        return compute.reduce("max", tensor, dim, keepdim)

    def min(self, tensor, dim: int, keepdim: bool = False):
        """Minimum over ``dim``."""
        return compute.reduce("min", tensor, dim, keepdim)

    def where(self, condition, on_true, on_false, out=None):
        """Element-wise ``on_true if condition else on_false`` with broadcasting."""
        return elementwise("where", (condition, on_true, on_false), out)


def _binary_method(op: str):
    def method(self, lhs, rhs, out=None):
        return elementwise(op, (lhs, rhs), out)

    method.__name__ = method.__qualname__ = {"maximum": "maximum", "minimum": "minimum"}.get(op, op)
    method.__doc__ = f"Element-wise `{op}` with numpy broadcasting; writes into ``out`` when given."
    return method


def _unary_method(op: str):
    def method(self, operand, out=None):
        return elementwise(op, (operand,), out)

    method.__name__ = method.__qualname__ = op
    method.__doc__ = f"Element-wise `{op}`; writes into ``out`` when given."
    return method


# Comparisons as methods too: ``==`` and ``!=`` are element-wise only inside a transpiled ``__call__``; in a
# helper method they compare Python objects, so helpers write ``self.eq(a, b)`` / ``self.ne(a, b)``.
for _op in ("add", "sub", "mul", "div", "mod", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge"):
    setattr(Script, _op, _binary_method(_op))
for _op in ("neg", "abs", "exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos", "tanh"):
    setattr(Script, _op, _unary_method(_op))
del _op
