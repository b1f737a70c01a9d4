"""Small VM programs built directly from IR nodes, one per instruction family, for the CUDA backend tests."""

from __future__ import annotations

from anybit import dtypes as dt
from anybit.ir import (
    AllocateGlobalInst,
    AllocateRegisterInst,
    AllocateSharedInst,
    AssignInst,
    AtomicAddGlobalInst,
    BinaryInst,
    CastInst,
    CopyAsyncCommitGroupInst,
    CopyAsyncInst,
    CopyAsyncWaitAllInst,
    CopyAsyncWaitGroupInst,
    DotInst,
    ExitInst,
    ForStmt,
    FreeSharedInst,
    GlobalTensor,
    GlobalViewInst,
    IfStmt,
    LoadGlobalInst,
    LoadSharedInst,
    LockSemaphoreInst,
    PrintInst,
    Program,
    ReduceInst,
    RegisterTensor,
    ReleaseSemaphoreInst,
    SharedSliceInst,
    SharedTensor,
    StoreGlobalInst,
    StoreSharedInst,
    SyncInst,
    UnaryInst,
    ViewInst,
    WhereInst,
)
from anybit.ir.expr import BlockIndex, Const, PointerType, Var, cdiv
from anybit.layout import global_row_major, local, mma, shared_row_major, shared_swizzled, spatial


def pointer(name: str, dtype) -> Var:
    """A pointer parameter."""
    return Var(name, PointerType(dtype))


def scalar(name: str, dtype=dt.int32) -> Var:
    """A scalar parameter."""
    return Var(name, dtype)


def global_view(name: str, ptr: Var, dtype, *shape) -> tuple[GlobalTensor, GlobalViewInst]:
    """A row-major global view of ``ptr``."""
    tensor = GlobalTensor(name, dtype, tuple(shape), global_row_major(*shape))
    return tensor, GlobalViewInst(tensor, ptr)


def reg(name: str, dtype, layout) -> RegisterTensor:
    """A register tensor with ``layout``."""
    return RegisterTensor(name, dtype, layout.shape, layout)


def program(name: str, params, body, *, grid=(1, 1, 1), warps: int = 4) -> Program:
    """A Program with constant or expression grid extents."""
    grid = tuple(Const(g) if isinstance(g, int) else g for g in grid)
    return Program(name, tuple(params), grid, warps, tuple(body))


def elementwise(dtype=dt.float16, *, rows: int = 64, cols: int = 64) -> Program:
    """out[m, :] = relu-ish((x + y) * 2) over a run-time number of rows (bounds-checked, vectorized)."""
    x, y, o, m = pointer("x", dtype), pointer("y", dtype), pointer("out", dtype), scalar("m")
    layout = local(rows // 16, 1).spatial(16, 8).local(1, 8)
    gx, vx = global_view("gx", x, dtype, m, cols)
    gy, vy = global_view("gy", y, dtype, m, cols)
    go, vo = global_view("go", o, dtype, m, cols)
    a, b, c, d, e = (reg(n, dtype, layout) for n in "abcde")
    row = BlockIndex(0) * rows
    body = [
        vx,
        vy,
        vo,
        LoadGlobalInst(a, gx, (row, 0)),
        LoadGlobalInst(b, gy, (row, 0)),
        BinaryInst(c, "add", a, b),
        BinaryInst(d, "mul", c, Const(2.0, dt.float32)),
        UnaryInst(e, "neg", d),
        StoreGlobalInst(go, e, (row, 0)),
    ]
    return program("elementwise", [x, y, o, m], body, grid=(cdiv(m, rows), 1, 1))


def matmul(dtype=dt.float16, *, m: int = 16, n: int = 32, k: int = 64) -> Program:
    """C[m, n] = A[m, k] @ B[k, n] for one block: cp.async → shared (swizzled A) → ldmatrix → mma.sync."""
    acc_dtype = dt.float32 if dtype.is_float else dt.int32
    pa, pb, pc = pointer("a", dtype), pointer("b", dtype), pointer("c", acc_dtype)
    ga, va = global_view("ga", pa, dtype, m, k)
    gb, vb = global_view("gb", pb, dtype, k, n)
    gc, vc = global_view("gc", pc, acc_dtype, m, n)
    atom = mma.MMA_ATOMS["m16n8k16.f16" if dtype.is_float else "m16n8k32.s8"]
    warps_n = n // 8
    a_layout = atom.a * local(1, k // atom.k)
    a_layout = local(1, k // atom.k) * atom.a
    a_layout = spatial(1, 1)  # placeholder replaced below
    del a_layout
    a_reg = reg("ra", dtype, _replicated(local(1, k // atom.k) * atom.a, warps_n))
    b_reg = reg("rb", dtype, local(k // atom.k, 1) * spatial(1, warps_n) * atom.b)
    c_layout = spatial(1, warps_n) * atom.c
    c_reg, d_reg = reg("rc", acc_dtype, c_layout), reg("rd", acc_dtype, c_layout)
    sa = SharedTensor("sa", dtype, (m, k), shared_swizzled((m, k), dtype.nbits // 8))
    sb = SharedTensor("sb", dtype, (k, n), shared_row_major(k, n))
    body = [
        va,
        vb,
        vc,
        AllocateSharedInst(sa),
        AllocateSharedInst(sb),
        CopyAsyncInst(sa, ga, (0, 0), evict="evict_first"),
        CopyAsyncInst(sb, gb, (0, 0)),
        CopyAsyncCommitGroupInst(),
        CopyAsyncWaitGroupInst(0),
        SyncInst(),
        LoadSharedInst(a_reg, sa, (0, 0)),
        LoadSharedInst(b_reg, sb, (0, 0)),
        AllocateRegisterInst(c_reg, 0),
        DotInst(d_reg, a_reg, b_reg, c_reg),
        StoreGlobalInst(gc, d_reg, (0, 0)),
        FreeSharedInst(sa),
        FreeSharedInst(sb),
    ]
    return program(f"matmul_{dtype.name}", [pa, pb, pc], body, warps=warps_n)


def _replicated(layout, copies: int):
    """``layout`` held by ``copies`` groups of threads (a replicated mode above it)."""
    from anybit.layout import RegisterLayout

    return RegisterLayout(
        layout.shape, layout.mode_shape, (-copies, *layout.spatial_modes), layout.local_modes
    )


def quantized_dequant(dtype=dt.int6, target=dt.float16) -> Program:
    """Load packed weights as bytes, view them as ``dtype``, cast to ``target`` (fast path), store."""
    count = 8  # elements per thread
    bytes_per_thread = count * dtype.nbits // 8
    pw, po = pointer("w", dt.uint8), pointer("out", target)
    gw, vw = global_view("gw", pw, dt.uint8, 128 * bytes_per_thread)
    go, vo = global_view("go", po, target, 128 * count)
    raw = reg("raw", dt.uint8, spatial(128).local(bytes_per_thread))
    q = reg("q", dtype, spatial(128).local(count))
    f = reg("f", target, spatial(128).local(count))
    body = [
        vw,
        vo,
        LoadGlobalInst(raw, gw, (0,)),
        ViewInst(q, raw),
        CastInst(f, q),
        StoreGlobalInst(go, f, (0,)),
    ]
    return program(f"dequant_{dtype.name}_{target.name}", [pw, po], body)


#: Bit-plane widths (low plane first) of the planar test programs, by code width.
PLANE_WIDTHS = {3: (2, 1), 5: (4, 1), 6: (4, 2)}


def plane_layouts(dtype, operand: str = "a"):
    """The packed layouts of one 64×16 warp tile's planes for codes of ``dtype`` (the decode kernel's)."""
    from anybit.kernels.layout import PackedLayout

    return [
        PackedLayout(dt.dtype(f"uint{w}"), 16, 64, 64, 64, 16, w * 4, operand=operand)
        for w in PLANE_WIDTHS[dtype.nbits]
    ]


def planar_dequant(dtype=dt.int6, target=dt.float16, operand: str = "a", stride: int = 1) -> Program:
    """One warp tile's codes stored as two bit planes (the packing's plane layouts: 2- and 4-bit planes
    pair-interleaved): load each plane's bytes, view them as its codes, cast both planes at once into the
    tensor-core tile, store. ``stride`` > 1: the 2-bit top plane's bits that far apart, viewed as uint1
    [..., 2] in the spread layout (``PackedLayout.top_plane_stride``)."""
    from anybit.kernels.layout import spread_bits_layout

    planes = plane_layouts(dtype, operand)
    params, body, codes = [], [], []
    for index, plane in enumerate(planes):
        pointer_var = pointer(f"plane{index}", dt.uint8)
        view_tensor, view_inst = global_view(f"g{index}", pointer_var, dt.uint8, plane.tile_bytes)
        raw = reg(f"raw{index}", dt.uint8, plane.byte_layout)
        if index == len(planes) - 1 and stride > 1:
            code = reg(f"bits{index}", dt.uint1, spread_bits_layout(plane.code_layout, plane.nbits, stride))
        else:
            code = reg(f"codes{index}", plane.dtype, plane.code_layout)
        params.append(pointer_var)
        body += [view_inst, LoadGlobalInst(raw, view_tensor, (0,)), ViewInst(code, raw)]
        codes.append(code)
    tile = planes[0].tile_layout
    po = pointer("out", target)
    go, vo = global_view("go", po, target, *tile.shape)
    out = reg("out", target, tile)
    body += [vo, CastInst(out, codes[0], high=codes[1], code_dtype=dtype), StoreGlobalInst(go, out, (0, 0))]
    suffix = f"_spread{stride}" if stride > 1 else ""
    return program(f"planar_{dtype.name}_{target.name}_{operand}{suffix}", [*params, po], body, warps=1)


def reductions(dtype=dt.float32) -> Program:
    """Row sums within a warp (shuffles) and column maxima across warps (shared scratch); where/assign."""
    px, py, pz = pointer("x", dtype), pointer("y", dtype), pointer("z", dtype)
    gx, vx = global_view("gx", px, dtype, 32, 32)
    gy, vy = global_view("gy", py, dtype, 32, 1)
    gz, vz = global_view("gz", pz, dtype, 1, 32)
    layout = local(8, 1).spatial(4, 8).local(1, 4)
    x = reg("x", dtype, layout)
    row_sum = reg("row_sum", dtype, layout.reduce([1], keepdims=True))
    col_max = reg("col_max", dtype, layout.reduce([0], keepdims=True))
    positive = reg("positive", dt.boolean, layout)
    clipped = reg("clipped", dtype, layout)
    other = reg("other", dtype, spatial(32, 4).local(1, 8))
    body = [
        vx,
        vy,
        vz,
        LoadGlobalInst(x, gx, (0, 0)),
        BinaryInst(positive, "gt", x, Const(0.0, dt.float32)),
        WhereInst(clipped, positive, x, Const(0.0, dt.float32)),
        ReduceInst(row_sum, "sum", clipped, 1, True),
        ReduceInst(col_max, "max", x, 0, True),
        AssignInst(other, x),
        StoreGlobalInst(gy, row_sum, (0, 0)),
        StoreGlobalInst(gz, col_max, (0, 0)),
        StoreGlobalInst(gx, other, (0, 0)),
    ]
    return program("reductions", [px, py, pz], body, warps=1)


def products(dtype=dt.float32) -> Program:
    """Row products within a warp (shuffles), column products within each thread (a local dimension)."""
    px, py, pz = pointer("x", dtype), pointer("y", dtype), pointer("z", dtype)
    gx, vx = global_view("gx", px, dtype, 32, 32)
    gy, vy = global_view("gy", py, dtype, 32, 1)
    gz, vz = global_view("gz", pz, dtype, 1, 32)
    layout = spatial(4, 8).local(8, 4)
    x = reg("x", dtype, layout)
    row_prod = reg("row_prod", dtype, layout.reduce([1], keepdims=True))
    col_prod = reg("col_prod", dtype, layout.reduce([0], keepdims=True))
    body = [
        vx,
        vy,
        vz,
        LoadGlobalInst(x, gx, (0, 0)),
        ReduceInst(row_prod, "prod", x, 1, True),
        ReduceInst(col_prod, "prod", x, 0, True),
        StoreGlobalInst(gy, row_prod, (0, 0)),
        StoreGlobalInst(gz, col_prod, (0, 0)),
    ]
    return program("products", [px, py, pz], body, warps=1)


def block_reductions(dtype=dt.float32) -> Program:
    """Reductions across the warps of a block: lanes and warps along a row (butterflies, then each warp's
    partial through shared memory), warps along a column, and an int32 minimum of a whole row."""
    px, py, pz = pointer("x", dtype), pointer("y", dtype), pointer("z", dtype)
    pv, pw = pointer("v", dt.int32), pointer("w", dt.int32)
    gx, vx = global_view("gx", px, dtype, 4, 512)
    gv, vv = global_view("gv", pv, dt.int32, 4, 512)
    gy, vy = global_view("gy", py, dtype, 4, 2)
    gz, vz = global_view("gz", pz, dtype, 1, 512)
    gw, vw = global_view("gw", pw, dt.int32, 4, 1)
    layout = spatial(2, 64).local(2, 8)
    x = reg("x", dtype, layout)
    row_sum = reg("row_sum", dtype, layout.reduce([1], keepdims=True))
    row_max = reg("row_max", dtype, layout.reduce([1], keepdims=True))
    col_max = reg("col_max", dtype, layout.reduce([0], keepdims=True))
    ints = reg("ints", dt.int32, layout)
    row_min = reg("row_min", dt.int32, layout.reduce([1], keepdims=True))
    body = [
        vx,
        vy,
        vz,
        vv,
        vw,
        LoadGlobalInst(x, gx, (0, 0)),
        LoadGlobalInst(ints, gv, (0, 0)),
        ReduceInst(row_sum, "sum", x, 1, True),
        ReduceInst(row_max, "max", x, 1, True),
        ReduceInst(col_max, "max", x, 0, True),
        ReduceInst(row_min, "min", ints, 1, True),
        StoreGlobalInst(gy, row_sum, (0, 0)),
        StoreGlobalInst(gy, row_max, (0, 1)),
        StoreGlobalInst(gz, col_max, (0, 0)),
        StoreGlobalInst(gw, row_min, (0, 0)),
    ]
    return program("block_reductions", [px, py, pz, pv, pw], body, warps=4)


def split_k(dtype=dt.float32) -> Program:
    """Workspace, atomics, semaphores, loops, ifs, print and exit."""
    po, n = pointer("out", dtype), scalar("n")
    go, vo = global_view("go", po, dtype, n)
    workspace = GlobalTensor("sem", dt.int32, (8,), global_row_major(8))
    layout = spatial(128).local(2)
    acc = reg("acc", dtype, layout)
    i = Var("i", dt.int32)
    loop = ForStmt(i, Const(0), Const(4), Const(1), (AtomicAddGlobalInst(go, acc, (i * 256,)),), unroll=True)
    body = [
        vo,
        AllocateGlobalInst(workspace, requires_clean=True),
        AllocateRegisterInst(acc, 1.0),
        IfStmt(BlockIndex(0) > 7, (ExitInst(),)),
        LockSemaphoreInst(workspace, (BlockIndex(0),), Const(0)),
        loop,
        ReleaseSemaphoreInst(workspace, (BlockIndex(0),), Const(1)),
        PrintInst("done", acc),
    ]
    return program("split_k", [po, n], body, grid=(8, 1, 1))


def shared_roundtrip(dtype=dt.float16) -> Program:
    """Store a register tile to a shared slice (stmatrix on sm_90) and load it back in another layout."""
    po = pointer("out", dtype)
    go, vo = global_view("go", po, dtype, 16, 16)
    staged = SharedTensor("staged", dtype, (2, 16, 16), shared_row_major(2, 16, 16))
    stage = SharedTensor("stage", dtype, (16, 16), shared_row_major(16, 16))
    a = reg("a", dtype, mma.LDMATRIX_X4)
    b = reg("b", dtype, spatial(16, 2).local(1, 8))
    body = [
        vo,
        AllocateSharedInst(staged),
        SharedSliceInst(stage, staged, (BlockIndex(0) % 2,)),
        AllocateRegisterInst(a, 1.5),
        StoreSharedInst(stage, a, (0, 0)),
        SyncInst(),
        LoadSharedInst(b, stage, (0, 0)),
        StoreGlobalInst(go, b, (0, 0)),
        CopyAsyncWaitAllInst(),
    ]
    return program("shared_roundtrip", [po], body, warps=1)


def all_programs() -> dict[str, Program]:
    """Every test program by name."""
    return {
        "elementwise": elementwise(),
        "matmul_f16": matmul(dt.float16),
        "matmul_bf16": matmul(dt.bfloat16),
        "matmul_i8": matmul(dt.int8, k=64),
        "dequant_int6_f16": quantized_dequant(dt.int6, dt.float16),
        "dequant_uint4_bf16": quantized_dequant(dt.uint4, dt.bfloat16),
        "dequant_e4m3_f16": quantized_dequant(dt.float8_e4m3, dt.float16),
        "reductions": reductions(),
        "products": products(),
        "block_reductions": block_reductions(),
        "planar_int6_f16": planar_dequant(dt.int6, dt.float16),
        "planar_uint5_bf16": planar_dequant(dt.uint5, dt.bfloat16),
        "planar_uint3_f16_b": planar_dequant(dt.uint3, dt.float16, "b"),
        "planar_e3m2_f16": planar_dequant(dt.float6_e3m2, dt.float16),
        "planar_e2m3_bf16": planar_dequant(dt.float6_e2m3, dt.bfloat16),
        "planar_e2m2_f16_b": planar_dequant(dt.float5_e2m2, dt.float16, "b"),
        "planar_e2m3_f16_spread": planar_dequant(dt.float6_e2m3, dt.float16, stride=4),
        "planar_int6_bf16_b_spread": planar_dequant(dt.int6, dt.bfloat16, "b", stride=2),
        "split_k": split_k(),
        "shared_roundtrip": shared_roundtrip(),
    }


__all__ = [name for name in dir() if not name.startswith("_")]
