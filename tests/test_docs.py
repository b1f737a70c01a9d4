"""The code in the documentation runs as written (so the guides cannot drift from the API)."""

import linecache
import pathlib
import re

import numpy as np
import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(path: pathlib.Path) -> list[str]:
    """Every fenced ```python block of a markdown file."""
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def run_block(block: str, filename: str, namespace: dict) -> None:
    """Execute a code block as if it were a file (kernels need their source: register it in linecache)."""
    linecache.cache[filename] = (len(block), None, block.splitlines(True), filename)
    exec(compile(block, filename, "exec"), namespace)


def test_programming_guide_code_runs(capsys):
    blocks = python_blocks(DOCS / "programming-guide.md")
    assert len(blocks) >= 2
    rng = np.random.default_rng()
    for number, block in enumerate(blocks):
        # The first block ends by running its kernel on arrays ``x`` and ``y`` the reader brings.
        x = rng.standard_normal(1000).astype(np.float32)
        y = np.full_like(x, np.nan)
        namespace = {"x": x, "y": y, "__name__": "guide"}
        run_block(block, f"<programming-guide.md block {number}>", namespace)
        if "VectorScale" in namespace:
            np.testing.assert_array_equal(y, x * np.float32(2.0))
    assert "dot" in capsys.readouterr().out


@pytest.mark.parametrize("path", [README, DOCS / "dtypes.md"], ids=lambda p: p.name)
def test_markdown_examples_run(path):
    for number, block in enumerate(python_blocks(path)):
        run_block(block, f"<{path.name} block {number}>", {"__name__": "docs"})
