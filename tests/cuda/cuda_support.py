"""Skip markers of the CUDA backend tests: NVRTC availability and GPU availability."""

from __future__ import annotations

import pytest


def _nvrtc_available() -> bool:
    try:
        from anybit.runtime.nvrtc import nvrtc_version

        nvrtc_version()
        return True
    except Exception:
        return False


def _gpu_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


requires_nvrtc = pytest.mark.skipif(
    not _nvrtc_available(), reason="NVRTC (cuda-bindings + nvidia-cuda-nvrtc) is not installed"
)
requires_gpu = pytest.mark.skipif(
    not _gpu_available(), reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)"
)
