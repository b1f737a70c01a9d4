"""Which path a quantized matmul of a few dozen rows takes, decided by timing both on its first call.

Up to :func:`~anybit.ops.decode_max_m` rows the decode kernel always wins; from ``MEASURED_MAX_M`` rows on,
dequantizing the weight and calling cuBLAS does. In between, the winner depends on the weight type (the
decode kernel converts the weight once per 16 rows: cheap for 4- and 8-bit codes, less so for 5- and
6-bit floats), on the shape and on the GPU: on the H200 the decode kernel took 29.6 µs at M = 32 on a
uint4 8192×8192 weight where dequantize + cuBLAS took 85.2, and at M = 128 int8 was faster dequantized
(BENCHMARKS.md, crossover suite). So the first call of each (M bucket, N, K) of a weight specialisation on a
GPU times both paths on its own arguments and keeps the faster, in the autotune cache next to the decode
kernel's tuned configurations (exported, pinned and disabled with them: ``ANYBIT_AUTOTUNE=0``). Where it
cannot time — the CPU interpreter, a CUDA graph being captured, tuning disabled with nothing stored — the
call takes dequantize + cuBLAS, the rule for every M above :func:`~anybit.ops.decode_max_m`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

from anybit.ops.dispatch import DECODE, DEQUANTIZE
from anybit.runtime.autotune import (
    Candidate,
    bucket_text,
    gpu_key,
    store_tuned,
    stored_config,
    tuning_enabled,
)

#: Rows up to which the path is measured (above :func:`~anybit.ops.decode_max_m`); more always dequantize.
MEASURED_MAX_M = 128
#: Milliseconds of timed runs per path (5 to 100 runs, the L2 flushed before each).
PATH_BUDGET_MS = 10.0


class MeasuredChoice:
    """A configuration per (bucket, GPU) under one kernel ``identity``: chosen before in this process, pinned
    or stored, else measured now and stored with the tuned configurations (a choice whose ``key`` is not one
    of ``values`` is not this chooser's: measured again)."""

    def __init__(self, identity: str, description: str, key: str, values: tuple[str, ...]) -> None:
        self.identity, self.description, self.key, self.values = identity, description, key, values
        self._chosen: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    def _choose(self, bucket: list, arch: str, measure: Callable[[], list[Candidate]] | None) -> dict | None:
        """The configuration for ``bucket``, or None when there is none and ``measure`` is None (this call
        cannot time) or tuning is off."""
        text, gpu = bucket_text(bucket), gpu_key(arch)
        found = self._chosen.get((gpu, text))
        if found is not None:
            return found
        with self._lock:
            config = stored_config(self.identity, gpu, text)
            if config is None or config.get(self.key) not in self.values:
                if measure is None or not tuning_enabled():
                    return None
                config = store_tuned(self.identity, self.description, gpu, text, measure()).config
            self._chosen[(gpu, text)] = config
            return config


class PathChooser(MeasuredChoice):
    """The measured path per (M bucket, N, K, GPU) of one decode specialisation (``decode_identity``: its
    tuner's kernel identity, so a changed kernel measures again)."""

    def __init__(self, decode_identity: str) -> None:
        digest = hashlib.sha256(decode_identity.encode()).hexdigest()[:16]
        super().__init__(
            f"QuantizedMatmulPath-{digest}", "quantized_matmul path", "path", (DECODE, DEQUANTIZE)
        )

    def choose(self, bucket: list, arch: str, measure: Callable[[], dict[str, float]] | None) -> str | None:
        """The path for ``bucket`` ([M bucket, N, K]): chosen before, pinned or stored, else measured now by
        ``measure()`` (milliseconds per path; pass None when this call cannot time); None when undecided
        (the caller takes dequantize + cuBLAS this time, and a later call may measure)."""

        def candidates() -> list[Candidate]:
            return [Candidate({"path": path}, milliseconds=ms) for path, ms in measure().items()]

        config = self._choose(bucket, arch, None if measure is None else candidates)
        return None if config is None else config["path"]


_choosers: dict[tuple[type, str], object] = {}
_choosers_lock = threading.Lock()


def shared_chooser(kind: type, decode_identity: str):
    """The one ``kind(decode_identity)`` of a decode specialisation (a measured choice kept per process)."""
    with _choosers_lock:
        found = _choosers.get((kind, decode_identity))
        if found is None:
            found = _choosers[kind, decode_identity] = kind(decode_identity)
        return found


def path_chooser(decode_identity: str) -> PathChooser:
    """The shared :class:`PathChooser` of one decode specialisation."""
    return shared_chooser(PathChooser, decode_identity)
