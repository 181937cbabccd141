"""The full stand-alone dump: write it to dump devices as zipl's dumpers do.

Reading it back is meminfo_abi.s390_dump_reader's (the one reader, shared with vmcore);
`sadump extract -f s390_ext` is zipl_sadump/extract.py.

``write_full_dump`` is what the dumper calls after store status.  It scans
memory in 1 MiB units -- ranges the memory image has no data for (holes,
found with SEEK_DATA/SEEK_HOLE) are zero without being read, the rest is
checked with the native zero scan -- and writes, like zipl/boot/*2dump*.c:

* ECKD / FBA single volume: header (``...23fe``), dump segments = maximal
  runs of non-zero MiB, the stop marker on the last one, then the end
  marker in the next block.  With compression (ECKD only, the dumper needs
  DFLTCC there) the first MiB is an uncompressed segment of its own, the
  rest are segments of at most 1011 MiB whose 1 MiB units are independent
  zlib streams (level 1), each padded to whole 4 KiB blocks, or stored raw
  (bit 31 of its entry offset) when compression does not shrink it.
  Compression runs on a thread pool with a bounded window of units in
  flight; the output is byte-identical to the serial path.
* Multi-volume: the same stream spread over the volumes in table order, a
  full header on each volume (volnr, mvdump = 1, mvdump_sign), 2 blocks of
  reserve per volume, the end marker on the volume holding the stop marker.
* Tape: tapemark, header block, memory in 32 KiB blocks (flat), end marker
  block, tapemark.

The end marker is written last, after an fsync of everything before it, so an
interrupted or failed dump never looks complete; before writing, the end marker
of an older dump in the same area is removed, so a new dump that stops early
cannot run into the older one's and look complete (zipl's dumpers rely on the
TOD check alone).  A device that is too small stops the dump (no end marker,
wait code 0x4600 EMEM) and the result says how many bytes the dump needs.

Uncompressed data goes from the memory image to the device with
copy_file_range; written ranges are handed to writeback as the dump goes, so
the fsync before the end marker has little left to do.  Memory use is a few
MiB (at most MAX_WINDOW compression units in flight).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

import native
from dumpkit.errors import BadInputError, DumpIOError
from meminfo_abi.s390_dump import (
    AWS_FLAG_ENDREC, AWS_FLAG_NEWREC, AWS_FLAG_TAPEMARK, AWS_HEADER_SIZE, DF_S390_EM_SIZE, DF_S390_HDR_SIZE,
    DF_S390_MAGIC, DF_S390_MAGIC_EXT, DF_S390_VERSION_EXT, DF_S390_VERSION_EXT_ZLIB, DUMP_SEGM_ENTRY_UNCOMPRESSED,
    DUMP_SEGM_HDR_SIZE, DUMP_SEGM_ZLIB_MAXENTS, EMEM, ENODEVNO, ENOSIGN, ENOTIME, MIB, PAGE_SIZE, TAPE_BLK_SIZE,
    WAIT_CODE_NAMES, AwsTapeHeader, build_end_marker, build_header, build_segment_header, parse_header,
)
from meminfo_abi.s390_dump_stream import ExtStreamWalker, compress_unit
from meminfo_abi.tod import tod_now
from dumpkit.parallel import ordered_map
from dumpkit.fileio import Writeback, os_open_input
from dumpkit.units import human
from zipl_sadump.memsource import (
    ProgressFn, _estimate, _events, _fsync, _MemorySource, _Peekable, _pread, _pwrite_all, _scan,
)
from zipl_sadump.device import (
    MVDUMP_SIGN_OFFSET, TAPE_TOOL_SIZE, DeviceInfo, check_device_set, dump_mem_size, read_device,
)

TAPE_RECORD = AWS_HEADER_SIZE + TAPE_BLK_SIZE
TAPE_BLOCKS_PER_MIB = MIB // TAPE_BLK_SIZE
COPY_CHUNK = 4 * MIB


@dataclass
class FullDumpResult:
    """What the full dump did.  `needed` is the bytes the whole dump takes on the device(s):
    exact for a complete dump; for a stopped one, what was used plus the non-zero data still to
    come, uncompressed (an upper bound)."""

    complete: bool
    bytes_dumped: int                 # memory bytes stored (sum of segment lengths; tape: mem_size)
    bytes_written: int                # bytes written to the device(s): headers, data, end marker
    segments: int
    needed: int
    reason: str
    volumes: list[dict] = field(default_factory=list)
    wait_code: int = 0                # 0, or the dumper's disabled-wait code (0x4600 EMEM, ...)
    compressed: bool = False
    mem_size: int = 0
    tod: int = 0
    end_tod: int | None = None

    @property
    def wait_code_name(self) -> str:
        return WAIT_CODE_NAMES.get(self.wait_code, f"0x{self.wait_code:x}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["wait_code_name"] = self.wait_code_name
        return d


class _DeviceFull(Exception):
    """A write would pass the end of the dump area (the dumper's "Device too small")."""


class _DumperStop(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason



WRITEBACK_CHUNK = 32 * MIB


class _Sink:
    """A window [offset, offset + size) of an open file that the dump stream is written to.

    Written ranges are handed to writeback early (fileio.Writeback: started and the pages
    dropped once clean), so the fsync before the end marker has little left to do and the
    dump does not fill the page cache."""

    def __init__(self, fd: int, offset: int, size: int | None, path: str):
        self.fd, self.offset, self.size, self.path = fd, offset, size, path
        self.written = 0
        self.writeback = Writeback(fd, WRITEBACK_CHUNK)

    def room(self, pos: int, n: int) -> bool:
        return self.size is None or pos + n <= self.size

    def write(self, pos: int, data) -> None:
        n = memoryview(data).nbytes
        if not self.room(pos, n):
            raise _DeviceFull(pos + n)
        at = self.offset + pos
        _pwrite_all(self.fd, data, at, self.path)
        self._account(at, n)

    def copy(self, pos: int, src, mib: int) -> None:
        """1 MiB of memory from `src` at `pos`."""
        if not self.room(pos, MIB):
            raise _DeviceFull(pos + MIB)
        at = self.offset + pos
        src.copy_to(mib, self.fd, at, self.path)
        self._account(at, MIB)

    def _account(self, at: int, n: int) -> None:
        self.written += n
        self.writeback.wrote(at, n)


# -- single-volume disk --------------------------------------------------------------------------


MAX_WINDOW = 24            # units in flight at most (~1.5 MiB each): bounds memory on many-core hosts


def _deflate_event(ev: tuple) -> tuple:
    """A segment event with its unit deflated: ("unit", mib, data, stream or None)."""
    return ev + (_deflate(ev[2]),) if ev[0] == "unit" else ev


def _deflate(data) -> bytes | None:
    """The unit's zlib stream padded to whole pages, or None when that does not shrink it."""
    comp = compress_unit(data)
    padded = -(-len(comp) // PAGE_SIZE) * PAGE_SIZE
    if padded >= len(data):
        return None
    return comp + bytes(padded - len(comp))


class _SvWriter:
    """Writes the extended stream into one sink (ECKD/FBA dump area, or an output file)."""

    def __init__(self, sink: _Sink, block_size: int, src=None):
        self.sink = sink
        self.src = src                  # memory source for units scanned in "copy" mode
        self.block_size = block_size
        self.pos = 0
        self.segments = 0
        self.dumped = 0
        self.seg_pos = 0                # position of the current segment's header
        self.seg_mib = 0                # first MiB of the current segment (for the estimate)

    def header(self, hdr: bytes) -> None:
        self.sink.write(0, hdr)
        self.pos = DF_S390_HDR_SIZE

    def raw_segment(self, start_mib: int, data_iter: Iterable, count: int, last: bool) -> None:
        self.seg_pos, self.seg_mib = self.pos, start_mib
        p = self.pos + DUMP_SEGM_HDR_SIZE
        for data in data_iter:
            self.sink.write(p, data)
            p += MIB
        self.sink.write(self.pos, build_segment_header(start_mib * MIB, count * MIB, last))
        self.pos = p
        self.segments += 1
        self.dumped += count * MIB

    def empty_stop_segment(self, start: int) -> None:
        self.seg_pos, self.seg_mib = self.pos, start // MIB
        self.sink.write(self.pos, build_segment_header(start, 0, True))
        self.pos += DUMP_SEGM_HDR_SIZE
        self.segments += 1

    def write_run(self, scan: _Peekable, limit: int | None) -> tuple[int, bool]:
        """One uncompressed segment: the next non-zero MiB and up to `limit` - 1 contiguous ones after it
        (data written as it is read, the header last).  Returns (MiBs, whether it was the last).
        The caller knows a non-zero MiB is left; the grouping is memsource._events'."""
        cur = self.pos + DUMP_SEGM_HDR_SIZE
        for ev in _events(scan, lambda: limit):
            if ev[0] == "begin":
                self.seg_pos, self.seg_mib = self.pos, ev[1]
                if not self.sink.room(self.pos, DUMP_SEGM_HDR_SIZE):
                    raise _DeviceFull(self.pos + DUMP_SEGM_HDR_SIZE)
            elif ev[0] == "unit":
                self._unit(cur, ev[1], ev[2])
                cur += MIB
            elif ev[0] == "end":
                _, m, count, last = ev
                self.sink.write(self.pos, build_segment_header(m * MIB, count * MIB, last))
                self.pos = cur
                self.segments += 1
                self.dumped += count * MIB
                return count, last
        raise AssertionError("write_run needs a non-zero MiB left")

    def _unit(self, pos: int, mib: int, data) -> None:
        if data is None:
            self.sink.copy(pos, self.src, mib)
        else:
            self.sink.write(pos, data)

    def write_uncompressed(self, scan: _Peekable) -> None:
        if scan.peek() is None:
            self.empty_stop_segment(0)
            return
        while not self.write_run(scan, None)[1]:
            pass

    def write_compressed(self, events, workers: int, first_free: int) -> None:
        """Compressed segments; `first_free` is the address after the raw first-MiB segment.  The
        units are deflated on `workers` threads by an ordered parallel map (at most MAX_WINDOW
        events in flight), written in stream order: the output is the serial one."""
        cur = 0
        entries: list[int] = []
        results = ordered_map(_deflate_event, events, workers, min(MAX_WINDOW, max(4, 2 * workers)))
        try:
            for ev in results:
                kind = ev[0]
                if kind == "none":
                    self.empty_stop_segment(first_free)
                elif kind == "begin":
                    self.seg_pos, self.seg_mib = self.pos, ev[1]
                    if not self.sink.room(self.pos, DUMP_SEGM_HDR_SIZE):
                        raise _DeviceFull(self.pos + DUMP_SEGM_HDR_SIZE)
                    cur = 0
                    entries = []
                elif kind == "unit":
                    data, comp = ev[2], ev[3]
                    off_blocks = cur // self.block_size
                    base = self.pos + DUMP_SEGM_HDR_SIZE
                    if comp is None:
                        self.sink.write(base + cur, data)
                        entries.append(off_blocks | DUMP_SEGM_ENTRY_UNCOMPRESSED)
                        cur += MIB
                    else:
                        self.sink.write(base + cur, comp)
                        entries.append(off_blocks)
                        cur += len(comp)
                else:
                    _, start, count, last = ev
                    self.sink.write(self.pos, build_segment_header(
                        start * MIB, count * MIB, last, cur // self.block_size, entries))
                    self.pos += DUMP_SEGM_HDR_SIZE + cur
                    self.segments += 1
                    self.dumped += count * MIB
        finally:
            results.close()

    def end_marker(self, tod: int) -> None:
        em = build_end_marker(tod)
        block = max(self.block_size, len(em))
        if not self.sink.room(self.pos, block):
            raise _DeviceFull(self.pos + block)
        _fsync(self.sink.fd, self.sink.path)
        self.sink.write(self.pos, em + bytes(block - len(em)))
        _fsync(self.sink.fd, self.sink.path)
        self.pos += block


def _invalidate_old_end_marker(fd: int, dev: DeviceInfo, volume: bool) -> None:
    """Zero the end marker of an older dump in this dump area before anything is written.

    A new dump that stops early leaves the older dump's segments behind it; if the new
    stream happens to continue into them (same memory layout), only the end marker's TOD
    would tell the old end marker from a new one.  Removing it first closes that door even
    when clocks disagree.  (The zipl dumpers do not do this; it costs one walk over the
    old segment headers.)"""
    raw = _pread(fd, DF_S390_HDR_SIZE, dev.dump_offset)
    if raw[:8] != DF_S390_MAGIC_EXT.to_bytes(8, "big"):
        return
    try:
        walker = ExtStreamWalker(fd, dev.dump_offset, size=dev.dump_size, block_size=dev.block_size,
                                 volume=volume, header=parse_header(raw))
        for _ in walker:
            pass
    except (BadInputError, DumpIOError):
        return
    at = walker.status.end_marker_offset
    if at is not None and _pread(fd, 8, at) == b"DUMP_END":
        _pwrite_all(fd, bytes(DF_S390_EM_SIZE), at, dev.path)
        _fsync(fd, dev.path)


def _end_tod(tod: int, tod_end: Callable[[], int] | None) -> int:
    value = tod_end() if tod_end is not None else tod_now()
    return max(int(value), tod)


def _write_disk_sv(dev: DeviceInfo, src: _MemorySource, hdr: bytes, *, compress: bool, workers: int,
                   progress: ProgressFn | None, tod: int, tod_end) -> FullDumpResult:
    mibs = src.mibs
    fd = _open_dev(dev.path, write=True)
    w = None
    try:
        w = _SvWriter(_Sink(fd, dev.dump_offset, dev.dump_size, dev.path), dev.block_size, src)
        _invalidate_old_end_marker(fd, dev, volume=False)
        try:
            w.header(hdr)
            if compress:
                # the first MiB is always an uncompressed segment (the dumper's zlib workspace)
                first = src.read(0)
                if progress:
                    progress(MIB)
                w.raw_segment(0, [first], 1, mibs == 1)
                del first
                if mibs > 1:
                    scan = _Peekable(_scan(src, 1, mibs, progress, mode="fresh"))
                    w.write_compressed(_events(scan, lambda: DUMP_SEGM_ZLIB_MAXENTS), workers, MIB)
            else:
                w.write_uncompressed(_Peekable(_scan(src, 0, mibs, progress, mode="copy")))
            end = _end_tod(tod, tod_end)
            w.end_marker(end)
        except _DeviceFull:
            maxlen = DUMP_SEGM_ZLIB_MAXENTS if compress else None
            needed = w.seg_pos + _estimate(src, w.seg_mib, mibs, maxlen) + max(dev.block_size, DF_S390_EM_SIZE)
            if w.seg_pos == 0:
                needed += DF_S390_HDR_SIZE
            reason = (f"Device too small: the dump needs up to {human(needed)} ({needed} bytes), the dump area "
                      f"of {dev.path} has {human(dev.dump_size)}")
            return FullDumpResult(False, w.dumped, w.sink.written, w.segments, needed, reason,
                                  [_vol(dev, 0, w.segments, w.sink.written, False)], EMEM, compress,
                                  src.mem_size, tod)
        return FullDumpResult(True, w.dumped, w.sink.written, w.segments, w.pos, "complete",
                              [_vol(dev, 0, w.segments, w.sink.written, True)], 0, compress, src.mem_size, tod,
                              end)
    finally:
        os.close(fd)


def _vol(dev: DeviceInfo, volnr: int, segments: int, written: int, end_marker: bool) -> dict:
    return {"path": dev.path, "volnr": volnr, "segments": segments, "bytes_written": written,
            "end_marker": end_marker}


def _open_dev(path: str, write: bool = False) -> int:
    """An fd on a dump device, read-write to dump to it; the OS's refusal is one line."""
    try:
        return os_open_input(path, os.O_RDWR if write else os.O_RDONLY, noun="dump device")
    except FileNotFoundError:
        raise BadInputError(f"{'dump device ' if write else ''}{path} does not exist") from None
    except OSError as exc:
        raise DumpIOError(f"cannot open {path}{' for writing' if write else ''}: {exc.strerror or exc}") from None


# -- multi-volume ------------------------------------------------------------------------------


def _write_mv(devs: list[DeviceInfo], src: _MemorySource, hdr_fields: dict, *, progress, tod, tod_end
              ) -> FullDumpResult:
    """zipl/boot/eckd2dump_mv.c: check each volume, write a header and as many segments as fit
    (2 blocks reserve), go on to the next volume; the end marker goes behind the stop marker."""
    table = devs[0].mv_table
    force = devs[0].force
    fds: list[int] = []
    vols: list[dict] = []
    writers: list[_SvWriter] = []
    next_mib = 0
    scan = _Peekable(_scan(src, 0, src.mibs, progress, mode="copy"))

    def totals() -> tuple[int, int, int]:
        return (sum(w.sink.written for w in writers), sum(w.segments for w in writers),
                sum(w.dumped for w in writers))

    try:
        for volnr in range(len(table.volumes) + 1):
            if volnr == len(table.volumes):
                raise _DeviceFull(0)
            if volnr >= len(devs):
                raise _DumperStop(ENODEVNO, f"{table.volumes[volnr].bus_id} is undefined "
                                            f"(volume {volnr} of {len(table.volumes)} not given)")
            dev = devs[volnr]
            fd = _open_dev(dev.path, write=True)
            fds.append(fd)
            if dev.mv_table is None or dev.mv_table.tod != table.tod:
                raise _DumperStop(ENOTIME, f"Inconsistent time stamps ({dev.path})")
            if dev.volnr != volnr:
                raise _DumperStop(ENODEVNO, f"{dev.path} is not volume {volnr} of the multi-volume set")
            if not force and _pread(fd, 8, dev.dump_offset + MVDUMP_SIGN_OFFSET) != \
                    DF_S390_MAGIC_EXT.to_bytes(8, "big"):
                raise _DumperStop(ENOSIGN, f"Wrong signature ({dev.path})")
            _invalidate_old_end_marker(fd, dev, volume=True)
            w = _SvWriter(_Sink(fd, dev.dump_offset, dev.dump_size, dev.path), dev.block_size, src)
            writers.append(w)
            vols.append(_vol(dev, volnr, 0, 0, False))
            w.header(build_header(**dict(hdr_fields, volnr=volnr, mvdump=1, mvdump_sign=DF_S390_MAGIC_EXT,
                                         mvdump_zipl_time=table.tod)))
            free = dev.dump_size - DF_S390_HDR_SIZE - 2 * dev.block_size
            while True:
                if scan.peek() is None:           # nothing non-zero at all
                    w.empty_stop_segment(0)
                    length, last = 0, True
                else:
                    count, last = w.write_run(scan, max(1, free // MIB))
                    length = count * MIB
                    next_mib = w.seg_mib + count
                vols[-1].update(segments=w.segments, bytes_written=w.sink.written)
                free -= length
                if free > 0:
                    free -= dev.block_size
                if last:
                    end = _end_tod(tod, tod_end)
                    for other in fds[:-1]:
                        _fsync(other, "a dump volume")
                    w.end_marker(end)
                    vols[-1].update(bytes_written=w.sink.written, end_marker=True)
                    written, segments, dumped = totals()
                    return FullDumpResult(True, dumped, written, segments, written, "complete", vols, 0, False,
                                          src.mem_size, tod, end)
                if free < MIB:
                    break
            _fsync(fd, dev.path)
        raise AssertionError("unreachable")  # pragma: no cover
    except _DeviceFull:
        if writers:
            vols[-1].update(segments=writers[-1].segments, bytes_written=writers[-1].sink.written)
            next_mib = max(next_mib, writers[-1].seg_mib)     # a segment that did not fit starts there
        written, segments, dumped = totals()
        needed = written + _estimate(src, next_mib, src.mibs, None) + PAGE_SIZE
        return FullDumpResult(False, dumped, written, segments, needed,
                              f"Device too small: the {len(table.volumes)} volumes cannot hold the dump "
                              f"(needs up to {human(needed)})", vols, EMEM, False, src.mem_size, tod)
    except _DumperStop as stop:
        written, segments, dumped = totals()
        return FullDumpResult(False, dumped, written, segments, 0, stop.reason, vols, stop.code, False,
                              src.mem_size, tod)
    finally:
        for fd in fds:
            os.close(fd)


# -- tape -------------------------------------------------------------------------------------


class _TapeWriter:
    def __init__(self, fd: int, dev: DeviceInfo):
        self.fd, self.dev = fd, dev
        self.pos = dev.dump_offset
        self.prev = TAPE_TOOL_SIZE
        self.written = 0

    def record(self, length: int, data=None, tapemark: bool = False) -> None:
        if self.pos + AWS_HEADER_SIZE + length > self.dev.size:
            raise _DeviceFull(self.pos)
        flags = AWS_FLAG_TAPEMARK if tapemark else AWS_FLAG_NEWREC | AWS_FLAG_ENDREC
        head = AwsTapeHeader.build(dict(curblkl=length, prvblkl=self.prev, flags1=flags, flags2=0))
        if data is None:
            _pwrite_all(self.fd, head, self.pos, self.dev.path)
        else:
            try:
                n = os.pwritev(self.fd, [head, data], self.pos)
            except OSError as exc:
                raise DumpIOError(f"writing {self.dev.path}: {exc.strerror or exc}") from None
            if n != AWS_HEADER_SIZE + length:
                _pwrite_all(self.fd, (head + bytes(data))[n:], self.pos + n, self.dev.path)
        self.pos += AWS_HEADER_SIZE + length
        self.prev = 0 if tapemark else length
        self.written += length


def _write_tape(dev: DeviceInfo, src: _MemorySource, hdr: bytes, *, progress, tod, tod_end) -> FullDumpResult:
    fd = _open_dev(dev.path, write=True)
    t = _TapeWriter(fd, dev)
    blocks_done = 0
    try:
        try:
            # writing a tape invalidates everything after the write position
            os.ftruncate(fd, dev.dump_offset)
            os.ftruncate(fd, dev.size)
        except OSError as exc:
            raise DumpIOError(f"erasing {dev.path}: {exc.strerror or exc}") from None
        try:
            t.record(0, tapemark=True)
            t.record(DF_S390_HDR_SIZE, hdr)
            nonzero = _Peekable(_scan(src, 0, src.mibs, progress, mode="reuse"))
            for m in range(src.mibs):
                item = nonzero.peek()
                if item is not None and item[0] == m:
                    nonzero.next()
                    view = memoryview(item[1])
                    for b in range(TAPE_BLOCKS_PER_MIB):
                        blk = view[b * TAPE_BLK_SIZE:(b + 1) * TAPE_BLK_SIZE]
                        t.record(TAPE_BLK_SIZE, None if native.is_zero(blk) else blk)
                        blocks_done += 1
                else:
                    for _ in range(TAPE_BLOCKS_PER_MIB):
                        t.record(TAPE_BLK_SIZE)
                        blocks_done += 1
            end = _end_tod(tod, tod_end)
            if t.pos + 2 * AWS_HEADER_SIZE + DF_S390_EM_SIZE > dev.size:
                raise _DeviceFull(t.pos)
            _fsync(fd, dev.path)
            t.record(DF_S390_EM_SIZE, build_end_marker(end))
            t.record(0, tapemark=True)
            _fsync(fd, dev.path)
        except _DeviceFull:
            needed = (2 * AWS_HEADER_SIZE + DF_S390_HDR_SIZE + src.mibs * TAPE_BLOCKS_PER_MIB * TAPE_RECORD
                      + 2 * AWS_HEADER_SIZE + DF_S390_EM_SIZE)
            return FullDumpResult(False, blocks_done * TAPE_BLK_SIZE, t.written, 0, needed,
                                  f"Device too small: end of tape after {blocks_done} data blocks; the dump needs "
                                  f"{human(needed)} of tape, {dev.path} holds {human(dev.dump_size)}",
                                  [_vol(dev, 0, 0, t.written, False)], EMEM, False, src.mem_size, tod)
        return FullDumpResult(True, src.mem_size, t.written, 0, t.pos - dev.dump_offset, "complete",
                              [_vol(dev, 0, 0, t.written, True)], 0, False, src.mem_size, tod, end)
    finally:
        os.close(fd)


# -- the entry point ------------------------------------------------------------------------------


def _as_devices(devices) -> list[DeviceInfo]:
    if isinstance(devices, (str, os.PathLike, DeviceInfo)):
        devices = [devices]
    devs = [d if isinstance(d, DeviceInfo) else read_device(os.fspath(d)) for d in devices]
    if not devs:
        raise BadInputError("no dump device given")
    return devs


def write_full_dump(devices: Sequence[DeviceInfo | str] | DeviceInfo | str, memory, lc_vec: Sequence[int],
                    real_cpu_cnt: int, *, tod: int, cpu_id: int, compress: bool,
                    progress: ProgressFn | None = None, tod_end: Callable[[], int] | None = None,
                    workers: int | None = None) -> FullDumpResult:
    """Write a full dump of `memory` (a PhysicalMemory, or anything with size/read/data_ranges)
    to the dump device(s), as the zipl dumper installed on them would.

    `lc_vec`: prefix register values of the CPUs whose status was stored (cpu_cnt = len);
    `real_cpu_cnt`: all CPUs that stored status; `tod`: TOD at dump start; `cpu_id`: STIDP of
    the dumping CPU; `compress`: DFLTCC available (used only where the dumper compresses: ECKD
    single volume without --no-compress); `progress(nbytes)`: memory bytes processed;
    `tod_end()`: TOD for the end marker (default: now; never before `tod`); `workers`:
    compression threads (default: all CPUs)."""
    devs = _as_devices(devices)
    size = getattr(memory, "size", None)
    if not isinstance(size, int) or size < MIB or size % MIB:
        raise BadInputError(f"memory size {size!r} is not a positive multiple of 1 MiB")
    if len(lc_vec) > 512:
        raise BadInputError(f"{len(lc_vec)} CPU prefixes, the dump header holds at most 512")
    mem_size = dump_mem_size(devs, size)
    d0 = devs[0]
    if not d0.multi_volume and len(devs) > 1:
        check_device_set(devs)
    effective = bool(compress) and d0.supports_compression
    workers = workers if workers is not None else (os.cpu_count() or 1)
    hdr_fields = dict(
        magic=DF_S390_MAGIC if d0.type == "tape" else DF_S390_MAGIC_EXT,
        version=DF_S390_VERSION_EXT_ZLIB if effective else DF_S390_VERSION_EXT, mem_size=mem_size, tod=tod,
        cpu_id=cpu_id, lc_vec=list(lc_vec), real_cpu_cnt=real_cpu_cnt, mem_size_real=size, zlib=effective)
    src = _MemorySource(memory, mem_size)
    try:
        if d0.type == "tape":
            return _write_tape(d0, src, build_header(**hdr_fields), progress=progress, tod=tod, tod_end=tod_end)
        if d0.multi_volume:
            return _write_mv(devs, src, hdr_fields, progress=progress, tod=tod, tod_end=tod_end)
        return _write_disk_sv(d0, src, build_header(**hdr_fields), compress=effective, workers=workers,
                              progress=progress, tod=tod, tod_end=tod_end)
    finally:
        src.close()


__all__ = ["FullDumpResult", "write_full_dump"]
