"""makedumpfile's flattened stream (`makedumpfile -F`): write it, and read it in place.

ref-formats-and-peers.md §3.6.  A flattened file is a 4096-byte header and a
sequence of records {offset, buf_size} + buf_size bytes, ended by a record with
offset = buf_size = -1; record k puts its bytes at `offset` of the rebuilt
file.  Records may come in any order and may overwrite earlier ones.

Writing: `FlatSink` appends records to an open stream, so the output can go to
a pipe.  Reading: `FlatFile` streams through the file once and keeps an index
of where each range of the rebuilt file lies (three integer arrays, last
writer wins), then serves `pread` from the flattened file itself: nothing is
rebuilt on disk.  Ranges no record covers read as zeros, as they would in a
rebuilt (sparse) file.
"""

from __future__ import annotations

import bisect
import os
from array import array

from meminfo_abi.diskdump import (
    FLAT_END_RECORD,
    MDF_DATA_HEADER,
    MDF_DATA_HEADER_SIZE,
    MDF_END_FLAG,
    MDF_HEADER_SIZE,
    flat_header_bytes,
    is_flattened,
)
from meminfo_abi.errors import BadInputError, DumpIOError
from vmcore.model import open_dump_fd

FILE_LIMIT = (1 << 63) - 1
MAX_RECORD = 1 << 30          # a record larger than this is taken as corruption
MAX_RECORDS = 1 << 26         # 64 Mi records: 1.5 GiB of index would be needed beyond


class FlatSink:
    """Writes records to a binary stream (sequential writes only)."""

    def __init__(self, fh, max_record: int = 4 << 20):
        self.fh = fh
        self.max_record = max_record
        self.fh.write(flat_header_bytes())
        self.end = 0              # size of the rebuilt file so far

    def put(self, offset: int, data) -> None:
        mv = memoryview(data).cast("B")
        while len(mv):
            n = min(len(mv), self.max_record)
            self.fh.write(MDF_DATA_HEADER.pack(offset, n))
            self.fh.write(mv[:n])
            offset += n
            mv = mv[n:]
        self.end = max(self.end, offset)

    def finish(self, size: int | None = None) -> None:
        """End the stream; `size` (the rebuilt size) is reached with a one-byte record if needed."""
        if size is not None and size > self.end:
            self.put(size - 1, b"\0")
        self.fh.write(FLAT_END_RECORD)


class FlatFile:
    """Random access to the rebuilt file of a flattened stream, without rebuilding it.

    `size` is the rebuilt size (end of the furthest record); `truncated` says
    the stream ended without its end record (the last record may be cut).
    """

    def __init__(self, path: str):
        self.path = path
        self.fd = open_dump_fd(path)
        try:
            self._index()
        except BaseException:
            os.close(self.fd)
            raise

    # index: sorted, non-overlapping [starts[i], ends[i]) at flattened file position fpos[i]
    def _index(self) -> None:
        try:
            file_size = os.fstat(self.fd).st_size
            head = os.pread(self.fd, MDF_HEADER_SIZE, 0)
        except OSError as exc:
            raise DumpIOError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        if not is_flattened(head):
            raise BadInputError(f"{self.path} is not a flattened makedumpfile stream")
        if len(head) < MDF_HEADER_SIZE:
            raise BadInputError(f"{self.path} ends inside the flattened header ({len(head)} bytes)")
        self.starts, self.ends, self.fpos = array("q"), array("q"), array("q")
        self.truncated = False
        self.records = 0
        pos = MDF_HEADER_SIZE
        buf = b""
        buf_at = pos
        while True:
            if pos + MDF_DATA_HEADER_SIZE > buf_at + len(buf):
                try:
                    buf = os.pread(self.fd, 1 << 20, pos)
                except OSError as exc:
                    raise DumpIOError(f"cannot read {self.path}: {exc.strerror or exc}") from None
                buf_at = pos
                if len(buf) < MDF_DATA_HEADER_SIZE:
                    self.truncated = True
                    break
            offset, size = MDF_DATA_HEADER.unpack_from(buf, pos - buf_at)
            if offset == MDF_END_FLAG:
                break
            if offset < 0 or size <= 0 or size > MAX_RECORD or offset + size > FILE_LIMIT:
                raise BadInputError(f"{self.path}: flattened record at file offset 0x{pos:x} has offset "
                                    f"{offset} and size {size}")
            self.records += 1
            if self.records > MAX_RECORDS:
                raise BadInputError(f"{self.path}: more than {MAX_RECORDS} flattened records")
            data = pos + MDF_DATA_HEADER_SIZE
            avail = min(size, file_size - data)
            if avail > 0:
                self._paint(offset, offset + avail, data)
            if avail < size:
                self.truncated = True
                break
            pos = data + size
        self.size = self.ends[-1] if self.ends else 0

    def _paint(self, start: int, end: int, fpos: int) -> None:
        """Record [start, end) -> fpos, overriding what earlier records said about that range."""
        starts, ends = self.starts, self.ends
        if not starts or start >= ends[-1]:        # the usual case: records in increasing order
            starts.append(start)
            ends.append(end)
            self.fpos.append(fpos)
            return
        # out of order or overlapping: split the entries it touches
        i = bisect.bisect_right(ends, start)
        j = bisect.bisect_left(starts, end)
        new_s, new_e, new_f = [], [], []
        if i < j and starts[i] < start:
            new_s.append(starts[i]); new_e.append(start); new_f.append(self.fpos[i])
        new_s.append(start); new_e.append(end); new_f.append(fpos)
        if i < j and ends[j - 1] > end:
            k = j - 1
            new_s.append(end); new_e.append(ends[k]); new_f.append(self.fpos[k] + (end - starts[k]))
        starts[i:j] = array("q", new_s)
        ends[i:j] = array("q", new_e)
        self.fpos[i:j] = array("q", new_f)

    def pread(self, length: int, offset: int) -> bytes:
        """Bytes [offset, offset+length) of the rebuilt file (short at its end, zeros where no record is)."""
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        out = bytearray(end - offset)
        i = bisect.bisect_right(self.ends, offset)
        while i < len(self.starts) and self.starts[i] < end:
            s, e = max(self.starts[i], offset), min(self.ends[i], end)
            src = self.fpos[i] + (s - self.starts[i])
            try:
                data = os.pread(self.fd, e - s, src)
            except OSError as exc:
                raise DumpIOError(f"{self.path}: read at file offset 0x{src:x} failed: {exc.strerror or exc}") \
                    from None
            out[s - offset:s - offset + len(data)] = data
            i += 1
        return bytes(out)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
