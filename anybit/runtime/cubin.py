"""Read a kernel's resource usage from the cubin itself, so the report does not depend on the NVRTC log.

A cubin is a 64-bit little-endian ELF file. What the driver uses to launch a kernel ``k`` is in it:

* the global ``.nv.info`` section holds attribute records keyed by the kernel's symbol index:
  ``EIATTR_REGCOUNT`` (registers per thread), ``EIATTR_FRAME_SIZE`` (stack frame bytes);
* ``.nv.info.k`` holds the kernel's own records, e.g. ``EIATTR_NUM_BARRIERS``;
* ``.text.k``: older toolkits (and sm_80 cubins of current ones) keep the register count in the high byte of
  the section header's ``sh_info`` too: the fallback when there is no ``EIATTR_REGCOUNT``;
* ``.nv.shared.k``: its size is the static shared memory; from sm_90 on it starts with the 1 KB the system
  reserves per block (the module then has a ``.nv.shared.reserved.*`` section), which is not the kernel's;
* ``.nv.constant0.k``: constant bank 0 (kernel parameters and driver data).

Attribute records are 4-byte aligned: ``format (1 B), attribute (1 B)``, then for ``EIFMT_SVAL`` a 2-byte size
and that many bytes of value, for the other formats a 2-byte value. Only :mod:`struct` is needed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from anybit.runtime.resources import ResourceUsage

_ELF_MAGIC = b"\x7fELF"
# Section header: name, type, flags, address, offset, size, link, info, alignment, entry size.
_SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")
_SYMBOL = struct.Struct("<IBBHQQ")  # name, info, other, section index, value, size
_SHT_SYMTAB = 2
_SHT_NOBITS = 8

# Attribute formats and the attribute numbers used here (the EIATTR enumeration of the CUDA toolkit).
_EIFMT_SVAL = 0x04
EIATTR_FRAME_SIZE = 0x11
EIATTR_MIN_STACK_SIZE = 0x12
EIATTR_MAX_STACK_SIZE = 0x23
EIATTR_REGCOUNT = 0x2F
EIATTR_NUM_BARRIERS = 0x4C

#: Shared memory the system reserves per block (``CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK``);
#: sm_90 cubins count it in ``.nv.shared.<kernel>``.
RESERVED_SHARED_BYTES = 1024


class CubinFormatError(ValueError):
    """The bytes are not a cubin this reader understands."""


@dataclass(frozen=True)
class Section:
    """One ELF section header (the fields this reader needs) and the section's bytes."""

    name: str
    type: int
    info: int
    size: int  # from the header: for SHT_NOBITS sections (.nv.shared.*) there are no bytes in the file
    data: bytes


def read_sections(cubin: bytes) -> dict[str, Section]:
    """The sections of a cubin by name.

    Raises
    ------
    CubinFormatError
        When ``cubin`` is not a 64-bit little-endian ELF file or a header points outside it.
    """
    if len(cubin) < 64 or cubin[:4] != _ELF_MAGIC or cubin[4] != 2 or cubin[5] != 1:
        raise CubinFormatError(f"expected a 64-bit little-endian ELF cubin, got {cubin[:8]!r}...")
    (table_offset,) = struct.unpack_from("<Q", cubin, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", cubin, 0x3A)
    if entry_size != _SECTION_HEADER.size or table_offset + count * entry_size > len(cubin):
        raise CubinFormatError(f"section header table ({count} x {entry_size} B) is outside the file")
    headers = [_SECTION_HEADER.unpack_from(cubin, table_offset + i * entry_size) for i in range(count)]

    def contents(header) -> bytes:
        offset, size = header[4], header[5]
        if header[1] == _SHT_NOBITS:
            return b""
        if offset + size > len(cubin):
            raise CubinFormatError("a section lies outside the file")
        return cubin[offset : offset + size]

    names = contents(headers[names_index])
    sections = {}
    for header in headers:
        name = _c_string(names, header[0])
        sections[name] = Section(
            name=name, type=header[1], info=header[7], size=header[5], data=contents(header)
        )
    return sections


def kernel_names(cubin: bytes) -> list[str]:
    """The (lowered) names of the kernels in a cubin, in section order."""
    return [name.removeprefix(".text.") for name in read_sections(cubin) if name.startswith(".text.")]


def cubin_resources(cubin: bytes, function: str) -> ResourceUsage | None:
    """The resources of kernel ``function`` (its lowered name) read from ``cubin``; None if it is not there.

    Spill bytes are not recorded in a cubin: they come back as None (unknown).
    """
    sections = read_sections(cubin)
    text = sections.get(f".text.{function}")
    if text is None:
        return None
    symbol = _symbol_index(sections, function)
    indexed = _indexed_attributes(sections.get(".nv.info"), symbol)
    own = {attribute: value for attribute, value in _attributes(sections.get(f".nv.info.{function}"))}
    registers = indexed.get(EIATTR_REGCOUNT, text.info >> 24)
    shared = sections.get(f".nv.shared.{function}")
    shared_bytes = shared.size if shared is not None else 0
    if shared_bytes and any(name.startswith(".nv.shared.reserved.") for name in sections):
        shared_bytes = max(0, shared_bytes - RESERVED_SHARED_BYTES)
    constants = sections.get(f".nv.constant0.{function}")
    barriers = own.get(EIATTR_NUM_BARRIERS, b"\0\0")
    return ResourceUsage(
        registers=registers,
        shared_memory_bytes=shared_bytes,
        stack_frame_bytes=indexed.get(EIATTR_FRAME_SIZE, 0),
        barriers=int.from_bytes(barriers[:2], "little"),
        constant_memory_bytes=len(constants.data) if constants is not None else 0,
    )


def _symbol_index(sections: dict[str, Section], function: str) -> int | None:
    """Index of the symbol named ``function`` in ``.symtab`` (the key of its ``.nv.info`` records)."""
    table = sections.get(".symtab")
    names = sections.get(".strtab")
    if table is None or names is None or table.type != _SHT_SYMTAB:
        return None
    wanted = function.encode()
    for index in range(len(table.data) // _SYMBOL.size):
        name_offset = _SYMBOL.unpack_from(table.data, index * _SYMBOL.size)[0]
        end = names.data.find(b"\0", name_offset)
        if names.data[name_offset:end] == wanted:
            return index
    return None


def _attributes(section: Section | None):
    """``(attribute, value bytes)`` of each record of an ``.nv.info`` section."""
    if section is None:
        return
    data = section.data
    position = 0
    while position + 4 <= len(data):
        form, attribute = data[position], data[position + 1]
        if form == _EIFMT_SVAL:
            (size,) = struct.unpack_from("<H", data, position + 2)
            yield attribute, data[position + 4 : position + 4 + size]
            position += 4 + size
        else:  # EIFMT_NVAL / BVAL / HVAL: the value is the two bytes after the attribute
            yield attribute, data[position + 2 : position + 4]
            position += 4


def _indexed_attributes(section: Section | None, symbol: int | None) -> dict[int, int]:
    """The global ``.nv.info`` records ``(symbol index, value)`` that belong to ``symbol``."""
    found: dict[int, int] = {}
    if symbol is None:
        return found
    for attribute, value in _attributes(section):
        if len(value) == 8:
            owner, number = struct.unpack("<II", value)
            if owner == symbol:
                found[attribute] = number
    return found


def _c_string(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)].decode(errors="replace")
