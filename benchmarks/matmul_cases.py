"""What the quantized-matmul benchmark measures: the layer shapes, the weight types, the suites and the byte
model ("bytes that must move") every row's bandwidth is computed from."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

#: Llama-3 linear layers as (name, N, K): N output features, K input features (the weight is [N, K]).
SHAPES: tuple[tuple[str, int, int], ...] = (
    ("8B qkv", 6144, 4096),
    ("8B o", 4096, 4096),
    ("8B gate_up", 28672, 4096),
    ("8B down", 4096, 14336),
    ("70B qkv", 10240, 8192),
    ("70B o", 8192, 8192),
    ("70B gate_up", 57344, 8192),
    ("70B down", 8192, 28672),
)

#: Every weight type of the suite (group size 128, fp16 or bf16 scales).
TYPES: tuple[str, ...] = (
    "uint1",
    "uint2",
    "uint3",
    "uint4",
    "int4",
    "uint5",
    "int6",
    "int8",
    "float4_e2m1",
    "float5_e2m2",
    "float6_e3m2",
    "float6_e2m3",
    "float8_e4m3",
    "float8_e5m2",
)

ACT_DTYPES: tuple[str, ...] = ("float16", "bfloat16")
DECODE_MS: tuple[int, ...] = (1, 4, 16)
PREFILL_MS: tuple[int, ...] = (512, 4096)
#: M values of the crossover sweep (decode kernel vs dequantize + cuBLAS), to place the dispatch threshold.
CROSSOVER_MS: tuple[int, ...] = (1, 4, 8, 16, 24, 32, 64, 128)
GROUP_SIZE = 128

# --quick: 3 shapes × 5 types × M ∈ {1, 16}, fp16, one prefill row, the anchors (< 90 s on an H200).
QUICK_SHAPES = ("8B o", "70B o", "70B gate_up")
QUICK_TYPES = ("uint2", "uint3", "uint4", "int8", "float6_e3m2")
QUICK_DECODE_MS = (1, 16)
QUICK_PREFILL = (("70B o", "uint4", 4096),)
QUICK_CROSSOVER = (("70B o", "uint4"),)
FULL_CROSSOVER = (("70B o", "uint4"), ("70B o", "int8"), ("8B gate_up", "uint2"), ("70B gate_up", "uint4"))


@dataclass(frozen=True)
class Case:
    """One weight (shape × type × activation dtype) and the M values to run it at."""

    suite: str  # "layers" (decode and prefill rows) or "crossover"
    layer: str
    n: int
    k: int
    dtype: str
    act_dtype: str
    ms: tuple[int, ...]


def suite_of(m: int) -> str:
    """The table a row of M rows goes to: "decode" (M ≤ 16) or "prefill"."""
    return "decode" if m <= 16 else "prefill"


def shape_of(layer: str) -> tuple[int, int]:
    """(N, K) of a named layer."""
    for name, n, k in SHAPES:
        if name == layer:
            return n, k
    raise ValueError(f"unknown layer {layer!r}; expected one of {[name for name, _, _ in SHAPES]}")


def layer_cases(quick: bool) -> list[Case]:
    """The decode and prefill suites, one case per weight (decode and prefill M of a weight share it).

    Full: every shape × type × activation dtype at M ∈ {1, 4, 16, 512, 4096}. Quick: 3 shapes × 5 types at
    M ∈ {1, 16} in fp16, one of them also at M = 4096 (the prefill row), and uint4 in bf16 at 8192 × 8192
    (which brings the torch int4 anchor).
    """
    if not quick:
        return [
            Case("layers", layer, n, k, dtype, act, DECODE_MS + PREFILL_MS)
            for act in ACT_DTYPES
            for layer, n, k in SHAPES
            for dtype in TYPES
        ]
    todo = []
    for layer, n, k in SHAPES:
        if layer not in QUICK_SHAPES:
            continue
        for dtype in QUICK_TYPES:
            prefill = tuple(m for name, kind, m in QUICK_PREFILL if (name, kind) == (layer, dtype))
            todo.append(Case("layers", layer, n, k, dtype, "float16", QUICK_DECODE_MS + prefill))
    todo.append(Case("layers", "70B o", *shape_of("70B o"), "uint4", "bfloat16", QUICK_DECODE_MS))
    return todo


def only(todo: list[Case], layers: str = "", types: str = "", ms: str = "", acts: str = "") -> list[Case]:
    """The cases of ``todo`` whose layer, type and activation dtype are in the comma-separated ``layers`` /
    ``types`` / ``acts``, each keeping only the rows M in ``ms`` (empty: all; a case left without rows
    goes). Unknown names are an error that lists the known ones."""
    chosen = []
    choices = (
        (layers, [name for name, _, _ in SHAPES], "layer"),
        (types, TYPES, "dtype"),
        (acts, ACT_DTYPES, "act_dtype"),
    )
    for text, known, field in choices:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"unknown {field} {unknown}; expected names from {list(known)}")
        chosen.append((field, set(names)))
    try:
        rows = {int(value) for value in ms.split(",") if value.strip()}
    except ValueError:
        raise ValueError(f"expected --ms as comma-separated row counts (e.g. 1,16), got {ms!r}") from None
    kept = [c for c in todo if all(not names or getattr(c, field) in names for field, names in chosen)]
    if rows:
        kept = [dataclasses.replace(c, ms=tuple(m for m in c.ms if m in rows)) for c in kept]
    return [c for c in kept if c.ms]


def crossover_cases(quick: bool) -> list[Case]:
    """A few (shape, type) pairs swept over M with both paths, fp16."""
    pairs = QUICK_CROSSOVER if quick else FULL_CROSSOVER
    ms = (8, 16, 32, 64) if quick else CROSSOVER_MS
    return [Case("crossover", layer, *shape_of(layer), dtype, "float16", ms) for layer, dtype in pairs]


def weight_bytes(n: int, k: int, nbits: int) -> int:
    """Packed weight bytes of an [n, k] weight of ``nbits`` bits."""
    return math.ceil(n * k * nbits / 8)


def bytes_moved(
    m: int,
    n: int,
    k: int,
    nbits: int,
    *,
    group_size: int,
    has_zeros: bool,
    act_bytes: int = 2,
    has_bias: bool = False,
) -> int:
    """The bytes a quantized matmul must move at least: weights + scales (+ zeros) + x + y (+ bias)."""
    groups = k // group_size
    total = weight_bytes(n, k, nbits) + groups * n * act_bytes + m * k * act_bytes + m * n * act_bytes
    if has_zeros:
        total += groups * n * act_bytes
    if has_bias:
        total += n * act_bytes
    return total


def dense_bytes(m: int, n: int, k: int, act_bytes: int = 2) -> int:
    """The bytes a dense act-dtype matmul moves at least: weight + x + y."""
    return n * k * act_bytes + m * k * act_bytes + m * n * act_bytes


def flops(m: int, n: int, k: int) -> int:
    """Multiply-adds × 2 of an [m, k] × [k, n] product."""
    return 2 * m * n * k
