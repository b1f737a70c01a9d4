"""``dot``: ``mma.sync`` m16n8k16 (f16/bf16 → f32), m16n8k32 (s8/u8 → s32) and m16n8k256 (b1 → s32, the
AND-popcount form: the dot product of 0/1 values) when the operand layouts are
the MMA operand layouts tiled over warps (``anybit.layout.mma``); otherwise a SIMT dot when each thread holds
the rows of ``a`` and columns of ``b`` its outputs need."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anybit.cuda.emit.locality import layout_inverse, local_sources, replace_coordinate
from anybit.cuda.emit.memory import shared_base
from anybit.cuda.emitter import CodegenError, EmitContext, register_emitter, where
from anybit.cuda.registers import compute_ctype, get_value, read_bits, set_value, word_count
from anybit.ir import DotInst, DotSharedInst, RegisterTensor
from anybit.layout import mma as mma_layouts
from anybit.passes.layout_rules import mma_layouts as mma_layouts_for


@dataclass(frozen=True)
class MmaCall:
    """One ``mma.sync``: the local indices of its A, B and C fragments in every thread."""

    a: tuple[int, ...]
    b: tuple[int, ...]
    c: tuple[int, ...]


def _atom(inst: DotInst):
    a, b, c = inst.a.dtype.name, inst.b.dtype.name, inst.c.dtype.name
    if a == b and a in ("float16", "bfloat16") and c == "float32":
        return mma_layouts.MMA_ATOMS[f"m16n8k16.{'f16' if a == 'float16' else 'bf16'}"]
    if a == b and a in ("int8", "uint8") and c == "int32":
        return mma_layouts.MMA_ATOMS[f"m16n8k32.{'s8' if a == 'int8' else 'u8'}"]
    if a == b == "uint1" and c == "int32":
        return mma_layouts.MMA_ATOMS["m16n8k256.b1"]
    return None


def mma_plan(inst: DotInst, num_threads: int) -> tuple[object, list[MmaCall]] | None:
    """The MMA calls every warp makes (identical register positions in every warp), or None. A batched
    dot's warps each take the products of the batches their C fragments hold."""
    atom = _atom(inst)
    if atom is None or num_threads % 32:
        return None
    (m, k), n = inst.a.shape[-2:], inst.b.shape[-1]
    batches = inst.a.shape[0] if inst.a.rank == 3 else 1
    if m % atom.m or n % atom.n or k % atom.k:
        return None
    for tensor in (inst.a, inst.b, inst.c):
        if tensor.layout.num_threads % 32:
            return None
    maps = {name: getattr(atom, name).map_array() for name in ("a", "b", "c")}
    tables = {name: layout_inverse(getattr(inst, name).layout) for name in ("a", "b", "c")}
    threads = {name: getattr(inst, name).layout.num_threads for name in ("a", "b", "c")}
    lanes = np.arange(32)

    def fragment(name: str, warp: int, batch: int, row0: int, col0: int) -> tuple[int, ...] | None:
        """The local indices of the atom's fragment at (row0, col0) of ``batch``, the same in every lane, or
        None."""
        table = tables[name]
        rows = row0 + maps[name][..., 0]  # [lane, fragment element]
        cols = col0 + maps[name][..., 1]
        if rows.max() >= table.shape[-2] or cols.max() >= table.shape[-1]:
            return None
        owners = ((warp * 32 + lanes) % threads[name])[:, None]
        if table.ndim == 4:  # batched: [thread, batch, row, column]
            positions = table.lookup(owners, batch, rows, cols)
        else:
            positions = table.lookup(owners, rows, cols)
        if np.any(positions < 0) or np.any(positions != positions[0]):
            return None
        return tuple(int(j) for j in positions[0])

    per_warp = []
    covered = set()
    for warp in range(num_threads // 32):
        calls = []
        for bi in range(batches):
            for mi in range(m // atom.m):
                for ni in range(n // atom.n):
                    c_frag = fragment("c", warp, bi, mi * atom.m, ni * atom.n)
                    if c_frag is None:
                        continue
                    covered.add((bi, mi, ni))
                    for ki in range(k // atom.k):
                        a_frag = fragment("a", warp, bi, mi * atom.m, ki * atom.k)
                        b_frag = fragment("b", warp, bi, ki * atom.k, ni * atom.n)
                        if a_frag is None or b_frag is None:
                            return None
                        calls.append(MmaCall(a_frag, b_frag, c_frag))
        per_warp.append(calls)
    tiles = batches * (m // atom.m) * (n // atom.n)
    if len(covered) != tiles or any(calls != per_warp[0] for calls in per_warp):
        return None
    return atom, per_warp[0]


def _words(array: str, locals_: tuple[int, ...], nbits: int) -> list[str]:
    per_word = 32 // nbits
    words = []
    for q in range(0, len(locals_), per_word):
        group = locals_[q : q + per_word]
        if group[0] % per_word == 0 and list(group) == list(range(group[0], group[0] + per_word)):
            words.append(f"{array}[{group[0] // per_word}]")
        else:
            parts = [f"({read_bits(array, j * nbits, nbits)} << {e * nbits})" for e, j in enumerate(group)]
            words.append("(" + " | ".join(parts) + ")")
    return words


@register_emitter(DotInst)
def emit_dot(ctx: EmitContext, inst: DotInst) -> None:
    """See the module docstring."""
    out, c = inst.output, inst.c
    target, accumulator = ctx.register(out), ctx.register(c)
    if out is not c:
        if out.layout != c.layout:
            raise CodegenError(
                f"dot{where(inst)}: expected the output layout to equal c's, got {out.layout} and {c.layout}"
            )
        for w in range(word_count(out.dtype, out.layout.local_size)):
            ctx.emit(f"{target}[{w}] = {accumulator}[{w}];")
    plan = mma_plan(inst, ctx.num_threads)
    if plan is not None:
        _emit_mma(ctx, inst, plan[0], plan[1], target)
        return
    _emit_simt(ctx, inst, target)


def _emit_mma(ctx: EmitContext, inst: DotInst, atom, calls: list[MmaCall], target: str) -> None:
    a, b = ctx.register(inst.a), ctx.register(inst.b)
    nbits = inst.a.dtype.nbits
    is_float = inst.c.dtype.is_float
    if atom.k == 16:
        kind = "f16" if inst.a.dtype.name == "float16" else "bf16"
        ptx = f"mma.sync.aligned.m16n8k16.row.col.f32.{kind}.{kind}.f32"
    elif atom.k == 256:
        ptx = "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc"
    else:
        kind = "s8" if inst.a.dtype.name == "int8" else "u8"
        ptx = f"mma.sync.aligned.m16n8k32.row.col.s32.{kind}.{kind}.s32"
    for call in calls:
        a_words = _words(a, call.a, nbits)
        b_words = _words(b, call.b, nbits)
        with ctx.block(""):
            for q, j in enumerate(call.c):
                ctx.emit(
                    f"{'float' if is_float else 'int'} d{q} = "
                    f"{'__uint_as_float' if is_float else '(int)'}({target}[{j}]);"
                )
            na, nb = len(a_words), len(b_words)
            operands = [f"%{k}" for k in range(4 + na + nb)]
            d = ", ".join(operands[:4])
            aa = ", ".join(operands[4 : 4 + na])
            bb = ", ".join(operands[4 + na :])
            constraint = "f" if is_float else "r"
            outs = ", ".join(f'"+{constraint}"(d{q})' for q in range(4))
            ins = ", ".join(f'"r"({w})' for w in a_words + b_words)
            # Not volatile: an mma is a pure function of its registers, so the compiler may interleave it
            # with the ldmatrix of the next k-step (software pipelining) instead of keeping program order.
            ctx.emit(f'asm("{ptx} {{{d}}}, {{{aa}}}, {{{bb}}}, {{{d}}};" : {outs} : {ins});')
            for q, j in enumerate(call.c):
                ctx.emit(f"{target}[{j}] = {'__float_as_uint' if is_float else '(uint32_t)'}(d{q});")


def _emit_simt(ctx: EmitContext, inst: DotInst, target: str) -> None:
    out = inst.output
    if out.rank != 2:
        raise CodegenError(
            f"dot{where(inst)}: a batched dot runs on tensor cores only, and no MMA plan fits its layouts "
            f"(a {inst.a.dtype.name}{list(inst.a.shape)} layout {inst.a.layout}, b layout {inst.b.layout}, "
            f"c layout {inst.c.layout}); expected the layouts inference gives a batched dot"
        )
    k_extent = inst.a.shape[1]
    a_maps, b_maps = [], []
    for k in range(k_extent):
        a_map = local_sources(out.layout, inst.a.layout, ctx.num_threads, index_map=replace_coordinate(1, k))
        b_map = local_sources(out.layout, inst.b.layout, ctx.num_threads, index_map=replace_coordinate(0, k))
        if a_map is None or b_map is None:
            raise CodegenError(
                f"dot{where(inst)}: no tensor-core instruction applies (a {inst.a.dtype.name}"
                f"{list(inst.a.shape)} layout {inst.a.layout}, b layout {inst.b.layout}, c "
                f"{inst.c.dtype.name} layout {inst.c.layout}) and the SIMT fallback needs each thread to "
                "hold the rows of a and columns of b of its outputs; "
                "expected MMA operand layouts (anybit.layout.mma) or replicated operands"
            )
        a_maps.append(a_map)
        b_maps.append(b_map)
    ctype = compute_ctype(out.dtype)
    a, b = ctx.register(inst.a), ctx.register(inst.b)
    for i in range(out.layout.local_size):
        with ctx.block(""):
            ctx.emit(f"{ctype} s_ = {get_value(target, out.dtype, i)};")
            for k in range(k_extent):
                x = f"({ctype}){get_value(a, inst.a.dtype, a_maps[k][i])}"
                y = f"({ctype}){get_value(b, inst.b.dtype, b_maps[k][i])}"
                ctx.emit(f"s_ = fma({x}, {y}, s_);" if ctype in ("float", "double") else f"s_ += {x} * {y};")
            ctx.emit(*set_value(target, out.dtype, i, "s_"))


# ------------------------------------------------------------------------------------- b in shared memory
#: wgmma's matrix-descriptor layout type of an operand without swizzling (bits 62–63 of the descriptor).
_NO_SWIZZLE = 0


def core_matrix_offsets(n: int, element_bytes: int = 2) -> tuple[int, int]:
    """(leading, stride) byte offsets of a K-major [K/8, 8, N] core-matrix operand
    (:func:`~anybit.layout.shared_core_matrices`) in wgmma's descriptor: the next core matrix along K is
    8·N elements on, the next along N 64 elements on."""
    return 8 * n * element_bytes, 64 * element_bytes


def wgmma_calls(inst: DotSharedInst, num_threads: int) -> list[tuple[tuple[int, ...], tuple[int, ...], int]]:
    """Every warp's wgmma calls, the same local positions in every warp: (A fragment, the C fragments of
    all N/8 column tiles in order, k-step), one a 16-row tile of the warp's and k-step. Found as the
    ``mma.sync`` plan of the same dot with b in registers (its A and C fragments are wgmma's per warp)."""
    (m, k), n = inst.a.shape, inst.b.shape[2]
    layouts = mma_layouts_for(m, n, k, inst.a.dtype, num_threads // 32)
    b = RegisterTensor("b_", inst.a.dtype, (k, n), layouts[1])
    plan = mma_plan(DotInst(inst.output, inst.a, b, inst.c), num_threads)
    if plan is None:
        raise CodegenError(f"dot{where(inst)}: no tensor-core plan for a [{m}, {k}] x [{k}, {n}] dot")
    calls = plan[1]
    steps, tiles = k // 16, n // 8
    found = []
    for tile in range(len(calls) // (steps * tiles)):
        for step in range(steps):
            group = [calls[(tile * tiles + column) * steps + step] for column in range(tiles)]
            found.append((group[0].a, tuple(j for call in group for j in call.c), step))
    return found


@register_emitter(DotSharedInst)
def emit_dot_shared(ctx: EmitContext, inst: DotSharedInst) -> None:
    """``wgmma.mma_async`` m64nNk16 with A from registers and B from shared memory (sm_90a), one per 16-row
    tile of each warp and k-step, issued together, then waited for (the dot completes before the next
    instruction, as ``dot`` does)."""
    if ctx.arch < 90:
        raise CodegenError(f"dot{where(inst)}: b in shared memory needs wgmma (sm_90a), got sm_{ctx.arch}")
    out, c, a = inst.output, inst.c, inst.a
    target, accumulator = ctx.register(out), ctx.register(c)
    if out is not c:
        for w in range(word_count(out.dtype, out.layout.local_size)):
            ctx.emit(f"{target}[{w}] = {accumulator}[{w}];")
    n = inst.b.shape[2]
    kind = "f16" if a.dtype.name == "float16" else "bf16"
    ptx = f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{kind}.{kind}"
    calls = wgmma_calls(inst, ctx.num_threads)
    leading, stride = core_matrix_offsets(n)
    registers = ctx.register(a)
    with ctx.block(""):
        address = ctx.fresh("b_smem")
        ctx.emit(f"uint32_t {address} = (uint32_t)__cvta_generic_to_shared({shared_base(ctx, inst.b)});")
        fixed = (leading >> 4) << 16 | (stride >> 4) << 32 | _NO_SWIZZLE << 62
        accumulators = sorted({j for _, fragments, _ in calls for j in fragments})
        names = {j: f"d{j}" for j in accumulators}
        for j in accumulators:
            ctx.emit(f"float {names[j]} = __uint_as_float({target}[{j}]);")
        fence = ", ".join(f'"+f"({names[j]})' for j in accumulators)
        ctx.emit(f'asm volatile("wgmma.fence.sync.aligned;" : {fence} :: "memory");')
        for a_fragment, fragments, step in calls:
            words = _words(registers, a_fragment, a.dtype.nbits)
            outputs = len(fragments)
            d = ", ".join(f"%{q}" for q in range(outputs))
            aa = ", ".join(f"%{outputs + q}" for q in range(len(words)))
            desc, one = f"%{outputs + len(words)}", f"%{outputs + len(words) + 1}"
            # K-step s starts 2·s core matrices (two along K per k16) into the operand: 2·s·leading bytes.
            start = f"((({address} + {2 * step * leading}u) & 0x3FFFFu) >> 4)"
            instruction = f"{ptx} {{{d}}}, {{{aa}}}, {desc}, p, 1, 1, 0;"
            # scale-d, a predicate: 1 (d += a·b, d holding c's values).
            body = "{\\n.reg .pred p;\\nsetp.ne.b32 p, " + one + ", 0;\\n" + instruction + "\\n}"
            outs = ", ".join('"+f"(' + names[j] + ")" for j in fragments)
            ins = [f'"r"({w})' for w in words]
            ins += [f'"l"((unsigned long long)({start}) | {fixed}ull)', '"r"(1)']
            ctx.emit(f'asm volatile("{body}" : {outs} : {", ".join(ins)});')
        ctx.emit('asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");')
        # The results are the registers' only once the group completes: the wait names them (as operands
        # it may change) so the compiler neither reads them earlier nor reuses them before.
        ctx.emit(f'asm volatile("wgmma.wait_group.sync.aligned 0;" : {fence} :: "memory");')
        for j in accumulators:
            ctx.emit(f"{target}[{j}] = __float_as_uint({names[j]});")
