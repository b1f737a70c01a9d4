"""Per-kernel, per-device workspace buffers: grown eagerly, reused across launches, zeroed when asked.

A buffer only grows outside CUDA-graph capture: a capture that needs more workspace than the warm-up run
allocated raises, because memory allocated inside a capture belongs to the graph's pool.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("anybit")

_MIN_BYTES = 256


class Workspace:
    """Global scratch memory of one kernel: a torch uint8 buffer per device, zeroed per launch if clean."""

    def __init__(self, kernel_name: str, *, clean: bool) -> None:
        self.kernel_name = kernel_name
        self.clean = clean
        self._buffers: dict[int, object] = {}
        self._zero_views: dict[tuple[int, int], object] = {}

    def pointer(self, device: int, nbytes: int) -> int:
        """Device address of at least ``nbytes`` of workspace on ``device`` (zeroed on the current stream)."""
        if nbytes <= 0:
            return 0
        buffer = self._buffers.get(device)
        if buffer is None or buffer.numel() < nbytes:
            buffer = self._grow(device, nbytes)
        if self.clean:
            view = self._zero_views.get((device, nbytes))
            if view is None:
                view = self._zero_views[(device, nbytes)] = buffer.narrow(0, 0, nbytes)
            view.zero_()
        return buffer.data_ptr()

    def reserve(self, device: int, nbytes: int) -> None:
        """Allocate ``nbytes`` now (before a CUDA-graph capture, say)."""
        if nbytes > 0 and (device not in self._buffers or self._buffers[device].numel() < nbytes):
            self._grow(device, nbytes)

    def _grow(self, device: int, nbytes: int):
        import torch

        if torch.cuda.is_current_stream_capturing():
            raise RuntimeError(
                f"kernel '{self.kernel_name}' needs {nbytes} B of workspace on cuda:{device} during "
                "CUDA-graph "
                "capture, more than was allocated before; run it once eagerly with the same (or larger) "
                "arguments before capturing, so the workspace is allocated outside the graph"
            )
        size = max(_MIN_BYTES, 1 << (nbytes - 1).bit_length())
        logger.debug("workspace of %s on cuda:%d grows to %d B", self.kernel_name, device, size)
        buffer = torch.empty(size, dtype=torch.uint8, device=f"cuda:{device}")
        self._buffers[device] = buffer
        self._zero_views = {key: view for key, view in self._zero_views.items() if key[0] != device}
        return buffer
