"""The driver: a layout-inferred VM program → one CUDA C translation unit (``generate_cuda``)."""

from __future__ import annotations

from anybit.cuda.emit import scratch_bytes
from anybit.cuda.emitter import CodegenError, EmitContext, emitter_for, missing_emitters
from anybit.cuda.expressions import scalar_ctype
from anybit.cuda.kernel_source import CudaKernelSource, KernelParam
from anybit.cuda.prelude import PRELUDE
from anybit.cuda.shared_plan import plan_shared_memory
from anybit.dtypes import uint8
from anybit.ir import (
    AllocateGlobalInst,
    BreakStmt,
    ForStmt,
    IfStmt,
    Instruction,
    Program,
    WhileStmt,
    instructions,
)
from anybit.ir.expr import PointerType, Var, as_expr, assumed_divisibility, constant_value

WORKSPACE_PARAM = "__workspace"


#: The first architecture with thread-block clusters and distributed shared memory.
CLUSTER_ARCH = 90


def _arch_number(arch: str) -> int:
    digits = "".join(c for c in arch.removeprefix("sm_") if c.isdigit())
    if not arch.startswith("sm_") or not digits:
        raise ValueError(f"expected an architecture like 'sm_80' or 'sm_90a', got {arch!r}")
    return int(digits)


def _kernel_name(program: Program) -> str:
    return "ab_" + "".join(c if c.isalnum() or c == "_" else "_" for c in program.name)


def preflight(program: Program) -> None:
    """Raise listing every instruction class of ``program`` without an emitter (all at once)."""
    missing = missing_emitters({type(inst) for inst in instructions(program.body)})
    if missing:
        raise CodegenError(f"no CUDA emitter for: {', '.join(missing)}")


def _workspace(program: Program, ctx: EmitContext) -> tuple[object, bool, object]:
    """(workspace bytes, zero them before every launch, bytes at the front the program keeps zero).

    ``kept_clean`` tensors come first, so the region the kernel keeps zero is a prefix whatever the shapes;
    the runtime zeroes a prefix once and again only when a launch needs a longer one."""
    allocations = [inst for inst in instructions(program.body) if isinstance(inst, AllocateGlobalInst)]
    allocations.sort(key=lambda inst: not inst.kept_clean)  # stable: kept-clean tensors first
    total: object = 0
    clean = False
    clean_bytes: object = 0
    for inst in allocations:
        tensor = inst.output
        elements = 1
        for extent in tensor.shape:
            elements = elements * extent
        size = (as_expr(elements) * tensor.dtype.nbits + 7) // 8
        size = (size + 255) // 256 * 256
        ctx.workspace_offsets[id(inst)] = ctx.expr(total)
        total = as_expr(total) + size
        clean = clean or inst.requires_clean
        if inst.kept_clean:
            clean_bytes = total

    def folded(value: object) -> object:
        constant = constant_value(value)
        return constant if isinstance(constant, int) else value

    return folded(total), clean, folded(clean_bytes)


def generate_cuda(program: Program, *, arch: str = "sm_90a") -> CudaKernelSource:
    """Translate ``program`` (layouts inferred) into a CUDA C translation unit for ``arch``.

    Parameters
    ----------
    program
        The final VM program (every register tensor has a layout).
    arch
        Target architecture, e.g. ``"sm_80"`` or ``"sm_90a"``; ``stmatrix`` is used from sm_90 on.

    Returns
    -------
    CudaKernelSource
        The source, the parameter list, the launch configuration and the alignment the code assumes.
    """
    with assumed_divisibility(program.divisibility):
        return _generate(program, arch)


def _generate(program: Program, arch: str) -> CudaKernelSource:
    preflight(program)
    ctx = EmitContext(arch=_arch_number(arch), num_threads=program.num_threads)
    params: list[KernelParam] = []
    signature: list[str] = []
    for var in program.params:
        name = ctx.printer.bind(var, name="p_" + "".join(c if c.isalnum() else "_" for c in var.name))
        ctx.printer.invariant.add(var)
        if isinstance(var.type, PointerType):
            params.append(KernelParam(var.name, "pointer", var.type.dtype))
            signature.append(f"uint8_t* {name}")
        else:
            params.append(KernelParam(var.name, "scalar", var.type))
            signature.append(f"{scalar_ctype(var.type)} {name}")
            if var.type.kind in ("uint", "bool"):
                ctx.printer.nonnegative.add(var)
    workspace_bytes, workspace_clean, workspace_clean_bytes = _workspace(program, ctx)
    if not (isinstance(workspace_bytes, int) and workspace_bytes == 0):
        params.append(KernelParam(WORKSPACE_PARAM, "pointer", uint8))
        signature.append(f"uint8_t* {WORKSPACE_PARAM}")
    plan = plan_shared_memory(program, scratch_bytes)
    ctx.shared_offsets.update(plan.offsets)
    ctx.scratch_offsets.update(plan.scratch)

    _emit_body(ctx, program.body)
    name = _kernel_name(program)
    body = "\n".join(ctx.lines)
    declarations = "\n".join("  " + line for line in ctx.declarations() + ctx.prologue)
    # A minimum of blocks per SM makes the compiler cap registers a thread so that many blocks fit.
    bounds = f"{program.num_threads}" + (f", {program.min_blocks}" if program.min_blocks else "")
    # Thread-block clusters fixed at compile time: an ordinary launch then runs whole clusters.
    cluster = ""
    if program.cluster != (1, 1, 1):
        if ctx.arch < CLUSTER_ARCH:
            raise ValueError(
                f"thread-block clusters (self.attrs.cluster = {list(program.cluster)}) need sm_90 or later, "
                f"got arch {arch!r}"
            )
        cluster = "__cluster_dims__({}, {}, {}) ".format(*program.cluster)
    source = (
        f"{PRELUDE}\n"
        f'extern "C" __global__ void __launch_bounds__({bounds}) {cluster}'
        f"{name}({', '.join(signature)}) {{\n"
        f"  const int tid = (int)threadIdx.x;\n"
        f"  extern __shared__ __align__(128) uint8_t smem[];\n"
        f"{declarations}\n{body}\n}}\n"
    )
    return CudaKernelSource(
        name=name,
        source=source,
        params=tuple(params),
        grid=tuple(program.grid),
        block_threads=program.num_threads,
        dynamic_shared_bytes=plan.total_bytes,
        workspace_bytes=workspace_bytes,
        workspace_clean=workspace_clean,
        workspace_clean_bytes=workspace_clean_bytes,
        waits_for_prior_grids=ctx.waits_for_prior_grids,
        alignment_requirements=tuple(sorted(_requirement_names(ctx, program).items())),
        divisibility_requirements=tuple((var.name, divisor) for var, divisor in program.divisibility),
        cluster=program.cluster,
    )


def _requirement_names(ctx: EmitContext, program: Program) -> dict[str, int]:
    by_c_name = {ctx.printer.names[var]: var.name for var in program.params}
    return {by_c_name.get(name, name): nbytes for name, nbytes in ctx.alignment_requirements.items()}


def _emit_body(ctx: EmitContext, body: tuple) -> None:
    for stmt in body:
        if isinstance(stmt, Instruction):
            emitter_for(type(stmt))(ctx, stmt)
        elif isinstance(stmt, ForStmt):
            _emit_for(ctx, stmt)
        elif isinstance(stmt, IfStmt):
            with ctx.block(f"if ({ctx.expr(stmt.condition)})"):
                _emit_body(ctx, stmt.then_body)
            if stmt.else_body:
                with ctx.block("else"):
                    _emit_body(ctx, stmt.else_body)
        elif isinstance(stmt, WhileStmt):
            ctx.printer.loop_depth += 1
            try:
                with ctx.block(f"while ({ctx.expr(stmt.condition)})"):
                    _emit_body(ctx, stmt.body)
            finally:
                ctx.printer.loop_depth -= 1
        elif isinstance(stmt, BreakStmt):
            ctx.emit("break;")
        else:
            raise CodegenError(f"unknown statement {type(stmt).__name__}")


def _emit_for(ctx: EmitContext, stmt: ForStmt) -> None:
    step = constant_value(stmt.step)
    start = ctx.expr(stmt.start)
    ctx.printer.loop_depth += 1  # the stop and step are evaluated on every iteration
    try:
        _emit_loop(ctx, stmt, step, start)
    finally:
        ctx.printer.loop_depth -= 1


def _emit_loop(ctx: EmitContext, stmt: ForStmt, step, start: str) -> None:
    stop = ctx.expr(stmt.stop)
    # The variable only grows from its start when the step is proven non-negative.
    increasing = step > 0 if isinstance(step, (int, float)) else ctx.printer.is_nonnegative(stmt.step)
    start_bound = ctx.printer.lower_bound(stmt.start)
    var = stmt.var
    name = ctx.printer.bind(var, nonnegative=increasing and start_bound is not None and start_bound >= 0)
    if increasing and start_bound is not None:
        ctx.printer.lower_bounds[var] = start_bound
    ctype = scalar_ctype(var.dtype)
    compare = ">" if isinstance(step, int) and step < 0 else "<"
    if stmt.unroll is True:
        ctx.emit("#pragma unroll")
    elif isinstance(stmt.unroll, int) and not isinstance(stmt.unroll, bool):
        ctx.emit(f"#pragma unroll {int(stmt.unroll)}")
    header = f"for ({ctype} {name} = {start}; {name} {compare} {stop}; {name} += {ctx.expr(stmt.step)})"
    with ctx.block(header):
        _emit_body(ctx, stmt.body)


__all__ = ["generate_cuda", "preflight", "WORKSPACE_PARAM", "Var"]
