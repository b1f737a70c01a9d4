"""Tables, pictures and the command-line entry point."""

from __future__ import annotations

import pytest

from anybit.layout import LayoutError, cli_main, local, reduce, show_layout, spatial
from anybit.layout.mma import MMA_M16N8_C


def test_table_of_the_mma_accumulator():
    lines = MMA_M16N8_C.table().splitlines()
    assert lines[0].startswith("local(2, 1).spatial(8, 4).local(1, 2)")
    assert lines[2].split() == ["0", "|", "0:0", "0:1", "1:0", "1:1", "2:0", "2:1", "3:0", "3:1"]
    assert lines[2 + 8].split()[2:4] == ["0:2", "0:3"]
    assert len(lines) == 2 + 16


def test_table_of_rank_one_and_replicated_layouts():
    row = spatial(4).local(2).table().splitlines()[2].split()
    assert row == ["0", "|", "0:0", "0:1", "1:0", "1:1", "2:0", "2:1", "3:0", "3:1"]
    scales = reduce(spatial(2, 4), [0])
    assert scales.table().splitlines()[2].split()[2:] == ["0,4:0", "1,5:0", "2,6:0", "3,7:0"]
    wide = reduce(MMA_M16N8_C, [0], keepdims=True)
    assert "0,4,…,28:0" in wide.table()


def test_table_needs_rank_at_most_two():
    with pytest.raises(LayoutError, match="rank-1 or rank-2"):
        local(2, 2, 2).table()


def test_draw_writes_a_png(tmp_path):
    path = tmp_path / "c.png"
    MMA_M16N8_C.draw(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reduce(spatial(2, 4), [0]).draw(str(tmp_path / "r.png"))


def test_show_layout_and_cli(tmp_path, capsys):
    text = show_layout("local(2,1).spatial(8,4).local(1,2)")
    assert "shape         [16, 8]" in text and "0:0" in text
    path = tmp_path / "out.png"
    assert cli_main(["spatial(2,2)", "--draw", str(path)]) == 0
    assert path.exists()
    assert "spatial(2, 2)" in capsys.readouterr().out
    assert cli_main(["spatial(2,"]) == 2
    assert "cannot parse" in capsys.readouterr().err
