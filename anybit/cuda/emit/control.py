"""Barriers, exit, printing, async-copy groups, semaphores, arrival counters and grid dependencies."""

from __future__ import annotations

from anybit.cuda.emitter import EmitContext, register_emitter
from anybit.cuda.registers import get_value
from anybit.ir import (
    AllowDependentGridsInst,
    ArriveInst,
    ClusterSyncInst,
    CopyAsyncCommitGroupInst,
    CopyAsyncWaitAllInst,
    CopyAsyncWaitGroupInst,
    ExitInst,
    LockSemaphoreInst,
    PrintInst,
    RegisterTensor,
    ReleaseSemaphoreInst,
    SyncInst,
    WaitPriorGridsInst,
)

#: The first architecture with ``griddepcontrol`` (PTX ISA 7.8, sm_90).
GRID_DEPENDENCY_ARCH = 90


@register_emitter(SyncInst)
def emit_sync(ctx: EmitContext, inst: SyncInst) -> None:
    """``__syncthreads()``."""
    ctx.emit("__syncthreads();")


@register_emitter(ClusterSyncInst)
def emit_cluster_sync(ctx: EmitContext, inst: ClusterSyncInst) -> None:
    """``barrier.cluster.arrive`` (release) then ``barrier.cluster.wait`` (acquire): every thread of the
    cluster's blocks, shared-memory writes before it visible to all of them after it."""
    ctx.emit("__cluster_barrier_arrive();")
    ctx.emit("__cluster_barrier_wait();")


@register_emitter(ExitInst)
def emit_exit(ctx: EmitContext, inst: ExitInst) -> None:
    """``return``: the IR's conditions are block-uniform, so no thread is left waiting at a later barrier."""
    ctx.emit("return;")


@register_emitter(CopyAsyncCommitGroupInst)
def emit_commit(ctx: EmitContext, inst: CopyAsyncCommitGroupInst) -> None:
    """``cp.async.commit_group``."""
    ctx.emit('asm volatile("cp.async.commit_group;" ::: "memory");')


@register_emitter(CopyAsyncWaitGroupInst)
def emit_wait_group(ctx: EmitContext, inst: CopyAsyncWaitGroupInst) -> None:
    """``cp.async.wait_group n``."""
    ctx.emit(f'asm volatile("cp.async.wait_group {int(inst.n)};" ::: "memory");')


@register_emitter(CopyAsyncWaitAllInst)
def emit_wait_all(ctx: EmitContext, inst: CopyAsyncWaitAllInst) -> None:
    """``cp.async.wait_all``."""
    ctx.emit('asm volatile("cp.async.wait_all;" ::: "memory");')


def _semaphore_address(ctx: EmitContext, inst) -> str:
    tensor = inst.counter if isinstance(inst, ArriveInst) else inst.semaphore
    placement = ctx.globals[tensor]
    ctx.require_alignment(placement, 4)
    offset = ctx.expr(tensor.layout.offset(tuple(inst.index)))
    return f"(int*)({placement.pointer} + (long long)({offset}) * 4)"


@register_emitter(LockSemaphoreInst)
def emit_lock_semaphore(ctx: EmitContext, inst: LockSemaphoreInst) -> None:
    """Thread 0 spins on ``ld.acquire.gpu`` until the value matches; the block then meets at a barrier."""
    address = _semaphore_address(ctx, inst)
    with ctx.block("if (tid == 0)"):
        ctx.emit("int s_;")
        with ctx.block("do"):
            ctx.emit(
                f'asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(s_) : "l"({address}) : "memory");'
            )
        ctx.lines[-1] += f" while (s_ != ({ctx.expr(inst.value)}));"
    ctx.emit("__syncthreads();")


@register_emitter(ReleaseSemaphoreInst)
def emit_release_semaphore(ctx: EmitContext, inst: ReleaseSemaphoreInst) -> None:
    """A barrier (all the block's writes issued), then thread 0 stores with ``st.release.gpu``."""
    address = _semaphore_address(ctx, inst)
    ctx.emit("__syncthreads();")
    with ctx.block("if (tid == 0)"):
        ctx.emit(
            f'asm volatile("st.release.gpu.global.b32 [%0], %1;" :: "l"({address}), '
            f'"r"((int)({ctx.expr(inst.value)})) : "memory");'
        )


@register_emitter(ArriveInst)
def emit_arrive(ctx: EmitContext, inst: ArriveInst) -> None:
    """A barrier, thread 0's ``atom.acq_rel.gpu.inc`` (wrapping at count), the old value broadcast through a
    shared int, a barrier. The barriers carry the block's writes into thread 0's release and its acquire out
    to every thread (the same pattern as the semaphores)."""
    address = _semaphore_address(ctx, inst)
    count = ctx.expr(inst.count)
    shared = ctx.fresh("arrival_shared")
    name = ctx.printer.bind(inst.var)
    ctx.emit(f"__shared__ int {shared};")
    ctx.emit("__syncthreads();")
    with ctx.block("if (tid == 0)"):
        ctx.emit("unsigned int old_;")
        ctx.emit(
            f'asm volatile("atom.acq_rel.gpu.global.inc.u32 %0, [%1], %2;" : "=r"(old_) : "l"({address}), '
            f'"r"((unsigned int)(({count}) - 1)) : "memory");'
        )
        ctx.emit(f"{shared} = (int)old_;")
    ctx.emit("__syncthreads();")
    ctx.emit(f"int {name} = {shared};")


@register_emitter(WaitPriorGridsInst)
def emit_wait_prior_grids(ctx: EmitContext, inst: WaitPriorGridsInst) -> None:
    """``griddepcontrol.wait`` from sm_90 on; nothing before, where no kernel is launched as a dependent.

    The ``memory`` clobber keeps the compiler from moving global loads above the wait."""
    if ctx.arch >= GRID_DEPENDENCY_ARCH:
        ctx.emit('asm volatile("griddepcontrol.wait;" ::: "memory");')
        ctx.waits_for_prior_grids = True


@register_emitter(AllowDependentGridsInst)
def emit_allow_dependent_grids(ctx: EmitContext, inst: AllowDependentGridsInst) -> None:
    """``griddepcontrol.launch_dependents`` from sm_90 on; nothing before."""
    if ctx.arch >= GRID_DEPENDENCY_ARCH:
        ctx.emit('asm volatile("griddepcontrol.launch_dependents;" ::: "memory");')


@register_emitter(PrintInst)
def emit_print(ctx: EmitContext, inst: PrintInst) -> None:
    """``printf`` of the message (thread 0) and, for a register tensor, every thread's elements."""
    message = inst.message.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    with ctx.block("if (tid == 0)"):
        ctx.emit(f'printf("{message}\\n");')
    tensor = inst.tensor
    if isinstance(tensor, RegisterTensor):
        array = ctx.register(tensor)
        for i in range(tensor.layout.local_size):
            value = get_value(array, tensor.dtype, i)
            fmt, cast = ("%g", "(double)") if tensor.dtype.is_float else ("%lld", "(long long)")
            ctx.emit(f'printf("{tensor.name} t=%d i={i}: {fmt}\\n", tid, {cast}{value});')
