"""`sadump extract` -s390_ext: the dump on a device (or volume set) copied off as the dump area's
own stream, as zgetdump reads it from a partition: header, segments, end marker.

The device is read by meminfo_abi.s390_dump_reader (the one reader, shared with vmcore); a
multi-volume set is merged into one stream, a flat dump (tape) converted to segments by the
dumper's own stream writer.  ``held_dump`` tells `sadump build` whether a device holds a dump.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Iterator

import native
from dumpkit.errors import BadInputError, DumpIOError, IncompleteDumpError
from dumpkit.fileio import atomic_file
from meminfo_abi.s390_dump import (
    DF_S390_EM_SIZE, DF_S390_HDR_SIZE, DF_S390_MAGIC_EXT, DF_S390_VERSION_EXT, MIB, PAGE_SIZE, DfS390Hdr,
    build_end_marker, build_header,
)
from meminfo_abi.s390_dump_reader import DeviceDump, open_device_dump
from zipl_sadump.device import DeviceInfo, check_device_set, read_device
from zipl_sadump.fulldump import COPY_CHUNK, _Sink, _SvWriter
from zipl_sadump.memsource import ProgressFn, _Peekable, _pread, _pwrite_all, _scan


def held_dump(path: str) -> dict | None:
    """The summary of the dump a single-volume device image holds (present, complete or not), or
    None when `path` is not a dump device or holds no dump: what `sadump build` must not wipe
    without --force (zipl asks before it overwrites a dump device that holds a dump)."""
    try:
        with open_device_dump([read_device(path)]) as d:
            s = d.summary()
    except (BadInputError, DumpIOError):
        return None
    return s if s["present"] else None


# -- extract ---------------------------------------------------------------------------------------


@dataclass
class ExtractResult:
    path: str
    size: int
    segments: int
    mem_size: int
    source: str
    complete: bool = True
    reason: str = "complete"

    def to_json(self) -> dict:
        return asdict(self)


def _copy_range(src_fd: int, start: int, end: int, out_fd: int, out_pos: int, progress) -> int:
    pos = start
    while pos < end:
        n = min(COPY_CHUNK, end - pos)
        data = _pread(src_fd, n, pos)
        if len(data) != n:
            raise BadInputError(f"the dump device is cut short at 0x{pos + len(data):x}")
        if not native.is_zero(data):
            _pwrite_all(out_fd, data, out_pos, "the output")
        out_pos += n
        pos += n
        if progress:
            progress(n)
    return out_pos


class _FlatSource:
    """The memory of a flat dump (a tape's, or one on a DASD), as a memory source for the stream
    writer."""

    def __init__(self, dump: DeviceDump):
        self.dump = dump
        self.mem_size = dump.mem_size
        self.mibs = self.mem_size // MIB

    def candidate_mibs(self, start: int, end: int) -> Iterator[int]:
        return iter(range(start, end))

    def read(self, mib: int) -> bytes:
        return self.dump.read_flat(mib)

    def readinto(self, buf: bytearray, mib: int) -> bytearray:
        buf[:] = self.read(mib)
        return buf


def extract_dump(devices, out_path: str, progress: ProgressFn | None = None,
                 allow_incomplete: bool = False) -> ExtractResult:
    """Write the dump as the extended stream zgetdump reads from a partition (header + segments +
    end marker); a multi-volume set is merged into one stream, a tape's flat dump converted.
    Atomic; an absent dump is an error, an incomplete one too unless allow_incomplete: then the
    valid segments are written without an end marker, so the file still reads as incomplete."""
    if isinstance(devices, (str, os.PathLike, DeviceInfo)):
        devices = [devices]
    devs = [d if isinstance(d, DeviceInfo) else read_device(os.fspath(d)) for d in devices]
    check_device_set(devs)
    with open_device_dump(devs) as dump:
        where = ",".join(d.path for d in dump.devices)
        if not dump.present:
            raise BadInputError(f"{where}: {dump.reason}")
        if not dump.complete and not allow_incomplete:
            raise IncompleteDumpError(f"{where}: dump is not complete: {dump.reason} (--allow-incomplete writes "
                                      "what is there, without end marker)")
        if not dump.complete and (dump.layout != "ext" or not dump.segments):
            raise IncompleteDumpError(f"{where}: dump is not complete: {dump.reason}; only the segments of an "
                                      "extended dump can be extracted incomplete")
        with atomic_file(out_path, "wb") as fh:
            out = fh.fileno()
            if dump.layout == "flat":
                size, nseg = _extract_flat(dump, out, progress)
            elif dump.report.layout == "multi-volume":
                size, nseg = _extract_mv(dump, out, progress, end_marker=dump.complete)
            else:
                size = _copy_range(dump.fds[0], dump.report.areas[0].offset, dump.end_offset, out, 0, progress)
                nseg = len(dump.segments)
            os.ftruncate(out, size)
        return ExtractResult(os.fspath(out_path), size, nseg, dump.mem_size, where, dump.complete, dump.reason)


def _extract_mv(dump: DeviceDump, out: int, progress, end_marker: bool = True) -> tuple[int, int]:
    h = dict(dump.header)
    h.update(volnr=0, mvdump=0, mvdump_sign=0, mvdump_zipl_time=0)
    h.pop("_io", None)
    _pwrite_all(out, DfS390Hdr.build(h), 0, "the output")
    pos = DF_S390_HDR_SIZE
    for vol, seg in dump.segments:
        pos = _copy_range(dump.fds[vol], seg.header_offset, seg.next_offset, out, pos, progress)
    if not end_marker:
        return pos, len(dump.segments)
    _pwrite_all(out, build_end_marker(dump.end_marker_tod), pos, "the output")
    return pos + DF_S390_EM_SIZE, len(dump.segments)


def _extract_flat(dump: DeviceDump, out: int, progress) -> tuple[int, int]:
    h = dump.header
    hdr = build_header(magic=DF_S390_MAGIC_EXT, version=DF_S390_VERSION_EXT, mem_size=h.mem_size, tod=h.tod,
                       cpu_id=h.cpu_id, lc_vec=list(h.lc_vec[:h.cpu_cnt]), real_cpu_cnt=h.real_cpu_cnt,
                       mem_size_real=h.mem_size_real)
    src = _FlatSource(dump)
    w = _SvWriter(_Sink(out, 0, None, "the output"), PAGE_SIZE)
    w.header(hdr)
    w.write_uncompressed(_Peekable(_scan(src, 0, src.mibs, progress, mode="reuse")))
    w.sink.write(w.pos, build_end_marker(dump.end_marker_tod))
    return w.pos + DF_S390_EM_SIZE, w.segments


