"""The kdump-compressed reader: probe, and the parts of a dump (one file or a split set)
assembled into the model: chunks, CPUs from the notes, VMCOREINFO, what is missing and why.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Iterator


from meminfo_abi import diskdump as dd
from meminfo_abi.elfnotes import NOTE_NAME_VMCOREINFO, cpus_from_intact_notes, read_notes
from dumpkit.errors import BadInputError, DumpToolError, UsageError
from dumpkit.fileio import os_open_input
from dumpkit.ranges import Range, intersect, merge, range_text, subtract
from vmcore.formats.flattened import FlatFile

from vmcore.formats.kdump.codecs import BITMAP_PIECE, FORMAT_NAME
from vmcore.formats.kdump.part import KdumpPart
from vmcore.formats.entry import reader_error
from vmcore.model import KIND_ABSENT, KIND_RAM, Dump, DumpAttrs, MemChunk


class _PartView:
    """The MemorySource of one chunk: pages of a part, addressed from the chunk's start."""

    def __init__(self, part: KdumpPart, start: int, size: int):
        self.part, self.start, self.size = part, start, size
        self.name = part.path

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise BadInputError(f"{self.name}: range 0x{offset:x}+0x{length:x} is outside its 0x{self.size:x} bytes")
        if length == 0:
            return b""
        bs = self.part.bs
        addr = self.start + offset
        p0, p1 = addr // bs, -(-(addr + length) // bs)
        pages = self.part.read_pages(p0, p1)
        s = addr - p0 * bs
        return bytes(memoryview(pages)[s:s + length])

    def units(self):
        """(owner, 0, page size, load(first, count)): whole pages, for readers that cache them
        (vmcore/model.py MemorySource.units); None when the chunk does not start on a page."""
        bs = self.part.bs
        if self.start % bs:
            return None

        def load(first: int, count: int) -> list[bytes]:
            p0 = self.start // bs + first
            data = self.part.read_pages(p0, p0 + count)
            return [bytes(data[i * bs:(i + 1) * bs]) for i in range(count)]
        return self, 0, bs, load

    def data_ranges(self, start: int, end: int) -> Iterator[Range]:
        start, end = max(0, start), min(self.size, end)
        if start >= end:
            return
        bs = self.part.bs
        a, b = self.start + start, self.start + end
        for s, e in self.part.data_runs(a // bs, -(-b // bs)):
            s, e = max(s * bs, a), min(e * bs, b)
            if s < e:
                yield s - self.start, e - self.start

    def close(self) -> None:
        pass


def _probe_head(fh, head: bytes) -> bool:
    if head[:dd.SIG_LEN] == dd.KDUMP_SIGNATURE:
        return dd.detect_byte_order(head) is not None
    if dd.is_flattened(head):
        try:
            fh.seek(dd.MDF_HEADER_SIZE)
            rec = fh.read(dd.MDF_DATA_HEADER_SIZE + dd.DISK_DUMP_HEADER_SIZE)
        except (OSError, ValueError, AttributeError):
            return False
        if len(rec) < dd.MDF_DATA_HEADER_SIZE:
            return False
        offset, size = dd.MDF_DATA_HEADER.unpack_from(rec)
        first = rec[dd.MDF_DATA_HEADER_SIZE:dd.MDF_DATA_HEADER_SIZE + dd.SIG_LEN]
        # makedumpfile -F -E flattens ELF files too; a header written as a placeholder first
        # (and rewritten at the end) or a stream starting elsewhere is left to the reader
        return offset >= 0 and not (offset == 0 and first[:4] == b"\x7fELF")
    return False


def read_kdump(paths: list[str]) -> Dump:
    """Open one kdump-compressed file, or all files of a split dump."""
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise UsageError("no kdump file given")
    parts: list[KdumpPart] = []
    try:
        for p in paths:
            parts.append(KdumpPart(p))
        return _assemble(parts)
    except BaseException as exc:
        for part in parts:
            part.close()
        raise reader_error(exc, paths[0], "kdump-compressed file") from None


def _assemble(parts: list[KdumpPart]) -> Dump:
    first = parts[0]
    for p in parts[1:]:
        if (p.bs, p.max_mapnr) != (first.bs, first.max_mapnr):
            raise BadInputError(f"{p.path} does not belong to the split dump of {first.path} (block size or "
                                "max_mapnr differ)")
    parts.sort(key=lambda p: (p.lo, p.hi))
    for a, b in zip(parts, parts[1:]):
        if b.lo < a.hi:
            raise BadInputError(f"{b.path} (pfn {b.lo}-{b.hi}) overlaps {a.path} (pfn {a.lo}-{a.hi})")
    bs = first.bs
    attrs = DumpAttrs(format=FORMAT_NAME, format_version=first.version, page_size=bs, origin=first.path)
    reasons: list[str] = []
    chunks: list[MemChunk] = []
    absent_pfns: list[Range] = []
    for part in parts:
        part.scan()
        part.find_cut()
        usable = [(a, min(b, part.cut)) for a, b in part.present if min(b, part.cut) > a]
        lost = [(max(a, part.cut), b) for a, b in part.present if b > max(a, part.cut)]
        if part.unknown_tail:
            lost.append(part.unknown_tail)
        if part.never_written:
            usable = subtract(usable, part.never_written)
            reasons.append(f"{part.path} was written incomplete (status flag): "
                           f"{sum(b - a for a, b in part.never_written)} "
                           f"pages were never written (empty descriptors; physical "
                           f"{range_text([(a * bs, b * bs) for a, b in part.never_written])})")
        lost = merge(lost)
        if part.file.truncated and not lost:
            reasons.append(f"{part.path}: the flattened stream ends without its end record (cut short)")
        if lost:
            why = "its bitmaps are cut short" if part.bitmap_cut else "its page data is cut short"
            if part.file.truncated:
                why = "the flattened stream ends without its end record"
            elif part.incomplete_flag:
                why = "it was written incomplete (status flag)"
            reasons.append(f"{part.path} is truncated ({why}): physical {range_text([(a * bs, b * bs) for a, b in lost])} "
                           "missing")
        lost = merge(lost + part.never_written)
        filtered = intersect(part.excluded, usable)
        # pages the dump level left out: the dump is complete without them (makedumpfile -d N)
        attrs.excluded += [(a * bs, b * bs) for a, b in filtered]
        ram = subtract(usable, filtered)
        for a, b in ram:
            chunks.append(MemChunk(a * bs, (b - a) * bs, _PartView(part, a * bs, (b - a) * bs), KIND_RAM))
        absent_pfns += lost + filtered
    if first.incomplete_flag and not any("status flag" in r for r in reasons):
        reasons.append(f"{first.path} was written incomplete (status flag DUMP_DH_COMPRESSED_INCOMPLETE)")
    # pages of the system that no given part covers (the other files of a split dump)
    covered = [(p.lo, p.hi) for p in parts]
    gaps = subtract([(0, first.max_mapnr)], merge(covered))
    if gaps:
        missing = []
        for lo, hi in gaps:
            missing += _bitmap1_runs(first, lo, hi)
        if missing:
            absent_pfns += missing
            reasons.append(f"pages outside pfn {', '.join(f'{p.lo}-{p.hi}' for p in parts)} are in other files "
                           f"of the split dump: physical {range_text([(a * bs, b * bs) for a, b in missing])} missing")
    for a, b in merge(absent_pfns):
        chunks.append(MemChunk(a * bs, (b - a) * bs, None, KIND_ABSENT))
    chunks.sort(key=lambda c: c.start)
    for r in reasons:
        attrs.mark_incomplete(r)
    attrs.dump_level = first.dump_level & dd.DL_MAX
    attrs.excluded = merge(attrs.excluded)
    _describe(attrs, first, parts)
    cpus, notes_count = [], 0
    vn = None
    errors: list[str] = []
    try:
        notes = first.notes()
    except DumpToolError as exc:
        notes = None
        errors.append(str(exc))
    if notes is not None:
        # damaged notes are named and counted (as the ELF reader does), never dropped silently
        where = f"{first.path} notes at 0x{first.sub['offset_note']:x}"
        nl, bad = read_notes(notes, where)
        notes_count = len(nl)
        cpus, cpu_bad = cpus_from_intact_notes(nl, where, expected=first.header.nr_cpus)
        errors += [e for e in (bad, cpu_bad) if e]
        for i, regs in enumerate(cpus):
            regs.address = i
        vn = next((n for n in nl if n.name == NOTE_NAME_VMCOREINFO), None)
    if errors:
        attrs.extra["notes_error"] = "; ".join(errors)
    attrs.extra["elf_notes"] = notes_count
    dump = Dump(chunks, cpus, attrs, resources=parts)
    try:
        raw = first.vmcoreinfo()
        if raw is not None:
            attrs.set_vmcoreinfo(raw.rstrip(b"\0"), "kdump sub header")
        elif vn is not None:
            attrs.set_vmcoreinfo(vn.desc, "ELF note")
    except DumpToolError as exc:
        attrs.extra["vmcoreinfo_error"] = str(exc)
    if attrs.timestamp is None and first.header.timestamp.tv_sec > 0:
        try:
            attrs.timestamp = datetime.fromtimestamp(first.header.timestamp.tv_sec, timezone.utc)
        except (ValueError, OverflowError, OSError):
            pass
    if attrs.vmcoreinfo_raw is None:
        dump.fill_vmcoreinfo_from_memory()
    return dump


def _bitmap1_runs(part: KdumpPart, lo: int, hi: int) -> list[Range]:
    """Runs of bitmap 1 in pfns [lo, hi), read where the file holds data (holes are zeros); the
    bits the file lacks are one unknown run."""
    runs: list[Range] = []
    base = part.off_bitmap1
    byte_lo, byte_hi = base + (lo - lo % 8) // 8, base + -(-hi // 8)
    for s, e in part.file.data_extents(byte_lo, byte_hi - byte_lo):
        for pos in range(s, e, BITMAP_PIECE):
            raw = part.file.pread(min(BITMAP_PIECE, e - pos), pos)
            for a, b in dd.bitmap_runs(raw, (pos - base) * 8):
                a, b = max(a, lo), min(b, hi)
                if a < b:
                    runs.append((a, b))
    if byte_hi > part.file.size:                        # the bitmap ends here: the rest is unknown
        runs.append((max(lo, (part.file.size - base) * 8), hi))
    return merge(runs)


def _describe(attrs: DumpAttrs, p: KdumpPart, parts: list[KdumpPart]) -> None:
    h = p.header
    attrs.extra.update(
        byte_order="big-endian" if p.order == ">" else "little-endian",
        flattened=isinstance(p.file, FlatFile),
        block_size=p.bs,
        max_mapnr=p.max_mapnr,
        dump_level=p.dump_level,
        status=h.status,
        compression=[n for f, n in dd.COMPRESSION_NAMES.items() if h.status & f] or ["none"],
        utsname={k: h.utsname[k] for k in dd.UTS_FIELDS},
        nr_cpus=h.nr_cpus,
        dumpable_pages=sum(x.num_dumpable for x in parts),
    )
    if p.sub["size_eraseinfo"]:
        attrs.extra["eraseinfo_bytes"] = p.sub["size_eraseinfo"]
    if len(parts) > 1 or p.split:
        attrs.extra["split"] = [{"file": x.path, "start_pfn": x.lo, "end_pfn": x.hi} for x in parts]
    if h.status & dd.DUMP_DH_EXCLUDED_VMEMMAP:
        attrs.extra["excluded_vmemmap"] = True
    if p.version > dd.MAX_HEADER_VERSION:
        attrs.extra["quirks"] = [f"header_version {p.version} is newer than 6; read as 6"]


class KdumpReader:
    name = FORMAT_NAME
    description = "kdump-compressed (makedumpfile, QEMU kdump-*), plain, flattened or split"

    def probe(self, fh, head: bytes) -> bool:
        return _probe_head(fh, head)

    def probe_paths(self, paths) -> bool:
        """Several files that are all kdump-compressed: the parts of a split dump."""
        try:
            if len(paths) < 2:
                return False
            for p in paths:
                with os.fdopen(os_open_input(p, noun="dump"), "rb") as fh:
                    if not _probe_head(fh, fh.read(dd.MDF_HEADER_SIZE)):
                        return False
            return True
        except (OSError, ValueError, TypeError, DumpToolError):
            return False

    def open(self, path=None, paths=None, **opts) -> Dump:
        """One file (`path`), or the files of a split dump (`paths`, or a list as `path`)."""
        if opts:
            raise UsageError(f"the kdump reader takes only paths ({', '.join(opts)} given)")
        given = list(path) if isinstance(path, (list, tuple)) else [] if path is None else [path]
        files: list[str] = []
        for p in given + list(paths or []):
            p = os.fspath(p)
            if p not in files:
                files.append(p)
        return read_kdump(files)


READER = KdumpReader()
