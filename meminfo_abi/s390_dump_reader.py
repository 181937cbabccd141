"""The one reader of s390 stand-alone dumps: files, dump device images, tapes, volume sets.

``read_stream(paths, fds)`` finds the dump and judges it, once, for every user: `sadump
show` / `extract` (through ``DeviceDump``) and the vmcore reader (which maps the report to
its dump model).  Its checks:

* a dump file: a dump header at offset 0, flat (``...23fd``: memory, then the end marker)
  or extended (``...23fe``: segments walked by ``ExtStreamWalker``);
* an ECKD or FBA image: the dump area the boot record names (``s390_dump_device``), then
  the same stream in it;
* a tape (AWSTAPE image): the tapemark and 4 KiB header block behind the tool, every data
  record walked (32 KiB, previous length and flags as the dumper writes them; the first
  one that is not ends what the tape holds), then the end marker record;
* a multi-volume set (``zipl -M``): the volumes' parameter tables equal, each volume's
  header a multi-volume header of this volume of this dump (volnr, mvdump_sign, the same
  TOD as volume 0, the zipl time stamp of the table), the stream continued from volume
  to volume with the dumper's space accounting.

A stream cut short is read as far as it goes: ``Piece`` lists the memory stored, in
address order; memory below ``known_end`` outside every piece is zero (the dumper skipped
it), memory above ``known_end`` is missing.  ``checks`` says what was checked and how it
came out, ``reason`` in one line why the dump is not complete.  ``present`` is False when
there is no dump to read at all (no header, the wrong header); ``reason`` then says why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from construct import ConstructError

from dumpkit.errors import BadInputError, DumpIOError, DumpToolError
from meminfo_abi.s390_dump import (
    AWS_FLAG_ENDREC, AWS_FLAG_NEWREC, AWS_FLAG_TAPEMARK, AWS_HEADER_SIZE, DEVICE_PROBE_SIZE, DF_S390_EM_SIZE,
    DF_S390_HDR_SIZE, DF_S390_MAGIC, DF_S390_MAGIC_EXT, DUMP_SEGM_ENTRY_UNCOMPRESSED, DUMP_SEGM_HDR_SIZE,
    DUMP_SEGM_STOP_MARKER, MIB, PAGE_SIZE, TAPE_BLK_SIZE, TAPE_RECORD_SIZE, AwsTapeHeader, DfS390DumpSegmHdr,
    parse_end_marker, parse_header,
)
from meminfo_abi.s390_dump_device import (
    DumpArea, TapeDumpLayout, check_volume_set, dump_device_kind, read_dump_area, tape_dump_header,
)
from meminfo_abi.s390_dump_stream import DumpSegment, ExtStreamWalker, read_unit
from meminfo_abi.tod import tod_text


def probe_head(head: bytes) -> str | None:
    """"file" (a dump header at offset 0), "eckd"/"fba"/"tape" (a dump device image), or None."""
    if len(head) >= 8 and int.from_bytes(head[:8], "big") in (DF_S390_MAGIC, DF_S390_MAGIC_EXT):
        return "file"
    return dump_device_kind(head)


def _hexr(lo: int, hi: int) -> str:
    return f"0x{lo:x}-0x{hi - 1:x}"


def _pread(fd: int, n: int, offset: int) -> bytes:
    try:
        return os.pread(fd, n, offset)
    except OSError as exc:
        raise DumpIOError(f"reading at 0x{offset:x}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class Piece:
    """Memory [start, start + len) the dump stores, on volume `volume` (index into the report's
    paths).  Extended: `segment` locates it (a cut-short segment's whole units: `salvaged`);
    flat: memory byte `start` + k is at file offset `file_offset` + k; tape: see report.tape."""

    start: int
    len: int
    volume: int = 0
    segment: DumpSegment | None = None
    file_offset: int = 0
    salvaged: bool = False

    @property
    def end(self) -> int:
        return self.start + self.len


@dataclass
class StreamReport:
    """What the reader found (module docstring)."""

    paths: list[str]
    present: bool = True
    header: Any = None
    layout: str = ""                             # flat | extended | tape | multi-volume
    pieces: list[Piece] = field(default_factory=list)
    known_end: int = 0
    checks: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reason: str = "complete"
    end_tod: int | None = None
    segments: int = 0                            # segment headers walked (extended)
    data_size: int = 0                           # bytes of stored data (on disk)
    end_offset: int = 0                          # one volume: file offset after the end marker, or after the
    #                                              last whole segment of an incomplete stream
    volumes: list[dict] = field(default_factory=list)
    device: dict = field(default_factory=dict)
    areas: list[DumpArea] = field(default_factory=list)
    order: list[int] = field(default_factory=list)   # input index of each path, in volume order
    tape: TapeDumpLayout | None = None

    @property
    def complete(self) -> bool:
        return self.present and not self.problems

    @property
    def mem_size(self) -> int:
        return self.header.mem_size if self.header is not None else 0

    def check(self, name: str, ok: bool | None, detail: str) -> None:
        self.checks.append({"check": name, "ok": ok, "detail": detail})
        if ok is False:
            self.problems.append(f"{name}: {detail}")
            if self.reason == "complete":
                self.reason = f"incomplete: {name}: {detail}"

    def absent(self, reason: str) -> "StreamReport":
        self.present = False
        self.reason = reason
        return self


def _end_marker_checks(r: StreamReport, valid: bool, tod: int, why: str, where: str) -> None:
    hdr_tod = r.header.tod
    if valid:
        r.end_tod = tod
        r.check("end marker", True, f"DUMP_END {where}")
        r.check("TOD order", True, f"end {tod_text(tod)} >= start {tod_text(hdr_tod)}")
    elif why.startswith("end marker TOD"):
        r.end_tod = tod
        r.check("end marker", True, f"DUMP_END {where}")
        r.check("TOD order", False, why)
    else:
        r.check("end marker", False, f"{why} ({where})")


# -- flat ------------------------------------------------------------------------------------------

def _read_flat(r: StreamReport, fd: int, area_offset: int, area_end: int, where: str) -> None:
    r.layout = "flat"
    mem = r.header.mem_size
    data = area_offset + DF_S390_HDR_SIZE
    avail = max(0, min(mem, area_end - data))
    if avail:
        r.pieces.append(Piece(0, avail, 0, file_offset=data))
    r.data_size = avail
    r.known_end = avail
    r.end_offset = data + avail
    if avail < mem:
        r.check("size", False, f"{where} ends at offset 0x{max(data, area_end):x}, inside the memory: physical "
                               f"range {_hexr(avail, mem)} is missing (and the end marker)")
        return
    r.check("size", True, f"memory 0x{mem:x} bytes at offset 0x{data:x}")
    at = data + mem
    raw = _pread(fd, min(DF_S390_EM_SIZE, max(0, area_end - at)), at) if at < area_end else b""
    if len(raw) < DF_S390_EM_SIZE:
        r.check("end marker", False, f"{where} ends before the end marker at offset 0x{at:x} "
                                     "(all memory is present)")
        return
    valid, tod, why = parse_end_marker(raw, r.header.tod)
    _end_marker_checks(r, valid, tod, why, f"at offset 0x{at:x}")
    if valid:
        r.end_offset = at + DF_S390_EM_SIZE


# -- extended --------------------------------------------------------------------------------------

def _add_segments(r: StreamReport, segs: Sequence[DumpSegment], volume: int) -> None:
    for seg in segs:
        r.segments += 1
        r.data_size += seg.size_on_disk
        if seg.len:
            r.pieces.append(Piece(seg.start, seg.len, volume, seg))
            r.known_end = seg.end


def _salvage(r: StreamReport, fd: int, at: int, area_end: int, volume: int, block_size: int) -> None:
    """What a cut-short stream still holds of the segment whose header is at `at`: the gap before
    it (zeros: the dumper skipped it), the data of an uncompressed segment up to the cut, the
    whole 1 MiB units of a compressed one."""
    prev, mem = r.known_end, r.header.mem_size
    if at + DUMP_SEGM_HDR_SIZE > area_end:
        return
    raw = _pread(fd, DUMP_SEGM_HDR_SIZE, at)
    if len(raw) != DUMP_SEGM_HDR_SIZE:
        return
    seg = DfS390DumpSegmHdr.parse(raw)
    if (seg.start % MIB or seg.len % MIB or not seg.len or seg.start < prev or seg.start + seg.len > mem
            or seg.stop_marker not in (0, DUMP_SEGM_STOP_MARKER)):
        return
    data = at + DUMP_SEGM_HDR_SIZE
    room = max(0, area_end - data)
    if not seg.size_on_disk:
        n = min(seg.len, room)
        part = DumpSegment(seg.start, n, False, at, data, n, (), block_size) if n else None
    else:
        entries = tuple(seg.entry_offset[:seg.entry_count])
        if not r.header.zlib_version_s390 or ExtStreamWalker._check_entries(entries, seg.len, seg.size_on_disk):
            return
        ends = [(e & ~DUMP_SEGM_ENTRY_UNCOMPRESSED) * block_size for e in entries[1:]]
        ends.append(seg.size_on_disk * block_size)
        k = 0
        while k < len(ends) and ends[k] <= room:
            k += 1
        part = DumpSegment(seg.start, k * MIB, False, at, data, ends[k - 1], entries[:k], block_size) if k else None
    r.known_end = seg.start
    if part is not None:
        r.pieces.append(Piece(part.start, part.len, volume, part, salvaged=True))
        r.data_size += part.size_on_disk
        r.known_end = part.start + part.len


def _finish_ext(r: StreamReport, fd: int, st, area_end: int, where: str, volume: int, block_size: int) -> None:
    mem = r.header.mem_size
    r.end_offset = st.end_offset
    if st.stop_marker:
        r.check("stop marker", True, f"last segment ends at 0x{r.known_end:x}")
        r.known_end = mem
        at = st.end_marker_offset
        if at is not None:
            valid, tod, why = parse_end_marker(_pread(fd, DF_S390_EM_SIZE, at), r.header.tod)
            _end_marker_checks(r, valid, tod, why, f"at offset 0x{at:x} of {where}")
        else:
            r.check("end marker", False, f"{where} ends right after the stop-marker segment (all memory is present)")
        if not st.complete:
            r.reason = st.reason
        return
    _salvage(r, fd, st.end_offset, area_end, volume, block_size)
    end = r.known_end
    missing = f"physical range {_hexr(end, mem)} is missing" if end < mem else "no memory is missing"
    r.check("stop marker", False, f"{st.reason}; {missing}")
    r.reason = st.reason


def _read_ext(r: StreamReport, fd: int, area_offset: int, area_size: int, where: str,
              block_size: int = PAGE_SIZE) -> None:
    r.layout = "extended"
    walker = ExtStreamWalker(fd, area_offset, size=area_size, block_size=block_size, header=r.header)
    _add_segments(r, list(walker), 0)
    _finish_ext(r, fd, walker.status, area_offset + walker.size, where, 0, block_size)


# -- tape ------------------------------------------------------------------------------------------

def _read_tape(r: StreamReport, fd: int, area: DumpArea) -> None:
    """The flat dump on a tape, every data record walked (the first one that is not a 32 KiB
    record behind its predecessor ends what the tape holds)."""
    try:
        hdr, at, why = tape_dump_header(fd, area)
    except DumpToolError as exc:
        hdr, at, why = None, 0, f"corrupt dump header: {exc}"
    if hdr is None:
        r.absent(why)
        return
    r.header = hdr
    r.layout = "tape"
    if hdr.volnr != 0:
        r.absent(f"tape dump volume {hdr.volnr}: multi-volume tape dumps are not supported")
        return
    mem = hdr.mem_size
    data = at + DF_S390_HDR_SIZE
    blocks = -(-mem // TAPE_BLK_SIZE)
    size = os.fstat(fd).st_size
    whole = min(blocks, max(0, size - data) // TAPE_RECORD_SIZE)
    present = _walk_tape_records(fd, data, whole)
    layout = TapeDumpLayout(at, data, blocks, present, data + blocks * TAPE_RECORD_SIZE)
    r.tape = layout
    have = min(mem, present * TAPE_BLK_SIZE)
    if have:
        r.pieces.append(Piece(0, have, 0, file_offset=data))
    r.data_size = have
    r.known_end = have
    r.end_offset = layout.record_offset(present)
    if have < mem:
        r.check("size", False, f"the tape ends after data block {present} of {blocks}: physical range "
                               f"{_hexr(have, mem)} is missing")
        return
    r.check("size", True, f"{blocks} data blocks of 32 KiB")
    em_at = layout.end_marker_offset
    raw = _pread(fd, AWS_HEADER_SIZE, em_at)
    h = AwsTapeHeader.parse(raw) if len(raw) == AWS_HEADER_SIZE else None
    if h is None or h.flags1 & AWS_FLAG_TAPEMARK or h.curblkl not in (8, DF_S390_EM_SIZE):
        valid, tod, why = False, 0, "no end marker block after the last data block"
    else:
        em = _pread(fd, DF_S390_EM_SIZE, em_at + AWS_HEADER_SIZE)
        valid, tod, why = parse_end_marker(em.ljust(DF_S390_EM_SIZE, b"\0"), hdr.tod)
    _end_marker_checks(r, valid, tod, why, f"in the record at offset 0x{em_at:x}")
    if valid:
        r.end_offset = em_at + AWS_HEADER_SIZE + h.curblkl


def _walk_tape_records(fd: int, data: int, blocks: int) -> int:
    """How many of the `blocks` data records from file offset `data` are intact: each a 32 KiB
    record (new record + end of record) whose previous length is its predecessor's."""
    prev = DF_S390_HDR_SIZE
    newrec = AWS_FLAG_NEWREC | AWS_FLAG_ENDREC
    for good in range(blocks):
        raw = _pread(fd, AWS_HEADER_SIZE, data + good * TAPE_RECORD_SIZE)
        if len(raw) != AWS_HEADER_SIZE or raw[4] != newrec or \
                int.from_bytes(raw[0:2], "little") != TAPE_BLK_SIZE or int.from_bytes(raw[2:4], "little") != prev:
            return good
        prev = TAPE_BLK_SIZE
    return blocks


# -- multi-volume ----------------------------------------------------------------------------------

def _read_mv(r: StreamReport, fds: Sequence[int], areas: Sequence[DumpArea]) -> None:
    hdr0 = None
    n = len(areas)
    r.layout = "multi-volume"
    for i, (fd, area) in enumerate(zip(fds, areas)):
        where = f"volume {i} ({area.path})"
        vol = {"volume": i, "path": area.path, "device": area.mv_table.volumes[i].bus_id, "segments": 0,
               "status": "not reached"}
        hdr, bad = None, ""
        if area.size < DF_S390_HDR_SIZE:
            bad = "the dump area is cut short"
        else:
            raw = _pread(fd, DF_S390_HDR_SIZE, area.offset)
            if int.from_bytes(raw[:8], "big") not in (DF_S390_MAGIC, DF_S390_MAGIC_EXT):
                bad = "no dump on the device" if i == 0 else "no dump header"
            else:
                try:
                    hdr = parse_header(raw)
                except DumpToolError as exc:
                    bad = f"no dump header ({exc})"
        if hdr is not None:
            if hdr.magic != DF_S390_MAGIC_EXT or not hdr.mvdump or hdr.mvdump_sign != DF_S390_MAGIC_EXT:
                bad = "not a multi-volume dump header"
            elif hdr.volnr != i:
                bad = f"its dump header says volume {hdr.volnr}"
            elif hdr0 is not None and hdr.tod != hdr0.tod:
                bad = "its dump header belongs to another dump (TOD differs from volume 0)"
            elif hdr.mvdump_zipl_time != area.mv_table.tod:
                bad = "its dump header was written for another zipl -M set (time stamp differs)"
        if bad:
            if hdr0 is None:
                r.absent(f"multi-volume set: {bad} on volume 0")
                return
            vol["status"] = bad
            r.volumes.append(vol)
            r.check("volumes", False, f"{where}: {bad}")
            r.reason = f"incomplete: volume {i} ({area.path}): {bad}"
            break
        if hdr0 is None:
            hdr0 = r.header = hdr
        walker = ExtStreamWalker(fd, area.offset, size=area.nominal_size, block_size=area.block_size,
                                 volume=True, header=hdr, start_addr=r.known_end)
        segs = list(walker)
        _add_segments(r, segs, i)
        st = walker.status
        vol["segments"] = len(segs)
        r.volumes.append(vol)
        if st.volume_full and i + 1 < n:
            vol["status"] = "full, continued on the next volume"
            continue
        vol["status"] = "stop marker here" if st.stop_marker else st.reason
        r.check("volumes", True, f"{i + 1} of {n} volumes hold the dump, headers and parameter tables agree")
        _finish_ext(r, fd, st, area.offset + walker.size, where, i, area.block_size)
        if not r.complete and not st.stop_marker:
            r.reason = f"{st.reason} (volume {i}, {area.path})"
        return
    # a volume was unusable, or the last volume is full without a stop marker
    mem = r.header.mem_size
    if not r.problems:
        r.check("stop marker", False, f"no stop marker on any of the {n} volumes")
        r.reason = "incomplete: no stop marker on any volume"
    if r.known_end < mem:
        r.check("stop marker", False, f"physical range {_hexr(r.known_end, mem)} is missing")


# -- the entry point -------------------------------------------------------------------------------

def _dump_header_at(r: StreamReport, fd: int, area: DumpArea):
    """The header at the start of a DASD dump area, or None with r.absent() saying why."""
    if area.size < DF_S390_HDR_SIZE:
        r.absent("the dump area is cut short (no room for a dump header)")
        return None
    raw = _pread(fd, DF_S390_HDR_SIZE, area.offset)
    if int.from_bytes(raw[:8], "big") not in (DF_S390_MAGIC, DF_S390_MAGIC_EXT):
        r.absent(f"no dump on this {area.kind.upper()} dump device (no dump header at offset 0x{area.offset:x})")
        return None
    try:
        return parse_header(raw)
    except DumpToolError as exc:
        r.absent(f"corrupt dump header: {exc}")
        return None


def read_stream(paths: Sequence[str], fds: Sequence[int], kinds: Sequence[str | None] | None = None
                ) -> StreamReport:
    """Find and judge the dump in the files `paths` (open as `fds`): one dump file, one device
    image, or the volumes of a multi-volume set in any order (report.order: their table order).
    A file that is neither a dump nor a dump device, or a volume set that does not fit
    together, is a BadInputError; a device without a dump is a report with present False."""
    paths = list(paths)
    if kinds is None:
        kinds = [probe_head(_pread(fd, DEVICE_PROBE_SIZE, 0)) for fd in fds]
    for p, k in zip(paths, kinds):
        if k is None:
            raise BadInputError(f"{p} is neither an s390 dump (magic ...23fd/...23fe at offset 0) nor a dump "
                                "device image")
    r = StreamReport(paths, order=list(range(len(paths))))
    try:
        devices = len(paths) > 1 or kinds[0] != "file"
        areas = [read_dump_area(fd, p) for fd, p in zip(fds, paths)] if devices else []
        if len(paths) > 1 or areas and areas[0].multi_volume:
            ordered = check_volume_set(areas)
            r.order = [areas.index(a) for a in ordered]
            r.paths = [paths[i] for i in r.order]
            r.areas = ordered
            r.device = {"kind": "eckd", "tool": ordered[0].description, "volumes": len(ordered),
                        "zipl_time": tod_text(ordered[0].mv_table.tod)}
            _read_mv(r, [fds[i] for i in r.order], ordered)
        elif kinds[0] == "file":
            fd = fds[0]
            r.header = parse_header(_pread(fd, DF_S390_HDR_SIZE, 0))
            size = os.fstat(fd).st_size
            if r.header.magic == DF_S390_MAGIC:
                _read_flat(r, fd, 0, size, paths[0])
            else:
                _read_ext(r, fd, 0, size, paths[0])
        else:
            area = areas[0]
            r.areas = [area]
            r.device = {"kind": area.kind, "tool": area.description, "dump_area_offset": area.offset,
                        "dump_area_size": area.nominal_size}
            if area.cut_short:
                r.device["image_cut_short"] = f"the image holds 0x{area.size:x} of 0x{area.nominal_size:x} bytes"
            if area.kind == "tape":
                _read_tape(r, fds[0], area)
            else:
                r.header = _dump_header_at(r, fds[0], area)
                if r.header is not None and r.header.magic == DF_S390_MAGIC:
                    _read_flat(r, fds[0], area.offset, area.offset + area.size, paths[0])
                elif r.header is not None:
                    _read_ext(r, fds[0], area.offset, area.size, paths[0])
    except (ConstructError, ValueError, OverflowError, UnicodeError) as exc:
        raise BadInputError(f"{','.join(paths)}: malformed s390 dump: {exc}") from None
    return r


# -- sadump's view: the dump on its device(s), open --------------------------------------------------

TAPE_BLOCKS_PER_MIB = MIB // TAPE_BLK_SIZE


def _device_paths(devices) -> list[str]:
    if isinstance(devices, (str, os.PathLike)) or hasattr(devices, "path"):
        devices = [devices]
    paths = [os.fspath(d.path if hasattr(d, "path") else d) for d in devices]
    if not paths:
        raise BadInputError("no dump device given")
    return paths


class DeviceDump:
    """The dump on a device or multi-volume set as `sadump show` / `extract` see it: the report of
    read_stream over open descriptors (close them: a context manager).  Never raises for a
    missing or incomplete dump: `present`, `complete`, `reason` say what is there."""

    def __init__(self, report: StreamReport, fds: list[int], devices: Sequence | None = None):
        self.report = report
        self.fds = fds
        self.devices = list(devices) if devices is not None else report.paths

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def __enter__(self) -> "DeviceDump":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    present = property(lambda self: self.report.present)
    complete = property(lambda self: self.report.complete)
    reason = property(lambda self: self.report.reason)
    header = property(lambda self: self.report.header)
    end_marker_tod = property(lambda self: self.report.end_tod)
    data_size = property(lambda self: self.report.data_size)
    end_offset = property(lambda self: self.report.end_offset)
    mem_size = property(lambda self: self.report.mem_size)

    @property
    def layout(self) -> str:
        """"ext" (segments) or "flat" (memory in order: flat dumps and tapes)."""
        return "ext" if self.report.layout in ("extended", "multi-volume") else "flat"

    @property
    def segments(self) -> list[tuple[int, DumpSegment]]:
        """(volume, segment) of every whole segment walked, in stream order."""
        return [(p.volume, p.segment) for p in self.report.pieces if p.segment is not None and not p.salvaged]

    def read_flat(self, mib: int) -> bytes:
        """1 MiB of a flat dump's memory at mib * 1 MiB (zeros past what the dump stores)."""
        r = self.report
        addr = mib * MIB
        have = r.pieces[0].len if r.pieces else 0
        n = max(0, min(MIB, have - addr))
        if not n:
            return bytes(MIB)
        if r.tape is None:
            return _pread(self.fds[0], n, r.pieces[0].file_offset + addr).ljust(MIB, b"\0")
        out = bytearray(MIB)
        first = addr // TAPE_BLK_SIZE
        count = -(-n // TAPE_BLK_SIZE)
        raw = memoryview(_pread(self.fds[0], count * TAPE_RECORD_SIZE, r.tape.record_offset(first)))
        for b in range(count):
            rec = raw[b * TAPE_RECORD_SIZE + AWS_HEADER_SIZE:(b + 1) * TAPE_RECORD_SIZE]
            out[b * TAPE_BLK_SIZE:b * TAPE_BLK_SIZE + len(rec)] = rec
        return bytes(out)

    def units(self) -> Iterator[tuple[int, bytes]]:
        """(address, 1 MiB of data) of every stored unit, in address order (the rest is zero)."""
        if self.layout == "flat":
            have = self.report.pieces[0].len if self.report.pieces else 0
            for m in range(-(-have // MIB)):
                yield m * MIB, self.read_flat(m)
            return
        for vol, seg in self.segments:
            for i in range(seg.units):
                yield seg.start + i * MIB, read_unit(self.fds[vol], seg, i)

    def summary(self) -> dict:
        h = self.header
        d = {"present": self.present, "complete": self.complete, "reason": self.reason, "layout": self.layout,
             "segments": len(self.segments), "data_size": self.data_size, "end_marker_tod": self.end_marker_tod}
        if h is not None and self.present:
            d.update(magic=f"0x{h.magic:016x}", version=h.version, mem_size=h.mem_size,
                     mem_size_real=h.mem_size_real, tod=h.tod, tod_text=tod_text(h.tod), cpu_id=f"{h.cpu_id:016x}",
                     cpu_cnt=h.cpu_cnt, real_cpu_cnt=h.real_cpu_cnt, lc_vec=list(h.lc_vec[:h.cpu_cnt]),
                     zlib=bool(h.zlib_version_s390), volnr=h.volnr, mvdump=h.mvdump,
                     end_tod_text=tod_text(self.end_marker_tod) if self.end_marker_tod else None)
        return d


def open_device_dump(devices) -> DeviceDump:
    """The dump on a device image (a path, or anything with .path) or the volumes of a multi-volume
    set (in table order; sadump's read_devices checks that order), open for reading."""
    paths = _device_paths(devices)
    fds: list[int] = []
    try:
        for p in paths:
            try:
                fds.append(os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))
            except FileNotFoundError:
                raise BadInputError(f"dump device {p} does not exist") from None
            except OSError as exc:
                raise DumpIOError(f"cannot open {p}: {exc.strerror or exc}") from None
        report = read_stream(paths, fds)
        fds = [fds[i] for i in report.order]
        devs = devices if not isinstance(devices, (str, os.PathLike)) and not hasattr(devices, "path") else [devices]
        return DeviceDump(report, fds, [list(devs)[i] for i in report.order])
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


__all__ = ["Piece", "StreamReport", "DeviceDump", "probe_head", "read_stream", "open_device_dump"]
