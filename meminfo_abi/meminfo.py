"""The meminfo block: an os_info page (arch/s390/include/asm/os_info.h) plus the seed's kexec segment table.

Wire format = the os_info page real kernels publish, so real memory images read
as meminfo and zipl's stand-alone kdump accepts ours:

  absolute lowcore 0xE18 -> 4096-byte page-aligned page
  0x000 magic "OSINFOSZ"   0x008 csum (CKSM over 0x00C..0xFFF)   0x00C version 1.1
  0x010 crashkernel_addr   0x018 crashkernel_size   0x020 entry[203] (20 bytes, packed)

What upstream dropped and the seed had - the kexec segments with their
checksums - is one project-defined data entry, MEMINFO_KEXEC_SEGMENTS (index
200, far above upstream's 0..12), pointing to a KexecSegmentTable.  See
docs/ABI.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from itertools import starmap
from typing import Callable, Iterable, Protocol

from construct import Array, Bytes, Const, Int16ub, Int32ub, Int64ub, Padding, Struct

from meminfo_abi.checksum import csum_partial, csum_range
from dumpkit.errors import BadInputError, DumpToolError
from meminfo_abi.flat import FlatLayout, field_names
from meminfo_abi.lowcore import LC_OS_INFO

OS_INFO_MAGIC = 0x4F53494E464F535A          # "OSINFOSZ"
OS_INFO_VERSION_MAJOR = 1
OS_INFO_VERSION_MINOR = 1
OS_INFO_VERSION_MAJOR_SUPPORTED = 1         # what zipl's kdump accepts
OS_INFO_SIZE = 4096
OS_INFO_CSUM_OFFSET = 0x0C                  # header checksum covers 0x0C..0xFFF (4084 bytes)
OS_INFO_ENTRY_OFFSET = 0x20
OS_INFO_ENTRY_SIZE = 20
OS_INFO_ENTRY_SLOTS = (OS_INFO_SIZE - OS_INFO_ENTRY_OFFSET) // OS_INFO_ENTRY_SIZE   # 203
OS_INFO_FLAG_REIPL_CLEAR = 1 << 0

# Entry indices; upstream meanings (newest kernel), then ours.
OS_INFO_VMCOREINFO = 0
OS_INFO_REIPL_BLOCK = 1
OS_INFO_FLAGS_ENTRY = 2
OS_INFO_RESERVED = 3
OS_INFO_IDENTITY_BASE = 4
OS_INFO_KASLR_OFFSET = 5
OS_INFO_KASLR_OFF_PHYS = 6
OS_INFO_VMEMMAP = 7
OS_INFO_AMODE31_START = 8
OS_INFO_AMODE31_END = 9
OS_INFO_IMAGE_START = 10
OS_INFO_IMAGE_END = 11
OS_INFO_IMAGE_PHYS = 12
OS_INFO_MAX = 13
MEMINFO_KEXEC_SEGMENTS = 200                # project-defined: the kexec segment table

ENTRY_NAMES = {
    OS_INFO_VMCOREINFO: "VMCOREINFO",
    OS_INFO_REIPL_BLOCK: "REIPL_BLOCK",
    OS_INFO_FLAGS_ENTRY: "FLAGS",
    OS_INFO_RESERVED: "RESERVED",
    OS_INFO_IDENTITY_BASE: "IDENTITY_BASE",
    OS_INFO_KASLR_OFFSET: "KASLR_OFFSET",
    OS_INFO_KASLR_OFF_PHYS: "KASLR_OFF_PHYS",
    OS_INFO_VMEMMAP: "VMEMMAP",
    OS_INFO_AMODE31_START: "AMODE31_START",
    OS_INFO_AMODE31_END: "AMODE31_END",
    OS_INFO_IMAGE_START: "IMAGE_START",
    OS_INFO_IMAGE_END: "IMAGE_END",
    OS_INFO_IMAGE_PHYS: "IMAGE_PHYS",
    MEMINFO_KEXEC_SEGMENTS: "KEXEC_SEGMENTS",
}
# Entries that upstream (6.10+) fills as value entries (size 0, csum 0).
VALUE_ENTRIES = frozenset(range(OS_INFO_IDENTITY_BASE, OS_INFO_MAX))

# zipl boot loader wait codes (include/boot/error.h, "ABI, do not change")
EOS_INFO_MISSING = 0x4520
EOS_INFO_CSUM_FAILED = 0x4521
EOS_INFO_VERSION = 0x4522
EOS_INFO_NOCRASHKERNEL = 0x4523
EHSA_COPY_FAILED = 0x4524
# Ours, for what only the seed's meminfo can check (outside zipl's 0x4500-0x4549 range)
EKDUMP_NOT_LOADED = 0x4580           # no kexec segment table entry
EKDUMP_SEGTAB_INVALID = 0x4581       # table unreadable, bad magic/version/count, table checksum
EKDUMP_SEGMENT_RANGE = 0x4582        # a segment outside the crashkernel memory
EKDUMP_SEGMENT_CSUM = 0x4583         # a segment's CKSM does not match
EKDUMP_DIGEST = 0x4584               # SHA-256 over the segments does not match

OsInfoEntry = Struct(
    "addr" / Int64ub,        # physical address, or the value of a value entry ("val" since 6.10)
    "size" / Int64ub,
    "csum" / Int32ub,
)

MemInfoPage = Struct(
    "magic" / Int64ub,
    "csum" / Int32ub,
    "version_major" / Int16ub,
    "version_minor" / Int16ub,
    "crashkernel_addr" / Int64ub,
    "crashkernel_size" / Int64ub,
    "entry" / Array(OS_INFO_ENTRY_SLOTS, OsInfoEntry),
    "reserved" / Bytes(OS_INFO_SIZE - OS_INFO_ENTRY_OFFSET - OS_INFO_ENTRY_SLOTS * OS_INFO_ENTRY_SIZE),
)
# The same declaration as one struct.Struct: MemInfo.parse / to_bytes run on every read of
# the page (check_meminfo, the tamper matrix, fuzzing), where construct's walk over 203
# entries took milliseconds.
_MEMINFO_PAGE = FlatLayout(MemInfoPage)

# -- the seed's kexec segment table ---------------------------------------------------
KEXEC_SEGTAB_MAGIC = b"KDSEGTAB"
KEXEC_SEGTAB_VERSION = 1
KEXEC_MAX_SEGMENTS = 16              # kexec's KEXEC_SEGMENT_MAX / purgatory SHA256_REGIONS

SEGMENT_KIND_OTHER = 0
SEGMENT_KIND_KERNEL = 1
SEGMENT_KIND_INITRD = 2
SEGMENT_KIND_PURGATORY = 3           # never part of the digest, as in kexec-tools
SEGMENT_KIND_NAMES = {0: "other", 1: "kernel", 2: "initrd", 3: "purgatory"}

KexecSegmentEntry = Struct(
    "mem" / Int64ub,         # absolute address of the segment in crashkernel memory
    "memsz" / Int64ub,       # bytes in memory (buffer + zero fill)
    "bufsz" / Int64ub,       # bytes that came from the file
    "csum" / Int32ub,        # CKSM over [mem, mem + memsz)
    "kind" / Int32ub,
)
KexecSegmentTableHeader = Struct(
    "magic" / Const(KEXEC_SEGTAB_MAGIC),
    "version" / Int16ub,
    "nr_segments" / Int16ub,
    "flags" / Int32ub,
    "entry" / Int64ub,       # where kdump is started after the swap (0x10010)
    "sha256" / Bytes(32),    # purgatory-order digest over all non-purgatory segments
    Padding(8),
)
KEXEC_SEGTAB_HEADER_SIZE = 64
KEXEC_SEGMENT_ENTRY_SIZE = 32


class Readable(Protocol):
    size: int

    def read(self, addr: int, length: int) -> bytes: ...


@dataclass
class KexecSegment:
    mem: int
    memsz: int
    bufsz: int
    csum: int
    kind: int = SEGMENT_KIND_OTHER

    @property
    def kind_name(self) -> str:
        return SEGMENT_KIND_NAMES.get(self.kind, f"kind {self.kind}")


@dataclass
class KexecSegmentTable:
    entry: int
    segments: list[KexecSegment]
    sha256: bytes = bytes(32)
    flags: int = 0

    def to_bytes(self) -> bytes:
        if len(self.segments) > KEXEC_MAX_SEGMENTS:
            raise BadInputError(f"{len(self.segments)} kexec segments, at most {KEXEC_MAX_SEGMENTS}")
        head = KexecSegmentTableHeader.build(
            dict(version=KEXEC_SEGTAB_VERSION, nr_segments=len(self.segments), flags=self.flags,
                 entry=self.entry, sha256=self.sha256)
        )
        body = b"".join(
            KexecSegmentEntry.build(dict(mem=s.mem, memsz=s.memsz, bufsz=s.bufsz, csum=s.csum, kind=s.kind))
            for s in self.segments
        )
        return head + body

    @classmethod
    def parse(cls, data: bytes) -> "KexecSegmentTable":
        if len(data) < KEXEC_SEGTAB_HEADER_SIZE:
            raise BadInputError(f"kexec segment table has {len(data)} bytes, header needs {KEXEC_SEGTAB_HEADER_SIZE}")
        if data[:8] != KEXEC_SEGTAB_MAGIC:
            raise BadInputError(f"kexec segment table magic is {bytes(data[:8])!r}, expected {KEXEC_SEGTAB_MAGIC!r}")
        head = KexecSegmentTableHeader.parse(data)
        if head.version != KEXEC_SEGTAB_VERSION:
            raise BadInputError(f"kexec segment table version {head.version} is not supported")
        n = head.nr_segments
        if n > KEXEC_MAX_SEGMENTS:
            raise BadInputError(f"kexec segment table claims {n} segments, at most {KEXEC_MAX_SEGMENTS}")
        need = KEXEC_SEGTAB_HEADER_SIZE + n * KEXEC_SEGMENT_ENTRY_SIZE
        if len(data) < need:
            raise BadInputError(f"kexec segment table of {n} segments needs {need} bytes, has {len(data)}")
        segs = []
        for i in range(n):
            e = KexecSegmentEntry.parse(data[KEXEC_SEGTAB_HEADER_SIZE + i * KEXEC_SEGMENT_ENTRY_SIZE:])
            segs.append(KexecSegment(e.mem, e.memsz, e.bufsz, e.csum, e.kind))
        return cls(entry=head.entry, segments=segs, sha256=bytes(head.sha256), flags=head.flags)

    @staticmethod
    def size_for(nr_segments: int) -> int:
        return KEXEC_SEGTAB_HEADER_SIZE + nr_segments * KEXEC_SEGMENT_ENTRY_SIZE


@dataclass
class Entry:
    addr: int = 0
    size: int = 0
    csum: int = 0

    @property
    def empty(self) -> bool:
        return self.addr == 0 and self.size == 0 and self.csum == 0


# Entry is built positionally from the page's entry tuples: its fields are OsInfoEntry's.
assert tuple(f.name for f in fields(Entry)) == field_names(OsInfoEntry) == _MEMINFO_PAGE.element_fields["entry"]


@dataclass
class MemInfo:
    """One meminfo (os_info) page, parsed; to_bytes() recomputes the header checksum."""

    crashkernel_addr: int = 0
    crashkernel_size: int = 0
    version_major: int = OS_INFO_VERSION_MAJOR
    version_minor: int = OS_INFO_VERSION_MINOR
    entries: list[Entry] = field(default_factory=lambda: [Entry() for _ in range(OS_INFO_ENTRY_SLOTS)])
    magic: int = OS_INFO_MAGIC
    csum: int = 0
    reserved: bytes = bytes(4)

    def to_bytes(self) -> bytes:
        page = bytearray(
            _MEMINFO_PAGE.build(
                dict(
                    magic=self.magic, csum=0, version_major=self.version_major,
                    version_minor=self.version_minor, crashkernel_addr=self.crashkernel_addr,
                    crashkernel_size=self.crashkernel_size,
                    entry=[(e.addr, e.size, e.csum) for e in self.entries],
                    reserved=self.reserved,
                )
            )
        )
        self.csum = header_csum(page)
        page[8:12] = self.csum.to_bytes(4, "big")
        return bytes(page)

    @classmethod
    def parse(cls, page: bytes) -> "MemInfo":
        if len(page) < OS_INFO_SIZE:
            raise BadInputError(f"meminfo page has {len(page)} bytes, needs {OS_INFO_SIZE}")
        p = _MEMINFO_PAGE.parse(page)
        return cls(
            crashkernel_addr=p["crashkernel_addr"], crashkernel_size=p["crashkernel_size"],
            version_major=p["version_major"], version_minor=p["version_minor"],
            entries=list(starmap(Entry, p["entry"])),
            magic=p["magic"], csum=p["csum"], reserved=p["reserved"],
        )

    def set_data_entry(self, index: int, addr: int, data: bytes) -> None:
        """A data entry: physical address, byte length and CKSM of the buffer."""
        self.entries[index] = Entry(addr, len(data), csum_partial(data))

    def set_value_entry(self, index: int, value: int) -> None:
        self.entries[index] = Entry(value, 0, 0)

    def clear_entry(self, index: int) -> None:
        self.entries[index] = Entry()


def header_csum(page: bytes | bytearray | memoryview) -> int:
    return csum_partial(memoryview(page)[OS_INFO_CSUM_OFFSET:OS_INFO_SIZE])


def entry_name(index: int) -> str:
    return ENTRY_NAMES.get(index, f"entry {index}")


# -- validation ------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    wait_code: int | None = None   # the disabled-wait code a dumper would load when this fails

    def to_json(self) -> dict:
        return {"check": self.name, "ok": self.ok, "detail": self.detail,
                "wait_code": None if self.wait_code is None else f"0x{self.wait_code:04x}"}


@dataclass
class MeminfoReport:
    """Every check, in the order a stand-alone dumper makes them."""

    pointer: int = 0
    meminfo: MemInfo | None = None
    table: KexecSegmentTable | None = None
    checks: list[Check] = field(default_factory=list)
    header_valid: bool = False              # the block is intact and names a crashkernel
    kdump_intact: bool = False
    block_intact: bool = False              # pointer, magic, header checksum and version hold
    crash_evidence: str | None = None       # what says a kdump kernel was loaded (VMCOREINFO CRASHTIME)

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    @property
    def reason(self) -> str:
        f = self.first_failure
        if f is None:
            return "meminfo valid, kdump intact" if self.kdump_intact else "meminfo valid"
        return f"{f.name}: {f.detail}"

    # three separate truths: the block, the crashkernel, kdump
    @property
    def block_text(self) -> str:
        if self.block_intact:
            mi = self.meminfo
            return f"intact (os_info {mi.version_major}.{mi.version_minor})"
        f = self.first_failure
        return f"invalid - {f.name}: {f.detail}" if f else "not checked"

    @property
    def crashkernel_text(self) -> str:
        if not self.block_intact:
            return "unknown (no intact os_info block)"
        mi = self.meminfo
        if not mi.crashkernel_addr:
            return "none: this kernel has no crashkernel"
        return (f"0x{mi.crashkernel_addr:x}-0x{mi.crashkernel_addr + mi.crashkernel_size - 1:x} "
                f"({mi.crashkernel_size >> 20} MiB)")

    @property
    def kdump_text(self) -> str:
        if not self.block_intact:
            return "unknown (no intact os_info block)"
        if not self.meminfo.crashkernel_addr:
            return "not possible without a crashkernel"
        if self.kdump_intact:
            return "loaded and intact"
        f = self.first_failure
        if f is None:
            return "not checked"
        if f.name == "kdump loaded":
            return f.detail
        return f"damaged - {f.name}: {f.detail}"

    @property
    def summary(self) -> str:
        """One line, the three truths apart: 'os_info block intact (1.1); crashkernel ...; kdump ...'."""
        return f"block {self.block_text}; crashkernel {self.crashkernel_text}; kdump {self.kdump_text}"

    def to_json(self) -> dict:
        mi = self.meminfo
        return {
            "pointer": f"0x{self.pointer:x}",
            "header_valid": self.header_valid,
            "kdump_intact": self.kdump_intact,
            "reason": self.reason,
            "block_intact": self.block_intact,
            "block": self.block_text, "crashkernel_state": self.crashkernel_text, "kdump": self.kdump_text,
            "summary": self.summary, "crash_evidence": self.crash_evidence,
            "crashkernel": None if mi is None else
            {"base": f"0x{mi.crashkernel_addr:x}", "size": f"0x{mi.crashkernel_size:x}"},
            "checks": [c.to_json() for c in self.checks],
        }


def _parallel_safe(mem: Readable) -> bool:
    """Storage that several threads may read at once: a mapped memory image (`view`); dump
    readers keep caches that are not shared between threads."""
    return getattr(mem, "view", None) is not None


def _csum_range(mem: Readable, addr: int, length: int) -> int:
    """CKSM of [addr, addr+length) of memory, streamed (on all cores for a memory image)."""
    view = getattr(mem, "view", None)
    return csum_range(view or mem.read, addr, length, threads=None if _parallel_safe(mem) else 1)


def segments_digest(mem: Readable, segments: Iterable[KexecSegment], chunk: int = 1 << 24,
                    progress: Callable[[int], None] | None = None) -> bytes:
    """SHA-256 over every non-purgatory segment's memory in table order (kexec-tools' purgatory
    digests buffer + zero fill = the memsz bytes in storage once loaded)."""
    h = hashlib.sha256()
    view = getattr(mem, "view", None)
    for s in segments:
        if s.kind == SEGMENT_KIND_PURGATORY:
            continue
        pos, end = s.mem, s.mem + s.memsz
        while pos < end:
            n = min(chunk, end - pos)
            h.update(view(pos, n) if view else mem.read(pos, n))
            if progress:
                progress(n)
            pos += n
    return h.digest()


def _crash_evidence(mem: Readable, vmcoreinfo=None) -> str | None:
    """'VMCOREINFO CRASHTIME=...' when the kernel wrote it (it does so only on its way into a
    loaded kdump kernel), else None."""
    vi = vmcoreinfo if vmcoreinfo is not None else getattr(getattr(mem, "attrs", None), "vmcoreinfo", None)
    if vi is None:
        from meminfo_abi.locate import find_vmcoreinfo
        from meminfo_abi.vmcoreinfo import parse_vmcoreinfo
        try:
            found = find_vmcoreinfo(mem)
            vi = parse_vmcoreinfo(found.raw) if found is not None else None
        except (DumpToolError, ValueError):
            return None
    t = vi.get("CRASHTIME") if vi is not None else None
    return f"VMCOREINFO CRASHTIME={t}: the kernel crashed into a loaded kdump kernel" if t else None


def check_meminfo(mem: Readable, *, verify_segments: bool = True, pointer: int | None = None,
                  vmcoreinfo=None) -> MeminfoReport:
    """Validate the meminfo block reachable from absolute 0xE18 of `mem`, as the dumper does:
    pointer, alignment, readability, magic, header checksum, version, crashkernel, the data
    entries' checksums, then the kexec segment table, every segment's CKSM and the digest."""
    rep = MeminfoReport()
    add = rep.checks.append
    if pointer is None:
        if not _readable(mem, LC_OS_INFO, 8):
            add(Check("pointer", False, "memory too small to hold the lowcore", EOS_INFO_MISSING))
            return rep
        try:
            pointer = int.from_bytes(mem.read(LC_OS_INFO, 8), "big")
        except DumpToolError as exc:
            add(Check("pointer", False, f"lowcore not readable: {exc}", EOS_INFO_MISSING))
            return rep
    rep.pointer = pointer
    if pointer == 0:
        add(Check("pointer", False, "lowcore 0xE18 is 0: no meminfo", EOS_INFO_MISSING))
        return rep
    add(Check("pointer", True, f"lowcore 0xE18 -> 0x{pointer:x}"))
    if pointer % OS_INFO_SIZE:
        add(Check("alignment", False, f"0x{pointer:x} is not page aligned", EOS_INFO_MISSING))
        return rep
    add(Check("alignment", True, "page aligned"))
    if not _readable(mem, pointer, OS_INFO_SIZE):
        add(Check("readable", False, f"page 0x{pointer:x} is outside memory", EOS_INFO_MISSING))
        return rep
    try:
        page = mem.read(pointer, OS_INFO_SIZE)
    except DumpToolError as exc:
        add(Check("readable", False, f"page 0x{pointer:x}: {exc}", EOS_INFO_MISSING))
        return rep
    mi = MemInfo.parse(page)
    rep.meminfo = mi
    if mi.magic != OS_INFO_MAGIC:
        add(Check("magic", False, f"magic 0x{mi.magic:016x} is not OSINFOSZ", EOS_INFO_MISSING))
        return rep
    add(Check("magic", True, "OSINFOSZ"))
    want = header_csum(page)
    if want != mi.csum:
        add(Check("header checksum", False, f"stored 0x{mi.csum:08x}, computed 0x{want:08x}", EOS_INFO_CSUM_FAILED))
        return rep
    add(Check("header checksum", True, f"0x{mi.csum:08x}"))
    if mi.version_major > OS_INFO_VERSION_MAJOR_SUPPORTED:
        add(Check("version", False, f"version {mi.version_major}.{mi.version_minor} is newer than "
                  f"{OS_INFO_VERSION_MAJOR_SUPPORTED}.x", EOS_INFO_VERSION))
        return rep
    add(Check("version", True, f"{mi.version_major}.{mi.version_minor}"))
    rep.block_intact = True
    if mi.crashkernel_addr == 0:
        add(Check("crashkernel", False, "no crashkernel memory reserved", EOS_INFO_NOCRASHKERNEL))
        return rep
    ck_end = mi.crashkernel_addr + mi.crashkernel_size
    add(Check("crashkernel", True, f"0x{mi.crashkernel_addr:x}-0x{ck_end - 1:x} ({mi.crashkernel_size >> 20} MiB)"))
    rep.header_valid = True

    # data entries (value entries and empty slots carry no checksum)
    for idx, e in enumerate(mi.entries):
        if e.empty or e.size == 0 or idx == MEMINFO_KEXEC_SEGMENTS:
            continue
        name = f"entry {idx} {entry_name(idx)}"
        if not _readable(mem, e.addr, e.size):
            add(Check(name, False, f"0x{e.addr:x}+0x{e.size:x} is outside memory"))
            continue
        try:
            got = _csum_range(mem, e.addr, e.size)
        except DumpToolError as exc:
            add(Check(name, False, f"not readable: {exc}"))
            continue
        add(Check(name, got == e.csum, f"stored 0x{e.csum:08x}, computed 0x{got:08x}"))

    # the seed's part: kexec segments
    te = mi.entries[MEMINFO_KEXEC_SEGMENTS]
    if te.empty:
        # real kernels never write the segment table: its absence proves nothing when the
        # kernel's own VMCOREINFO says it crashed into a loaded kdump kernel
        rep.crash_evidence = _crash_evidence(mem, vmcoreinfo)
        if rep.crash_evidence:
            add(Check("kdump loaded", False, f"kdump state unknown to the dumper (no segment table; "
                                             f"{rep.crash_evidence})", EKDUMP_NOT_LOADED))
        else:
            add(Check("kdump loaded", False, "kdump not loaded (no kexec segment table)", EKDUMP_NOT_LOADED))
        return rep
    if te.size < KEXEC_SEGTAB_HEADER_SIZE or te.size > KexecSegmentTable.size_for(KEXEC_MAX_SEGMENTS) \
            or not _readable(mem, te.addr, te.size):
        add(Check("segment table", False, f"table 0x{te.addr:x}+0x{te.size:x} is not readable", EKDUMP_SEGTAB_INVALID))
        return rep
    try:
        raw = mem.read(te.addr, te.size)
    except DumpToolError as exc:
        add(Check("segment table", False, f"not readable: {exc}", EKDUMP_SEGTAB_INVALID))
        return rep
    got = csum_partial(raw)
    if got != te.csum:
        add(Check("segment table", False, f"table checksum stored 0x{te.csum:08x}, computed 0x{got:08x}",
                  EKDUMP_SEGTAB_INVALID))
        return rep
    try:
        table = KexecSegmentTable.parse(raw)
    except BadInputError as exc:
        add(Check("segment table", False, str(exc), EKDUMP_SEGTAB_INVALID))
        return rep
    rep.table = table
    add(Check("segment table", True, f"{len(table.segments)} segments at 0x{te.addr:x}, entry 0x{table.entry:x}"))
    if not verify_segments:
        return rep
    # the SHA-256 digest (the long pole: one stream) runs beside the CKSMs on a memory image
    def inside(seg: KexecSegment) -> bool:
        return mi.crashkernel_addr <= seg.mem and seg.mem + seg.memsz <= ck_end and _readable(mem, seg.mem, seg.memsz)

    digest_job = (_DigestJob(mem, table.segments)
                  if _parallel_safe(mem) and all(inside(s) for s in table.segments) else None)
    all_ok = True
    for i, s in enumerate(table.segments):
        name = f"segment {i} ({s.kind_name})"
        if not inside(s):
            add(Check(name, False, f"0x{s.mem:x}+0x{s.memsz:x} is outside the crashkernel memory",
                      EKDUMP_SEGMENT_RANGE))
            all_ok = False
            continue
        try:
            got = _csum_range(mem, s.mem, s.memsz)
        except DumpToolError as exc:
            add(Check(name, False, f"not readable: {exc}", EKDUMP_SEGMENT_RANGE))
            all_ok = False
            continue
        ok = got == s.csum
        all_ok &= ok
        add(Check(name, ok, f"0x{s.mem:x}+0x{s.memsz:x} stored 0x{s.csum:08x}, computed 0x{got:08x}",
                  None if ok else EKDUMP_SEGMENT_CSUM))
    digest = digest_job.result() if digest_job else None
    if not all_ok:
        return rep
    if digest is None:
        digest = segments_digest(mem, table.segments)
    ok = digest == table.sha256
    add(Check("sha256 digest", ok, digest.hex() if ok else f"stored {table.sha256.hex()}, computed {digest.hex()}",
              None if ok else EKDUMP_DIGEST))
    rep.kdump_intact = ok
    return rep


class _DigestJob:
    """segments_digest on a thread of its own (hashlib releases the GIL)."""

    def __init__(self, mem: Readable, segments) -> None:
        import threading
        self._out: list = []
        self._t = threading.Thread(target=self._run, args=(mem, list(segments)), daemon=True)
        self._t.start()

    def _run(self, mem, segments) -> None:
        try:
            self._out.append(segments_digest(mem, segments))
        except BaseException as exc:        # re-raised in the caller's thread
            self._out.append(exc)

    def result(self) -> bytes:
        self._t.join()
        if isinstance(self._out[0], BaseException):
            raise self._out[0]
        return self._out[0]


def _readable(mem: Readable, addr: int, length: int) -> bool:
    return addr >= 0 and length >= 0 and addr + length <= mem.size
