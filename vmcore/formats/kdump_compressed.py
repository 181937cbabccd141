"""kdump-compressed dumps (makedumpfile's "diskdump" format), plain and flattened.

Layout and fields: meminfo_abi/diskdump.py, ref-formats-and-peers.md §3-4.

Writer ("kdump"), as makedumpfile -c -d 1 writes it on s390x:
  header version 6 in the byte order asked for (big-endian by default),
  utsname from VMCOREINFO (OSRELEASE, machine "s390x"; the rest from the
  kernel's init_uts_ns when VMCOREINFO locates it and it agrees), the ELF notes
  our ELF writer emits (per-CPU register notes, VMCOREINFO) after the sub
  header, bitmap 1 = pages of the dumped system, bitmap 2 = pages in the file.
  Memory holes (addresses no chunk covers) are in neither bitmap.  Zero pages
  are handled as makedumpfile does for kdump-compressed output: they stay in
  bitmap 2 and all share one descriptor, whose data is a page of zeros written
  first in the data area (dump_level 1).  With exclude_zero they are left out
  of bitmap 2 instead (what makedumpfile does for its ELF output): readers see
  dump_level 1 and nothing else excluded, so the missing pages are zero.
  Each page is compressed on its own (zlib via zlib-ng, level 1 by default;
  lzo, snappy, zstd when their modules are installed) and stored raw when
  compression does not make it smaller.  Compression runs on all cores: a
  thread pool compresses batches of pages while the main thread reads ahead,
  with a bounded number of batches in flight; results are written in page
  order, so the file is byte-identical to the serial one.  Bitmaps and
  descriptors are produced in blocks while streaming (a few MiB whatever the
  memory size).  With exclude_zero the number of descriptors is only known at
  the end, so the table is sized for every page the sources may hold data in
  and the unused tail stays a hole.  Output is atomic (temporary name, rename);
  flattened=True writes the -F stream instead, sequentially.

Reader: probes by content (the "KDUMP   " signature in either byte order, or a
flattened header whose first record is not an ELF header).  Flattened files
are indexed once (one pass over the record headers, flattened.FlatFile) and
read in place; nothing is rebuilt on disk.  Headers and
bitmaps are read at open; descriptors and page data on demand.  Pages in
bitmap 1 but not in bitmap 2 read as zeros when the dump level excluded only
zero pages, and are absent otherwise.  A file that ends early, a descriptor
that was never written or a missing split part make absent chunks and an
incomplete dump naming the physical ranges.  Several files of a split dump
(makedumpfile --split) are read together with `open(paths=[...])`.
"""

from __future__ import annotations

import bisect
import errno
import os
import struct
import threading
import time
from collections import OrderedDict, deque
from array import array
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from construct import ConstructError

from meminfo_abi import diskdump as dd
from meminfo_abi.elfnotes import NOTE_NAME_VMCOREINFO, cpus_from_intact_notes, iter_notes, read_notes
from meminfo_abi.elfcore import MAX_NOTES_BYTES
from dumpkit.errors import (
    BadInputError,
    DumpIOError,
    DumpToolError,
    IncompleteDumpError,
    UsageError,
)
from meminfo_abi.vmcoreinfo import MAX_VMCOREINFO_INPUT
from native import nonzero_ranges
from dumpkit.fileio import Writeback, atomic_file, is_stream_output, os_open_input
from dumpkit.units import human
from vmcore.formats.elf import build_notes
from vmcore.formats.flattened import FlatFile, FlatSink
from vmcore.model import (
    subtract_ranges,
    open_dump_fd,
    read_head,
    ADDRESS_LIMIT,
    DEFAULT_BLOCK,
    KIND_ABSENT,
    KIND_RAM,
    PAGE_SIZE,
    Dump,
    DumpAttrs,
    MemChunk,
)

FORMAT_NAME = "kdump"
Progress = Callable[[int], None] | None
Range = tuple[int, int]

BITMAP_PIECE = 1 << 20          # bytes of bitmap built or scanned at a time
RANK_BLOCK = 4096               # bytes of bitmap 2 per rank-index entry (32768 pages)
RANK_BITS = RANK_BLOCK * 8
_RANK_ONES = b"\xff" * RANK_BLOCK
_RANK_ZEROS = bytes(RANK_BLOCK)
DESC_FLUSH = 1 << 20            # bytes of descriptors collected before a write
DESC_SCAN = 1 << 16             # descriptors looked at per read when scanning
MAX_SPAN = 8 << 20              # largest file span read at once for page data
UTS_MACHINE = "s390x"


# ---------------------------------------------------------------------------------------------
# codecs
# ---------------------------------------------------------------------------------------------

_PIP_NAMES = {"lzo": "python-lzo", "snappy": "python-snappy", "zstd": "zstandard"}   # extra -> module


def _import_codec(name: str):
    try:
        if name == "zlib":
            from zlib_ng import zlib_ng as mod
        elif name == "lzo":
            import lzo as mod
        elif name == "snappy":
            import snappy as mod
        elif name == "zstd":
            import zstandard as mod
        else:
            raise UsageError(f"unknown compression {name!r} (zlib, lzo, snappy, zstd or none)")
    except ImportError:
        raise BadInputError(f"{name} pages need {_PIP_NAMES.get(name, name)}, which is not installed: "
                            f"pip install 's390-dumptools[{name}]'") from None
    return mod


def compressor(name: str, level: int = 1) -> tuple[int, Callable[[Any], bytes] | None]:
    """(page_desc flag, function page -> compressed bytes) of a compression name; "none" gives (0, None)."""
    if name == "none":
        return 0, None
    if name not in dd.COMPRESSION_FLAGS:
        raise UsageError(f"unknown compression {name!r} (zlib, lzo, snappy, zstd or none)")
    if isinstance(level, bool) or not isinstance(level, int):
        raise UsageError(f"compression level must be an integer, not {level!r}")
    mod = _import_codec(name)
    flag = dd.COMPRESSION_FLAGS[name]
    if name == "zlib":
        if not 0 <= level <= 9:
            raise UsageError(f"zlib level must be 0..9, not {level}")
        zc = mod.compress
        return flag, lambda page: zc(page, level)
    if name == "lzo":
        lc = mod.compress
        return flag, lambda page: lc(bytes(page), 1, False)       # lzo1x_1, no header
    if name == "snappy":
        sc = mod.compress
        return flag, lambda page: sc(bytes(page))
    local = threading.local()                                     # ZstdCompressor is per thread

    def zstd(page):
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = mod.ZstdCompressor(level=level)
        return c.compress(page)
    return flag, zstd


def _snappy_length(data: bytes) -> int:
    """The uncompressed length a raw snappy block announces (its leading varint)."""
    n = shift = 0
    for i, b in enumerate(data[:5]):
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n
        shift += 7
    return -1


def decompressor(flag: int, page_size: int) -> Callable[[bytes], bytes]:
    """function compressed -> page for a page_desc flag; BadInputError names a missing module."""
    name = dd.COMPRESSION_NAMES.get(flag)
    if name is None:
        raise BadInputError(f"page descriptor flags 0x{flag:x} name no single compression")
    mod = _import_codec(name)
    if name == "zlib":
        def zlib_page(data: bytes) -> bytes:
            d = mod.decompressobj()
            out = d.decompress(data, page_size + 1)
            if not d.eof:
                raise ValueError("zlib stream does not end within a page")
            return out
        return zlib_page
    if name == "lzo":
        return lambda data: mod.decompress(data, False, page_size)
    if name == "snappy":
        def snappy_page(data: bytes) -> bytes:
            if _snappy_length(data) != page_size:
                raise ValueError("snappy block does not hold one page")
            return mod.uncompress(data)
        return snappy_page
    zd = mod.ZstdDecompressor()

    def zstd_page(data: bytes) -> bytes:
        size = mod.frame_content_size(data)
        if size not in (-1, page_size):
            raise ValueError(f"zstd frame holds {size} bytes, not one page")
        return zd.decompress(data, max_output_size=page_size)
    return zstd_page


# ---------------------------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------------------------

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
        self.writeback.wrote(offset, len(mv))
        while len(mv):
            n = os.pwrite(self.fd, mv, offset)
            mv = mv[n:]
            offset += n

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
        _add_run(missing, s // ps, -(-e // ps))
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
    held = _clip_runs(held, lo, hi)
    miss = subtract_ranges(_clip_runs(missing, lo, hi), held)
    out = [(a, b, False) for a, b in held] + [(a, b, True) for a, b in miss]
    out.sort()
    return out


def _add_run(runs: list[Range], s: int, e: int) -> None:
    """Append [s, e) to ascending runs, merging it with the last one when they touch."""
    if runs and runs[-1][1] == s:
        runs[-1] = (runs[-1][0], e)
    else:
        runs.append((s, e))


def _clip_runs(runs: list[Range], lo: int, hi: int) -> list[Range]:
    return [(max(a, lo), min(b, hi)) for a, b in runs if min(b, hi) > max(a, lo)]


def _data_pages_bound(dump: Dump, runs: list[Range], ps: int) -> int:
    """Pages that may hold data within runs (an upper bound of the non-zero pages)."""
    total = 0
    last = -1
    for a, b in runs:
        for s, e in dump.data_ranges(a * ps, b * ps):
            p0, p1 = max(s // ps, last + 1), -(-e // ps)
            if p1 > p0:
                total += p1 - p0
                last = p1 - 1
    return total


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
               absent: bool = False) -> tuple[KdumpLayout, bytes]:
    """The layout of a kdump file of `dump` and its notes (nothing is read but data ranges)."""
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
        # a filtered source keeps its dump level: its excluded pages stay excluded, not zero
        dump_level=dd.DL_EXCLUDE_ZERO | ((dump.attrs.dump_level or 0) & dd.DL_MAX if dump.attrs.excluded else 0),
        status=compress_flag | (dd.DUMP_DH_COMPRESSED_INCOMPLETE if absent or not dump.attrs.complete else 0),
    )
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


def _compress_runs(fn: Callable | None, flag: int, runs: list, ps: int) -> tuple[list, list, list]:
    """Compress the pages of runs [(view, pages)]: (data pieces, sizes, flags), raw where not smaller."""
    parts: list = []
    sizes: list = []
    flags: list = []
    if fn is None:
        for mv, n in runs:
            parts.append(mv)
        n_all = sum(n for _, n in runs)
        return parts, [ps] * n_all, [0] * n_all
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


class _Done:
    """A finished 'future' for the serial path."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


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
                block_size: int = DEFAULT_BLOCK, bitmap2: list[Range] | None = None) -> KdumpLayout:
    """Write `dump` as a kdump-compressed file (or its flattened stream) at `path`.

    `path` may also be an open binary stream when flattened (written sequentially,
    not atomically).  `split=(start_pfn, end_pfn)` writes one part of a split dump; its bitmap 2
    covers the whole dump, as makedumpfile's parts do (`bitmap2`: the whole dump's pfn runs of
    bitmap 2 when exclude_zero, else they are known from the chunks).
    progress(n) is called as n more bytes of memory are done.
    """
    if byteorder not in (">", "<"):
        raise UsageError(f"byte order must be '>' or '<', not {byteorder!r}")
    if isinstance(batch_pages, bool) or not isinstance(batch_pages, int) or batch_pages < 1:
        raise UsageError(f"batch_pages must be a positive integer, not {batch_pages!r}")
    flag, fn = compressor(compress, level)
    ps = dump.attrs.page_size or PAGE_SIZE
    runs, missing, absent = _present_runs(dump, ps, allow_incomplete)
    lay, notes = plan_kdump(dump, exclude_zero=exclude_zero, split=split, byteorder=byteorder,
                            compress_flag=flag, runs=runs, missing=missing, absent=absent)
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
    if not stream and not is_stream_output(label):
        _check_room(label, lay, exclude_zero)
    try:
        if stream:
            _write(dump, FlatSink(path), lay, head, sub, notes, runs, missing, bitmap2, fn, flag, exclude_zero,
                   threads, window, batch_pages, block_size, progress)
        else:
            with atomic_file(label, seekable=not flattened) as fh:
                sink = FlatSink(fh) if flattened else _FileSink(fh)
                _write(dump, sink, lay, head, sub, notes, runs, missing, bitmap2, fn, flag, exclude_zero,
                       threads, window, batch_pages, block_size, progress)
    except DumpToolError:
        raise
    except OSError as exc:
        raise DumpIOError(f"cannot write {label}: {exc.strerror or exc}") from None
    return lay


def _write(dump: Dump, sink, lay: KdumpLayout, head: bytes, sub: bytes, notes: bytes, runs: list[Range],
           missing: list[Range], bitmap2: list[Range] | None, fn, flag: int, exclude_zero: bool, threads: int,
           window: int, batch_pages: int, block_size: int, progress: Progress) -> None:
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
    if not exclude_zero:
        for a, b, _m in _data_runs(dump, ps, 0, lay.max_mapnr, missing):
            bm2.set_run(a, b)
        bm2.finish()
    elif bitmap2 is not None:
        for a, b in _clip_runs(bitmap2, 0, lay.start_pfn):
            bm2.set_run(a, b)
    w = _PageWriter(sink, lay)
    if not exclude_zero:
        w.write_zero_page()
    covered = _covered_counter(dump)
    done = [covered(lay.start_pfn * ps)]

    def report(addr: int) -> None:
        if progress:
            c = covered(addr)
            if c > done[0]:
                progress(c - done[0])
                done[0] = c

    pool = ThreadPoolExecutor(threads, thread_name_prefix="kdump-compress") if threads > 1 else None
    queue: deque = deque()        # (segments, future, end address), in page order
    segments: list = []           # zero-run counts and (view, pages) runs of the batch being built
    batch_runs: list = []         # its (view, pages) runs, for the compressor
    npages = 0

    def drain(limit: int) -> None:
        while len(queue) > limit:
            segs, fut, end = queue.popleft()
            w.batch(segs, fut.result())
            report(end)

    def submit(end: int) -> None:
        nonlocal segments, batch_runs, npages
        if not segments:
            return
        if pool is None or not batch_runs:
            fut = _Done(_compress_runs(fn, flag, batch_runs, ps))
        else:
            fut = pool.submit(_compress_runs, fn, flag, batch_runs, ps)
        queue.append((segments, fut, end))
        segments, batch_runs, npages = [], [], 0
        drain(window)

    def zeros(n: int) -> None:
        if segments and isinstance(segments[-1], int):
            segments[-1] += n
        else:
            segments.append(n)

    try:
        for a, b, lost in data_runs:
            if lost:                      # in bitmap 2 with an empty descriptor: never written
                if exclude_zero:
                    bm2.set_run(a, b)
                segments.append((None, b - a))
                submit(b * ps)
                continue
            cur = a
            for pfn, mv in _page_blocks(dump, a, b, ps, block_size):
                if pfn > cur:
                    zeros(pfn - cur)
                    cur = pfn
                for s, e in nonzero_ranges(mv, ps):
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
                            submit(p0 * ps)
                    cur = p1
                end_pfn = pfn + len(mv) // ps
                if end_pfn > cur:
                    zeros(end_pfn - cur)
                    cur = end_pfn
            if b > cur:
                zeros(b - cur)
            submit(b * ps)
        drain(0)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if exclude_zero:
        if bitmap2 is not None:
            for a, b in _clip_runs(bitmap2, lay.end_pfn, lay.max_mapnr):
                bm2.set_run(a, b)
        bm2.finish()
    w.finish()
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
            _add_run(runs, a, b)
            continue
        for pfn, mv in _page_blocks(dump, a, b, ps, block):
            for s, e in nonzero_ranges(mv, ps):
                p0, p1 = pfn + s // ps, pfn + e // ps
                if runs and runs[-1][1] >= p0:
                    runs[-1] = (runs[-1][0], max(runs[-1][1], p1))
                else:
                    runs.append((p0, p1))
    return runs


class KdumpWriter:
    name = FORMAT_NAME
    description = "kdump-compressed (makedumpfile -c -d 1; flattened=True for -F)"

    def write(self, dump: Dump, path, progress: Progress = None, **opts) -> KdumpLayout:
        return write_kdump(dump, path, progress, **opts)


# ---------------------------------------------------------------------------------------------
# reader
# ---------------------------------------------------------------------------------------------

class _PlainFile:
    truncated = False
    records = None

    def __init__(self, path: str):
        self.path = path
        self.fd = open_dump_fd(path)
        try:
            self.size = os.fstat(self.fd).st_size
        except OSError as exc:
            os.close(self.fd)
            raise DumpIOError(f"cannot stat {path}: {exc.strerror or exc}") from None

    def pread(self, length: int, offset: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        length = min(length, self.size - offset)
        parts, pos, left = [], offset, length
        while left > 0:
            try:
                data = os.pread(self.fd, min(left, 1 << 30), pos)
            except OSError as exc:
                raise DumpIOError(f"{self.path}: read at file offset 0x{pos:x} failed: {exc.strerror or exc}") \
                    from None
            if not data:
                break
            parts.append(data)
            pos += len(data)
            left -= len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def data_extents(self, offset: int, length: int) -> list[Range]:
        """The ranges of [offset, offset+length) that hold data (SEEK_DATA / SEEK_HOLE): holes of a
        sparse file read as zeros and cost nothing to skip.  Without SEEK_DATA all of it is data."""
        pos, end = offset, min(offset + length, self.size)
        out: list[Range] = []
        while pos < end:
            try:
                data = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:          # nothing but a hole up to the end of the file
                    break
                out.append((pos, end))
                break
            if data >= end:
                break
            try:
                hole = os.lseek(self.fd, data, os.SEEK_HOLE)
            except OSError:
                hole = end
            out.append((data, min(hole, end)))
            pos = hole
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _open_file(path: str):
    head = read_head(path, dd.MDF_HEADER_SIZE)
    if dd.is_flattened(head):
        return FlatFile(path)
    return _PlainFile(path)


def _hex_ranges(ranges: list[Range], limit: int = 3) -> str:
    parts = [f"0x{s:x}-0x{e - 1:x}" for s, e in ranges[:limit]]
    if len(ranges) > limit:
        parts.append(f"and {len(ranges) - limit} more")
    return ", ".join(parts)


def _merge(runs: list[Range]) -> list[Range]:
    out: list[list[int]] = []
    for a, b in sorted(runs):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _intersect(runs: list[Range], others: list[Range]) -> list[Range]:
    out = []
    j = 0
    for a, b in runs:
        while j < len(others) and others[j][1] <= a:
            j += 1
        k = j
        while k < len(others) and others[k][0] < b:
            s, e = max(a, others[k][0]), min(b, others[k][1])
            if s < e:
                out.append((s, e))
            k += 1
    return out


class KdumpPart:
    """One kdump-compressed file: headers, bitmaps, descriptors, page data."""

    def __init__(self, path: str):
        self.path = path
        self.file = _open_file(path)
        self._b2_cache: OrderedDict[int, int] = OrderedDict()
        self._decomp: dict[int, Callable] = {}
        self.lock = threading.Lock()
        self._cache_lock = threading.Lock()
        try:
            self._read_headers()
        except BaseException:
            self.file.close()
            raise

    # -- headers ------------------------------------------------------------------------
    def _need(self, offset: int, length: int, what: str) -> bytes:
        data = self.file.pread(length, offset)
        if len(data) < length:
            raise IncompleteDumpError(f"{self.path} ends inside the {what} (file offset 0x{offset:x}+0x{length:x}, "
                                      f"file size 0x{self.file.size:x})")
        return data

    def _read_headers(self) -> None:
        head = self.file.pread(dd.DISK_DUMP_HEADER_SIZE, 0)
        if head[:dd.SIG_LEN] == dd.DISKDUMP_SIGNATURE:
            raise BadInputError(f"{self.path} is an old in-kernel diskdump file (DISKDUMP), not kdump-compressed")
        if head[:dd.SIG_LEN] != dd.KDUMP_SIGNATURE:
            raise BadInputError(f"{self.path} is not a kdump-compressed file (no KDUMP signature)")
        if len(head) < dd.DISK_DUMP_HEADER_SIZE:
            raise IncompleteDumpError(f"{self.path} ends inside the disk_dump_header ({len(head)} bytes)")
        order = dd.detect_byte_order(head)
        if order is None:
            raise BadInputError(f"{self.path}: disk_dump_header has no plausible block size, version and "
                                "bitmap size in either byte order")
        self.order = order
        L = self.L = dd.layouts(order)
        self.pack = L.page_desc_struct
        h = self.header = L.disk_dump_header.parse(head)
        bs = self.bs = h.block_size
        self.version = h.header_version
        if self.version < 1:
            raise BadInputError(f"{self.path}: header_version {self.version} has no sub header")
        sub_raw = self._need(bs, dd.KDUMP_SUB_HEADER_SIZE, "kdump_sub_header")
        sub = L.kdump_sub_header.parse(sub_raw)
        vals = {k: (sub[k] if self.version >= since else 0) for k, since in dd.SUB_HEADER_SINCE.items()}
        self.sub = vals
        self.dump_level = vals["dump_level"]
        max_mapnr = vals["max_mapnr_64"] or h.max_mapnr
        if max_mapnr * bs > ADDRESS_LIMIT:
            raise BadInputError(f"{self.path}: max_mapnr {max_mapnr} pages of {bs} bytes pass the 64-bit "
                                "address space")
        half = h.bitmap_blocks * bs // 2
        if half * 8 < max_mapnr:
            raise BadInputError(f"{self.path}: bitmap_blocks {h.bitmap_blocks} cannot hold {max_mapnr} pages")
        self.max_mapnr = max_mapnr
        if h.sub_hdr_size < 1 or h.sub_hdr_size * bs > MAX_NOTES_BYTES + bs:
            raise BadInputError(f"{self.path}: sub_hdr_size {h.sub_hdr_size} blocks is out of bounds")
        self.off_bitmap1 = (dd.DISKDUMP_HEADER_BLOCKS + h.sub_hdr_size) * bs
        self.off_bitmap2 = self.off_bitmap1 + half
        self.off_desc = self.off_bitmap1 + h.bitmap_blocks * bs
        if self.version >= 2 and vals["split"]:
            if self.version >= 6:
                s, e = vals["start_pfn_64"], vals["end_pfn_64"]
            else:
                s, e = vals["start_pfn"], vals["end_pfn"]
            # makedumpfile writes empty parts (start_pfn == end_pfn) when a set has more files than
            # its dumpable pages fill; they hold no pages and reassemble fine
            if not (0 <= s <= e) or s > max_mapnr:
                raise BadInputError(f"{self.path}: split part with pfn range {s}-{e} (max_mapnr {max_mapnr})")
            self.split = True
            self.lo, self.hi = s, min(e, max_mapnr)
        else:
            self.split = False
            self.lo, self.hi = 0, max_mapnr
        self.incomplete_flag = bool(h.status & dd.DUMP_DH_COMPRESSED_INCOMPLETE)
        lvl = self.dump_level & dd.DL_MAX
        # pages in bitmap 1 but not in bitmap 2 are zero only when nothing but zero pages was excluded
        self.zero_excluded = lvl == dd.DL_EXCLUDE_ZERO

    def notes(self) -> bytes | None:
        off, size = self.sub["offset_note"], self.sub["size_note"]
        if not size:
            return None
        if size > MAX_NOTES_BYTES or off < self.bs or off + size > self.off_bitmap1:
            raise BadInputError(f"{self.path}: notes at 0x{off:x}+0x{size:x} lie outside the sub header blocks")
        return self._need(off, size, "ELF notes")

    def vmcoreinfo(self) -> bytes | None:
        off, size = self.sub["offset_vmcoreinfo"], self.sub["size_vmcoreinfo"]
        if not size:
            return None
        if size > MAX_VMCOREINFO_INPUT or off < self.bs:
            raise BadInputError(f"{self.path}: VMCOREINFO at 0x{off:x}+0x{size:x} is out of bounds")
        return self._need(off, size, "VMCOREINFO")

    # -- bitmaps --------------------------------------------------------------------------
    def _bitmap_value(self, base: int, blk: int) -> tuple[int, int]:
        """(value, bits known) of rank block `blk` of the bitmap at `base` (bits past max_mapnr cleared)."""
        first = blk * RANK_BITS
        nbits = min(RANK_BITS, self.max_mapnr - first)
        if nbits <= 0:
            return 0, 0
        raw = self.file.pread(-(-nbits // 8), base + blk * RANK_BLOCK)
        known = min(nbits, len(raw) * 8)
        return int.from_bytes(raw, "little") & ((1 << known) - 1), known

    def _mask(self, blk: int, lo: int, hi: int) -> int:
        first = blk * RANK_BITS
        s, e = max(lo - first, 0), min(hi - first, RANK_BITS)
        if s >= e:
            return 0
        return ((1 << (e - s)) - 1) << s

    def _blocks_to_scan(self, first_blk: int, last_blk: int) -> list[Range]:
        """Rank blocks [a, b) of [first_blk, last_blk) where a bitmap holds data, and the block where
        the file ends inside either bitmap.  Every other block is a hole in both bitmaps (no page
        in either): the scan skips it, so its cost follows the bytes stored, not the bitmap size
        the header claims (a 16 GiB sparse file with 12 KiB on disk once took 18 s to scan)."""
        runs: list[Range] = []
        size = self.file.size
        for base in (self.off_bitmap1, self.off_bitmap2):
            lo_b, hi_b = base + first_blk * RANK_BLOCK, base + last_blk * RANK_BLOCK
            for s, e in self.file.data_extents(lo_b, hi_b - lo_b):
                runs.append(((s - base) // RANK_BLOCK, -(-(e - base) // RANK_BLOCK)))
            if size < hi_b:                     # what the file lacks is unknown, not zero: scan the edge
                edge = max(first_blk, (size - base) // RANK_BLOCK)
                runs.append((edge, edge + 1))
        return [(max(a, first_blk), min(b, last_blk)) for a, b in _merge(runs) if a < last_blk and b > first_blk]

    def scan(self) -> None:
        """Read both bitmaps of [lo, hi): present runs, the rank index, excluded runs, where they end.

        The rank index holds one entry per rank block scanned (`rank_blocks`, the pages of bitmap 2
        before each in `ranks`); blocks skipped as holes of both bitmaps have no entry."""
        lo, hi = self.lo, self.hi
        first_blk = lo // RANK_BITS
        last_blk = -(-hi // RANK_BITS)
        blocks = array("q")
        ranks = array("q")
        present: list[Range] = []
        excluded: list[Range] = []
        unknown_from = None               # first pfn whose bitmap bits the file lacks
        total = 0
        step = BITMAP_PIECE // RANK_BLOCK
        ended = False
        for run_a, run_b in self._blocks_to_scan(first_blk, last_blk):
            for piece in range(run_a, run_b, step):
                end_blk = min(piece + step, run_b)
                n_bytes = min((end_blk - piece) * RANK_BLOCK, -(-(self.max_mapnr - piece * RANK_BITS) // 8))
                raw1 = self.file.pread(n_bytes, self.off_bitmap1 + piece * RANK_BLOCK)
                raw2 = self.file.pread(n_bytes, self.off_bitmap2 + piece * RANK_BLOCK)
                if not raw1 and not raw2:
                    if unknown_from is None:
                        unknown_from = max(lo, piece * RANK_BITS)
                    ended = True
                    break                             # the file ends before the rest of both bitmaps
                for blk in range(piece, end_blk):
                    at = (blk - piece) * RANK_BLOCK
                    first = blk * RANK_BITS
                    blocks.append(blk)
                    ranks.append(total)
                    if (lo <= first and first + RANK_BITS <= min(hi, self.max_mapnr)
                            and len(raw1) - at >= RANK_BLOCK and len(raw2) - at >= RANK_BLOCK):
                        # fast path for a whole block of one value in each bitmap (the bulk of a large
                        # machine: 17 TiB has 139264 blocks); the same result as the general path below
                        b1, b2 = raw1[at:at + RANK_BLOCK], raw2[at:at + RANK_BLOCK]
                        o1, o2 = b1 == _RANK_ONES, b2 == _RANK_ONES
                        if (o1 or b1 == _RANK_ZEROS) and (o2 or b2 == _RANK_ZEROS):
                            if o2:
                                total += RANK_BITS
                            if o1 or o2:
                                _add_run(present, first, first + RANK_BITS)
                            if o1 and not o2 and not self.zero_excluded:
                                _add_run(excluded, first, first + RANK_BITS)
                            continue
                    nbits = min(RANK_BITS, self.max_mapnr - first)
                    known1 = max(0, min(nbits, (len(raw1) - at) * 8))
                    known2 = max(0, min(nbits, (len(raw2) - at) * 8))
                    mask = self._mask(blk, lo, hi)
                    v1 = int.from_bytes(raw1[at:at + RANK_BLOCK], "little") & mask & ((1 << known1) - 1)
                    v2 = int.from_bytes(raw2[at:at + RANK_BLOCK], "little") & mask & ((1 << known2) - 1)
                    if known2 < nbits and unknown_from is None and first + known2 < hi:
                        unknown_from = max(lo, first + known2)
                    total += v2.bit_count()
                    for s, e in dd.int_runs(v1 | v2, RANK_BITS, first):
                        if present and present[-1][1] == s:
                            present[-1] = (present[-1][0], e)
                        else:
                            present.append((s, e))
                    if not self.zero_excluded:
                        for s, e in dd.int_runs(v1 & ~v2, RANK_BITS, first):
                            if excluded and excluded[-1][1] == s:
                                excluded[-1] = (excluded[-1][0], e)
                            else:
                                excluded.append((s, e))
            if ended:
                break
        self.rank_blocks = blocks
        self.ranks = ranks
        self.num_dumpable = total
        self.present = present
        self.excluded = excluded
        self.cut = hi if unknown_from is None else unknown_from
        self.bitmap_cut = unknown_from is not None
        if unknown_from is not None:
            # beyond the end of bitmap 2: whatever bitmap 1 still shows, else everything, is unknown
            known1_end = max(lo, min(hi, (self.file.size - self.off_bitmap1) * 8))
            tail = max(unknown_from, known1_end)
            self.unknown_tail = (tail, hi) if tail < hi else None
        else:
            self.unknown_tail = None

    def _b2(self, blk: int) -> int:
        """Bitmap 2 block `blk` (bits outside this part's range cleared), from a small LRU cache."""
        with self._cache_lock:
            v = self._b2_cache.get(blk)
            if v is not None:
                self._b2_cache.move_to_end(blk)
                return v
        v, _ = self._bitmap_value(self.off_bitmap2, blk)
        v &= self._mask(blk, self.lo, self.hi)
        with self._cache_lock:
            self._b2_cache[blk] = v
            if len(self._b2_cache) > 256:
                self._b2_cache.popitem(last=False)
        return v

    def rank(self, pfn: int) -> int:
        """Pages of bitmap 2 before `pfn`."""
        blk = pfn // RANK_BITS
        i = bisect.bisect_left(self.rank_blocks, blk)
        if i == len(self.rank_blocks):
            return self.num_dumpable
        if self.rank_blocks[i] != blk:              # a block skipped as a hole: no page in it
            return self.ranks[i]
        v = self._b2(blk)
        return self.ranks[i] + (v & ((1 << (pfn - blk * RANK_BITS)) - 1)).bit_count()

    def pfn_of_rank(self, r: int) -> int:
        i = bisect.bisect_right(self.ranks, r) - 1
        blk = self.rank_blocks[i]
        left = r - self.ranks[i]
        for s, e in dd.int_runs(self._b2(blk), RANK_BITS, blk * RANK_BITS):
            if left < e - s:
                return s + left
            left -= e - s
        raise BadInputError(f"{self.path}: bitmap 2 changed while reading")     # pragma: no cover

    def dumped_runs(self, p0: int, p1: int) -> Iterator[tuple[int, int, int]]:
        """(start, end, rank of start) of the runs of bitmap 2 in [p0, p1)."""
        blocks = self.rank_blocks
        i = bisect.bisect_left(blocks, p0 // RANK_BITS)
        last = (p1 - 1) // RANK_BITS
        while i < len(blocks) and blocks[i] <= last:
            blk = blocks[i]
            first = blk * RANK_BITS
            v = self._b2(blk)
            base = self.ranks[i]
            sel = v & self._mask(blk, p0, p1)
            for s, e in dd.int_runs(sel, RANK_BITS, first):
                yield s, e, base + (v & ((1 << (s - first)) - 1)).bit_count()
            i += 1

    # -- descriptors ----------------------------------------------------------------------
    def descs(self, r0: int, n: int) -> bytes:
        return self.file.pread(n * dd.PAGE_DESC_SIZE, self.off_desc + r0 * dd.PAGE_DESC_SIZE)

    def _find_zero_desc(self) -> None:
        """The shared zero page: the first data page, if it is raw and all zero."""
        self.zero_desc = None
        self.zero_key = None
        if not self.num_dumpable:
            return
        offset_data = self.off_desc + self.num_dumpable * dd.PAGE_DESC_SIZE
        page = self.file.pread(self.bs, offset_data)
        if len(page) == self.bs and not any(page):
            self.zero_key = (offset_data, self.bs, 0)
            self.zero_desc = self.pack.pack(offset_data, self.bs, 0, 0)
            self.zero_run = self.zero_desc * 4096

    def _skip_empty(self, d: tuple) -> bool:
        """An empty descriptor in a file flagged incomplete: a page never written, wherever it
        lies (found by _empty_descriptor_runs); the cut is looked for among the others."""
        return self.incomplete_flag and d[0] == 0 and d[1] == 0

    def _bad(self, d: tuple) -> bool:
        """A descriptor that was never written or whose data lies past the end of the file.
        In a file flagged incomplete, never-written pages may sit anywhere (a writer carrying a
        source's gaps): those are found by _empty_descriptor_runs, only data past the end cuts."""
        off, size = d[0], d[1]
        if self.incomplete_flag and off == 0 and size == 0:
            return False
        return off == 0 or off + size > self.file.size

    def _first_nonzero(self, i: int, k: int) -> tuple[int, tuple | None]:
        """(index, descriptor) of the first descriptor at i..k-1 that is not the zero page's."""
        while i < k:
            n = min(DESC_SCAN, k - i)
            buf = self.descs(i, n)
            for j, d in enumerate(self.pack.iter_unpack(buf)):
                if d[:3] != self.zero_key and not self._skip_empty(d):
                    return i + j, d
            i += n
        return k, None

    def _last_nonzero(self, k: int) -> tuple[int, tuple | None]:
        i = k
        while i > 0:
            n = min(DESC_SCAN, i)
            buf = self.descs(i - n, n)
            ds = list(self.pack.iter_unpack(buf))
            for j in range(len(ds) - 1, -1, -1):
                if ds[j][:3] != self.zero_key and not self._skip_empty(ds[j]):
                    return i - n + j, ds[j]
            i -= n
        return -1, None

    def find_cut(self) -> None:
        """Set self.cut to the first pfn whose page is not in the file (or hi)."""
        self._find_zero_desc()
        k = self.num_dumpable
        avail = max(0, (self.file.size - self.off_desc) // dd.PAGE_DESC_SIZE)
        k_avail = min(k, avail)
        t = k_avail
        j, d = self._last_nonzero(k_avail)
        if d is not None and self._bad(d):
            # bad descriptors form a suffix of the non-zero ones: bisect for the first
            lo, hi = 0, j
            while lo < hi:
                mid = (lo + hi) // 2
                jj, dm = self._first_nonzero(mid, j + 1)
                if dm is None or self._bad(dm):
                    hi = mid
                else:
                    lo = jj + 1
            t = self._first_nonzero(lo, j + 1)[0]
        self.first_bad_rank = t if t < k else None
        if t < k:
            self.cut = min(self.cut, self.pfn_of_rank(t))
        self.never_written = self._empty_descriptor_runs() if self.incomplete_flag else []

    def _empty_descriptor_runs(self) -> list[Range]:
        """pfn runs below the cut whose descriptors are empty: pages a writer flagged incomplete
        never wrote (only looked for when the status says incomplete: it reads every descriptor)."""
        out: list[Range] = []
        empty = bytes(dd.PAGE_DESC_SIZE)
        if self.cut <= self.lo:
            return out
        for s, e, r in self.dumped_runs(self.lo, self.cut):
            pos = s
            while pos < e:
                n = min(DESC_SCAN, e - pos)
                buf = self.descs(r + pos - s, n)
                k = buf.find(empty)
                while k != -1:
                    if k % dd.PAGE_DESC_SIZE == 0:
                        _add_run(out, pos + k // dd.PAGE_DESC_SIZE, pos + k // dd.PAGE_DESC_SIZE + 1)
                        k = buf.find(empty, k + dd.PAGE_DESC_SIZE)
                    else:
                        k = buf.find(empty, k + 1)
                pos += n
        return out

    # -- page data ------------------------------------------------------------------------
    def _decompress(self, flag: int) -> Callable:
        fn = self._decomp.get(flag)
        if fn is None:
            fn = self._decomp[flag] = decompressor(flag, self.bs)
        return fn

    def read_pages(self, p0: int, p1: int) -> bytearray:
        """Pages [p0, p1) (all inside this part's data); pages not in bitmap 2 are zero."""
        bs = self.bs
        out = bytearray((p1 - p0) * bs)
        todo = []                                   # (out position, offset, size, flags, pfn)
        with self.lock:
            for s, e, r in self.dumped_runs(p0, p1):
                buf = self.descs(r, e - s)
                if len(buf) < (e - s) * dd.PAGE_DESC_SIZE:
                    pfn = s + len(buf) // dd.PAGE_DESC_SIZE
                    raise IncompleteDumpError(f"{self.path}: the descriptor of physical page 0x{pfn * bs:x} lies "
                                              f"past the end of the file")
                for i, d in enumerate(self.pack.iter_unpack(buf)):
                    if d[:3] == self.zero_key:
                        continue
                    pfn = s + i
                    off, size, flags = d[0], d[1], d[2]
                    if off == 0 and size == 0:
                        raise IncompleteDumpError(f"{self.path}: physical page 0x{pfn * bs:x} was never written "
                                                  "(its descriptor is empty)")
                    if size == 0 or size > bs or off < self.off_desc:
                        raise BadInputError(f"{self.path}: descriptor of physical page 0x{pfn * bs:x} has offset "
                                            f"0x{off:x} size {size}")
                    if flags & ~dd.DUMP_DH_COMPRESSED or (flags & (flags - 1)):
                        raise BadInputError(f"{self.path}: descriptor of physical page 0x{pfn * bs:x} has flags "
                                            f"0x{flags:x}")
                    if not flags and size != bs:
                        raise BadInputError(f"{self.path}: raw physical page 0x{pfn * bs:x} has {size} bytes, "
                                            f"not {bs}")
                    if off + size > self.file.size:
                        raise IncompleteDumpError(f"{self.path}: data of physical page 0x{pfn * bs:x} lies past "
                                                  f"the end of the file (truncated)")
                    todo.append(((pfn - p0) * bs, off, size, flags, pfn))
            spans = []
            for item in todo:
                if spans and item[1] >= spans[-1][1] and item[1] + item[2] - spans[-1][0] <= MAX_SPAN \
                        and item[1] - spans[-1][1] <= bs:
                    spans[-1][1] = max(spans[-1][1], item[1] + item[2])
                    spans[-1][2].append(item)
                else:
                    spans.append([item[1], item[1] + item[2], [item]])
            for start, end, group in spans:
                data = self.file.pread(end - start, start)
                if len(data) < end - start:
                    raise IncompleteDumpError(f"{self.path}: page data at 0x{start:x} lies past the end of the file")
                for pos, off, size, flags, pfn in group:
                    piece = data[off - start:off - start + size]
                    if flags:
                        try:
                            page = self._decompress(flags)(piece)
                        except DumpToolError:
                            raise
                        except Exception as exc:
                            raise BadInputError(f"{self.path}: physical page 0x{pfn * bs:x} does not decompress "
                                                f"({dd.COMPRESSION_NAMES[flags]}: {exc})") from None
                        if len(page) != bs:
                            raise BadInputError(f"{self.path}: physical page 0x{pfn * bs:x} decompresses to "
                                                f"{len(page)} bytes, not {bs}")
                        out[pos:pos + bs] = page
                    else:
                        out[pos:pos + bs] = piece
        return out

    def data_runs(self, p0: int, p1: int) -> Iterator[Range]:
        """pfn runs in [p0, p1) whose descriptors are not the zero page's."""
        zero = self.zero_desc
        for s, e, r in self.dumped_runs(p0, p1):
            if zero is None:
                yield s, e
                continue
            zz = self.zero_run
            done = 0
            n = e - s
            while done < n:
                m = min(DESC_SCAN, n - done)
                with self.lock:
                    buf = self.descs(r + done, m)
                have = len(buf) // dd.PAGE_DESC_SIZE
                pos = 0
                base = s + done
                while pos < have:
                    k = buf.find(zero, pos * dd.PAGE_DESC_SIZE)
                    while k != -1 and k % dd.PAGE_DESC_SIZE:
                        k = buf.find(zero, k + 1)
                    if k == -1:
                        yield base + pos, base + have
                        break
                    kk = k // dd.PAGE_DESC_SIZE
                    if kk > pos:
                        yield base + pos, base + kk
                    pos = kk + 1
                    step = 1
                    while pos < have:
                        span = min(step, have - pos)
                        if buf[pos * 24:(pos + span) * 24] == zz[:span * 24]:
                            pos += span
                            step = min(step * 2, 4096)
                        elif step == 1:
                            break
                        else:
                            step = 1
                if have < m:
                    yield base + have, base + m           # descriptors missing: let reads report it
                done += m

    def close(self) -> None:
        self.file.close()


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
        if isinstance(exc, DumpToolError):
            raise
        if isinstance(exc, OSError):
            raise DumpIOError(f"cannot read {paths[0]}: {exc.strerror or exc}") from None
        if isinstance(exc, (ConstructError, ValueError, OverflowError, struct.error, UnicodeError,
                            IndexError, MemoryError)):
            raise BadInputError(f"{paths[0]}: malformed kdump-compressed file: {exc}") from None
        raise


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
            usable = subtract_ranges(usable, part.never_written)
            reasons.append(f"{part.path} was written incomplete (status flag): "
                           f"{sum(b - a for a, b in part.never_written)} "
                           f"pages were never written (empty descriptors; physical "
                           f"{_hex_ranges([(a * bs, b * bs) for a, b in part.never_written])})")
        lost = _merge(lost)
        if part.file.truncated and not lost:
            reasons.append(f"{part.path}: the flattened stream ends without its end record (cut short)")
        if lost:
            why = "its bitmaps are cut short" if part.bitmap_cut else "its page data is cut short"
            if part.file.truncated:
                why = "the flattened stream ends without its end record"
            elif part.incomplete_flag:
                why = "it was written incomplete (status flag)"
            reasons.append(f"{part.path} is truncated ({why}): physical {_hex_ranges([(a * bs, b * bs) for a, b in lost])} "
                           "missing")
        lost = _merge(lost + part.never_written)
        filtered = _intersect(part.excluded, usable)
        # pages the dump level left out: the dump is complete without them (makedumpfile -d N)
        attrs.excluded += [(a * bs, b * bs) for a, b in filtered]
        ram = subtract_ranges(usable, filtered)
        for a, b in ram:
            chunks.append(MemChunk(a * bs, (b - a) * bs, _PartView(part, a * bs, (b - a) * bs), KIND_RAM))
        absent_pfns += lost + filtered
    if first.incomplete_flag and not any("status flag" in r for r in reasons):
        reasons.append(f"{first.path} was written incomplete (status flag DUMP_DH_COMPRESSED_INCOMPLETE)")
    # pages of the system that no given part covers (the other files of a split dump)
    covered = [(p.lo, p.hi) for p in parts]
    gaps = subtract_ranges([(0, first.max_mapnr)], _merge(covered))
    if gaps:
        missing = []
        for lo, hi in gaps:
            missing += _bitmap1_runs(first, lo, hi)
        if missing:
            absent_pfns += missing
            reasons.append(f"pages outside pfn {', '.join(f'{p.lo}-{p.hi}' for p in parts)} are in other files "
                           f"of the split dump: physical {_hex_ranges([(a * bs, b * bs) for a, b in missing])} missing")
    for a, b in _merge(absent_pfns):
        chunks.append(MemChunk(a * bs, (b - a) * bs, None, KIND_ABSENT))
    chunks.sort(key=lambda c: c.start)
    for r in reasons:
        attrs.mark_incomplete(r)
    attrs.dump_level = first.dump_level & dd.DL_MAX
    attrs.excluded = _merge(attrs.excluded)
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
    return _merge(runs)



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
WRITER = KdumpWriter()
