"""Where the ABI pointers in the absolute lowcore lead: meminfo (0xE18) and VMCOREINFO (0xE0C).

The kdump kernel's order (the VMCOREINFO note: Documentation/admin-guide/kdump/vmcoreinfo.rst, arch/s390/kernel/crash_dump.c): the meminfo/os_info VMCOREINFO entry if it is
present and its checksum holds, else the ELF note that lowcore 0xE0C points to.  Real
kernels leave entry 0 empty, so the second path is the common one.
"""

from __future__ import annotations

from dataclasses import dataclass

from meminfo_abi.checksum import csum_partial
from meminfo_abi.elfnotes import iter_notes
from dumpkit.errors import BadInputError, DumpToolError
from meminfo_abi.lowcore import LC_OS_INFO, LC_VMCORE_INFO
from meminfo_abi.meminfo import OS_INFO_MAGIC, OS_INFO_SIZE, OS_INFO_VMCOREINFO, MemInfo, header_csum
from meminfo_abi.meminfo import Readable
from meminfo_abi.vmcoreinfo import VMCOREINFO_NOTE_NAME, VmcoreInfo, parse_vmcoreinfo

MAX_VMCOREINFO = 1 << 20


@dataclass
class FoundVmcoreinfo:
    info: VmcoreInfo
    raw: bytes
    source: str          # "meminfo entry 0" or "lowcore 0xE0C note"
    address: int         # physical address of the text


def _u64(mem: Readable, addr: int) -> int | None:
    if addr + 8 > mem.size:
        return None
    return int.from_bytes(mem.read(addr, 8), "big")


def read_meminfo(mem: Readable) -> MemInfo | None:
    """The meminfo page if pointer, alignment, magic and header checksum hold; else None."""
    try:
        return _read_meminfo(mem)
    except DumpToolError:       # a dump that does not hold the page
        return None


def _read_meminfo(mem: Readable) -> MemInfo | None:
    ptr = _u64(mem, LC_OS_INFO)
    if not ptr or ptr % OS_INFO_SIZE or ptr + OS_INFO_SIZE > mem.size:
        return None
    page = mem.read(ptr, OS_INFO_SIZE)
    mi = MemInfo.parse(page)
    if mi.magic != OS_INFO_MAGIC or header_csum(page) != mi.csum:
        return None
    return mi


def find_vmcoreinfo(mem: Readable) -> FoundVmcoreinfo | None:
    """VMCOREINFO as the kdump kernel finds it; None when neither path leads to it."""
    try:
        return _find_vmcoreinfo(mem)
    except DumpToolError:
        return None


def _find_vmcoreinfo(mem: Readable) -> FoundVmcoreinfo | None:
    mi = read_meminfo(mem)
    if mi is not None:
        e = mi.entries[OS_INFO_VMCOREINFO]
        if e.addr and 0 < e.size <= MAX_VMCOREINFO and e.addr + e.size <= mem.size:
            raw = mem.read(e.addr, e.size)
            if csum_partial(raw) == e.csum:
                raw = raw.rstrip(b"\0")        # the entry may cover the note's NUL padding
                return FoundVmcoreinfo(parse_vmcoreinfo(raw), raw, "meminfo entry 0", e.addr)
    ptr = _u64(mem, LC_VMCORE_INFO)
    if not ptr or ptr + 24 > mem.size:
        return None
    head = mem.read(ptr, 24)
    namesz = int.from_bytes(head[0:4], "big")
    descsz = int.from_bytes(head[4:8], "big")
    if namesz != len(VMCOREINFO_NOTE_NAME) + 1 or not 0 < descsz <= MAX_VMCOREINFO:
        return None
    if ptr + 24 + descsz > mem.size:
        return None
    try:
        note = next(iter_notes(mem.read(ptr, 24 + ((descsz + 3) & ~3))), None)
    except BadInputError:
        return None
    if note is None or note.name != VMCOREINFO_NOTE_NAME:
        return None
    raw = bytes(note.desc)
    return FoundVmcoreinfo(parse_vmcoreinfo(raw), raw, "lowcore 0xE0C note", ptr + 24)
