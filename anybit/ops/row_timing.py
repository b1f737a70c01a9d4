"""Timing a decode candidate the way a model runs it: launches in a row, replayed from one CUDA graph.

A decoder layer's projections run back to back, each reading a weight the previous one did not, and with
dependent launches (``ANYBIT_PDL``) each kernel's first weight chunks load under the previous kernel's main
loop. Which configuration is fastest there is not always the one that is fastest alone with a cold L2: on
the H200 (2026-11-29, ``benchmarks/layer_sequence.py --sweep``) int4 28672×4096 at M = 1 ran 17.8 µs a call
in a row with 8 warps and split 2, and 19.2 with the 2-warp configuration tuned alone; with the row RMS
folded in, that configuration took 25.2 µs a call in a row. So the decode tuner times each candidate as
:data:`ROW_LAUNCHES` launches in a row on distinct copies of the weight (enough copies that the row reads
twice the L2 before it repeats one), captured once as a CUDA graph and replayed, the L2 flushed before
each replay; the time a launch is the replay's divided by the launches.
"""

from __future__ import annotations

import logging

import torch

from anybit.runtime.autotune import TimedRun

logger = logging.getLogger("anybit")

#: Launches in one timed row: a layer's worth of projections and more, so the row's first launch (cold,
#: nothing ahead of it to overlap) weighs an eighth of the time.
ROW_LAUNCHES = 8
#: How much weight data the row reads before it repeats a copy, in multiples of the GPU's L2 size.
ROW_L2_MULTIPLE = 2


def row_copies(weight_bytes: int, l2_bytes: int) -> int:
    """Distinct copies of a weight (of ``weight_bytes`` with its scales) a row of :data:`ROW_LAUNCHES`
    launches reads so no launch finds its weight in an L2 of ``l2_bytes``: one when a weight alone is twice
    the L2, else enough to read ROW_L2_MULTIPLE · L2 between repeats (at most one a launch)."""
    needed = -(-ROW_L2_MULTIPLE * l2_bytes // max(weight_bytes, 1))
    return max(1, min(ROW_LAUNCHES, needed))


def row_arguments(args: tuple, has_zeros: bool) -> list[tuple]:
    """:data:`ROW_LAUNCHES` decode launch arguments ``(x, weight, scales, zeros, bias, y, m, n, k)`` for one
    row: the weight, scales and zeros cycled over :func:`row_copies` copies (the first the caller's), every
    launch writing a zero-filled scratch output (the caller's y is not touched: a folded residual add reads
    it)."""
    x, weight, scales, zeros, bias, y, m, n, k = args
    per_copy = weight.nbytes + scales.nbytes + (zeros.nbytes if has_zeros else 0)
    l2_bytes = torch.cuda.get_device_properties(weight.device).L2_cache_size
    copies = [(weight, scales, zeros)]
    try:
        for _ in range(row_copies(per_copy, l2_bytes) - 1):
            copies.append((_copy(weight), _copy(scales), _copy(zeros) if has_zeros else scales))
    except torch.cuda.OutOfMemoryError:  # a nearly full GPU: fewer copies (repeats then partly hit L2)
        logger.info("row timing: memory for %d weight copies only", len(copies))
    scratch = torch.zeros_like(y)
    rows = []
    for launch in range(ROW_LAUNCHES):
        w, s, z = copies[launch % len(copies)]
        rows.append((x, w, s, z if has_zeros else s, bias, scratch, m, n, k))
    return rows


def _copy(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of one of the weight's tensors for the row (the tests replace it to run out of memory)."""
    return tensor.clone()


def graph_row(launch, rows: list[tuple]) -> TimedRun:
    """``launch(args)`` for each of ``rows``, captured once into a CUDA graph (after one eager pass that
    loads the kernel and sizes its workspace); running it replays the graph."""
    for args in rows:
        launch(args)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        for args in rows:
            launch(args)
    torch.cuda.current_stream().wait_stream(stream)
    return TimedRun(graph.replay, launches=len(rows), keep=(graph, rows))  # the graph holds raw addresses
