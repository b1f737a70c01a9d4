"""Settings for every test process."""

from __future__ import annotations

import os

# Under pytest-xdist every test process would start its own build workers (one per CPU, ~240 MB each: 16
# processes × 16 workers is ~60 GB): one build process each instead, unless a run asks for more.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("ANYBIT_BUILD_PROCESSES", "1")
