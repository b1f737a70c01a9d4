"""`ResourceUsage`, a kernel's per-thread and per-block resources, and the parser of the ptxas ``-v`` report.

Two sources give the numbers: the cubin itself (:mod:`anybit.runtime.cubin`, always there) and the ptxas
report in the NVRTC log (``--ptxas-options=-v``; not every NVRTC build puts it there). Only the report knows
the spill bytes, so they are ``None`` (unknown) when it is missing; :func:`merge_resources` combines the two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ResourceUsage:
    """Per-thread and per-block resources of one compiled kernel.

    ``spill_store_bytes``/``spill_load_bytes`` are None when unknown (no ptxas report in the log).
    """

    registers: int = 0
    shared_memory_bytes: int = 0  # static shared memory; dynamic shared memory is a launch setting
    stack_frame_bytes: int = 0
    spill_store_bytes: int | None = None
    spill_load_bytes: int | None = None
    barriers: int = 0
    constant_memory_bytes: int = 0

    @property
    def spills(self) -> bool | None:
        """Whether ptxas spilled registers to local memory; None when the ptxas report was not available."""
        if self.spill_store_bytes is None or self.spill_load_bytes is None:
            return None
        return self.spill_store_bytes > 0 or self.spill_load_bytes > 0

    def __str__(self) -> str:
        if self.spills is None:
            spills = "spills unknown (no ptxas report)"
        else:
            spills = f"spills {self.spill_store_bytes} B stored / {self.spill_load_bytes} B loaded"
        return (
            f"{self.registers} registers, {self.shared_memory_bytes} B static shared memory, "
            f"{self.stack_frame_bytes} B stack frame, {spills}, {self.barriers} barriers"
        )


def merge_resources(from_cubin: ResourceUsage | None, from_log: ResourceUsage | None) -> ResourceUsage:
    """The cubin's numbers (authoritative: they are what the driver loads) with the log's spill counts.

    Without a readable cubin report the log's numbers are used; without either, all zero and spills unknown.
    """
    if from_cubin is None:
        return from_log if from_log is not None else ResourceUsage()
    if from_log is None:
        return from_cubin
    return replace(
        from_cubin,
        spill_store_bytes=from_log.spill_store_bytes,
        spill_load_bytes=from_log.spill_load_bytes,
    )


# -- the ptxas report ------------------------------------------------------------------------------------

_FUNCTION_HEADER = re.compile(r"Function properties for (\S+)")
_COMPILING_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_NUMBERS = {
    "registers": re.compile(r"Used (\d+) registers"),
    "shared_memory_bytes": re.compile(r"(\d+) bytes smem"),
    "stack_frame_bytes": re.compile(r"(\d+) bytes stack frame"),
    "spill_store_bytes": re.compile(r"(\d+) bytes spill stores"),
    "spill_load_bytes": re.compile(r"(\d+) bytes spill loads"),
    "barriers": re.compile(r"used (\d+) barriers"),
    "constant_memory_bytes": re.compile(r"(\d+) bytes cmem\[0\]"),
}


def parse_resource_report(log: str, function: str | None = None) -> ResourceUsage | None:
    """Parse the ``ptxas -v`` lines of an NVRTC log for ``function`` (the first entry function if None).

    The report comes in sections that start with ``Compiling entry function 'name'`` or ``Function properties
    for name``; the numbers of the section of ``function`` (or the first one) are collected. Returns None when
    the log holds no report (or none for ``function``, when other functions have one).
    """
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in log.splitlines():
        header = _COMPILING_ENTRY.search(line) or _FUNCTION_HEADER.search(line)
        if header:
            current = header.group(1)
            sections.setdefault(current, [])
            continue
        if current is not None:
            sections[current].append(line)
    if not sections:
        return None
    lines = sections.get(function) if function is not None else next(iter(sections.values()))
    if lines is None:
        return None
    text = "\n".join(lines)
    if _NUMBERS["registers"].search(text) is None:
        return None  # a header without the numbers: not a report we can trust
    values: dict[str, int | None] = {}
    for key, pattern in _NUMBERS.items():
        match = pattern.search(text)
        # ptxas leaves out zero counts (no "smem" without shared memory), except the spill line, which it
        # always prints with the stack frame: a missing spill count means "not reported", not zero.
        values[key] = int(match.group(1)) if match else (None if key.startswith("spill") else 0)
    return ResourceUsage(**values)
