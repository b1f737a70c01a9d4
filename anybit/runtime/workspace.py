"""Per-kernel, per-device workspace buffers: grown eagerly, reused across launches, zeroed when asked.

A kernel either needs the whole workspace zeroed before every launch (``clean``), or keeps a prefix of it
zero itself (``keeps_clean``: counters it wraps back to 0, see ``arrive``). A prefix is zeroed when the
buffer is made and again only over bytes an earlier launch used as scratch, i.e. when a launch needs a
longer prefix than any before it.

A buffer only grows outside CUDA-graph capture: a capture that needs more workspace than the warm-up run
allocated raises, because memory allocated inside a capture belongs to the graph's pool.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("anybit")

_MIN_BYTES = 256


class Workspace:
    """Global scratch memory of one kernel: a torch uint8 buffer per device (see the module docstring)."""

    def __init__(self, kernel_name: str, *, clean: bool, keeps_clean: bool = False) -> None:
        self.kernel_name = kernel_name
        self.clean = clean
        self.keeps_clean = keeps_clean
        self._zero_upto: dict[int, int] = {}  # device -> bytes [0, n) known to be zero
        self._buffers: dict[int, object] = {}
        self._held: dict[int, tuple[int, int]] = {}  # device -> (its buffer's bytes, address)
        self._zero_views: dict[tuple[int, int], object] = {}

    def pointer(self, device: int, nbytes: int, clean_bytes: int = 0) -> int:
        """Device address of at least ``nbytes`` of workspace on ``device``; zeroed on the current stream if
        ``clean``, else its first ``clean_bytes`` are zero when the launch starts."""
        if nbytes <= 0:
            return 0
        held = self._held.get(device)
        if held is None or held[0] < nbytes:
            self._grow(device, nbytes)
            held = self._held[device]
        if self.clean:
            view = self._zero_views.get((device, nbytes))
            if view is None:
                view = self._zero_views[(device, nbytes)] = self._buffers[device].narrow(0, 0, nbytes)
            view.zero_()
        elif clean_bytes > 0:
            zero_upto = self._zero_upto.get(device, 0)
            if clean_bytes > zero_upto:  # an earlier launch's scratch lies where this one keeps counters
                self._buffers[device].narrow(0, zero_upto, clean_bytes - zero_upto).zero_()
                self._zero_upto[device] = clean_bytes  # the scratch after it is dirty from now on
            elif clean_bytes < zero_upto:
                self._zero_upto[device] = clean_bytes
        return held[1]

    def reserve(self, device: int, nbytes: int) -> None:
        """Allocate ``nbytes`` now (before a CUDA-graph capture, say)."""
        if nbytes > 0 and (device not in self._held or self._held[device][0] < nbytes):
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
        make = torch.zeros if self.keeps_clean else torch.empty
        buffer = make(size, dtype=torch.uint8, device=f"cuda:{device}")
        self._zero_upto[device] = size if self.keeps_clean else 0
        self._buffers[device] = buffer
        self._held[device] = (size, buffer.data_ptr())
        self._zero_views = {key: view for key, view in self._zero_views.items() if key[0] != device}
        return buffer
