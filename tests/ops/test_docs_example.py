"""The python example of docs/quantized-matmul.md runs as written and is right."""

from __future__ import annotations

import pathlib
import re

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "quantized-matmul.md"


def test_quantized_matmul_doc_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        namespace: dict = {"__name__": "docs"}
        exec(compile(block, str(DOC), "exec"), namespace)
    assert float(namespace["error"]) / float(namespace["y"].double().norm()) < 2e-3
