"""The decode kernel's configuration per (M bucket, N, K, weight type, GPU), through the autotune cache.

:class:`TunedDecodeMatmul` is :class:`~anybit.kernels.DecodeMatmul` with its schedule space (warps × stages
× split-K) declared for :func:`anybit.autotune`. One :class:`DecodeTuner` exists per kernel specialisation
(weight type, tile shape, scale grouping, activation dtype, zeros, bias); its shape bucket is (M bucket, N,
K), so the runtime's tuning cache keys a winner by (specialisation, M bucket, N, K, GPU), and
``anybit.runtime.autotune.export_tuning`` / ``load_tuning`` ship and pin them.

N and K are run-time arguments of the kernel, so one specialisation compiles each configuration once for
every shape: :class:`DecodeTuner` keeps each configuration's program and CUDA source, and later tunings (new
shapes, new M buckets) only time. Per shape it skips, without building them, the configurations whose block
does not divide N and the split-K values :func:`~anybit.kernels.launch.useful_split` rejects (runs shorter
than the pipeline, or a grid already large without them). :func:`precompile_decode` compiles many
specialisations up front with NVRTC in a thread pool (the benchmark's warm-up).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import torch

import anybit
from anybit.kernels import DecodeMatmul, PackedLayout
from anybit.kernels.decode import MAX_CLUSTER_SPLIT
from anybit.kernels.decode_transposed import DecodeMatmulTransposed
from anybit.kernels.launch import TARGET_BLOCKS, kernel_layout, useful_split
from anybit.kernels.layout import MAX_BYTES_PER_THREAD
from anybit.runtime.autotune import Candidate, TunedKernel, bucket_text

logger = logging.getLogger("anybit")

#: Warps per block (the block covers warps · n_per_warp output columns): the first is the untuned default.
#: 7 spreads the grids of N = 14336 · 2^i more evenly over the H200's 132 SMs (57344 / 224 = 256 blocks, not
#: 224): int4 and uint4 57344×8192 at M = 1 took 2.4–2.6% less time than with the best power of two
#: (2026-11-28, `benchmarks/decode_probe.py --warps`); shapes whose N it does not divide never try it.
WARPS: tuple[int, ...] = (4, 2, 8, 7)
#: copy_async pipeline stages (chunks of K in flight + 1). Warp tiles of 32–64 B per thread carry enough bytes
#: per stage that 4 stages hold enough in flight: on the H200 (2026-11-28, every configuration of seven
#: Llama shapes timed) 6 stages won one shape of seven, by 3%, and 3 stages none; one value halves the builds.
STAGES: tuple[int, ...] = (4,)
#: Blocks along K (split-K, reduced in f32): more blocks when wide warp tiles leave few block columns.
SPLITS: tuple[int, ...] = (1, 2, 4, 8, 16)
#: The transposed kernel at 16 rows also tries each 7- and 8-warp configuration with 3 stages and registers
#: capped for 3 blocks an SM (``min_blocks``): 24 resident warps where shared memory (4 stages: 86 KB) and
#: registers (82) otherwise fit 16, and the 16-row loop is latency-bound (Nsight Compute: 25% occupancy,
#: issue slots 47% busy, DRAM 66%). On the H200 (2026-11-28, ``decode_probe.py --m 16 --stages 3,4
#: --sm-warps 0,24``) int4 57344×8192 at M = 16 took 77.7 µs against 83.5; 8192×28672 and float6_e3m2 gained
#: nothing, so the variants join the space instead of replacing it.
OCCUPANCY_VARIANT: dict = {"stages": 3, "min_blocks": 3}
OCCUPANCY_WARPS: tuple[int, ...] = (7, 8)
#: The transposed kernel also tries each configuration with shorter rings where the weight's warp tiles are
#: wide (more than MAX_BYTES_PER_THREAD a thread) and its codes below 8 bits: a wide tile's stage carries
#: twice the bytes (at 8 warps 34 KB with 8 rows of x, 36 KB with 16), so the default 4 stages fit one block
#: an SM, 3 stages two and 2 stages three. On the H200 (2026-11-29, ``decode_probe.py``, fp16, best
#: configuration by kernel time): at M = 1 (``--stages 3,4,5,6``) uint5 and both float6 types took 0.4% more
#: to 4.6% less with 3 stages than with 4, less on five of their six large weights (the 64-byte tiles of
#: float4_e2m1 and int4 gained nothing); at M = 16 (``--stages 2,3,4``) int6 8192×28672 took 51.9 µs with 2
#: stages and 53.0 with 3 against 61.1 with 4 (the space then picked 3 stages capped for 3 blocks: 58.3 by
#: events where 2 stages took 55.7), float6_e3m2 57344×8192 110.2 and 111.3 against 112.7; in the suite the
#: wide 16-row rows then took a median 0.98 of their time (uint5 and int6 on 57344×8192 0.93). 2 stages at 8
#: rows, three blocks an SM as at 16: the tuner's row picked it for 4 of 20 wide weights at M = 1, level with
#: the space before by kernel time.
WIDE_TILE_RINGS: dict[int, tuple[dict, ...]] = {
    8: ({"stages": 3}, {"stages": 2}),
    16: ({"stages": 2}, {"stages": 3}),
}
#: The transposed kernel at 16 rows also tries each configuration (but the occupancy variants) with the weight
#: bytes loaded straight into registers a chunk ahead (``weights_in_registers``: no shared ring for them) for
#: codes below 8 bits. On the H200 (2026-11-30, ``decode_probe.py --m 16 --warps 4,8 --weights-in-registers``,
#: fp16, best configuration by kernel time with and without): int4 57344×8192 77.5 against 80.9 µs,
#: 8192×28672 37.9 against 40.4; float4_e2m1 8192×28672 40.2 against 43.2; uint4 0.96–0.99, int6 (64-byte
#: tiles) 0.99–1.04. At 8 rows it was mixed for 4-bit tiles (int4 0.97 and 1.06 on the two large shapes)
#: and 0.93–0.98 for the wide 5- and 6-bit tiles (float6_e3m2 8192×28672 44.5 against 48.0 µs, uint5 42.7
#: against 44.8), so at 8 rows it is tried for wide tiles (:func:`takes_wide_tile_ring`) only.
REGISTER_WEIGHT_ROWS = 16
#: 4-bit codes stored whole without zero points (int4, float4_e2m1) also try each 16-row configuration with
#: the weights in registers loaded late (``late_weight_loads``: after the conversion, one chunk's bytes held,
#: 78 registers for int4 instead of 102). On the H200 (2026-11-30, M = 16, best by kernel time): int4
#: 8192×28672 36.9 µs against 38.3 loaded early, float4_e2m1 39.7 against 41.3; int4 57344×8192 79.3
#: against 77.3. Types with zero points or bit planes were 2–14% slower (nvcc hoists their loads anyway).
LATE_LOAD_BITS = 4
#: Weights of at most this many elements (N · K; 8192 × 8192 and the Llama-3-8B projections below it) spend
#: a third of a call in a launch's fixed costs (the ring's fill, split-K's partial sums), so the transposed
#: kernel's tuner also tries, for them only, every configuration with :data:`SMALL_WEIGHT_RING` and every
#: configuration of split 2 with its split-K reduced in a thread-block cluster (no partial sums through
#: L2). On the H200 (2026-11-29, ``decode_probe.py --shapes 8192x8192 --stages 3,4 --cluster``, fp16, best
#: in the tuner's row against the space without them): int4 11.89 → 11.20 µs a launch at M = 1 (its own
#: kernel time 13.09 → 11.78: 4 warps along K, 3 stages, split 2 in a cluster), float4_e2m1 13.08 → 12.72,
#: int4 at M = 16 16.11 → 15.55, int6 20.69 → 19.85, float6_e3m2 21.75 → 20.76, float5_e2m2 19.22 →
#: 17.87; a cluster of 4 or more splits was slower than its splits through L2 (median 1.02–1.30).
SMALL_WEIGHT_ELEMENTS = 1 << 26
SMALL_WEIGHT_RING: dict = {"stages": 3}
SMALL_WEIGHT_CLUSTER_SPLIT = 2
#: The configuration keys of the opt-in variants (the environment variables below add them to the space).
OPT_IN_KEYS = ("split_in_cluster", "bias_after_dot")
#: The environment variable that adds split-K reduced in a thread-block cluster to the space
#: (:func:`tunes_split_in_cluster`).
TUNE_SPLIT_IN_CLUSTER_VARIABLE = "ANYBIT_TUNE_SPLIT_IN_CLUSTER"
#: The environment variable that adds the weights' bias taken off by a second dot to the space
#: (:func:`tunes_bias_after_dot`).
TUNE_BIAS_AFTER_DOT_VARIABLE = "ANYBIT_TUNE_BIAS_AFTER_DOT"
#: Tuning tries split-K until the grid has this many blocks (twice the default's target).
TUNING_TARGET_BLOCKS = 2 * TARGET_BLOCKS
#: Milliseconds of timed runs per candidate while tuning (5 to 100 runs, the L2 flushed before each).
TUNING_BUDGET_MS = 10.0
#: A shape with more than STAGED_ABOVE configurations to try (the wide tiles' spaces with their shorter rings:
#: 156 at 8 rows, 167 at 16) is tuned in two rounds: first one ring depth of each family (a configuration
#: but its ``stages``), :data:`STAGED_FIRST_STAGES` where the family has it; then the other depths of the
#: :data:`STAGED_FAMILIES` fastest families. Building is most of a first call's time (NVRTC and tracing,
#: ~0.45 s a configuration a core): on a 16-core H200 host (2026-11-30) float6_e2m3 8192×28672 at M = 16
#: took 26 s, 22 of them building 167 configurations in 16 worker processes, 3.5 timing them; replayed on
#: every configuration's timing of four such shapes the two rounds picked the best each time
#: (``benchmarks/first_call.py``).
#: ``ANYBIT_TUNE_EXHAUSTIVE=1`` times every configuration in one round (offline tuning: the benchmarks).
STAGED_ABOVE = 64
STAGED_FIRST_STAGES = 3
STAGED_FAMILIES = 4
#: The environment variable that makes the decode tuner time every configuration (no staged rounds).
TUNE_EXHAUSTIVE_VARIABLE = "ANYBIT_TUNE_EXHAUSTIVE"


def tunes_split_in_cluster() -> bool:
    """Whether ``ANYBIT_TUNE_SPLIT_IN_CLUSTER=1`` asks the decode tuner to try each configuration of 2 to 16
    splits with its split-K reduced in a thread-block cluster as well (sm_90; ``split_in_cluster``). Off by
    default: it adds a third to a half of a shape's candidates, and on the H200 (2026-11-29) the int4
    Llama-3-8B projections' winners with it came within 1% of the best without it."""
    return os.environ.get(TUNE_SPLIT_IN_CLUSTER_VARIABLE, "0") == "1"


def tunes_exhaustively() -> bool:
    """Whether ``ANYBIT_TUNE_EXHAUSTIVE=1`` asks the decode tuner to time every configuration of a large
    space in one round instead of staging it (:data:`STAGED_ABOVE`)."""
    return os.environ.get(TUNE_EXHAUSTIVE_VARIABLE, "0") == "1"


def ring_family(config: dict) -> str:
    """A configuration's family in staged tuning: the configuration but its ring depth (``stages``)."""
    return bucket_text({key: value for key, value in config.items() if key != "stages"})


def tunes_bias_after_dot() -> bool:
    """Whether ``ANYBIT_TUNE_BIAS_AFTER_DOT=1`` asks the decode tuner to try each configuration of 8 rows
    with the weights' conversion bias taken off by a second dot as well (``bias_after_dot``; weights of
    integer codes stored whole, their zero points then off after the dot too). Off by default: on the H200
    (2026-11-29) it timed within ±2% of the same configurations without it (int4 Llama-3-8B projections,
    16 in a row)."""
    return os.environ.get(TUNE_BIAS_AFTER_DOT_VARIABLE, "0") == "1"


def takes_wide_tile_ring(layout: PackedLayout) -> bool:
    """Whether the decode tuner also tries every configuration with the shorter rings of
    :data:`WIDE_TILE_RINGS` (per rows of x): warp tiles
    wider than :data:`~anybit.kernels.layout.MAX_BYTES_PER_THREAD` of codes below 8 bits, packed as A."""
    wide = layout.bytes_per_thread > MAX_BYTES_PER_THREAD
    return layout.operand == "a" and wide and layout.dtype.nbits < 8


def with_split_in_cluster(configs: list[dict]) -> list[dict]:
    """``configs`` and, after them, each of 2 to MAX_CLUSTER_SPLIT splits again with ``split_in_cluster``."""
    clustered = [
        dict(c, split_in_cluster=True)
        for c in configs
        if 1 < c.get("split", 1) <= MAX_CLUSTER_SPLIT and not c.get("split_in_cluster")
    ]
    return configs + [c for c in clustered if c not in configs]


def m_bucket(m: int) -> int:
    """The M bucket a tuned configuration is shared by: the next power of two (1, 2, 4, 8, 16, 32, ...)."""
    return 1 if m <= 1 else 1 << (m - 1).bit_length()


#: The decode kernels' launch arguments, in order.
DECODE_PARAMETERS = ("x", "weight", "scales", "zeros", "bias", "y", "m", "n", "k")


def decode_bucket(args: tuple) -> list[int]:
    """Tuning bucket of a decode launch ``(x, weight, scales, zeros, bias, y, m, n, k)``: [M bucket, N, K]."""
    return [m_bucket(int(args[6])), int(args[7]), int(args[8])]


@functools.cache
def kernel_revision() -> str:
    """A hash of the decode kernels' source and of the code conversions they inline: stored tunings of an
    older kernel, or of the same kernel with other conversions, are not reused."""
    from anybit.cuda import conversions
    from anybit.ops import row_timing

    # The timing method is part of it: configurations tuned alone are not the ones tuned in a row. So are
    # the conversions: a configuration's speed follows its loop's instructions, most of them theirs.
    source = inspect.getsource(DecodeMatmul) + inspect.getsource(DecodeMatmulTransposed)
    source += inspect.getsource(conversions)
    source += f"row timing: {row_timing.ROW_LAUNCHES} launches, {row_timing.ROW_L2_MULTIPLE} L2"
    return hashlib.sha256(source.encode()).hexdigest()[:16]


@anybit.autotune("warps", WARPS)
@anybit.autotune("stages", STAGES)
@anybit.autotune("split", SPLITS, bucket=decode_bucket)
class TunedDecodeMatmul(DecodeMatmul):
    """:class:`~anybit.kernels.DecodeMatmul` with its tunable space declared (``revision``: see
    :func:`kernel_revision`; it only keys the tuning cache; the other options go to the kernel)."""

    def __init__(self, layout: PackedLayout, act_dtype: torch.dtype, *, revision: str = "", **options):
        super().__init__(layout, act_dtype, **options)
        self.revision = revision


#: x rows per block of the transposed kernel (the n of its mma): 8 serves M ≤ 8 with half the tensor-core
#: work, 16 serves M ≤ 16 in one block (tuned, each kept for the M it suits: see DecodeTuner.unsuited).
ROWS: tuple[int, ...] = (8, 16)


#: Whether the transposed kernel's warps split K inside the block (a batched dot and a shared-memory sum)
#: instead of owning columns: split-K's parallelism without its partials' round trips through L2, for the
#: small projections whose time is mostly fixed cost (weights without zero points only).
WARPS_ALONG_K: tuple[bool, ...] = (False, True)


def block_columns(config: dict, layout: PackedLayout) -> int:
    """Output columns a block of ``config`` covers (n_per_warp with its warps along K)."""
    return layout.n_per_warp * (1 if config.get("warps_along_k") else config.get("warps", 4))


@anybit.autotune("rows", ROWS)
@anybit.autotune("warps", WARPS)
@anybit.autotune("stages", STAGES)
@anybit.autotune("split", SPLITS, bucket=decode_bucket)
@anybit.autotune("warps_along_k", WARPS_ALONG_K)
class TunedDecodeMatmulTransposed(DecodeMatmulTransposed):
    """:class:`~anybit.kernels.decode_transposed.DecodeMatmulTransposed` (weights packed with
    ``operand="a"``) with its tunable space declared; ``revision`` as :class:`TunedDecodeMatmul`."""

    def __init__(self, layout: PackedLayout, act_dtype: torch.dtype, *, revision: str = "", **options):
        super().__init__(layout, act_dtype, **options)
        self.revision = revision


def _time_candidate(run, config: dict) -> float:
    from anybit.runtime.timing import time_cuda

    return time_cuda(run, budget_ms=TUNING_BUDGET_MS)


class DecodeTuner(TunedKernel):
    """The :class:`TunedKernel` of one decode specialisation; builds each configuration once, not per bucket.

    Use :func:`decode_tuner` to get the shared instance of a specialisation.
    """

    def __init__(self, **fixed) -> None:
        transposed = fixed["layout"].operand == "a"
        script = TunedDecodeMatmulTransposed if transposed else TunedDecodeMatmul
        super().__init__(script, timer=_time_candidate, **fixed)
        self._built: dict[tuple[str, str], tuple | str] = {}
        #: ``decode_tuner``'s arguments when made there: a build worker makes the same tuner from them.
        self.key: tuple | None = None
        self._row: list[tuple] | None = None  # the launch arguments of the row being timed (tune)
        self._staged: list[tuple[Candidate, list[Candidate]]] = []  # (first timed, held back) per family
        self.base_configs = list(self.configs)
        self._small_weight_only: set[str] = set()  # keys of the small weights' variants (not_tried)
        if transposed:
            self.configs += [
                dict(config, **OCCUPANCY_VARIANT)
                for config in self.base_configs
                if config["rows"] == 16 and config["warps"] in OCCUPANCY_WARPS
            ]
            if takes_wide_tile_ring(fixed["layout"]):
                self.configs += [
                    dict(c, **ring)
                    for rows, rings in WIDE_TILE_RINGS.items()
                    for ring in rings
                    for c in self.base_configs
                    if c["rows"] == rows
                ]
            self.configs += self._register_weight_variants(fixed["layout"], fixed["has_zeros"])
            self._small_weight_only = self._add_small_weight_variants()
        # The opt-in variants: tuned only when asked, but a stored or shipped record naming one is taken.
        self.variant_configs = self._with_variants(self.configs, split_in_cluster=True, bias_after_dot=True)
        self.configs = self._with_variants(
            self.configs, split_in_cluster=tunes_split_in_cluster(), bias_after_dot=tunes_bias_after_dot()
        )

    def _register_weight_variants(self, layout: PackedLayout, has_zeros: bool) -> list[dict]:
        """The configurations tried again with the weights in registers (codes below 8 bits): every 16-row
        one but the occupancy variants (:data:`REGISTER_WEIGHT_ROWS`), every 8-row one of wide tiles, and
        for 4-bit codes stored whole without zero points the 16-row ones with late loads as well
        (:data:`LATE_LOAD_BITS`)."""
        if layout.dtype.nbits >= 8:
            return []
        rows = {REGISTER_WEIGHT_ROWS, 8} if takes_wide_tile_ring(layout) else {REGISTER_WEIGHT_ROWS}
        plain = [c for c in self.configs if c["rows"] in rows and not c.get("min_blocks")]
        variants = [dict(c, weights_in_registers=True) for c in plain]
        if layout.dtype.nbits == LATE_LOAD_BITS and not layout.planar and not has_zeros:
            variants += [
                dict(c, weights_in_registers=True, late_weight_loads=True)
                for c in plain
                if c["rows"] == REGISTER_WEIGHT_ROWS
            ]
        return variants

    def _add_small_weight_variants(self) -> set[str]:
        """Append the configurations tried for small weights only (:data:`SMALL_WEIGHT_ELEMENTS`): the base
        ones with :data:`SMALL_WEIGHT_RING`, then each of split 2 (with either ring) reduced in a cluster;
        returns their keys (``bucket_text``) for :meth:`not_tried`."""
        ringed = [dict(c, **SMALL_WEIGHT_RING) for c in self.base_configs]
        clustered = [
            dict(c, split_in_cluster=True)
            for c in self.base_configs + ringed
            if c.get("split", 1) == SMALL_WEIGHT_CLUSTER_SPLIT
        ]
        known = {bucket_text(c) for c in self.configs}
        added = set()
        for config in ringed + clustered:
            key = bucket_text(config)
            if key not in known:
                self.configs.append(config)
                known.add(key)
                added.add(key)
        return added

    def _small_weight_variant(self, config: dict) -> bool:
        """Whether ``config`` is one of the small weights' variants, or an opt-in variant of one."""
        plain = {key: value for key, value in config.items() if key not in OPT_IN_KEYS}
        return bool({bucket_text(config), bucket_text(plain)} & self._small_weight_only)

    def identity_arguments(self, fixed: dict) -> dict:
        """The fixed arguments without the row RMS's epsilon (a constant in the kernel that changes no
        timing): models of norms with another epsilon share tuning records, the shipped ones included."""
        if fixed.get("rms_eps") is None:
            return fixed
        return dict(fixed, rms_eps="folded")

    def _with_variants(
        self, configs: list[dict], *, split_in_cluster: bool, bias_after_dot: bool
    ) -> list[dict]:
        """``configs`` and, after them, their cluster and bias-after-the-dot variants as asked."""
        configs = with_split_in_cluster(configs) if split_in_cluster else list(configs)
        if bias_after_dot and self._takes_bias_after_dot():  # 8 rows: 16 are tensor-bound
            configs += [dict(c, bias_after_dot=True) for c in configs if c.get("rows", 8) == 8]
        return configs

    def accepts(self, config: dict) -> bool:
        """Whether a stored, pinned or shipped ``config`` can run here: one of the space or of its opt-in
        variants (a record tuned with ``ANYBIT_TUNE_*`` set runs without it)."""
        return config in self.configs or config in self.variant_configs

    def recorded(self, shape: tuple[int, int, int], arch: str) -> dict | None:
        """The configuration pinned, in the tuning cache or shipped for launches of ``shape`` (M, N, K) on
        ``arch``'s GPU — what the first such call takes without tuning — if this space accepts it."""
        from anybit.runtime.autotune import gpu_key, stored_config

        bucket = bucket_text(decode_bucket((None,) * 6 + tuple(shape)))
        config = stored_config(self.identity, gpu_key(arch), bucket)
        return config if config is not None and self.accepts(config) else None

    def instance(self, config: dict):
        """The Script instance of one configuration; an axis ``config`` does not name (a record made before
        the axis existed, e.g. ``warps_along_k``) takes its first value."""
        missing = {name: values[0] for name, values in self.space if name not in config}
        return super().instance({**config, **missing} if missing else config)

    def tune(self, args: tuple, *, arch: str, gpu: str, bucket: str) -> dict:
        """Tune as :class:`TunedKernel` does, each candidate timed in a row (:meth:`timed_run`), a large
        space in two rounds (:meth:`first_round`)."""
        self._row = None
        try:
            return super().tune(args, arch=arch, gpu=gpu, bucket=bucket)
        finally:
            self._row, self._staged = None, []  # the weight copies and scratch output go with the tuning

    def first_round(self, candidates: list[Candidate], args: tuple) -> list[Candidate]:
        """Every configuration that suits the shape, or for a space of more than :data:`STAGED_ABOVE` of
        them (unless :func:`tunes_exhaustively`) one ring depth of each family (:func:`ring_family`):
        :data:`STAGED_FIRST_STAGES` where the family has it, else its first; the rest wait for
        :meth:`next_round`."""
        self._staged = []
        tried = []
        for candidate in candidates:
            reason = self.not_tried(candidate.config, args)
            if reason is None:
                tried.append(candidate)
            else:
                candidate.skipped = f"not for this shape: {reason}"
        if len(tried) <= STAGED_ABOVE or tunes_exhaustively():
            return tried
        families: dict[str, list[Candidate]] = {}
        for candidate in tried:
            families.setdefault(ring_family(candidate.config), []).append(candidate)
        for members in families.values():
            first = next((c for c in members if c.config.get("stages") == STAGED_FIRST_STAGES), members[0])
            self._staged.append((first, [c for c in members if c is not first]))
        return [first for first, _ in self._staged]

    def next_round(self, candidates: list[Candidate], args: tuple) -> list[Candidate]:
        """After a staged first round: the other ring depths of the :data:`STAGED_FAMILIES` families whose
        first depth timed fastest; the rest are marked not timed. Nothing after that."""
        staged, self._staged = self._staged, []
        ranked = sorted(
            (first for first, rest in staged if rest and first.milliseconds is not None),
            key=lambda candidate: candidate.milliseconds,
        )
        chosen = {id(first) for first in ranked[:STAGED_FAMILIES]}
        batch = []
        for first, rest in staged:
            if id(first) in chosen:
                batch += rest
                continue
            for candidate in rest:
                candidate.skipped = (
                    f"staged tuning: its family at {first.config.get('stages')} stages was not among the "
                    f"{STAGED_FAMILIES} fastest"
                )
        return batch

    def timed_run(self, instance, args: tuple):
        """The candidate launched :data:`~anybit.ops.row_timing.ROW_LAUNCHES` times in a row on distinct
        weight copies, from one CUDA graph (see :mod:`anybit.ops.row_timing`); one launch for arguments
        that are not a decode launch's on the GPU."""
        if len(args) != len(DECODE_PARAMETERS) or not args[1].is_cuda:
            return super().timed_run(instance, args)
        from anybit.ops.row_timing import graph_row, row_arguments
        from anybit.runtime.compiler import launch_script

        # The row's first launch reads the caller's own x and weight: a row made for other arguments (the
        # tuner is shared by every shape of its specialisation) is made again.
        if self._row is None or self._row[0][0] is not args[0] or self._row[0][1] is not args[1]:
            self._row = row_arguments(args, self.fixed["has_zeros"])
        return graph_row(lambda launch_args: launch_script(instance, launch_args), self._row)

    def alone_run(self, instance, args: tuple):
        """One launch by itself (the L2 flushed before it, as a single call sees it): what breaks ties among
        candidates the row cannot tell apart; None for arguments :meth:`timed_run` does not time in a row."""
        if len(args) != len(DECODE_PARAMETERS) or not args[1].is_cuda:
            return None
        return super().timed_run(instance, args)

    def built(self, config: dict, args: tuple, arch: str) -> tuple | str:
        """(program, CUDA source) of one configuration for ``arch``, or why it cannot be built (cached)."""
        key = (bucket_text(config), arch)
        found = self._built.get(key)
        if found is None:
            try:
                from anybit.runtime import compiler

                program = self.instance(config).program(*args)
                found = (program, compiler.generate_source(program, arch))
            except Exception as error:  # one configuration that cannot be built only removes itself
                lines = str(error).strip().splitlines()
                found = f"build failed: {type(error).__name__}: {lines[0] if lines else ''}"
            self._built[key] = found
        return found

    def ready(self, config: dict, args: tuple):
        """The Script instance of ``config`` with its build (kept from a precompile, or made now) registered
        for launches like ``args``: ``launch_script(instance, args)`` then neither traces nor compiles."""
        from anybit.runtime.compiler import compile_source, register_compiled
        from anybit.runtime.device import current_arch

        arch = current_arch()
        built = self.built(config, args, arch)
        if isinstance(built, str):
            raise RuntimeError(f"configuration {config}: {built}")
        instance = self.instance(config)
        program, source = built
        register_compiled(instance, args, compile_source(source, arch=arch, program=program))
        return instance

    def sweep_space(
        self,
        *,
        warps: Iterable[int] = (),
        stages: Iterable[int] = (),
        splits: Iterable[int] = (),
        split_in_cluster: bool = False,
        bias_after_dot: bool = False,
        wgmma: bool = False,
        weights_in_registers: bool = False,
        late_weight_loads: bool = False,
    ) -> list[dict]:
        """The tuning space without its occupancy variants (:data:`OCCUPANCY_VARIANT`), its warp, stage and
        split counts replaced by ``warps`` / ``stages`` / ``splits`` where given (the benchmarks' sweeps of
        configurations outside it), each configuration once; with ``split_in_cluster``, each of 2 to 16
        splits also with its split-K reduced in a cluster (:func:`with_split_in_cluster`); with
        ``bias_after_dot``, each configuration also with the conversion's bias taken off by a second dot,
        where the weight type takes it (integer codes stored whole, no zero points); with
        ``weights_in_registers``, each configuration also with the weight bytes loaded straight into
        registers (no shared ring for them)."""
        warps, stages, splits = tuple(warps), tuple(stages), tuple(splits)
        found: list[dict] = []
        for config in self.base_configs:
            for count in warps or (config["warps"],):
                for depth in stages or (config["stages"],):
                    for parts in splits or (config["split"],):
                        candidate = dict(config, warps=count, stages=depth, split=parts)
                        if candidate not in found:
                            found.append(candidate)
        found = with_split_in_cluster(found) if split_in_cluster else found
        if bias_after_dot and self._takes_bias_after_dot():
            found = found + [dict(config, bias_after_dot=True) for config in found]
        if wgmma:  # each configuration of warps in groups of 4 again with x read from shared memory
            found = found + [
                dict(config, wgmma=True)
                for config in found
                if config.get("warps", 4) % 4 == 0
                and not config.get("warps_along_k")
                and not config.get("bias_after_dot")
            ]
        plain = list(found)
        if weights_in_registers:
            found = found + [dict(config, weights_in_registers=True) for config in plain]
        if late_weight_loads:
            found = found + [
                dict(config, weights_in_registers=True, late_weight_loads=True) for config in plain
            ]
        return found

    def _takes_bias_after_dot(self) -> bool:
        """Whether this specialisation's weights gain from leaving the conversion's bias for a second dot:
        integer codes below 8 bits stored whole, zero points only with scale groups (8-bit codes convert
        with one ``prmt`` and one subtraction a pair already; sm_90a counts their loop 178 → 201
        instructions with it, uint8's 198 → 212)."""
        layout = self.fixed["layout"]
        dtype = layout.dtype
        zeros_fit = not (self.fixed["has_zeros"] and layout.per_channel)
        return dtype.is_integer and dtype.nbits < 8 and not layout.planar and zeros_fit

    def has_built(self, config: dict, arch: str) -> bool:
        """Whether ``config`` was built for ``arch`` already (here or kept from a precompile)."""
        return isinstance(self._built.get((bucket_text(config), arch)), tuple)

    def keep_built(self, config: dict, arch: str, built: tuple) -> None:
        """Adopt (program, CUDA source) of ``config`` built elsewhere (a precompile process)."""
        self._built.setdefault((bucket_text(config), arch), built)

    def not_tried(self, config: dict, args: tuple) -> str | None:
        """Why tuning does not try ``config`` for the launch ``args``: it does not suit them
        (:meth:`unsuited`), or it is a small weights' variant and the weight is larger (such a configuration
        still runs there when a record or a pin names it)."""
        reason = self.unsuited(config, args)
        if reason is not None or len(args) != len(DECODE_PARAMETERS):
            return reason
        n, k = int(args[7]), int(args[8])
        if n * k > SMALL_WEIGHT_ELEMENTS and self._small_weight_variant(config):
            return f"{n}×{k} is past the small weights' {SMALL_WEIGHT_ELEMENTS} elements this variant serves"
        return None

    def unsuited(self, config: dict, args: tuple) -> str | None:
        """Why ``config`` does not suit the launch ``args`` (None when it does; any configuration for
        arguments that are not a decode launch's)."""
        if len(args) != len(DECODE_PARAMETERS):
            return None
        layout = self.fixed["layout"]
        m, n, k = (int(value) for value in args[6:9])
        rows = config.get("rows")
        if rows == 16 and m <= 8:
            return "M ≤ 8 takes 8 rows a block (half the tensor-core work)"
        if rows == 8 and m > 8:
            return "M > 8 takes 16 rows a block (8 would read the weight once per 8 rows)"
        warps = config.get("warps", 4)
        columns = block_columns(config, layout)
        if n % columns:
            return f"N = {n} is not a multiple of the block's {columns} columns"
        shape = dataclasses.replace(
            layout, n=n, k=k, group_size=k if layout.per_channel else layout.group_size
        )
        split = config.get("split", 1)
        if config.get("split_in_cluster") and not 1 < split <= MAX_CLUSTER_SPLIT:
            return f"split {split}: a cluster reduces 2 to {MAX_CLUSTER_SPLIT} splits"
        if config.get("wgmma") and (warps % 4 or config.get("warps_along_k")):
            return "wgmma takes warps in groups of 4 owning their columns"
        if config.get("bias_after_dot") and not self._takes_bias_after_dot():
            return "bias_after_dot serves integer codes below 8 bits stored whole (zero points with groups)"
        if config.get("warps_along_k"):
            chunks, step = k // layout.k_chunk, warps * split
            if chunks % step or chunks // step < 2:
                return f"{chunks} chunks of K are not whole runs of 2+ steps of warps · split = {step}"
            return useful_split(shape, m, 1, config.get("stages", 4), split, TUNING_TARGET_BLOCKS)
        return useful_split(shape, m, warps, config.get("stages", 4), split, TUNING_TARGET_BLOCKS)

    def _build(self, candidates: list[Candidate], args: tuple, arch: str) -> None:
        for candidate in candidates:
            reason = self.not_tried(candidate.config, args)
            if reason is not None:
                candidate.skipped = f"not for this shape: {reason}"
        if self.key is not None:  # the configurations not built yet, in worker processes where there are many
            todo = [c.config for c in candidates if not c.skipped and not self.has_built(c.config, arch)]
            _precompile([(*self.key, config) for config in todo], arch, None, minimum=PARALLEL_BUILD_MINIMUM)
        for candidate in candidates:
            if candidate.skipped:
                continue
            candidate.instance = self.instance(candidate.config)
            built = self.built(candidate.config, args, arch)
            if isinstance(built, str):
                candidate.skipped = built
            else:
                candidate.compiled = built


def decode_tuner(
    layout: PackedLayout, act_dtype: torch.dtype, has_zeros: bool, has_bias: bool, fused: tuple = ()
) -> DecodeTuner:
    """The shared tuner of one specialisation (``layout`` as :func:`~anybit.kernels.launch.kernel_layout`
    gives: N and K do not matter); ``fused``: the folded options' ``(name, value)`` pairs (see
    :func:`tuner_for`). ``decode_tuner.cache_clear()`` forgets them all."""
    return _shared_decode_tuner(layout, act_dtype, has_zeros, has_bias, tuple(fused))


@functools.cache
def _shared_decode_tuner(
    layout: PackedLayout, act_dtype: torch.dtype, has_zeros: bool, has_bias: bool, fused: tuple
) -> DecodeTuner:
    """:func:`decode_tuner`, cached on all five arguments (given or defaulted alike)."""
    tuner = DecodeTuner(
        layout=layout,
        act_dtype=act_dtype,
        has_zeros=has_zeros,
        has_bias=has_bias,
        revision=kernel_revision(),
        **dict(fused),
    )
    tuner.key = (layout, act_dtype, has_zeros, has_bias, fused)  # how a build worker makes the same tuner
    return tuner


decode_tuner.cache_clear = _shared_decode_tuner.cache_clear  # type: ignore[attr-defined]


def tuner_for(
    layout: PackedLayout, act_dtype: torch.dtype, has_zeros: bool, has_bias: bool, **fused
) -> DecodeTuner:
    """The tuner of the specialisation a weight of ``layout`` runs with; ``fused``: the kernel's folded
    options (``accumulate``, ``rms_eps``, ``rms_rows``, ``rms_k``), tuned on their own: in a row, the row RMS
    changes which configuration is fastest (see :mod:`anybit.ops.row_timing`)."""
    given = ((name, value) for name, value in fused.items() if value is not None and value is not False)
    options = tuple(sorted(given))
    return decode_tuner(kernel_layout(layout), act_dtype, has_zeros, has_bias, options)


def precompile_decode(
    specialisations: Iterable[tuple],
    *,
    arch: str | None = None,
    processes: int | None = None,
) -> dict[str, int]:
    """Build and compile the configurations of each ``(layout, act_dtype, has_zeros, has_bias)`` now.

    An item may carry a fifth element, the launch shapes ``[(m, n, k), ...]`` it will run: then only the
    configurations some shape keeps (:meth:`DecodeTuner.unsuited`) are built, not the whole space, and for a
    shape whose M bucket already has a configuration pinned, in the tuning cache or shipped for this GPU
    (:meth:`DecodeTuner.recorded`: what the first call takes without tuning) only that one.
    Building a configuration (tracing the Script, generating its CUDA source) is Python, so threads would
    run it one at a time: with ``processes`` > 1 (default: ``ANYBIT_BUILD_PROCESSES``, else one per CPU)
    build worker processes (:mod:`anybit.runtime.build_pool`) build and compile them and send back each
    (program, source), which the shared tuners keep (a tuner does the same with the configurations it is
    about to time, when :data:`PARALLEL_BUILD_MINIMUM` or more are left to build). Results land in the
    compile cache, so the first call of each shape only times. Returns counts of ``compiled`` and
    ``failed`` configurations and the ``processes`` used.
    """
    from anybit.runtime.device import current_arch

    arch = arch or current_arch()
    return _precompile(_configurations_to_build(specialisations, arch), arch, processes)


def precompile_configurations(
    specialisation: tuple, configs: Iterable[dict], *, arch: str | None = None, processes: int | None = None
) -> dict[str, int]:
    """:func:`precompile_decode` of explicit ``configs`` of one ``(layout, act_dtype, has_zeros, has_bias)``
    (any stage count or split, inside the tuning space or not: the benchmarks' sweeps)."""
    from anybit.runtime.device import current_arch

    layout, act_dtype, has_zeros, has_bias = specialisation
    key = (kernel_layout(layout), act_dtype, has_zeros, has_bias)
    arch = arch or current_arch()
    tuner = decode_tuner(*key)
    todo = [(*tuner.key, dict(config)) for config in configs if not tuner.has_built(config, arch)]
    return _precompile(todo, arch, processes) if todo else {"compiled": 0, "failed": 0, "processes": 0}


#: A tuner builds its configurations in worker processes when at least this many are left to build (a
#: tuning keeps ~15–25; fewer than 8 take ~2 s here, under the workers' one-time start).
PARALLEL_BUILD_MINIMUM = 8


def _precompile(
    todo: list[tuple], arch: str | None, processes: int | None, *, minimum: int = 2
) -> dict[str, int]:
    """Build and compile ``todo`` (``(layout, act_dtype, has_zeros, has_bias, fused, config)`` items) in
    worker processes when there are ``processes`` > 1 (default :func:`default_processes`) and at least
    ``minimum`` items, else here; keep each build in its shared tuner."""
    from anybit.runtime.build_pool import BuildPoolError, default_processes
    from anybit.runtime.device import current_arch

    arch = arch or current_arch()
    workers = processes if processes is not None else default_processes()
    workers = max(1, min(workers, len(todo)))
    failed = 0
    if workers > 1 and len(todo) >= max(minimum, 2):
        try:
            failed = _build_in_processes(todo, arch, workers)
        except BuildPoolError as error:  # workers that cannot start (or died): build here instead
            logger.info("decode kernels: build workers unavailable (%s); building in this process", error)
            workers = 1
    else:
        workers = 1
    if workers == 1:
        failed = _build_here(todo, arch)
    return {"compiled": len(todo) - failed, "failed": failed, "processes": workers}


def _configurations_to_build(specialisations: Iterable[tuple], arch: str | None = None) -> list[tuple]:
    """``(layout, act_dtype, has_zeros, has_bias, config)`` of every configuration some item needs: for each
    shape the recorded configuration where ``arch`` has one (:meth:`DecodeTuner.recorded`), else every one
    the shape keeps."""
    shapes_of: dict[tuple, set | None] = {}
    for item in specialisations:
        layout, act_dtype, has_zeros, has_bias = item[:4]
        key = (kernel_layout(layout), act_dtype, has_zeros, has_bias)
        shapes = set(item[4]) if len(item) > 4 else None
        if key not in shapes_of:
            shapes_of[key] = shapes
        elif shapes_of[key] is not None:
            shapes_of[key] = None if shapes is None else shapes_of[key] | shapes
    todo = []
    for key, shapes in shapes_of.items():
        tuner = decode_tuner(*key)
        recorded: list[dict] = []
        open_shapes = set() if shapes is not None else None
        for shape in shapes or ():
            config = tuner.recorded(shape, arch) if arch is not None else None
            if config is None:
                open_shapes.add(shape)
            elif config not in recorded:
                recorded.append(config)
        for config in tuner.configs:
            if config in recorded:
                recorded.remove(config)
            elif open_shapes is not None and all(
                tuner.not_tried(config, (None,) * 6 + shape) is not None for shape in open_shapes
            ):
                continue
            todo.append((*tuner.key, config))
        todo += [(*tuner.key, config) for config in recorded]  # opt-in variants a record names
    return todo


def build_configuration(item: tuple, arch: str, with_result: bool = False) -> tuple | str:
    """Build and compile one ``(layout, act_dtype, has_zeros, has_bias, fused, config)``: (program,
    source) — with ``with_result`` also NVRTC's result, for the process that asked — or why it failed.
    Runs in a build worker (or here); the compiled kernel also lands in the disk compile cache."""
    from anybit.runtime.compiler import compile_source

    *key, config = item
    built = decode_tuner(*key).built(config, (), arch)
    if isinstance(built, str):
        return built
    program, source = built
    try:
        compiled = compile_source(source, arch=arch, program=program)
    except Exception as error:  # reported again, per configuration, when that shape is tuned
        first_line = (str(error).strip().splitlines() or [""])[0]
        return f"compile failed: {type(error).__name__}: {first_line}"
    return (*built, compiled.compile_result) if with_result else built


def _keep(item: tuple, built: tuple | str, arch: str) -> bool:
    """Store a configuration's build in its shared tuner; whether it succeeded."""
    *key, config = item
    if isinstance(built, str):
        logger.info("precompile %s %s: %s", key[0].dtype.name, config, built)
        return False
    if len(built) == 3:  # from a build worker: its NVRTC result too
        from anybit.runtime.cache import remember

        program, source, result = built
        remember(source.source, result)
        built = (program, source)
    decode_tuner(*key).keep_built(config, arch, built)
    return True


def _build_here(todo: list[tuple], arch: str) -> int:
    """Build serially, compile with NVRTC in a thread pool (the front end is not thread-safe)."""
    from anybit.runtime.compiler import compile_source

    failed = 0
    ready = []
    for item in todo:
        *key, config = item
        built = decode_tuner(*key).built(config, (), arch)
        if isinstance(built, str):
            failed += not _keep(item, built, arch)
        else:
            ready.append(built)

    def compile_one(built: tuple) -> None:
        program, source = built
        compile_source(source, arch=arch, program=program)

    with ThreadPoolExecutor(max_workers=max(1, min(len(ready), os.cpu_count() or 1))) as pool:
        for future in [pool.submit(compile_one, built) for built in ready]:
            try:
                future.result()
            except Exception as error:  # reported again, per configuration, when that shape is tuned
                failed += 1
                logger.info("precompile: %s", error)
    return failed


def _build_in_processes(todo: list[tuple], arch: str, workers: int) -> int:
    """Build and compile in ``workers`` build processes (:mod:`anybit.runtime.build_pool`: no CUDA there,
    NVRTC only); keep the builds."""
    from anybit.runtime.build_pool import run_jobs

    results = run_jobs(build_configuration, [(item, arch, True) for item in todo], workers)
    failed = 0
    for item, (ok, built) in zip(todo, results, strict=True):
        failed += not _keep(item, built if ok else f"build failed: {built}", arch)
    return failed
