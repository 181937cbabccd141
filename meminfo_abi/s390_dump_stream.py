"""Walking an extended (``...23fe``) s390 dump stream: its segments, their 1 MiB units, inflate.

``ExtStreamWalker`` walks the segments with every count bounded and tells why a stream is
not complete; ``read_unit`` returns one 1 MiB unit of a segment, inflating compressed units;
``compress_unit`` / ``inflate_unit`` are the dumper's zlib codec (zlib-ng when installed).
The layouts are ``meminfo_abi.s390_dump``'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from dumpkit.deflate import zlib_module
from dumpkit.errors import BadInputError, DumpIOError
from meminfo_abi.s390_dump import (
    DF_S390_EM_SIZE, DF_S390_HDR_SIZE, DF_S390_MAGIC_EXT, DUMP_SEGM_ENTRY_UNCOMPRESSED, DUMP_SEGM_HDR_SIZE,
    DUMP_SEGM_STOP_MARKER, DUMP_SEGM_ZLIB_ENTSIZE, DUMP_SEGM_ZLIB_MAXENTS, DUMP_SEGM_ZLIB_MAXLEN, MIB, PAGE_SIZE,
    ZLIB_COMPRESSION_LEVEL, DfS390DumpSegmHdr, parse_end_marker, parse_header,
)



def compress_unit(data, level: int = ZLIB_COMPRESSION_LEVEL) -> bytes:
    """One 1 MiB unit as an independent zlib-wrapped deflate stream (what the dumper writes)."""
    return zlib_module().compress(data, level)


def _pread_exact(fh: BinaryIO | int, length: int, offset: int, what: str) -> bytes:
    fd = fh if isinstance(fh, int) else fh.fileno()
    try:
        data = os.pread(fd, length, offset)
    except OSError as exc:
        raise DumpIOError(f"reading {what} at offset 0x{offset:x}: {exc.strerror or exc}") from None
    if len(data) != length:
        raise BadInputError(f"{what} at offset 0x{offset:x} is cut short ({len(data)} of {length} bytes)")
    return data


def read_header(fh: BinaryIO | int, offset: int = 0):
    return parse_header(_pread_exact(fh, DF_S390_HDR_SIZE, offset, "dump header"))


@dataclass(frozen=True)
class DumpSegment:
    """One dump segment of an extended stream, located in its file."""

    start: int
    len: int
    stop: bool
    header_offset: int          # file offset of the 4 KiB segment header
    data_offset: int            # file offset of the segment data
    size_on_disk: int           # bytes of data on disk (compressed: blocks * block size)
    entries: tuple[int, ...]    # raw entry_offset[] of a compressed segment, () otherwise
    block_size: int = PAGE_SIZE

    @property
    def compressed(self) -> bool:
        return bool(self.entries)

    @property
    def end(self) -> int:
        return self.start + self.len

    @property
    def units(self) -> int:
        return self.len // MIB

    @property
    def next_offset(self) -> int:
        return self.data_offset + self.size_on_disk

    def unit_location(self, index: int) -> tuple[int, int, bool]:
        """(file offset, bytes on disk, stored raw) of 1 MiB unit `index`."""
        if not 0 <= index < self.units:
            raise BadInputError(f"unit {index} outside segment at 0x{self.start:x} of {self.units} units")
        if not self.entries:
            return self.data_offset + index * MIB, MIB, True
        e = self.entries[index]
        begin = (e & ~DUMP_SEGM_ENTRY_UNCOMPRESSED) * self.block_size
        if index + 1 < len(self.entries):
            end = (self.entries[index + 1] & ~DUMP_SEGM_ENTRY_UNCOMPRESSED) * self.block_size
        else:
            end = self.size_on_disk
        return self.data_offset + begin, end - begin, bool(e & DUMP_SEGM_ENTRY_UNCOMPRESSED)


@dataclass
class StreamStatus:
    complete: bool
    reason: str
    stop_marker: bool = False
    end_marker: bool = False
    end_marker_tod: int | None = None
    end_offset: int = 0         # file offset after the end marker (complete) or after the last segment
    data_size: int = 0          # sum of the segments' data on disk
    volume_full: bool = False   # multi-volume: no stop marker here, the stream continues on the next volume
    end_marker_offset: int | None = None  # where the end marker is (or belongs): after the stop-marker segment


class ExtStreamWalker:
    """Walk the segments of an extended (``...23fe``) stream; every count is bounded.

    ``fh`` is a file object or descriptor; ``offset`` is where the header is (the
    start of the dump area); ``size`` bounds the dump area (default: to the end
    of the file).  Iterating yields DumpSegment objects in order; afterwards
    ``status`` says whether the stream is complete and, if not, why.

    ``volume`` = True walks one volume of a multi-volume dump: a volume that is
    full without a stop marker is not an error (status.volume_full), because
    the stream continues on the next volume; ``volume_free`` then reproduces
    the dumper's space accounting so exactly the written segments are read.
    """

    def __init__(self, fh: BinaryIO | int, offset: int = 0, *, size: int | None = None,
                 block_size: int = PAGE_SIZE, volume: bool = False, header=None, start_addr: int = 0):
        self.fd = fh if isinstance(fh, int) else fh.fileno()
        self.offset = offset
        try:
            file_size = os.fstat(self.fd).st_size
        except OSError as exc:
            raise DumpIOError(f"cannot stat the dump: {exc.strerror or exc}") from None
        avail = max(0, file_size - offset)
        self.size = avail if size is None else min(size, avail)
        self.block_size = block_size
        self.volume = volume
        self.start_addr = start_addr
        self.header = read_header(self.fd, offset) if header is None else header
        if self.header.magic != DF_S390_MAGIC_EXT:
            raise BadInputError("not an extended s390 dump (magic ...23fd is the flat layout)")
        self.status: StreamStatus | None = None
        self.segments_seen = 0

    def __iter__(self) -> Iterator[DumpSegment]:
        hdr = self.header
        mem_size = hdr.mem_size
        area_end = self.offset + self.size
        pos = self.offset + DF_S390_HDR_SIZE
        prev_end = self.start_addr
        data_size = 0
        max_segments = mem_size // MIB + 2
        # multi-volume space accounting (zipl/boot/eckd2dump_mv.c write_volume)
        free = self.size - DF_S390_HDR_SIZE - 2 * self.block_size
        last_desc = "the dump header"
        while True:
            if self.volume and free < MIB and self.segments_seen:
                self.status = StreamStatus(False, "volume full, the dump continues on the next volume",
                                           end_offset=pos, data_size=data_size, volume_full=True)
                return
            if pos + DUMP_SEGM_HDR_SIZE > area_end:
                self.status = StreamStatus(False, f"incomplete: no end marker after {last_desc} (the dump area "
                                                  "ends there)", end_offset=pos, data_size=data_size)
                return
            if self.segments_seen >= max_segments:
                self.status = StreamStatus(False, f"corrupt: more than {max_segments} segments",
                                           end_offset=pos, data_size=data_size)
                return
            raw = _pread_exact(self.fd, DUMP_SEGM_HDR_SIZE, pos, "dump segment header")
            seg = DfS390DumpSegmHdr.parse(raw)
            stop = seg.stop_marker == DUMP_SEGM_STOP_MARKER
            problem = self._check(seg, stop, prev_end, mem_size)
            if problem:
                self.status = StreamStatus(False, f"incomplete: no end marker after {last_desc} ({problem})",
                                           end_offset=pos, data_size=data_size)
                return
            data_offset = pos + DUMP_SEGM_HDR_SIZE
            if seg.size_on_disk:
                on_disk = seg.size_on_disk * self.block_size
                entries = tuple(seg.entry_offset[: seg.entry_count])
                bad = self._check_entries(entries, seg.len, seg.size_on_disk)
                if bad:
                    self.status = StreamStatus(False, f"corrupt segment at 0x{seg.start:x}: {bad}",
                                               end_offset=pos, data_size=data_size)
                    return
            else:
                on_disk = seg.len
                entries = ()
            if data_offset + on_disk > area_end:
                self.status = StreamStatus(
                    False, f"incomplete: no end marker after {last_desc} (segment 0x{seg.start:x}-"
                           f"0x{seg.start + seg.len:x} runs past the end of the dump area)",
                    end_offset=pos, data_size=data_size)
                return
            segment = DumpSegment(seg.start, seg.len, stop, pos, data_offset, on_disk, entries, self.block_size)
            self.segments_seen += 1
            data_size += on_disk
            pos = data_offset + on_disk
            if seg.len:
                prev_end = seg.start + seg.len
                last_desc = f"segment ending at 0x{prev_end:x}"
            yield segment
            free -= seg.len
            if free > 0:
                free -= self.block_size
            if stop:
                break
        # the end marker follows the stop-marker segment
        if pos + DF_S390_EM_SIZE > area_end:
            self.status = StreamStatus(False, f"incomplete: no end marker after {last_desc} (no room for it)",
                                       stop_marker=True, end_offset=pos, data_size=data_size)
            return
        valid, tod, why = parse_end_marker(_pread_exact(self.fd, DF_S390_EM_SIZE, pos, "end marker"), hdr.tod)
        if not valid:
            self.status = StreamStatus(False, f"incomplete: no end marker after {last_desc} ({why})",
                                       stop_marker=True, end_marker_tod=tod or None, end_offset=pos,
                                       data_size=data_size, end_marker_offset=pos)
            return
        self.status = StreamStatus(True, "complete", stop_marker=True, end_marker=True, end_marker_tod=tod,
                                   end_offset=pos + DF_S390_EM_SIZE, data_size=data_size, end_marker_offset=pos)

    def _check(self, seg, stop: bool, prev_end: int, mem_size: int) -> str:
        if seg.start % MIB or seg.len % MIB:
            return f"segment start 0x{seg.start:x} / length 0x{seg.len:x} not 1 MiB aligned"
        if seg.len == 0 and not stop:
            return "empty segment without stop marker"
        if seg.stop_marker not in (0, DUMP_SEGM_STOP_MARKER):
            return f"bad stop marker 0x{seg.stop_marker:x}"
        if seg.len and seg.start < prev_end:
            return f"segment start 0x{seg.start:x} is below the previous end 0x{prev_end:x}"
        if seg.start + seg.len > mem_size:
            return f"segment 0x{seg.start:x}+0x{seg.len:x} is beyond the memory size 0x{mem_size:x}"
        if seg.entry_count > DUMP_SEGM_ZLIB_MAXENTS:
            return f"entry_count {seg.entry_count} exceeds {DUMP_SEGM_ZLIB_MAXENTS}"
        if seg.size_on_disk and not self.header.zlib_version_s390:
            return "compressed segment in a dump without zlib"
        return ""

    @staticmethod
    def _check_entries(entries: tuple[int, ...], length: int, size_on_disk: int) -> str:
        if length > DUMP_SEGM_ZLIB_MAXLEN:
            return f"compressed segment of 0x{length:x} bytes exceeds {DUMP_SEGM_ZLIB_MAXENTS} MiB"
        if len(entries) != length // DUMP_SEGM_ZLIB_ENTSIZE:
            return f"{len(entries)} units for {length // MIB} MiB"
        prev = -1
        for e in entries:
            off = e & ~DUMP_SEGM_ENTRY_UNCOMPRESSED
            if off <= prev or off >= size_on_disk:
                return f"unit offset {off} out of order or beyond {size_on_disk} blocks"
            prev = off
        return ""


def read_unit(fh: BinaryIO | int, segment: DumpSegment, index: int) -> bytes:
    """1 MiB unit `index` of `segment`, inflated if it was compressed."""
    fd = fh if isinstance(fh, int) else fh.fileno()
    offset, on_disk, raw = segment.unit_location(index)
    if raw:
        if on_disk < MIB:
            raise BadInputError(f"raw unit {index} of segment 0x{segment.start:x} has only {on_disk} bytes")
        return _pread_exact(fd, MIB, offset, "dump data")
    return inflate_unit(_pread_exact(fd, on_disk, offset, "compressed dump data"),
                        f"unit {index} of segment 0x{segment.start:x}")


def inflate_unit(data: bytes, what: str = "compressed unit") -> bytes:
    """Inflate one zlib stream that must produce exactly 1 MiB (padding after it is ignored)."""
    zlib = zlib_module()
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MIB + 1)
    except zlib.error as exc:
        raise BadInputError(f"{what} does not inflate: {exc}") from None
    if not d.eof or len(out) != MIB:
        raise BadInputError(f"{what} inflates to {len(out)} bytes{'' if d.eof else ' (stream cut short)'}, "
                            f"expected {MIB}")
    return out
