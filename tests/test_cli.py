"""The ``anybit`` command line: help, the types table, clear failures."""

import subprocess
import sys

from anybit.cli import main


def test_help_lists_the_commands(capsys):
    assert main([]) == 0
    text = capsys.readouterr().out
    for command in ("types", "layout", "info"):
        assert command in text


def test_types_prints_every_family(capsys):
    assert main(["types"]) == 0
    text = capsys.readouterr().out
    for name in ("uint1", "int8", "float3_e1m1", "float6_e3m2", "float8_e5m2", "bfloat16", "int64"):
        assert name in text


def test_python_dash_m_works_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "anybit", "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    assert "types" in result.stdout


def test_info_reports_versions(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "numpy" in text and "nvrtc" in text and "gpu" in text
    launch_line = next(line for line in text.splitlines() if line.startswith("launch"))
    assert launch_line.split()[1] in ("compiled", "bindings", "ctypes", "none")


def test_layout_prints_the_thread_grid(capsys, tmp_path):
    picture = tmp_path / "c.png"
    assert main(["layout", "local(2,1).spatial(8,4).local(1,2)", "--draw", str(picture)]) == 0
    text = capsys.readouterr().out
    assert "0:0" in text and "31:3" in text
    assert picture.stat().st_size > 1000


def test_layout_reports_a_bad_expression(capsys):
    assert main(["layout", "local(2,1"]) == 2
    assert "layout" in capsys.readouterr().err


def test_bench_hands_every_option_to_the_benchmark(monkeypatch, capsys):
    """`anybit bench ...` runs benchmarks/matmul.py with the options as given (its parser is the one list of
    them), and its --help is the benchmark's; other commands still refuse options they do not know."""
    import pytest

    from benchmarks import matmul

    seen = []
    monkeypatch.setattr(matmul, "main", lambda argv, prog=None: seen.append((argv, prog)) or 0)
    options = ["--quick", "--out", "x", "--types", "int4", "--budget-s", "5", "--bytes-per-thread", "128"]
    assert main(["bench", *options]) == 0
    assert seen == [(options, "anybit bench")]
    monkeypatch.undo()
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0 and "--budget-s" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["info", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
