"""The s390 stand-alone dump formats: flat (...23fd), extended (...23fe), dump devices, tape, volume sets.

Every layout comes from meminfo_abi/s390_dump.py; finding and judging the dump is
meminfo_abi/s390_dump_reader.py (read_stream, the one reader, shared with sadump): this
module maps its report to the dump model and reads the CPUs.

Reader ("s390"), claimed by content:
  * a file starting with a dump header: flat (memory at 0x1000 + address, end marker at
    0x1000 + mem_size) or extended (dump segments; the gaps between them and the memory
    after the last one read as zeros; compressed segments are inflated 1 MiB unit by
    unit: a sequential reader's units on every core by an ordered parallel map, bounded
    ahead; other reads on demand, a few units cached);
  * an image of a dump device with the dump on it: ECKD or FBA (the dump area named by
    zipl's boot record), a tape (AWSTAPE image: flat memory in 32 KiB records), or the
    volumes of a multi-volume set given together (`open_dump([p1, p2, p3])` or
    "p1,p2,p3", in any order: the parameter table orders them).
  CPUs: one per lc_vec entry, registers from the save area at prefix + 0x1200 of the
  dumped memory, vector registers through the lowcore's 0x11B0 pointer when it points
  into the dump.  VMCOREINFO through lowcore 0xE18/0xE0C.  A dump that is cut short,
  lacks its stop marker or end marker, or whose end marker is older than its header is
  read as far as it goes and reported incomplete with the reason and the missing range;
  a header that is not a dump header is a BadInputError.  Counts are bounded: at most
  512 CPUs, segments bounded by the dump area, memory beyond the file is absent.

A kdump kernel caught by a stand-alone dump: every dump this reader opens goes through
vmcore.select.select_system (the production system by default, zgetdump -s).

Writer ("s390"): the flat format as `zgetdump -f s390` writes it: header version 5 (4 when
no CPU registers can be stored), hdr_size 0x1000, dump_level 4, page_size 4096,
mem_size = mem_end = the dump's memory size (exclusive end, as zgetdump and the
dumpers), num_pages, the header TOD from the dump time, arch 2, lc_vec = the prefixes of
the CPUs written; memory at 0x1000 + address (zero pages and gaps left as holes), each
CPU's registers overlaid on its prefix page's save area (and the vector registers on
the area its lowcore names) so they survive; then the 16-byte end marker with a TOD not
before the header's.  zgetdump overlays the same save-area fields but the TOD programmable
register (it leaves that one as the memory had it); we store it too.  Neither writes the
breaking-event address (0x1338): ELF and kdump dumps do not carry it, so the memory keeps
whatever the dumped system stored there.  Atomic (temporary name, rename); progress as
memory is done.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from construct import ConstructError

from meminfo_abi.cpu import CpuRegs, cpus_from_prefixes
from dumpkit.errors import BadInputError, DumpIOError, DumpToolError, IncompleteDumpError, UsageError
from meminfo_abi.lowcore import (
    LC_MCESAD, LC_SAVE_AREA, LOWCORE_SIZE, MCESA_ORIGIN_MASK, SAVE_AREA_SIZE,
)
from meminfo_abi.s390_dump import (
    AWS_FLAG_ENDREC, AWS_FLAG_NEWREC, AWS_HEADER_SIZE, DEVICE_PROBE_SIZE, DF_S390_EM_SIZE, DF_S390_HDR_SIZE,
    DF_S390_MAGIC, DF_S390_VERSION_FLAT, MIB, TAPE_BLK_SIZE, TAPE_RECORD_SIZE, build_end_marker, build_header,
)
from meminfo_abi.s390_dump_device import TapeDumpLayout
from meminfo_abi.s390_dump_stream import DumpSegment, inflate_unit
from meminfo_abi.tod import tod_to_datetime, unix_to_tod
from meminfo_abi.s390_dump import PAGE_SIZE as S390_PAGE_SIZE
from dumpkit.parallel import ordered_map
from dumpkit.fileio import atomic_file, pwrite_all, os_open_input
from meminfo_abi.s390_dump_reader import StreamReport, probe_head, read_stream
from vmcore.select import select_system
from vmcore.model import (
    DEFAULT_BLOCK, KIND_ABSENT, KIND_RAM, KIND_ZERO, Dump, DumpAttrs, FileSource, copy_memory,
    MappedSource, MemChunk, _SizedSource, read_head,
)

FORMAT_NAME = "s390"
UNIT_CACHE = 4                      # inflated 1 MiB units kept per dump for readers that jump
INFLATE_THREADS = os.cpu_count() or 1   # a sequential reader's units are inflated on every core
# units (1 MiB each) inflated ahead of a sequential reader at most: enough to keep the cores busy
# while the reader blocks in its own writes, few enough to bound memory
INFLATE_AHEAD = min(64, max(32, 4 * INFLATE_THREADS))
TIB16 = 1 << 44                     # a u32 num_pages describes less than this
LOWCORE_READ = LC_SAVE_AREA + SAVE_AREA_SIZE
VX_SIZE = 512
Progress = Callable[[int], None] | None

# save-area fields the writer stores a CPU's registers in (lowcore offsets): FPRs, GPRs, PSW, prefix,
# FPC, TOD programmable register, CPU timer, clock comparator, ACRs, CRs.  The rest, e.g. the
# breaking-event address at 0x1338 that ELF and kdump dumps do not carry, is left as dumped.
_REG_FIELDS = ((0x1200, 0x80), (0x1280, 0x80), (0x1300, 0x10), (0x1318, 4), (0x131C, 4), (0x1324, 4),
               (0x1328, 8), (0x1330, 8), (0x1340, 0x40), (0x1380, 0x80))


# ---------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------

class _Inflater:
    """The units of one dump's compressed segments: one ordered parallel map over all of them in
    address order serves a sequential reader (units inflated on every core, zlib-ng releases
    the GIL, at most INFLATE_AHEAD ahead), so the pipeline runs on across segment borders;
    other reads inflate the unit they need.  The last UNIT_CACHE units stay cached.  Only the
    reading thread calls it."""

    def __init__(self):
        self.sources: list[ZlibSegmentSource] = []      # in address order
        self._stream: Iterator[bytes] | None = None
        self._stream_next: tuple[int, int] | None = None    # (source number, unit) it yields next
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    def add(self, source: "ZlibSegmentSource") -> int:
        self.sources.append(source)
        return len(self.sources) - 1

    def _units_from(self, number: int, index: int) -> Iterator[tuple[int, int]]:
        for n in range(number, len(self.sources)):
            for i in range(index if n == number else 0, self.sources[n].segment.units):
                yield n, i

    def _load(self, key: tuple[int, int]) -> bytes:
        return self.sources[key[0]].load(key[1])

    def _advance(self) -> None:
        n, i = self._stream_next
        i += 1
        while n < len(self.sources) and i >= self.sources[n].segment.units:
            n, i = n + 1, 0
        self._stream_next = (n, i)

    def unit(self, number: int, index: int, sequential: bool) -> bytes:
        key = (number, index)
        data = self._cache.get(key)
        if data is not None:
            self._cache.move_to_end(key)
            return data
        if sequential and self._stream_next != key:
            self.stop()
            self._stream = ordered_map(self._load, self._units_from(number, index), INFLATE_THREADS,
                                       INFLATE_AHEAD)
            self._stream_next = key
        if self._stream is not None and self._stream_next == key:
            data = next(self._stream)
            self._advance()
        else:
            data = self._load(key)
        self._cache[key] = data
        if len(self._cache) > UNIT_CACHE:
            self._cache.popitem(last=False)
        return data

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
            self._stream_next = None

    def close(self) -> None:
        self.stop()
        self._cache.clear()


class ZlibSegmentSource(_SizedSource):
    """The memory of one compressed segment: 1 MiB units, each its own zlib stream (bit 31 of
    its entry offset: stored raw), inflated by the dump's _Inflater (module docstring)."""

    read_unit = MIB                         # Dump.iter_data reads a unit at a time: no join, no copy

    def __init__(self, raw: FileSource, segment: DumpSegment, name: str, inflater: _Inflater | None = None):
        self.raw = raw                      # the segment's data on disk (offset 0 = data_offset)
        self.segment = segment
        self.size = segment.len
        self.name = name
        self.inflater = inflater if inflater is not None else _Inflater()
        self.number = self.inflater.add(self)
        self._next = 0                      # where the last read ended (sequential detection)

    def load(self, index: int) -> bytes:
        seg = self.segment
        offset, on_disk, stored_raw = seg.unit_location(index)
        rel = offset - seg.data_offset
        if stored_raw:
            if on_disk < MIB:
                raise BadInputError(f"{self.name}: raw unit {index} has only {on_disk} bytes on disk")
            return self.raw.read(rel, MIB)
        return inflate_unit(self.raw.read(rel, on_disk), f"{self.name}: unit {index}")

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        if not length:
            return b""
        sequential = offset == self._next
        out = []
        pos, end = offset, offset + length
        while pos < end:
            i = pos // MIB
            unit = self.inflater.unit(self.number, i, sequential)
            s = pos - i * MIB
            n = min(end - pos, MIB - s)
            out.append(unit[s:s + n] if (s, n) != (0, MIB) else unit)
            pos += n
        self._next = end
        return out[0] if len(out) == 1 else b"".join(out)

    def data_ranges(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        start, end = self._clip(start, end)
        if start < end:
            yield start, end

    def units(self):
        """(owner, 0, unit size, load(first, count)): the 1 MiB units, for readers that cache them."""
        return self, 0, MIB, lambda first, count: [self.load(i) for i in range(first, first + count)]

    def close(self) -> None:
        self.inflater.close()
        self.raw.close()


_TAPE_BLKL = TAPE_BLK_SIZE.to_bytes(2, "little")      # AWSTAPE lengths are little-endian


def _tape_source(base: FileSource, layout: TapeDumpLayout, size: int, name: str) -> MappedSource:
    """Memory [0, size) of a tape dump: 32 KiB data records, each behind its 6-byte header."""

    def read(offset: int, length: int) -> bytes:
        first, last = offset // TAPE_BLK_SIZE, (offset + length - 1) // TAPE_BLK_SIZE
        raw = memoryview(base.read(layout.record_offset(first), (last - first + 1) * TAPE_RECORD_SIZE))
        parts = []
        for b in range(first, last + 1):
            at = (b - first) * TAPE_RECORD_SIZE
            if raw[at:at + 2] != _TAPE_BLKL or raw[at + 4] != AWS_FLAG_NEWREC | AWS_FLAG_ENDREC:
                raise BadInputError(f"{name}: tape record of data block {b} (memory 0x{b * TAPE_BLK_SIZE:x}) is "
                                    f"corrupt (length {int.from_bytes(raw[at:at + 2], 'little')}, flags "
                                    f"0x{raw[at + 4]:02x})")
            lo = max(offset, b * TAPE_BLK_SIZE) - b * TAPE_BLK_SIZE
            hi = min(offset + length, (b + 1) * TAPE_BLK_SIZE) - b * TAPE_BLK_SIZE
            parts.append(raw[at + AWS_HEADER_SIZE + lo:at + AWS_HEADER_SIZE + hi])
        return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)

    def addr_of(file_off: int) -> int:
        rel = file_off - layout.data_offset
        b, within = divmod(rel, TAPE_RECORD_SIZE)
        return b * TAPE_BLK_SIZE + max(0, within - AWS_HEADER_SIZE)

    def ranges(start: int, end: int) -> Iterator[tuple[int, int]]:
        fs = layout.file_offset(start)
        fe = layout.file_offset(end - 1) + 1
        for s, e in base.data_ranges(fs, fe):
            a, z = max(start, addr_of(s)), min(end, addr_of(e))
            if a < z:
                yield a, z

    return MappedSource(read, size, ranges, close_fn=base.close, name=name)


# ---------------------------------------------------------------------------------------------
# the stream report (meminfo_abi.s390_dump_reader) as chunks of the model
# ---------------------------------------------------------------------------------------------

def _hexr(lo: int, hi: int) -> str:
    return f"0x{lo:x}-0x{hi - 1:x}"


def _chunks(r: StreamReport, bases: list[FileSource]) -> list[MemChunk]:
    """Pieces of stored memory as ram chunks, the gaps below known_end as zero chunks (the dumper
    skipped them), the rest of the memory as absent."""
    chunks: list[MemChunk] = []
    inflater = _Inflater()
    try:
        prev = 0
        for p in r.pieces:
            if p.start > prev:
                chunks.append(MemChunk(prev, p.start - prev, None, KIND_ZERO))
            base = bases[p.volume]
            where = r.paths[p.volume] if r.layout != "multi-volume" else f"volume {p.volume} ({r.paths[p.volume]})"
            if r.tape is not None:
                src = _tape_source(base.region(0, base.size), r.tape, p.len, f"{where} (tape)")
            elif p.segment is None:
                src = base.region(p.file_offset, p.len, name=where)
            else:
                seg = p.segment
                name = f"{where} segment 0x{seg.start:x}" + (" (cut short)" if p.salvaged else "")
                region = base.region(seg.data_offset, seg.size_on_disk, name=name)
                src = ZlibSegmentSource(region, seg, name, inflater) if seg.compressed else region
            chunks.append(MemChunk(p.start, p.len, src, KIND_RAM))
            prev = p.end
        if prev < r.known_end:
            chunks.append(MemChunk(prev, r.known_end - prev, None, KIND_ZERO))
            prev = r.known_end
        if prev < r.mem_size:
            chunks.append(MemChunk(prev, r.mem_size - prev, None, KIND_ABSENT))
    except BaseException:
        for c in chunks:
            if c.source is not None:
                c.source.close()
        raise
    return chunks


# ---------------------------------------------------------------------------------------------
# CPUs
# ---------------------------------------------------------------------------------------------

def _u64(data: bytes, off: int) -> int:
    return int.from_bytes(data[off:off + 8], "big")


# ---------------------------------------------------------------------------------------------
# opening
# ---------------------------------------------------------------------------------------------

def _split_paths(path) -> list[str]:
    if isinstance(path, (list, tuple)):
        paths = [os.fspath(p) for p in path]
    else:
        p = os.fspath(path)
        paths = [p] if os.path.exists(p) or "," not in p else [x.strip() for x in p.split(",")]
    if not paths or any(not p for p in paths):
        raise BadInputError(f"{path!r}: empty path in the list of dump volumes")
    return paths




def read_s390(path, select: str | None = None) -> Dump:
    """Open an s390 dump: a file, a dump device image, or the volumes of a multi-volume set."""
    paths = _split_paths(path)
    bases: list[FileSource] = []
    fds: list[int] = []             # for walking the structure at open time; reads go through bases
    try:
        kinds = [probe_head(read_head(p, DEVICE_PROBE_SIZE)) for p in paths]
        for p, k in zip(paths, kinds):
            if k is None:
                raise BadInputError(f"{p} is neither an s390 dump (magic ...23fd/...23fe at offset 0) nor a dump "
                                    "device image")
        for p in paths:
            bases.append(FileSource(p, name=p))
            fds.append(_open_fd(p))
        r = read_stream(paths, fds, kinds)
        if not r.present:
            raise BadInputError(f"{r.paths[0]}: {r.reason}")
        dump = _build(r, [bases[i] for i in r.order], ",".join(paths))
    except BaseException as exc:
        for b in bases:
            b.close()
        if isinstance(exc, DumpToolError):
            raise
        if isinstance(exc, OSError):
            raise DumpIOError(f"cannot read {','.join(paths)}: {exc.strerror or exc}") from None
        if isinstance(exc, (ConstructError, ValueError, OverflowError, UnicodeError)):
            raise BadInputError(f"{','.join(paths)}: malformed s390 dump: {exc}") from None
        raise
    finally:
        for fd in fds:
            os.close(fd)
    for b in bases:          # the chunks hold regions of their own; the dump closes those
        b.close()
    try:
        return select_system(dump, select)
    except BaseException:
        dump.close()
        raise


def _open_fd(path: str) -> int:
    try:
        return os_open_input(path, noun="dump")
    except OSError as exc:
        raise DumpIOError(f"cannot open {path}: {exc.strerror or exc}") from None


def _build(r: StreamReport, bases: list[FileSource], origin: str) -> Dump:
    hdr = r.header
    attrs = DumpAttrs(format=FORMAT_NAME, format_version=hdr.version, origin=origin)
    attrs.timestamp = tod_to_datetime(hdr.tod)
    cpu_cnt = hdr.cpu_cnt
    ext = {
        "layout": r.layout,
        "magic": f"0x{hdr.magic:016x}",
        "mem_size": hdr.mem_size,
        "mem_size_real": hdr.mem_size_real,
        "mem_end": hdr.mem_end,
        "num_pages": hdr.num_pages,
        "tod": hdr.tod,
        "cpu_id": hdr.cpu_id,
        "build_arch": hdr.build_arch,
        "cpu_cnt": cpu_cnt,
        "real_cpu_cnt": hdr.real_cpu_cnt,
        "zlib": bool(hdr.zlib_version_s390),
        "volnr": hdr.volnr,
        "segments": r.segments,
        "data_size": r.data_size,
        "checks": r.checks,
    }
    if r.end_tod is not None:
        ext["end_tod"] = r.end_tod
        end = tod_to_datetime(r.end_tod)
        ext["end_time"] = end.isoformat() if end else None
    if r.device:
        ext["device"] = r.device
    if r.volumes:
        ext["volumes"] = r.volumes
    if hdr.mem_size >= TIB16:
        ext["num_pages_note"] = (f"num_pages is a u32 and cannot describe {hdr.mem_size >> 40} TiB; mem_size "
                                 f"0x{hdr.mem_size:x} is trusted (num_pages holds {hdr.num_pages})")
    elif hdr.num_pages != hdr.mem_size // S390_PAGE_SIZE:
        ext["num_pages_note"] = (f"num_pages {hdr.num_pages} disagrees with mem_size 0x{hdr.mem_size:x} "
                                 f"({hdr.mem_size // S390_PAGE_SIZE} pages); mem_size is trusted")
    if hdr.real_cpu_cnt and hdr.real_cpu_cnt != cpu_cnt:
        ext["cpus_without_lowcore"] = max(0, hdr.real_cpu_cnt - cpu_cnt)
    attrs.extra.update(ext)
    if r.problems:
        attrs.mark_incomplete("; ".join(r.problems))
    dump = Dump(_chunks(r, bases), (), attrs)
    notes: list[str] = []
    dump.cpus = cpus_from_prefixes(dump, list(hdr.lc_vec[:cpu_cnt]), notes)
    if notes:
        attrs.extra["notes"] = notes
    dump.fill_vmcoreinfo_from_memory()
    return dump


class S390Reader:
    name = FORMAT_NAME
    description = "s390 stand-alone dump: flat, extended (zlib), ECKD/FBA/tape device images, multi-volume sets"

    def probe(self, fh, head: bytes) -> bool:
        if getattr(fh, "is_dir", False):
            return False
        if len(head) < DEVICE_PROBE_SIZE and probe_head(head) is None:
            try:
                fh.seek(0)
                head = fh.read(DEVICE_PROBE_SIZE)
            except (OSError, ValueError):
                return False
        return probe_head(head) is not None

    def probe_paths(self, paths: Sequence[str]) -> bool:
        """Several paths: the volumes of a multi-volume dump."""
        try:
            return len(paths) > 1 and all(probe_head(read_head(p, DEVICE_PROBE_SIZE)) == "eckd" for p in paths)
        except DumpToolError:
            return False

    def open(self, path, select: str | None = None, **opts) -> Dump:
        if opts:
            raise UsageError(f"the s390 reader takes no options but select ({', '.join(opts)})")
        return read_s390(path, select)


# ---------------------------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------------------------

@dataclass
class S390WriteResult:
    path: str
    mem_size: int
    file_size: int
    version: int
    cpus_written: int
    cpus_dropped: list[str] = field(default_factory=list)
    header_tod: int = 0
    end_tod: int = 0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _read_or_zero(dump: Dump, addr: int, length: int) -> bytes:
    """Memory as the flat output will hold it: gaps between chunks are zeros."""
    out = bytearray(length)
    for c in dump.chunks:
        s, e = max(addr, c.start), min(addr + length, c.end)
        if s < e and c.kind == KIND_RAM:
            out[s - addr:e - addr] = c.source.read(s - c.start, e - s)
    return bytes(out)


def plan_cpus(dump: Dump, mem_size: int) -> tuple[list[tuple[CpuRegs, int]], list[str]]:
    """(CPU, prefix) pairs whose registers go into the output, and why the others cannot."""
    keep: list[tuple[CpuRegs, int]] = []
    dropped: list[str] = []
    seen: set[int] = set()
    for i, regs in enumerate(dump.cpus):
        p = regs.prefix
        why = ""
        if len(keep) >= 512:
            why = "more than 512 CPUs"
        elif not p or p % LOWCORE_SIZE:
            why = f"prefix 0x{p:x} is not an 8 KiB aligned lowcore above 0"
        elif p + LOWCORE_SIZE > mem_size:
            why = f"prefix page 0x{p:x} is outside the memory"
        elif p in seen:
            why = f"prefix 0x{p:x} is used by another CPU"
        if why:
            dropped.append(f"CPU {i}: {why}")
            continue
        seen.add(p)
        keep.append((regs, p))
    return keep, dropped


@dataclass
class S390Plan:
    """What a flat s390 dump of a Dump holds besides its memory: computed once, written by
    write_s390 and served read by read by `vmcore mount -f s390` (vmcore/mount.py)."""
    header: bytes
    mem_size: int
    version: int
    cpus: list[tuple[CpuRegs, int]]
    dropped: list[str]
    overlays: list[tuple[int, bytes]]     # (address, bytes) laid over memory: the CPUs' save areas
    tod: int
    end_tod: int


def _absent_text(dump: Dump, absent: list[tuple[int, int]]) -> str:
    what = "filtered out" if not dump.missing_ranges() else "missing"
    return (f"physical range {_hexr(*absent[0])}" + (f" and {len(absent) - 1} more" if len(absent) > 1 else "")
            + f" {'are' if len(absent) > 1 else 'is'} {what}: a flat s390 dump would show zeros there")


def plan_s390(dump: Dump) -> S390Plan:
    """Header, CPUs and register overlays of the flat s390 dump of `dump`: the memory rounded
    up to whole pages, every CPU whose prefix page is in it, its registers laid over its save
    area (and its vector registers over their save area), the rest of the lowcore as memory
    holds it (gaps read as zeros)."""
    mem_size = -(-dump.size // S390_PAGE_SIZE) * S390_PAGE_SIZE
    if mem_size == 0:
        raise BadInputError("the dump holds no memory")
    if mem_size + DF_S390_HDR_SIZE + DF_S390_EM_SIZE > (1 << 63) - 1:
        raise BadInputError(f"memory of 0x{mem_size:x} bytes does not fit in a file")
    cpus, dropped = plan_cpus(dump, mem_size)
    ext = dump.attrs.extra
    ts = dump.attrs.timestamp
    tod = unix_to_tod(ts.timestamp()) if ts is not None else 0
    end_tod = ext.get("end_tod") if isinstance(ext.get("end_tod"), int) else None
    end_tod = end_tod if end_tod is not None and end_tod >= tod else tod
    cpu_id = ext.get("cpu_id") if isinstance(ext.get("cpu_id"), int) and 0 <= ext["cpu_id"] < 1 << 64 else 0
    real = ext.get("real_cpu_cnt") if dump.attrs.format == FORMAT_NAME else None
    real = real if isinstance(real, int) and len(cpus) <= real <= 0xFFFF else len(cpus)
    mem_real = ext.get("mem_size_real") if dump.attrs.format == FORMAT_NAME else None
    mem_real = mem_real if isinstance(mem_real, int) and 0 < mem_real < 1 << 64 else mem_size
    version = DF_S390_VERSION_FLAT if cpus else DF_S390_VERSION_FLAT - 1
    header = build_header(magic=DF_S390_MAGIC, version=version, mem_size=mem_size, tod=tod, cpu_id=cpu_id,
                          lc_vec=[p for _, p in cpus], real_cpu_cnt=real, mem_size_real=mem_real, mem_end=mem_size)
    overlays: list[tuple[int, bytes]] = []
    for regs, p in cpus:
        lc = bytearray(_read_or_zero(dump, p, LOWCORE_READ))
        built = regs.to_save_area()
        for off, n in _REG_FIELDS:
            lc[off:off + n] = built[off - LC_SAVE_AREA:off - LC_SAVE_AREA + n]
        overlays.append((p + LC_SAVE_AREA, bytes(lc[LC_SAVE_AREA:LOWCORE_READ])))
        origin = _u64(lc, LC_MCESAD) & MCESA_ORIGIN_MASK
        if regs.vxrs is not None and len(regs.vxrs) == VX_SIZE and origin and origin + VX_SIZE <= mem_size:
            overlays.append((origin, bytes(regs.vxrs)))
    return S390Plan(header, mem_size, version, cpus, dropped, overlays, tod, end_tod)


def refuse_absent(dump: Dump, instead: str) -> None:
    """The flat format cannot leave memory out: absent memory is refused, saying what to do instead."""
    absent = dump.absent_ranges()
    if absent:
        raise IncompleteDumpError(_absent_text(dump, absent) + f" ({instead})")


def write_s390(dump: Dump, path, progress: Progress = None, *, block_size: int = DEFAULT_BLOCK,
               allow_incomplete: bool = False) -> S390WriteResult:
    """Write `dump` as a flat s390 dump (sparse, atomic, streamed, written back as it goes).

    The flat format has no way to leave memory out: a dump with absent ranges (missing, or
    filtered out by a dump level) is refused unless allow_incomplete, and then written without
    its end marker, so every reader (zgetdump too) sees it as incomplete."""
    path = os.fspath(path)
    absent = dump.absent_ranges()
    incomplete = bool(absent) or not dump.attrs.complete
    if not allow_incomplete:
        refuse_absent(dump, "write ELF or kdump to keep the gap, or --allow-incomplete for an s390 dump "
                            "without end marker")
    plan = plan_s390(dump)
    mem_size = plan.mem_size
    try:
        with atomic_file(path) as fh:
            fd = fh.fileno()
            pwrite_all(fd, plan.header, 0)
            copy_memory(dump, fd, [(c.start, c.end, DF_S390_HDR_SIZE + c.start) for c in dump.chunks], progress,
                        block_size=block_size)
            for addr, data in plan.overlays:
                pwrite_all(fd, data, DF_S390_HDR_SIZE + addr)
            if incomplete:          # never claimed complete: no end marker
                file_size = DF_S390_HDR_SIZE + mem_size
            else:
                pwrite_all(fd, build_end_marker(plan.end_tod), DF_S390_HDR_SIZE + mem_size)
                file_size = DF_S390_HDR_SIZE + mem_size + DF_S390_EM_SIZE
            os.ftruncate(fd, file_size)
    except DumpToolError:
        raise
    except OSError as exc:
        raise DumpIOError(f"cannot write {path}: {exc.strerror or exc}") from None
    return S390WriteResult(path, mem_size, file_size, plan.version, len(plan.cpus), plan.dropped, plan.tod,
                           plan.end_tod)


class S390Writer:
    name = FORMAT_NAME
    description = "flat s390 dump (as zgetdump -f s390 writes it)"

    def write(self, dump: Dump, path, progress: Progress = None, **opts) -> S390WriteResult:
        return write_s390(dump, path, progress, **opts)


READER = S390Reader()
WRITER = S390Writer()
