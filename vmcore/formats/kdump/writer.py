"""The kdump-compressed writer: plan, headers, bitmaps, descriptors, pages compressed on all cores.

See the package's docstring for the file as written (makedumpfile -c -d 1 on s390x).
"""

from __future__ import annotations

import array
import bisect
import collections
import itertools
import os
import struct
import sys
import time
from contextlib import closing
from itertools import accumulate
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Iterator

from meminfo_abi import diskdump as dd
from meminfo_abi.elfnotes import NOTE_NAME_VMCOREINFO, iter_notes
from meminfo_abi.elfcore import MAX_NOTES_BYTES
from dumpkit.errors import BadInputError, DumpIOError, DumpToolError, IncompleteDumpError, UsageError
from dumpkit.fileio import Writeback, atomic_file, collapse_range, is_stream_output, pread_full, pwrite_all
from dumpkit.parallel import ordered_map
from dumpkit.ranges import Range, add_run, clip, subtract
from dumpkit.units import human
from native import nonzero_ranges
from vmcore.formats.elf import build_notes
from vmcore.formats.entry import FormatWriter
from vmcore.formats.flattened import FlatSink

from vmcore.formats.kdump.codecs import BITMAP_PIECE, FORMAT_NAME, batch_compressor, compressor
from vmcore.model import DEFAULT_BLOCK, KIND_ABSENT, PAGE_SIZE, Dump

Progress = Callable[[int], None] | None
DESC_FLUSH = 1 << 20            # bytes of descriptors collected before a write
BATCH_HELD = 16 << 20           # bytes of read blocks one batch of pages may keep alive
UTS_MACHINE = "s390x"


@dataclass
class KdumpLayout:
    """Where a written file put things, and what it holds."""

    byteorder: str
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    max_mapnr: int
    offset_note: int
    size_note: int
    offset_vmcoreinfo: int
    size_vmcoreinfo: int
    offset_bitmap1: int
    offset_bitmap2: int
    offset_desc: int
    desc_slots: int               # descriptors the table has room for
    offset_data: int
    start_pfn: int
    end_pfn: int
    split: bool
    dump_level: int
    status: int
    num_dumpable: int = 0         # descriptors written
    pages_compressed: int = 0
    pages_raw: int = 0
    pages_zero: int = 0           # zero pages (sharing the zero page, or left out)
    file_size: int = 0


WRITEBACK_EVERY = 64 << 20      # start writeback of what was written every so many bytes


class _FileSink:
    """pwrite into the output; what is never written stays a hole."""

    def __init__(self, fh):
        self.fd = fh.fileno()
        self.writeback = Writeback(self.fd, WRITEBACK_EVERY, drop=False)

    def put(self, offset: int, data) -> None:
        mv = memoryview(data).cast("B")
        pwrite_all(self.fd, mv, offset)
        self.writeback.wrote(offset, len(mv))

    def finish(self, size: int) -> None:
        os.ftruncate(self.fd, size)


class _BitmapStream:
    """Builds one bitmap from ascending runs of pfns, one BITMAP_PIECE at a time."""

    def __init__(self, sink, offset: int, size: int):
        self.sink, self.offset, self.size = sink, offset, size
        self.piece = -1
        self.buf = bytearray(BITMAP_PIECE)
        self.dirty = False

    def set_run(self, start: int, end: int) -> None:
        bits = BITMAP_PIECE * 8
        while start < end:
            p = start // bits
            if p != self.piece:
                self._flush()
                self.piece = p
            stop = min(end, (p + 1) * bits)
            dd.bitmap_set_run(self.buf, p * bits, start, stop)
            self.dirty = True
            start = stop

    def _flush(self) -> None:
        if self.dirty:
            at = self.piece * BITMAP_PIECE
            n = min(BITMAP_PIECE, self.size - at)
            self.sink.put(self.offset + at, memoryview(self.buf)[:n])
            self.buf[:] = bytes(BITMAP_PIECE)
            self.dirty = False

    def finish(self) -> None:
        self._flush()


def _present_runs(dump: Dump, ps: int, allow_incomplete: bool) -> tuple[list[Range], list[Range], bool]:
    """(bitmap 1 runs, missing runs, absent) in pfns: bitmap 1 holds every page of the system a
    chunk touches, missing pages are those of absent chunks the dump level does not explain (they
    go into bitmap 2 with empty descriptors, as makedumpfile leaves the pages it never wrote);
    filtered pages are in bitmap 1 only."""
    runs: list[list[int]] = []
    for c in dump.chunks:
        a, b = c.start // ps, -(-c.end // ps)
        if runs and a <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], b)
        else:
            runs.append([a, b])
    missing_bytes = dump.missing_ranges()
    if (missing_bytes or not dump.attrs.complete) and not allow_incomplete:
        what = (f"lacks physical 0x{missing_bytes[0][0]:x}-0x{missing_bytes[0][1] - 1:x}"
                + (f" and {len(missing_bytes) - 1} more ranges" if len(missing_bytes) > 1 else "")
                if missing_bytes else f"is incomplete ({dump.attrs.incomplete_reason})")
        raise IncompleteDumpError(f"the dump {what}; writing it anyway needs --allow-incomplete "
                                  "(the kdump file is then flagged incomplete)")
    missing: list[Range] = []
    for s, e in missing_bytes:
        add_run(missing, s // ps, -(-e // ps))
    return [(a, b) for a, b in runs], missing, bool(missing_bytes)


def _data_runs(dump: Dump, ps: int, lo: int, hi: int, missing: list[Range]) -> list[tuple[int, int, bool]]:
    """(start, end, missing) pfn runs of bitmap 2 in [lo, hi): the ram and zero chunks' pages, and
    the missing pages (True)."""
    out: list[tuple[int, int, bool]] = []
    held: list[Range] = []
    for c in dump.chunks:
        if c.kind == KIND_ABSENT:
            continue
        a, b = c.start // ps, -(-c.end // ps)
        if held and a <= held[-1][1]:
            held[-1] = (held[-1][0], max(held[-1][1], b))
        else:
            held.append((a, b))
    held = clip(held, lo, hi)
    miss = subtract(clip(missing, lo, hi), held)
    out = [(a, b, False) for a, b in held] + [(a, b, True) for a, b in miss]
    out.sort()
    return out


def data_page_runs(dump: Dump, runs: list[Range], ps: int) -> list[Range]:
    """pfn runs of the pages within runs that may hold data: those a data range of the dump
    touches (nothing is read but data ranges).  They are the pages `_page_blocks` yields."""
    out: list[Range] = []
    last = -1
    for a, b in runs:
        for s, e in dump.data_ranges(a * ps, b * ps):
            p0, p1 = max(s // ps, last + 1), -(-e // ps)
            if p1 > p0:
                add_run(out, p0, p1)
                last = p1 - 1
    return out


def _data_pages_bound(dump: Dump, runs: list[Range], ps: int) -> int:
    """Pages that may hold data within runs (an upper bound of the non-zero pages)."""
    return sum(b - a for a, b in data_page_runs(dump, runs, ps))


def _utsname(dump: Dump) -> dict:
    """new_utsname for the header: from VMCOREINFO, completed from init_uts_ns in memory."""
    info = dump.attrs.vmcoreinfo
    release = ""
    if info is not None:
        try:
            release = info.osrelease or ""
        except DumpToolError:
            release = ""
    uts = dict(sysname="Linux", nodename="", release=release, version="", machine=UTS_MACHINE, domainname="")
    if info is None:
        return uts
    try:
        sym, off = info.symbol("init_uts_ns"), info.offset("uts_namespace.name")
        if sym is None or off is None:
            return uts
        # s390x maps the kernel 1:1 (virtual = physical) below KERNELOFFSET-relocated images
        raw = dump.read(sym + off, dd.new_utsname.sizeof())
    except DumpToolError:
        return uts
    mem = dd.new_utsname.parse(raw)
    if mem.sysname == "Linux" and mem.release == release and mem.machine == UTS_MACHINE:
        uts.update({k: mem[k] for k in dd.UTS_FIELDS if mem[k].isprintable()})
    return uts


def _vmcoreinfo_in_notes(notes: bytes) -> tuple[int, int]:
    """(offset in the note data, size) of the VMCOREINFO note's descriptor, or (0, 0)."""
    for n in iter_notes(notes):
        if n.name == NOTE_NAME_VMCOREINFO:
            name_len = len(NOTE_NAME_VMCOREINFO) + 1
            return n.offset + 12 + ((name_len + 3) & ~3), len(n.desc)
    return 0, 0


def _timestamp(dump: Dump, timestamp) -> tuple[int, int]:
    if timestamp is None:
        timestamp = dump.attrs.timestamp or time.time()
    if isinstance(timestamp, datetime):
        timestamp = timestamp.timestamp()
    sec = int(timestamp)
    return sec, int(round((timestamp - sec) * 1e6)) % 1000000


def plan_kdump(dump: Dump, *, exclude_zero: bool = False, split: Range | None = None, byteorder: str = ">",
               compress_flag: int = 0, allow_incomplete: bool = False,
               runs: list[Range] | None = None, missing: list[Range] | None = None,
               absent: bool = False, excluding: int = 0) -> tuple[KdumpLayout, bytes]:
    """The layout of a kdump file of `dump` and its notes (nothing is read but data ranges).
    `excluding`: the dump level of pages the writer is told to leave out as it goes (write_kdump's
    exclusions); the descriptor table then has room for every page, the unused rest a hole."""
    ps = dump.attrs.page_size or PAGE_SIZE
    if ps < dd.MIN_BLOCK_SIZE or ps > dd.MAX_BLOCK_SIZE or ps & (ps - 1):
        raise BadInputError(f"page size {ps} cannot be a kdump block size")
    if runs is None:
        runs, missing, absent = _present_runs(dump, ps, allow_incomplete)
    missing = missing or []
    max_mapnr = max(1, -(-dump.size // ps))
    start_pfn, end_pfn = (0, max_mapnr) if split is None else split
    if not (0 <= start_pfn < end_pfn <= max_mapnr):
        raise UsageError(f"split range pfn {start_pfn}-{end_pfn} is not inside 0-{max_mapnr}")
    half = dd.bitmap_half_blocks(max_mapnr, ps)
    if 2 * half > 0xFFFFFFFF:
        raise BadInputError(f"a {dump.size:#x}-byte system needs more bitmap blocks than the format counts")
    notes = build_notes(dump)
    if len(notes) > MAX_NOTES_BYTES:
        raise BadInputError(f"{len(notes)} bytes of notes are more than a kdump file carries here")
    offset_note = dd.DISKDUMP_HEADER_BLOCKS * ps + dd.KDUMP_SUB_HEADER_SIZE
    vmci_off, vmci_size = _vmcoreinfo_in_notes(notes)
    sub_hdr_size = -(-(dd.KDUMP_SUB_HEADER_SIZE + len(notes)) // ps)
    offset_bitmap1 = (dd.DISKDUMP_HEADER_BLOCKS + sub_hdr_size) * ps
    offset_desc = offset_bitmap1 + 2 * half * ps
    data_runs = _data_runs(dump, ps, start_pfn, end_pfn, missing)
    held = [(a, b) for a, b, m in data_runs if not m]
    lost = sum(b - a for a, b, m in data_runs if m)
    if exclude_zero:
        slots = _data_pages_bound(dump, held, ps) + lost
    else:
        slots = sum(b - a for a, b in held) + lost
    lay = KdumpLayout(
        byteorder=byteorder, block_size=ps, sub_hdr_size=sub_hdr_size, bitmap_blocks=2 * half,
        max_mapnr=max_mapnr, offset_note=offset_note, size_note=len(notes),
        offset_vmcoreinfo=offset_note + vmci_off if vmci_size else 0, size_vmcoreinfo=vmci_size,
        offset_bitmap1=offset_bitmap1, offset_bitmap2=offset_bitmap1 + half * ps, offset_desc=offset_desc,
        desc_slots=slots, offset_data=offset_desc + slots * dd.PAGE_DESC_SIZE,
        start_pfn=start_pfn, end_pfn=end_pfn, split=split is not None,
        # what was left out, as makedumpfile records it: zero pages when this writer drops them,
        # and a filtered source's own level (its excluded pages stay excluded, not zero)
        dump_level=(dd.DL_EXCLUDE_ZERO if exclude_zero else 0)
        | ((dump.attrs.dump_level or 0) & dd.DL_MAX if dump.attrs.excluded else 0)
        | (excluding & dd.DL_MAX),
        status=compress_flag | (dd.DUMP_DH_COMPRESSED_INCOMPLETE if absent or not dump.attrs.complete else 0),
    )
    if excluding:           # the data from a block border on: the unused room can be collapsed
        lay.offset_data = -(-lay.offset_data // ps) * ps
    if lay.offset_data + slots * ps > (1 << 63):
        raise BadInputError("the kdump file would pass the largest file offset")
    return lay, notes


def _header_bytes(dump: Dump, lay: KdumpLayout, timestamp) -> tuple[bytes, bytes]:
    L = dd.layouts(lay.byteorder)
    sec, usec = _timestamp(dump, timestamp)
    if lay.byteorder == "<":
        # libkdumpfile tries the 32-bit layout first, whose block_size sits where a little-endian
        # tv_usec keeps its low half: a usec that looks like a page size would mislead it
        usec = 0
    head = L.disk_dump_header.build(dict(
        signature=dd.KDUMP_SIGNATURE, header_version=dd.DUMP_HEADER_VERSION, utsname=_utsname(dump),
        timestamp=dict(tv_sec=sec, tv_usec=usec), status=lay.status, block_size=lay.block_size,
        sub_hdr_size=lay.sub_hdr_size, bitmap_blocks=lay.bitmap_blocks,
        max_mapnr=min(lay.max_mapnr, 0xFFFFFFFF), total_ram_blocks=0, device_blocks=0, written_blocks=0,
        current_cpu=0, nr_cpus=len(dump.cpus)))
    sub = L.kdump_sub_header.build(dict(
        phys_base=0, dump_level=lay.dump_level, split=1 if lay.split else 0,
        # the obsolete 32-bit fields saturate as makedumpfile's (header v6: "may be truncated")
        start_pfn=min(lay.start_pfn, 0xFFFFFFFF) if lay.split else 0,
        end_pfn=min(lay.end_pfn, 0xFFFFFFFF) if lay.split else 0,
        offset_vmcoreinfo=lay.offset_vmcoreinfo, size_vmcoreinfo=lay.size_vmcoreinfo,
        offset_note=lay.offset_note, size_note=lay.size_note, offset_eraseinfo=0, size_eraseinfo=0,
        start_pfn_64=lay.start_pfn if lay.split else 0, end_pfn_64=lay.end_pfn if lay.split else 0,
        max_mapnr_64=lay.max_mapnr))
    return head, sub


def _compress_runs(fn: Callable | None, flag: int, runs: list, ps: int,
                   batch: Callable | None = None) -> tuple[list, list, list]:
    """Compress the pages of runs [(view, pages)]: (data pieces, sizes, flags), raw where not smaller;
    `batch` (codecs.batch_compressor) does a whole batch at once, else `fn` goes page by page."""
    parts: list = []
    sizes: list = []
    flags: list = []
    if fn is None:
        for mv, n in runs:
            parts.append(mv)
        n_all = sum(n for _, n in runs)
        return parts, [ps] * n_all, [0] * n_all
    if batch is not None:
        data, sizes = batch([mv for mv, _n in runs], ps)
        return [data], sizes, [flag if size < ps else 0 for size in sizes]
    for mv, n in runs:
        for i in range(0, n * ps, ps):
            page = mv[i:i + ps]
            c = fn(page)
            if len(c) < ps:
                parts.append(c)
                sizes.append(len(c))
                flags.append(flag)
            else:
                parts.append(page)
                sizes.append(ps)
                flags.append(0)
    return [b"".join(parts)], sizes, flags


class _PageWriter:
    """Descriptors and page data, in page order; descriptors are flushed in blocks."""

    def __init__(self, sink, lay: KdumpLayout):
        self.sink, self.lay = sink, lay
        self.ps = lay.block_size
        self.desc_struct = dd.layouts(lay.byteorder).page_desc_struct
        self.desc_fmt = self.desc_struct.format[1:]
        self.order = self.desc_struct.format[0]
        self.packers: dict[int, struct.Struct] = {}
        self.desc = bytearray()
        self.desc_rank = 0                 # rank of the first descriptor in self.desc
        self.rank = 0
        self.pos = lay.offset_data         # next free data offset
        self.zero_desc = b""

    def write_zero_page(self) -> None:
        self.zero_desc = self.desc_struct.pack(self.pos, self.ps, 0, 0)
        self.sink.put(self.pos, bytes(self.ps))
        self.pos += self.ps

    def zero_pages(self, n: int) -> None:
        self.lay.pages_zero += n
        if not self.zero_desc:
            return                         # exclude_zero: not in bitmap 2, no descriptor
        per = max(1, DESC_FLUSH // dd.PAGE_DESC_SIZE)
        while n:
            k = min(n, per)
            self.desc += self.zero_desc * k
            self.rank += k
            n -= k
            if len(self.desc) >= DESC_FLUSH:
                self._flush_desc()

    def missing_pages(self, n: int) -> None:
        """Pages the source lacks: empty descriptors (offset 0, size 0), what makedumpfile leaves
        for the pages it never wrote; readers report them missing."""
        self.desc += bytes(n * dd.PAGE_DESC_SIZE)
        self.rank += n
        if self.rank > self.lay.desc_slots:
            raise DumpIOError("more pages than the descriptor table holds")    # pragma: no cover
        if len(self.desc) >= DESC_FLUSH:
            self._flush_desc()

    def _packer(self, n: int) -> struct.Struct:
        p = self.packers.get(n)
        if p is None:
            p = self.packers[n] = struct.Struct(self.order + self.desc_fmt * n)
        return p

    def batch(self, segments: list, result: tuple) -> None:
        """segments: [n] zero runs and [(view, pages)] page runs in page order; result from _compress_runs."""
        parts, sizes, flags = result
        n = len(sizes)
        descs = b""
        if n:
            offsets = list(accumulate(sizes, initial=self.pos))
            fields: list = [0] * (4 * n)
            fields[0::4] = offsets[:-1]
            fields[1::4] = sizes
            fields[2::4] = flags
            descs = self._packer(n).pack(*fields)
            pos = self.pos
            for piece in parts:
                self.sink.put(pos, piece)
                pos += len(piece)
            if pos != offsets[-1]:
                raise DumpIOError("page data and descriptors disagree")   # pragma: no cover
            self.pos = pos
            raw = flags.count(0)
            self.lay.pages_raw += raw
            self.lay.pages_compressed += n - raw
        at = 0
        for seg in segments:
            if isinstance(seg, int):
                self.zero_pages(seg)
            elif seg[0] is None:
                self.missing_pages(seg[1])
            else:
                k = seg[1] * dd.PAGE_DESC_SIZE
                self.desc += descs[at:at + k]
                at += k
                self.rank += seg[1]
                if self.rank > self.lay.desc_slots:
                    raise DumpIOError(f"more pages held data than the {self.lay.desc_slots} the memory sources "
                                      "announced (a source's data_ranges left data out)")
        if len(self.desc) >= DESC_FLUSH:
            self._flush_desc()

    def _flush_desc(self) -> None:
        if self.desc:
            self.sink.put(self.lay.offset_desc + self.desc_rank * dd.PAGE_DESC_SIZE, self.desc)
            self.desc_rank = self.rank
            self.desc = bytearray()

    def finish(self) -> None:
        self._flush_desc()
        self.lay.num_dumpable = self.rank


def _collapse_unused_descriptors(sink: "_FileSink", lay: KdumpLayout, w: "_PageWriter") -> None:
    """Written with exclusions taken as it went, the descriptor table had room for every page and
    the data began after that room.  Where the file system can (collapse_range), the unused room
    goes and the descriptors' data offsets follow, so the file is as long as makedumpfile's."""
    ps = lay.block_size
    used_end = lay.offset_desc + lay.num_dumpable * dd.PAGE_DESC_SIZE
    start = -(-used_end // ps) * ps
    shift = lay.offset_data - start
    if shift < ps or w.pos <= lay.offset_data or not collapse_range(sink.fd, start, shift):
        return
    swap = (lay.byteorder == ">") != (sys.byteorder == "big")
    per = DESC_FLUSH // dd.PAGE_DESC_SIZE * dd.PAGE_DESC_SIZE
    for pos in range(lay.offset_desc, used_end, per):
        raw = pread_full(sink.fd, min(per, used_end - pos), pos)
        words = array.array("Q", raw)          # offset, size and flags, page_flags: 3 words a page
        if swap:
            words.byteswap()
        for i in range(0, len(words), 3):
            if words[i] >= lay.offset_data:    # not a missing page's empty descriptor
                words[i] -= shift
        if swap:
            words.byteswap()
        sink.put(pos, words.tobytes())
    lay.offset_data -= shift
    w.pos -= shift


class _Exclusions:
    """Excluded pfn runs handed over step by step (filter.start_scan, a step a memory section):
    `kept(a, b)` gives what [a, b) keeps, a step's stretch at a time, taking the next step only
    when the pages before it are handed out, so the scan of a section runs while the pages of
    the one before are still being compressed.  Asked in ascending order, it forgets the runs
    behind it."""

    def __init__(self, steps: Iterable[tuple[int, list[Range]]]):
        self.steps = iter(steps)
        self.known = 0                     # every exclusion below this pfn is in self.runs
        self.runs: collections.deque[Range] = collections.deque()

    def kept(self, a: int, b: int) -> Iterator[Range]:
        pos = a
        while pos < b:
            if self.known <= pos:
                step = next(self.steps, None)
                if step is None:
                    self.known = 1 << 64
                else:
                    self.known = step[0]
                    self.runs.extend(step[1])
                continue
            hi = min(b, self.known)
            runs = self.runs
            while runs and runs[0][1] <= pos:
                runs.popleft()
            yield from subtract([(pos, hi)], list(itertools.takewhile(lambda r: r[0] < hi, runs)))
            pos = hi

    def finish(self) -> None:
        """Run the steps to their end (the scan's counts are complete then)."""
        for _step in self.steps:
            pass


def _covered_counter(dump: Dump) -> Callable[[int], int]:
    """covered(addr) = bytes of ram and zero chunks below addr (the progress measure)."""
    starts, ends, before = [], [], []
    total = 0
    for c in dump.chunks:
        if c.kind == KIND_ABSENT:
            continue
        starts.append(c.start)
        ends.append(c.end)
        before.append(total)
        total += c.size

    def covered(addr: int) -> int:
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0:
            return 0
        return before[i] + min(addr, ends[i]) - starts[i]
    return covered


def _page_blocks(dump: Dump, a: int, b: int, ps: int, block: int) -> Iterator[tuple[int, memoryview]]:
    """(pfn, whole pages) of the data in pfn range [a, b), ascending; partial pages at unaligned
    chunk borders are assembled (zero filled) into whole ones."""
    pending_pfn, pending = -1, None
    for addr, data in dump.iter_data(block, a * ps, b * ps):
        mv = memoryview(data)
        pfn = addr // ps
        if addr % ps == 0 and len(mv) % ps == 0 and pending_pfn != pfn:
            if pending is not None and pending_pfn < pfn:
                yield pending_pfn, memoryview(pending)
                pending_pfn, pending = -1, None
            yield pfn, mv
            continue
        pos = 0
        while pos < len(mv):
            pfn, off = divmod(addr + pos, ps)
            n = min(ps - off, len(mv) - pos)
            if pending is not None and pending_pfn != pfn:
                yield pending_pfn, memoryview(pending)
                pending_pfn, pending = -1, None
            if off == 0 and n == ps:
                yield pfn, mv[pos:pos + ps]
            else:
                if pending is None:
                    pending_pfn, pending = pfn, bytearray(ps)
                pending[off:off + n] = mv[pos:pos + n]
            pos += n
    if pending is not None:
        yield pending_pfn, memoryview(pending)


def _check_room(path: str, lay: KdumpLayout, exclude_zero: bool) -> None:
    """Refuse before writing when the page descriptors alone (written for every page kept, one
    per page: ~100 GiB for 16 TiB with zero pages kept) cannot fit into the free space."""
    need = lay.desc_slots * dd.PAGE_DESC_SIZE
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.statvfs(directory)
    except OSError:
        return                                 # atomic_file reports a missing directory
    free = st.f_bavail * st.f_frsize
    if need > free:
        hint = "" if exclude_zero else "; --exclude-zero leaves zero pages out"
        raise DumpIOError(f"{path}: the kdump file needs at least {human(need)} for its page descriptors "
                          f"alone ({lay.desc_slots} pages), {directory} has {human(free)} free{hint}")


def write_kdump(dump: Dump, path, progress: Progress = None, *, compress: str = "zlib", level: int = 1,
                exclude_zero: bool = False, flattened: bool = False, threads: int | None = None,
                split: Range | None = None, byteorder: str = ">", timestamp=None,
                allow_incomplete: bool = False, batch_pages: int = 256, window: int | None = None,
                block_size: int = DEFAULT_BLOCK, bitmap2: list[Range] | None = None,
                exclusions: Iterable[tuple[int, list[Range]]] | None = None, excluding: int = 0) -> KdumpLayout:
    """Write `dump` as a kdump-compressed file (or its flattened stream) at `path`.

    `path` may also be an open binary stream when flattened (written sequentially,
    not atomically).  `split=(start_pfn, end_pfn)` writes one part of a split dump; its bitmap 2
    covers the whole dump, as makedumpfile's parts do (`bitmap2`: the whole dump's pfn runs of
    bitmap 2 when exclude_zero, else they are known from the chunks).
    progress(n) is called as n more bytes of memory are done.
    `exclusions` (filter.start_scan's steps, `excluding` their dump level): pfn runs to leave out,
    taken as the writer goes, so the page-class scan of what comes next runs while the pages
    before it are compressed; not with `split`.
    """
    if byteorder not in (">", "<"):
        raise UsageError(f"byte order must be '>' or '<', not {byteorder!r}")
    if isinstance(batch_pages, bool) or not isinstance(batch_pages, int) or batch_pages < 1:
        raise UsageError(f"batch_pages must be a positive integer, not {batch_pages!r}")
    flag, fn = compressor(compress, level)
    batch = batch_compressor(compress, level) if fn is not None else None
    ps = dump.attrs.page_size or PAGE_SIZE
    runs, missing, absent = _present_runs(dump, ps, allow_incomplete)
    if exclusions is not None and split is not None:
        raise UsageError("a split dump takes its exclusions from a filtered view, not as it goes")
    lay, notes = plan_kdump(dump, exclude_zero=exclude_zero, split=split, byteorder=byteorder,
                            compress_flag=flag, runs=runs, missing=missing, absent=absent,
                            excluding=excluding if exclusions is not None else 0)
    head, sub = _header_bytes(dump, lay, timestamp)
    stream = hasattr(path, "write")
    if not stream and is_stream_output(path):
        flattened = True          # a FIFO, a device or `-`: makedumpfile -F's stream, rebuilt by -R
    if stream and not flattened:
        raise UsageError("only the flattened format can be written to a stream")
    if threads is None:
        threads = os.cpu_count() or 1
    threads = max(1, int(threads)) if fn is not None else 1
    window = window or 2 * threads + 2
    label = getattr(path, "name", "the output stream") if stream else os.fspath(path)
    if not stream and not is_stream_output(label) and exclusions is None:
        # (with exclusions the table's room for every page stays a hole until collapsed: what it
        # takes on disk is known only at the end)
        _check_room(label, lay, exclude_zero)
    try:
        if stream:
            _write(dump, FlatSink(path), lay, head, sub, notes, runs, missing, bitmap2, (fn, batch), flag,
                   exclude_zero, threads, window, batch_pages, block_size, progress, exclusions)
        else:
            with atomic_file(label, seekable=not flattened) as fh:
                sink = FlatSink(fh) if flattened else _FileSink(fh)
                _write(dump, sink, lay, head, sub, notes, runs, missing, bitmap2, (fn, batch), flag,
                       exclude_zero, threads, window, batch_pages, block_size, progress, exclusions)
    except DumpToolError:
        raise
    except OSError as exc:
        raise DumpIOError(f"cannot write {label}: {exc.strerror or exc}") from None
    return lay


def _write(dump: Dump, sink, lay: KdumpLayout, head: bytes, sub: bytes, notes: bytes, runs: list[Range],
           missing: list[Range], bitmap2: list[Range] | None, codec: tuple, flag: int, exclude_zero: bool,
           threads: int, window: int, batch_pages: int, block_size: int, progress: Progress,
           exclusions: Iterable[tuple[int, list[Range]]] | None = None) -> None:
    fn, batch_fn = codec                   # page by page, and the batch form where it runs
    excluded = _Exclusions(exclusions) if exclusions is not None else None
    growing = exclude_zero or excluded is not None      # bitmap 2 written as the pages go
    ps = lay.block_size
    sink.put(0, head)
    sink.put(ps, sub + notes)
    # bitmap 1: every page of the system; bitmap 2 (default): the pages of this file
    half = lay.bitmap_blocks // 2 * ps
    bm1 = _BitmapStream(sink, lay.offset_bitmap1, half)
    for a, b in runs:
        bm1.set_run(a, b)
    bm1.finish()
    data_runs = _data_runs(dump, ps, lay.start_pfn, lay.end_pfn, missing)
    # bitmap 2 of the whole dump in every part (makedumpfile --reassemble takes part 1's)
    bm2 = _BitmapStream(sink, lay.offset_bitmap2, half)
    if not growing:
        for a, b, _m in _data_runs(dump, ps, 0, lay.max_mapnr, missing):
            bm2.set_run(a, b)
        bm2.finish()
    elif bitmap2 is not None:
        for a, b in clip(bitmap2, 0, lay.start_pfn):
            bm2.set_run(a, b)
    w = _PageWriter(sink, lay)
    if not exclude_zero:
        w.write_zero_page()
    covered = _covered_counter(dump)
    done = [covered(lay.start_pfn * ps)]
    # uncompressed and zero pages kept: a page is data where the source may hold data (its data
    # ranges), not by its bytes, so the layout is known without reading memory (lazy.py LazyKdump)
    by_content = fn is not None or exclude_zero

    def report(addr: int) -> None:
        if progress:
            c = covered(addr)
            if c > done[0]:
                progress(c - done[0])
                done[0] = c

    def batches() -> Iterator[tuple[list, list, int]]:
        """(segments, page runs, end address) of each batch, in page order: segments are zero-run
        counts and (view, pages) runs (view None: missing pages), page runs what is compressed."""
        segments: list = []
        batch_runs: list = []
        npages = 0
        held = 0                          # bytes of the read blocks the batch's page runs keep alive
        hi_addr = (data_runs[-1][1] if data_runs else lay.start_pfn) * ps

        def zeros(n: int) -> None:
            if segments and isinstance(segments[-1], int):
                segments[-1] += n
            else:
                segments.append(n)

        def kept_runs() -> Iterator[tuple[int, int, bool]]:
            for a, b, lost in data_runs:
                if lost or excluded is None:
                    yield a, b, lost
                else:                     # what the exclusions leave of it, the scan run as far as b
                    for ka, kb in excluded.kept(a, b):
                        yield ka, kb, False

        for a, b, lost in kept_runs():
            if lost:                      # in bitmap 2 with an empty descriptor: never written
                if growing:
                    bm2.set_run(a, b)
                segments.append((None, b - a))
                yield segments, batch_runs, b * ps
                segments, batch_runs, npages, held = [], [], 0, 0
                continue
            if growing and not exclude_zero:
                bm2.set_run(a, b)         # every page kept, zero pages too (the shared zero page)
            cur = a
            for pfn, mv in _page_blocks(dump, a, b, ps, block_size):
                if pfn > cur:
                    zeros(pfn - cur)
                    cur = pfn
                if held >= BATCH_HELD and segments:
                    yield segments, batch_runs, pfn * ps
                    segments, batch_runs, npages, held = [], [], 0, 0
                ranges = nonzero_ranges(mv, ps) if by_content else [(0, len(mv))]
                if ranges:
                    held += len(mv)
                for s, e in ranges:
                    p0, p1 = pfn + s // ps, pfn + e // ps
                    if p0 > cur:
                        zeros(p0 - cur)
                    if exclude_zero:
                        bm2.set_run(p0, p1)
                    while p0 < p1:
                        k = min(p1 - p0, batch_pages - npages)
                        run = (mv[(p0 - pfn) * ps:(p0 - pfn + k) * ps], k)
                        segments.append(run)
                        batch_runs.append(run)
                        npages += k
                        p0 += k
                        if npages >= batch_pages:
                            yield segments, batch_runs, p0 * ps
                            segments, batch_runs, npages, held = [], [], 0, len(mv)
                    cur = p1
                end_pfn = pfn + len(mv) // ps
                if end_pfn > cur:
                    zeros(end_pfn - cur)
                    cur = end_pfn
            if b > cur:
                zeros(b - cur)
            # a batch goes on over the next run (the pages between are not in the file): a filtered
            # dump's short runs would otherwise make batches of a few pages, too small to share
        if segments:
            yield segments, batch_runs, hi_addr

    def compress(batch: tuple[list, list, int]) -> tuple[list, int, tuple]:
        segments, batch_runs, end = batch
        return segments, end, _compress_runs(fn, flag, batch_runs, ps, batch_fn)

    # batches are compressed on `threads` threads while the next ones are read; written in order
    with closing(ordered_map(compress, batches(), threads, window + 1)) as done_batches:
        for segments, end, result in done_batches:
            w.batch(segments, result)
            report(end)
    if growing:
        if bitmap2 is not None:
            for a, b in clip(bitmap2, lay.end_pfn, lay.max_mapnr):
                bm2.set_run(a, b)
        bm2.finish()
    if excluded is not None:
        excluded.finish()
    w.finish()
    if excluded is not None and isinstance(sink, _FileSink):
        _collapse_unused_descriptors(sink, lay, w)
    lay.file_size = w.pos
    sink.finish(w.pos)
    report(lay.end_pfn * ps)


def write_split(dump: Dump, paths: list, progress: Progress = None, **opts) -> list[KdumpLayout]:
    """A split dump (makedumpfile --split): the pfn range divided evenly over len(paths) files."""
    ps = dump.attrs.page_size or PAGE_SIZE
    max_mapnr = max(1, -(-dump.size // ps))
    n = len(paths)
    if n < 1 or n > max_mapnr:
        raise UsageError(f"cannot split {max_mapnr} pages into {n} files")
    bounds = [max_mapnr * i // n for i in range(n + 1)]
    # the parts share one disk_dump_header (makedumpfile --reassemble compares them byte for byte)
    if opts.get("timestamp") is None:
        opts["timestamp"] = dump.attrs.timestamp or time.time()
    if opts.get("exclude_zero"):
        # every part carries the whole bitmap 2: the non-zero pages of the whole dump (one more read)
        _runs, missing, _absent = _present_runs(dump, ps, opts.get("allow_incomplete", False))
        opts["bitmap2"] = _nonzero_page_runs(dump, ps, missing, opts.get("block_size", DEFAULT_BLOCK))
    return [write_kdump(dump, p, progress, split=(bounds[i], bounds[i + 1]), **opts) for i, p in enumerate(paths)]


def _nonzero_page_runs(dump: Dump, ps: int, missing: list[Range], block: int) -> list[Range]:
    """pfn runs of the pages an exclude_zero kdump file holds: non-zero pages and missing ones."""
    runs: list[Range] = []
    for a, b, lost in _data_runs(dump, ps, 0, max(1, -(-dump.size // ps)), missing):
        if lost:
            add_run(runs, a, b)
            continue
        for pfn, mv in _page_blocks(dump, a, b, ps, block):
            for s, e in nonzero_ranges(mv, ps):
                p0, p1 = pfn + s // ps, pfn + e // ps
                if runs and runs[-1][1] >= p0:
                    runs[-1] = (runs[-1][0], max(runs[-1][1], p1))
                else:
                    runs.append((p0, p1))
    return runs


WRITER = FormatWriter(FORMAT_NAME, "kdump-compressed (makedumpfile -c -d 1; flattened=True for -F)", write_kdump)
