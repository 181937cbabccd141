"""Which system of a dump to present: a kdump kernel caught by a stand-alone dump (zgetdump -s).

When the parameter area at 0x10418/0x10420 names an OLDMEM range and the meminfo found
through the swap names the same crashkernel, the dump shows two systems.  `select_system`
presents one of them, over any Dump whatever its format:
  prod   the production system: [0, size) comes from [base, base + size) (the swap
         undone), the crashkernel itself is left out (as zgetdump does), CPUs from the
         production kernel's lowcores (lowcore_ptr[] of its VMCOREINFO), time from
         CRASHTIME; the default for such dumps;
  kdump  the kdump kernel's own memory [0, size) as dumped, the dumped CPUs;
  all    everything as dumped.
The s390 reader applies the default (prod) to every dump it opens; `vmcore.open(select=)`
and the CLI's `-s` apply the user's choice to a dump of any format.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator

from dumpkit.errors import BadInputError, DumpToolError, UsageError
from meminfo_abi.cpu import cpus_from_prefixes
from meminfo_abi.locate import read_meminfo
from meminfo_abi.parmarea import PARM_OLDMEM_BASE, PARM_OLDMEM_SIZE
from vmcore.model import KIND_RAM, PAGE_SIZE, Dump, MemChunk, _SizedSource

SELECTS = ("prod", "kdump", "all")
MIB = 1 << 20


def _u64(data: bytes, off: int) -> int:
    return int.from_bytes(data[off:off + 8], "big")


class _OffsetSource(_SizedSource):
    """A window [offset, offset + size) of another source, which its owner closes."""

    def __init__(self, inner, offset: int, size: int, name: str):
        self.inner, self.offset, self.size, self.name = inner, offset, size, name

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return self.inner.read(self.offset + offset, length)

    def data_ranges(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        start, end = self._clip(start, end)
        if start >= end:
            return
        for s, e in self.inner.data_ranges(self.offset + start, self.offset + end):
            yield s - self.offset, e - self.offset

    def units(self):
        """The inner source's units (vmcore/model.py MemorySource.units), seen from this window."""
        inner = getattr(self.inner, "units", None)
        found = inner() if inner is not None else None
        if found is None:
            return None
        owner, base, size, load = found
        return owner, base + self.offset, size, load


@dataclass
class CaughtKdump:
    base: int                       # OLDMEM base = crashkernel start
    size: int                       # OLDMEM size = crashkernel size

    def to_json(self) -> dict:
        return {"oldmem_base": self.base, "oldmem_size": self.size,
                "crashkernel": [self.base, self.base + self.size]}


class _ProdMemory:
    """Production memory seen through the swap: [0, size) lives at [base, base + size)."""

    def __init__(self, dump: Dump, base: int, size: int):
        self.dump, self.base, self.crash_size = dump, base, size
        self.size = dump.size

    def read(self, addr: int, length: int) -> bytes:
        parts = []
        end = addr + length
        while addr < end:
            if addr < self.crash_size:
                n = min(end, self.crash_size) - addr
                parts.append(self.dump.read(self.base + addr, n))
            else:
                if self.base <= addr < self.base + self.crash_size:
                    raise BadInputError(f"0x{addr:x} is in the crashkernel, which the production view leaves out")
                stop = self.base if addr < self.base else self.size
                n = min(end, stop) - addr
                parts.append(self.dump.read(addr, n))
            addr += n
        return b"".join(parts)


def find_caught_kdump(dump: Dump, notes: list[str] | None = None) -> CaughtKdump | None:
    """The OLDMEM range when the dumped memory shows a running kdump kernel: parameter area
    0x10418/0x10420 non-zero, 1 MiB aligned, inside the dump, and equal to the crashkernel
    of the production meminfo found through the swap."""
    try:
        base = int.from_bytes(dump.read(PARM_OLDMEM_BASE, 8), "big")
        size = int.from_bytes(dump.read(PARM_OLDMEM_SIZE, 8), "big")
    except DumpToolError:
        return None
    if not base or not size:
        return None
    why = ""
    if base % MIB or size % MIB:
        why = "not 1 MiB aligned"
    elif base < size or base + size > dump.size:
        why = f"not a crashkernel inside the dump of 0x{dump.size:x} bytes above [0, size)"
    else:
        mi = read_meminfo(_ProdMemory(dump, base, size))
        if mi is None:
            why = "no valid meminfo through the swap (production lowcore 0xE18 at the crashkernel base)"
        elif (mi.crashkernel_addr, mi.crashkernel_size) != (base, size):
            why = (f"meminfo's crashkernel 0x{mi.crashkernel_addr:x}/0x{mi.crashkernel_size:x} differs")
    if why:
        if notes is not None:
            notes.append(f"OLDMEM base/size 0x{base:x}/0x{size:x} at 0x10418/0x10420, but {why}: read as one system")
        return None
    return CaughtKdump(base, size)


def _slice_chunks(dump: Dump, lo: int, hi: int, at: int) -> list[MemChunk]:
    """The dump's chunks over [lo, hi), moved to start at `at` (sources shared, not owned)."""
    out = []
    for c in dump.chunks:
        s, e = max(lo, c.start), min(hi, c.end)
        if s >= e:
            continue
        start = at + (s - lo)
        if c.kind == KIND_RAM:
            src = _OffsetSource(c.source, s - c.start, e - s, getattr(c.source, "name", "memory"))
            out.append(MemChunk(start, e - s, src, KIND_RAM))
        else:
            out.append(MemChunk(start, e - s, None, c.kind))
    return out


def _lowcore_ptrs(dump: Dump) -> list[int] | None:
    vi = dump.attrs.vmcoreinfo
    if vi is None:
        return None
    try:
        sym, count = vi.symbol("lowcore_ptr"), vi.length("lowcore_ptr")
    except DumpToolError:
        return None
    if sym is None or not count:
        return None
    from vmcore.inspect import virt_to_phys_for
    v2p = virt_to_phys_for(dump)
    count = min(count, 512)
    try:
        raw = dump.read(v2p(sym), 8 * count)
    except DumpToolError:
        return None
    ptrs = []
    for i in range(count):
        p = _u64(raw, 8 * i)
        if p and not p % PAGE_SIZE:         # zgetdump skips entries that are not page aligned
            ptrs.append(v2p(p))
    return ptrs


def select_system(dump: Dump, select: str | None = None) -> Dump:
    """The system `select` names (prod, kdump, all) of a dump that caught a kdump kernel; None =
    prod for such dumps, the dump itself otherwise.  -s on a single-system dump is a UsageError."""
    if select is not None and select not in SELECTS:
        raise UsageError(f"-s {select}: choose one of {', '.join(SELECTS)}")
    raw: Dump = getattr(dump, "unselected", None) or dump
    notes: list[str] = []
    caught = find_caught_kdump(raw, notes)
    if caught is None:
        known = dump.attrs.extra.setdefault("notes", [])
        known.extend(n for n in notes if n not in known)
        if not known:
            del dump.attrs.extra["notes"]
        if select is not None:
            raise UsageError(f"-s {select}: this dump holds one system (no kdump kernel caught by a stand-alone "
                             "dump: OLDMEM base/size at 0x10418/0x10420 are zero or do not match the crashkernel)")
        return dump
    sel = select or "prod"
    if getattr(dump, "unselected", None) is not None and dump.attrs.extra.get("system") == sel:
        return dump
    b, s = caught.base, caught.size
    end = raw.size
    if sel == "all":
        chunks = _slice_chunks(raw, 0, end, 0)
        cpus = list(raw.cpus)
    elif sel == "kdump":
        chunks = _slice_chunks(raw, 0, s, 0)
        cpus = list(raw.cpus)
    else:
        chunks = (_slice_chunks(raw, b, b + s, 0) + _slice_chunks(raw, s, b, s)
                  + _slice_chunks(raw, b + s, end, b + s))
        cpus = []
    attrs = dataclasses.replace(raw.attrs, extra=dict(raw.attrs.extra), vmcoreinfo=None, vmcoreinfo_raw=None,
                                vmcoreinfo_source=None)
    attrs.extra.pop("vmcoreinfo_error", None)
    attrs.extra["system"] = sel
    attrs.extra["kdump_caught"] = dict(caught.to_json(), systems={
        "prod": "the production system (swap undone, crashkernel left out)",
        "kdump": "the kdump kernel's memory [0, OLDMEM size) as dumped",
        "all": "everything as dumped"})
    if sel == "prod":
        attrs.timestamp = None
    view = Dump(chunks, cpus, attrs, resources=[dump])
    view.unselected = raw
    view.fill_vmcoreinfo_from_memory()
    if sel == "prod":
        cnotes: list[str] = []
        ptrs = _lowcore_ptrs(view)
        source = "lowcore_ptr[] of the production VMCOREINFO"
        if not ptrs:
            ptrs = [c.prefix for c in raw.cpus if c.prefix]
            source = "the dumped CPUs' prefixes, read through the swap"
        view.cpus = cpus_from_prefixes(view, ptrs, cnotes)
        attrs.extra["cpus_from"] = source
        if cnotes:
            attrs.extra.setdefault("notes", []).extend(cnotes)
        if attrs.timestamp is None and raw.attrs.timestamp is not None:
            attrs.timestamp = raw.attrs.timestamp
    return view
