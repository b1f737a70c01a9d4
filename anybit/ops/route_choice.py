"""A measured choice between the tuned decode kernel and another route of a decode call, kept per shape.

The int8 route (:mod:`anybit.ops.int8_choice`) and the bf16-through-fp16 route (:mod:`anybit.ops.half_choice`)
each run a small kernel before a decode kernel of their own; whether that beats the tuned decode kernel
depends on the type, the shape and the GPU, so the first eligible call times both as the decode tuner
times (a row of launches on distinct weight copies from a CUDA graph, :mod:`anybit.ops.row_timing`) and
keeps the faster in the autotune cache (exported, pinned and disabled with the rest: ``ANYBIT_AUTOTUNE=0``).
Where it cannot time — a CUDA graph being captured, tuning disabled with nothing stored — the call takes the
decode kernel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from anybit.runtime.autotune import (
    Candidate,
    bucket_text,
    gpu_key,
    store_tuned,
    stored_config,
    tuning_enabled,
)

#: The decode kernel's route (a choice's other values name a route and its configuration).
DECODE_ROUTE = {"route": "decode"}
#: Milliseconds of timed runs per candidate and round (5 to 100 replays, the L2 flushed before each).
BUDGET_MS = 8.0
#: The decode kernel and the FINALISTS fastest other candidates are timed ROUNDS more times, interleaved,
#: and ranked by their median (one timing cannot tell candidates a few percent apart).
FINALISTS = 2
ROUNDS = 2


class RouteChooser:
    """The measured route per (bucket, GPU) under one kernel ``identity`` (it names the decode kernel and
    the route's kernels, so a changed kernel measures again); ``route`` is the other route's name."""

    def __init__(self, identity: str, route: str) -> None:
        self.identity = identity
        self.route = route
        self._chosen: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    def choose(self, bucket: list, arch: str, measure: Callable[[], list[Candidate]] | None) -> dict:
        """The route for ``bucket`` ([M bucket, N, K]): chosen before, pinned or stored, else measured now by
        ``measure()`` (the timed candidates; None when this call cannot time: then the decode kernel, and a
        later call may measure)."""
        text, gpu = bucket_text(bucket), gpu_key(arch)
        found = self._chosen.get((gpu, text))
        if found is not None:
            return found
        with self._lock:
            config = stored_config(self.identity, gpu, text)
            if config is None or config.get("route") not in ("decode", self.route):
                if measure is None or not tuning_enabled():
                    return DECODE_ROUTE
                description = f"quantized_matmul {self.route} route"
                config = store_tuned(self.identity, description, gpu, text, measure()).config
            self._chosen[(gpu, text)] = config
            return config


def measure(
    decode_launch: Callable[[tuple], None], routes: list[tuple[dict, Callable]], rows: list[tuple]
) -> list[Candidate]:
    """Candidates timed as rows of launches from CUDA graphs (:func:`~anybit.ops.row_timing.graph_row` on
    ``rows``, distinct weight copies): the decode kernel's ``decode_launch`` and each other configuration's
    launch (``routes``: (config, launch) pairs); milliseconds a launch."""
    from anybit.ops.row_timing import graph_row
    from anybit.runtime.timing import time_cuda

    def timed(run) -> float:
        return time_cuda(run, budget_ms=BUDGET_MS) / run.launches

    found = [Candidate(dict(DECODE_ROUTE))]
    runs = {0: graph_row(decode_launch, rows)}
    for config, launch in routes:
        candidate = Candidate(dict(config))
        try:
            runs[len(found)] = graph_row(launch, rows)
        except Exception as error:  # a configuration that cannot run only removes itself
            candidate.skipped = f"launch failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
        found.append(candidate)
    timed(runs[0])  # one discarded timing: the first on a fresh weight runs slow
    samples = {index: [timed(run)] for index, run in runs.items()}
    ranked = sorted((index for index in samples if index), key=lambda index: samples[index][0])
    for _ in range(ROUNDS):
        for index in [0, *ranked[:FINALISTS]]:
            samples[index].append(timed(runs[index]))
    for index, values in samples.items():
        found[index].milliseconds = float(sorted(values)[len(values) // 2])
    return found
