"""Puts this directory on sys.path: tests share ``cuda_programs``, ``cuda_arguments``, ``cuda_support``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
