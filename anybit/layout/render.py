"""Pictures of register layouts: the ``t:i`` grid as text and as a PNG, plus the ``anybit layout`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from .errors import LayoutError
from .register import RegisterLayout


def cell_labels(layout: RegisterLayout) -> np.ndarray:
    """A grid (of the layout's shape, rank 1 or 2, as 2-D) of ``"t:i"`` labels; replicated elements list
    their holders, ``"0,4,8:1"``, abbreviated ``"0,4,…,28:1"`` beyond four."""
    grid = _grid_shape(layout)
    holders: dict[tuple[int, ...], list[int]] = {}
    local_of: dict[tuple[int, ...], int] = {}
    mapping = layout.map_array()
    for thread in range(layout.num_threads):
        for local in range(layout.local_size):
            index = tuple(int(c) for c in mapping[thread, local])
            holders.setdefault(index, []).append(thread)
            local_of[index] = local
    labels = np.empty(grid, dtype=object)
    for index, threads in holders.items():
        threads = sorted(threads)
        if len(threads) > 4:
            names = f"{threads[0]},{threads[1]},…,{threads[-1]}"
        else:
            names = ",".join(str(thread) for thread in threads)
        labels[_cell(index, layout.rank)] = f"{names}:{local_of[index]}"
    return labels


def table(layout: RegisterLayout) -> str:
    """The ``t:i`` grid of a rank-1 or rank-2 layout: row ``r``, column ``c`` shows who holds ``[r, c]``."""
    labels = cell_labels(layout)
    width = max(len(label) for label in labels.flat)
    rows, columns = labels.shape
    row_width = len(str(rows - 1))
    header = " " * (row_width + 3) + " ".join(f"{c:>{width}}" for c in range(columns))
    lines = [
        f"{layout}  (shape {list(layout.shape)}, {layout.num_threads} threads x {layout.local_size} local)"
    ]
    lines.append(header)
    for r in range(rows):
        lines.append(f"{r:>{row_width}} | " + " ".join(f"{labels[r, c]:>{width}}" for c in range(columns)))
    return "\n".join(lines)


def draw(layout: RegisterLayout, path: str, *, title: str | None = None) -> None:
    """Write a PNG of the grid: each element coloured by its (first) thread and labelled ``t:i``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels = cell_labels(layout)
    rows, columns = labels.shape
    colours = plt.get_cmap("tab20")
    figure, axes = plt.subplots(figsize=(max(3.0, 0.62 * columns + 0.6), max(1.6, 0.42 * rows + 0.9)))
    for (r, c), label in np.ndenumerate(labels):
        thread = int(label.split(":")[0].split(",")[0])
        axes.add_patch(plt.Rectangle((c, r), 1, 1, facecolor=colours(thread % 20), edgecolor="white"))
        axes.text(c + 0.5, r + 0.5, label, ha="center", va="center", fontsize=7 if len(label) <= 5 else 5)
    axes.set_xlim(0, columns)
    axes.set_ylim(rows, 0)
    axes.set_xticks(np.arange(columns) + 0.5, [str(c) for c in range(columns)], fontsize=7)
    axes.set_yticks(np.arange(rows) + 0.5, [str(r) for r in range(rows)], fontsize=7)
    axes.tick_params(length=0)
    axes.set_aspect("equal")
    axes.set_title(title if title is not None else str(layout), fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def show_layout(text: str, draw_path: str | None = None) -> str:
    """Parse ``text``, optionally draw it to ``draw_path``, and return its description and ``t:i`` table."""
    from .parse import parse_layout

    layout = parse_layout(text)
    lines = [
        f"layout        {layout}",
        f"shape         {list(layout.shape)}",
        f"threads       {layout.num_threads}"
        + (f" (each element held by {layout.replication})" if layout.is_replicated else ""),
        f"local size    {layout.local_size}",
        f"modes         {layout.mode_form()}",
    ]
    if layout.rank <= 2:
        lines += ["", table(layout)]
    if draw_path is not None:
        draw(layout, draw_path)
        lines.append(f"\nwrote {draw_path}")
    return "\n".join(lines)


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``anybit layout EXPRESSION [--draw out.png]``: print (and draw) a layout; return the exit code."""
    parser = argparse.ArgumentParser(prog="anybit layout", description="Show a register layout's t:i map.")
    parser.add_argument("expression", help='e.g. "local(2,1).spatial(8,4).local(1,2)"')
    parser.add_argument("--draw", metavar="PNG", default=None, help="also write a picture to this PNG file")
    arguments = parser.parse_args(argv)
    try:
        print(show_layout(arguments.expression, arguments.draw))
    except LayoutError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _grid_shape(layout: RegisterLayout) -> tuple[int, int]:
    if layout.rank == 1:
        return (1, layout.shape[0])
    if layout.rank == 2:
        return layout.shape
    raise LayoutError(
        f"tables and pictures need a rank-1 or rank-2 layout, got shape {layout.shape}; reshape first"
    )


def _cell(index: tuple[int, ...], rank: int) -> tuple[int, int]:
    return (0, index[0]) if rank == 1 else index
