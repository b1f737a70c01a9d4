"""x for the int8 route (:mod:`anybit.kernels.decode_int8`): fixed point, two int8 planes, fragment order.

Each row of x and scale group is rounded to X = round(x · 8191 / m) (m the group's largest |x|), |X| ≤ 8191,
and split exactly into two int8 planes X = 128·H + L; the kernel multiplies both planes by the int8 weights
and adds 128·(H's sum) + (L's sum), an exact int32, scaled by r = m / 8191. The planes are stored in the
int8 operand's logical k order (:mod:`anybit.kernels.int8_order`, per code width) and in fragment order:
each lane's B fragments of a chunk contiguous, so a warp loads them with 16-byte vectors.

Two forms: *rows* (M ≤ 16: x^T as the mma's B [k, rows], 8 or 16 rows, rows past M zero), and *group
columns* (M = 1: chunk c of x in column c mod 8 of B and zeros elsewhere, so the kernel's int32 sums of 8
consecutive scale groups land in 8 columns and are scaled once every 8 chunks). :class:`PrepareX` makes
either on the GPU; :func:`prepare_x` and :func:`prepare_x_columns` are its torch references.
"""

from __future__ import annotations

import functools

import torch

import anybit
from anybit.dtypes import float32, int8, int32
from anybit.kernels.checks import run_kernel
from anybit.kernels.int8_order import k_order, k_strides
from anybit.layout import RegisterLayout, local, reshape, spatial, unsqueeze
from anybit.layout.mma import MMA_M16N8K32_I8_B

#: x's fixed point: |X| ≤ X_MAX, split as 128·H + L with H, L int8.
X_MAX = 8191
#: Rows of x a block multiplies (the mma's n).
ROWS = 8
#: Scale groups a step of the group-columns form multiplies at once (the mma's 8 columns, M = 1).
COLUMN_GROUPS = 8
#: The group-columns form's chunk (its fragment byte order below is for 128 k a chunk).
COLUMN_CHUNK = 128


def x_operand_layout(k_chunk: int, rows: int = ROWS) -> RegisterLayout:
    """One warp's x plane chunk as the int8 B operand: [k_chunk, rows] (x^T: logical k by row of x; rows 8
    or 16, one n8 tile or two)."""
    return local(k_chunk // 32, rows // 8) * MMA_M16N8K32_I8_B


def x_byte_layout(k_chunk: int, rows: int = ROWS) -> RegisterLayout:
    """A warp's bytes of one x plane chunk [1, rows·k_chunk]: each lane's rows·k_chunk / 32 bytes (its B
    fragments in local order) as 16-byte vectors, a vector of every lane after another."""
    per_lane = k_chunk * rows // 32
    return local(1, per_lane // 16).spatial(1, 32).local(1, 16)


def logical_order(k: int, k_chunk: int, nbits: int) -> torch.Tensor:
    """[K] int64: the actual k at each logical position of x (chunk by chunk, :func:`k_order`)."""
    order = torch.from_numpy(k_order(nbits, k_chunk).copy())
    return (torch.arange(k // k_chunk)[:, None] * k_chunk + order[None, :]).reshape(-1)


def fragment_order(planes: torch.Tensor, k_chunk: int) -> torch.Tensor:
    """x planes int8 [2, rows, K] (logical k) → bytes [K / k_chunk, 2, rows·k_chunk]: chunk c of plane p as a
    warp loads it with :func:`x_byte_layout` and views it as :func:`x_operand_layout`."""
    rows, k = planes.shape[1:]
    operand = x_operand_layout(k_chunk, rows).map_array()  # [lane, local, (k, row)]
    places = x_byte_layout(k_chunk, rows).map_array()[..., 1]  # [lane, local]: the byte's place in the chunk
    chunks = planes.view(2, rows, k // k_chunk, k_chunk)
    picked = chunks[:, torch.from_numpy(operand[..., 1]), :, torch.from_numpy(operand[..., 0])]
    # picked: [lane, local, 2, chunks] (advanced indices first)
    out = torch.empty(k // k_chunk, 2, rows * k_chunk, dtype=torch.int8, device=planes.device)
    out[:, :, torch.from_numpy(places).reshape(-1)] = picked.reshape(-1, 2, k // k_chunk).permute(2, 1, 0)
    return out


def fixed_point(
    x: torch.Tensor, group: int, rows: int = ROWS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [M ≤ rows, K] in fixed point per row and scale group, rows past M zero: (planes int8 [2, rows, K], H
    and L of X = 128·H + L, |X| ≤ X_MAX; r [rows, K / group] f64, the group's largest |x| / X_MAX (1 where
    all are zero); X int32 [rows, K]), in actual k order."""
    m, k = x.shape
    xf = torch.zeros(rows, k, dtype=torch.float64, device=x.device)
    xf[:m] = x.double()
    groups = xf.view(rows, k // group, group)
    r = groups.abs().amax(-1, keepdim=True) / X_MAX
    r = torch.where(r > 0, r, torch.ones_like(r))
    fixed = torch.round(groups / r).clamp(-X_MAX, X_MAX).to(torch.int32)
    high = torch.div(fixed + 64, 128, rounding_mode="floor")
    low = fixed - 128 * high
    planes = torch.stack([high.view(rows, k), low.view(rows, k)]).to(torch.int8)
    return planes, r.squeeze(-1), fixed.view(rows, k)


def prepare_x(
    x: torch.Tensor, group: int, nbits: int, rows: int = ROWS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [M ≤ rows, K] as the kernel takes it for ``nbits``-bit codes (chunks of ``group`` k): (the planes of
    :func:`fixed_point` in logical k and fragment order, int8 [K / group, 2, rows·group]; ``inverse``
    [K / group, rows] f32: each group's r; ``sums`` [K / group, rows] f32: r·Σ X over the group)."""
    planes, r, fixed = fixed_point(x, group, rows)
    k = x.shape[1]
    inverse = r.t().contiguous().float()
    sums = (r * fixed.view(rows, k // group, group).sum(-1).double()).t().contiguous().float()
    logical = planes[:, :, logical_order(k, group, nbits).to(x.device)]
    return fragment_order(logical, group), inverse, sums


def prepare_x_columns(
    x: torch.Tensor, group: int, nbits: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [1, K] for the group-columns form: (planes in fragment order as :func:`prepare_x`, of the B operand
    whose column c mod 8 holds chunk c (logical k) and zeros elsewhere; ``inverse`` and ``sums``
    [K / (8·group), 8]: r and r·Σ X of group 8·run + j in column j)."""
    if x.shape[0] != 1:
        raise ValueError(f"the group-columns form takes one row of x (M = 1), got {x.shape[0]}")
    k = x.shape[1]
    planes, r, fixed = fixed_point(x, group)
    logical = planes[:, 0, logical_order(k, group, nbits).to(x.device)]  # [2, K]
    column = (torch.arange(k, device=x.device) // group) % COLUMN_GROUPS  # the column each k feeds
    columns = torch.zeros(2, ROWS, k, dtype=torch.int8, device=x.device)
    for j in range(COLUMN_GROUPS):
        columns[:, j] = torch.where(column == j, logical, torch.zeros_like(logical))
    runs = k // (COLUMN_GROUPS * group)
    inverse = r[0].reshape(runs, COLUMN_GROUPS).float()
    sums = (r[0] * fixed[0].view(k // group, group).sum(-1).double()).reshape(runs, COLUMN_GROUPS).float()
    return fragment_order(columns, group), inverse, sums


#: Byte strides of the group-columns planes [run, chunk u, plane, logical k' digits 64 … 1] (fragment order
#: of column u: lane 4u + t' holds k' = 32·s + 16·h + 4·t' + i at byte 512·(s // 2) + 8·(s % 2) + 4·h + i of
#: its vectors; s = 2·s1 + s0, t' = 2·t1 + t0, i = 2·i1 + i0).
COLUMN_BYTE_STRIDES = (COLUMN_GROUPS * 2048, 2048 + 64, 1024, 512, 8, 4, 32, 16, 2, 1)


def column_planes(k: int, group: int = COLUMN_CHUNK, device: torch.device | str = "cpu") -> torch.Tensor:
    """The group-columns form's planes buffer [K / group, 2, 8·group] int8, zero where :class:`PrepareX`
    writes nothing (the B operand's other columns): allocated once and reused."""
    return torch.zeros((k // group, 2, ROWS * group), dtype=torch.int8, device=device)


def column_diagonal(planes: torch.Tensor) -> torch.Tensor:
    """The bytes of a :func:`column_planes` buffer that :class:`PrepareX` writes (a strided view)."""
    runs = planes.shape[0] // COLUMN_GROUPS
    shape = (runs, COLUMN_GROUPS, 2, *[2] * 7)
    return planes.as_strided(shape, COLUMN_BYTE_STRIDES)


class PrepareX(anybit.Script):
    """x [M ≤ rows, K] as :class:`~anybit.kernels.decode_int8.DecodeInt8` takes it for ``nbits``-bit codes,
    on the GPU: what :func:`prepare_x` (or, with ``group_columns``, :func:`prepare_x_columns`, M = 1)
    computes with torch — X = round(x · 8191 / m) in f32 (m the group's largest |x|: one division a group),
    its two int8 planes in logical k and fragment order, r = m / 8191 and r·Σ X. One warp a chunk of K; with
    ``group_columns`` a block a run of 8 chunks, a warp each, writing only column u of chunk u's B operand
    (the buffer's zeros are :func:`column_planes`')."""

    def __init__(
        self, act, nbits: int, *, k_chunk: int = 128, group_columns: bool = False, rows: int = ROWS
    ) -> None:
        super().__init__()
        if rows not in (8, 16) or (group_columns and rows != 8):
            raise ValueError(f"expected 8 or 16 rows of x (8 with group_columns), got {rows}")
        if group_columns and k_chunk != COLUMN_CHUNK:
            raise ValueError(f"the group-columns form takes chunks of {COLUMN_CHUNK} k, got {k_chunk}")
        self.strides = k_strides(nbits, k_chunk)
        self.act, self.nbits, self.k_chunk, self.group_columns, self.rows = (
            anybit.dtype(act),
            nbits,
            k_chunk,
            group_columns,
            rows,
        )

    def __call__(
        self,
        x: anybit.ptr(self.act),  # noqa: F821 - evaluated with the instance
        planes: anybit.ptr(anybit.int8),
        inverse: anybit.ptr(anybit.float32),
        sums: anybit.ptr(anybit.float32),
        m: anybit.int32,
        k: anybit.int32,
    ):
        kc, rows = self.k_chunk, self.rows
        step = COLUMN_GROUPS * kc if self.group_columns else kc
        self.attrs.blocks = [k // step]
        self.assume_divisible(k, step)
        # x is the previous kernel's output; the decode kernel after this one may start at once (it loads
        # its first weight bytes, then waits for this kernel to complete)
        self.wait_prior_grids()
        self.allow_dependent_grids()
        if self.group_columns:
            self._prepare_columns(x, planes, inverse, sums, k)
            return
        self.attrs.warps = 1
        digits = [2] * len(self.strides)
        operand = unsqueeze(x_operand_layout(kc, rows), 0)
        # x^T with chunk k in logical order (binary digits at their actual strides); rows past M read zeros
        gx = self.global_view(x, self.act, [k // kc, *digits, m], strides=[kc, *self.strides, k])
        loaded = self.load_global(
            gx,
            [self.blockIdx.x, *[0] * len(digits), 0],
            [1, *digits, rows],
            layout=reshape(operand, [1, *digits, rows]),
        )
        tile = self.view(self.cast(loaded, float32), layout=operand)  # [1, kc, rows]
        largest = self.max(abs(tile), 1, keepdim=True)  # [1, 1, rows]
        r, fixed, planes_of_x = self._fixed_point(tile, largest)
        gp = self.global_view(planes, int8, [k // kc, 2, rows * kc])
        byte_layout = unsqueeze(x_byte_layout(kc, rows), 0)
        for plane, values in enumerate(planes_of_x):
            as_bytes = self.view(self.cast(values, int8, layout=operand), int8, byte_layout)
            self.store_global(gp, as_bytes, [self.blockIdx.x, plane, 0])
        total = self.sum(fixed, 1, keepdim=True)
        gr = self.global_view(inverse, float32, [k // kc, 1, rows])
        gc = self.global_view(sums, float32, [k // kc, 1, rows])
        self.store_global(gr, r, [self.blockIdx.x, 0, 0])
        self.store_global(gc, self.cast(total, float32) * r, [self.blockIdx.x, 0, 0])

    def _prepare_columns(self, x, planes, inverse, sums, k):
        """The group-columns form: warp u takes chunk u of the block's run (one scale group), each lane 4
        logical k of it (a register of the B fragment of lane 4u + t'), and stores them at column u's bytes
        (:data:`COLUMN_BYTE_STRIDES`); a group's largest |x| and Σ X stay within the warp."""
        run = COLUMN_GROUPS * COLUMN_CHUNK
        self.attrs.warps = COLUMN_GROUPS
        digits = [2] * 7  # logical k' = 64·s1 + 32·s0 + 16·h + 8·t1 + 4·t0 + 2·i1 + i0
        shape = [1, COLUMN_GROUPS, *digits]
        gx = self.global_view(
            x, self.act, [k // run, COLUMN_GROUPS, *digits], strides=[run, COLUMN_CHUNK, *self.strides]
        )
        layout = spatial(1, COLUMN_GROUPS, 2, 2, 2, 2, 2, 1, 1) * local(1, 1, 1, 1, 1, 1, 1, 2, 2)
        origin = [self.blockIdx.x, *[0] * (len(shape) - 1)]
        tile = self.cast(self.load_global(gx, origin, shape, layout=layout), float32)
        largest = abs(tile)
        for dim in reversed(range(2, len(shape))):  # a chunk's largest |x| [1, 8, 1, …, 1]
            largest = self.max(largest, dim, keepdim=True)
        r, fixed, planes_of_x = self._fixed_point(tile, largest)
        gp = self.global_view(
            planes, int8, [k // run, COLUMN_GROUPS, 2, *digits], strides=COLUMN_BYTE_STRIDES
        )
        for plane, values in enumerate(planes_of_x):
            as_bytes = self.view(self.cast(values, int8, layout=layout), layout=unsqueeze(layout, 2))
            self.store_global(gp, as_bytes, [self.blockIdx.x, 0, plane, *[0] * len(digits)])
        total = fixed
        for dim in reversed(range(2, len(shape))):
            total = self.sum(total, dim, keepdim=True)
        ones = [1] * len(digits)
        gr = self.global_view(inverse, float32, [k // run, COLUMN_GROUPS, *ones], strides=[8, 1, *[0] * 7])
        gc = self.global_view(sums, float32, [k // run, COLUMN_GROUPS, *ones], strides=[8, 1, *[0] * 7])
        self.store_global(gr, r, origin)
        self.store_global(gc, self.cast(total, float32) * r, origin)

    def _fixed_point(self, tile, largest):
        """(r, X, (H, L)) of an f32 tile and its groups' largest |x| m (broadcast): X = round(x · 8191 / m)
        (one division a group, then products: m's own quotient still rounds to 8191), r = m / 8191 (1 where
        a group is all zeros), H = (X + 64) >> 7 and L = X − 128·H."""
        positive = largest > 0.0
        r = self.where(positive, largest * (1.0 / X_MAX), 1.0)
        fixed = self.cast(tile * self.where(positive, X_MAX / largest, 1.0), int32)
        high = (fixed + 64) >> 7
        return r, fixed, (high, fixed - high * 128)


def prepare_x_on_device(
    x: torch.Tensor, group: int, nbits: int, *, group_columns: bool = False, rows: int = ROWS, out=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`prepare_x` (or :func:`prepare_x_columns`) by the :class:`PrepareX` kernel: on CUDA tensors on
    the GPU, on CPU tensors on the interpreter. ``out``: (planes, inverse, sums) to fill (a group-columns
    planes buffer from :func:`column_planes`, reused); without it, new ones, poisoned where the kernel
    writes."""
    m, k = x.shape
    if m > rows or (group_columns and m != 1):
        raise ValueError(
            f"expected x [M ≤ {rows}, K] (M = 1 for the group-columns form), got {list(x.shape)}"
        )
    step = COLUMN_GROUPS * group if group_columns else group
    if k % step:
        raise ValueError(f"expected K a multiple of {step}, got {k}")
    if out is None:
        if group_columns:  # zeros in the other columns, the written bytes poisoned
            planes = column_planes(k, group, x.device)
            column_diagonal(planes).fill_(99)
        else:
            planes = torch.full((k // group, 2, rows * group), 99, dtype=torch.int8, device=x.device)
        inverse = torch.full((k // step, rows), float("nan"), dtype=torch.float32, device=x.device)
        out = (planes, inverse, torch.full_like(inverse, float("nan")))
    else:
        _check_buffers(out, (k // group, 2, rows * group), (k // step, rows), x.device)
    kernel = prepare_kernel_for(x.dtype, nbits, group, group_columns, rows)
    args = (x.contiguous(), *out, m, k)
    run_kernel(kernel, *args)
    return out


def _check_buffers(out, planes_shape: tuple, group_shape: tuple, device) -> None:
    """That ``out`` is (planes int8 ``planes_shape``, inverse and sums f32 ``group_shape``) on ``device``."""
    expected = ((torch.int8, planes_shape), (torch.float32, group_shape), (torch.float32, group_shape))
    if len(out) != 3 or any(
        not isinstance(t, torch.Tensor)
        or t.dtype != dtype
        or tuple(t.shape) != shape
        or t.device != device
        or not t.is_contiguous()
        for t, (dtype, shape) in zip(out, expected, strict=False)
    ):
        got = [(getattr(t, "dtype", type(t).__name__), list(getattr(t, "shape", []))) for t in out]
        raise ValueError(
            f"expected out = (planes int8 {list(planes_shape)}, inverse and sums float32 "
            f"{list(group_shape)}), contiguous on {device}, got {got}; column_planes() makes the "
            "group-columns planes"
        )


@functools.lru_cache(maxsize=32)
def prepare_kernel_for(
    act: torch.dtype, nbits: int, group: int, group_columns: bool, rows: int = ROWS
) -> PrepareX:
    """One :class:`PrepareX` a form (its compiled forms cached with it)."""
    return PrepareX(act, nbits, k_chunk=group, group_columns=group_columns, rows=rows)
