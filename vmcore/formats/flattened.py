"""makedumpfile's flattened stream (`makedumpfile -F`): write it, and read it in place.

the flattened format: makedumpfile(8) -F/-R.  A flattened file is a 4096-byte header and a
sequence of records {offset, buf_size} + buf_size bytes, ended by a record with
offset = buf_size = -1; record k puts its bytes at `offset` of the rebuilt
file.  Records may come in any order and may overwrite earlier ones.

Writing: `FlatSink` appends records to an open stream, so the output can go to
a pipe.  Reading: `FlatFile` streams through the file once and keeps an index
of where each range of the rebuilt file lies (three integer arrays, last
writer wins), then serves `pread` from the flattened file itself: nothing is
rebuilt on disk.  Ranges no record covers read as zeros, as they would in a
rebuilt (sparse) file.  Records in increasing order (what makedumpfile writes
but for a few header rewrites) are appended as they come.  A record that starts
below the end of one before it ("late") is kept aside; at the end the late
records are indexed on their own in O(K log K) (a sort and a sweep with a heap)
and laid over the ordered ones, which they override (a record after them never
overlaps them), with bisection and array slices: O(N + K log N) in all.
"""

from __future__ import annotations

import bisect
import heapq
import os
from array import array
from itertools import islice

from meminfo_abi.diskdump import (
    FLAT_END_RECORD,
    MDF_DATA_HEADER,
    MDF_DATA_HEADER_SIZE,
    MDF_END_FLAG,
    MDF_HEADER_SIZE,
    flat_header_bytes,
    is_flattened,
)
from dumpkit.errors import BadInputError, DumpIOError
from dumpkit.fileio import read_at
from vmcore.model import open_dump_fd

FILE_LIMIT = (1 << 63) - 1
MAX_RECORD = 1 << 30          # a record larger than this is taken as corruption
MAX_RECORDS = 1 << 26         # 64 Mi records: 1.5 GiB of index would be needed beyond
# records that start below the end of a record before them: makedumpfile writes a handful (the
# header and bitmaps rewritten at the end); indexing one costs ~2 us and ~150 bytes while it lasts
MAX_LATE_RECORDS = 1 << 20
SPLICE_LATE = 64              # up to this many late index entries are spliced into the index


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


def _resolve(starts: array, ends: array, fpos: array) -> tuple[array, array, array]:
    """The sorted, non-overlapping index of records given in stream order, the last writer
    winning where they overlap: O(N log N) for N records, whatever their order (arrays of int64
    throughout: 600,000 records cost tens of MiB, not hundreds)."""
    n = len(starts)
    order = array("q", sorted(range(n), key=starts.__getitem__))
    if all(ends[a] <= starts[b] for a, b in zip(order, islice(order, 1, None))):
        # only out of order, nothing overlaps: the sort is the index
        return (array("q", (starts[r] for r in order)), array("q", (ends[r] for r in order)),
                array("q", (fpos[r] for r in order)))
    # sweep the boundaries left to right; the heap holds the records that started, the latest on
    # top (-index); a record whose end is passed is dropped when it surfaces
    sorted_starts = array("q", (starts[r] for r in order))
    sorted_starts.append(FILE_LIMIT)             # a sentinel: every record starts below it
    latest_first = array("q", (-r for r in order))
    del order
    points = array("q", sorted(starts + ends))
    push, pop = heapq.heappush, heapq.heappop
    heap: list[int] = []
    new_s, new_e, new_f = array("q"), array("q"), array("q")
    k = 0
    next_start = sorted_starts[0]
    last = -1                                   # the record of the last index entry, if it ends at x
    for x, nxt in zip(points, islice(points, 1, None)):
        if x == nxt:
            continue                            # a boundary shared by several records
        while next_start <= x:
            push(heap, latest_first[k])
            k += 1
            next_start = sorted_starts[k]
        while heap:
            r = -heap[0]
            if ends[r] > x:
                break
            pop(heap)
        else:
            last = -1                           # a gap no record covers
            continue
        if r == last:
            new_e[-1] = nxt                     # the same record goes on
            continue
        new_s.append(x)
        new_e.append(nxt)
        new_f.append(fpos[r] + (x - starts[r]))
        last = r
    return new_s, new_e, new_f


def _overlay(index: tuple[array, array, array], late: tuple[array, array, array]) -> tuple[array, array, array]:
    """`late` (sorted, non-overlapping) laid over `index` (the same), winning where they overlap."""
    ms, me, mf = index
    n = len(ms)
    if len(late[0]) <= SPLICE_LATE:              # a few rewrites: splice them in place
        for s, e, f in zip(*late):
            j = bisect.bisect_right(me, s)       # index entries before j end at or before s
            k = bisect.bisect_right(me, e, j)    # entries j..k-1 end at or before e
            new = []
            if j < len(ms) and ms[j] < s:        # entry j starts before s: its left part stays
                new.append((ms[j], s, mf[j]))
            new.append((s, e, f))
            if k < len(ms) and ms[k] < e:        # entry k reaches past e: its right part stays
                new.append((e, me[k], mf[k] + (e - ms[k])))
                k += 1
            ms[j:k] = array("q", (x[0] for x in new))
            me[j:k] = array("q", (x[1] for x in new))
            mf[j:k] = array("q", (x[2] for x in new))
        return ms, me, mf
    ls, le, lf = late
    nl = len(ls)
    out_s, out_e, out_f = array("q"), array("q"), array("q")

    def take(src: tuple[array, array, array], a: int, b: int) -> None:
        out_s.extend(src[0][a:b])
        out_e.extend(src[1][a:b])
        out_f.extend(src[2][a:b])

    i = t = 0                                    # next index entry, next late entry to place
    while t < nl:
        j = bisect.bisect_right(me, ls[t], i)    # index entries that end before late entry t
        take(index, i, j)
        i = j
        if i == n:
            break
        u = bisect.bisect_right(le, ms[i], t)    # late entries that end before index entry i
        if u > t:
            take(late, t, u)
            t = u
            continue
        s, e, f = ls[t], le[t], lf[t]            # late entry t overlaps index entry i
        if ms[i] < s:                            # whose left part stays
            out_s.append(ms[i])
            out_e.append(s)
            out_f.append(mf[i])
        out_s.append(s)
        out_e.append(e)
        out_f.append(f)
        t += 1
        i = bisect.bisect_right(me, e, i)        # index entries it covers are gone
        if i < n and ms[i] < e:                  # the right part of the next one stays
            mf[i] += e - ms[i]
            ms[i] = e
    take(late, t, nl)
    take(index, i, n)
    return out_s, out_e, out_f


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
        except OSError as exc:
            raise DumpIOError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        head = read_at(self.fd, MDF_HEADER_SIZE, 0, self.path)
        if not is_flattened(head):
            raise BadInputError(f"{self.path} is not a flattened makedumpfile stream")
        if len(head) < MDF_HEADER_SIZE:
            raise BadInputError(f"{self.path} ends inside the flattened header ({len(head)} bytes)")
        # the records in stream order (the hot loop: 600,000 records must take well under a second)
        starts, ends, fpos = array("q"), array("q"), array("q")
        late_s, late_e, late_f = array("q"), array("q"), array("q")    # records out of order
        top = 0                       # the end of the furthest record so far
        self.truncated = False
        unpack = MDF_DATA_HEADER.unpack_from
        pos = MDF_HEADER_SIZE
        buf = b""
        buf_at = pos
        buf_end = pos
        while True:
            if pos + MDF_DATA_HEADER_SIZE > buf_end:
                buf = read_at(self.fd, 1 << 20, pos, self.path)
                buf_at = pos
                buf_end = pos + len(buf)
                if len(buf) < MDF_DATA_HEADER_SIZE:
                    self.truncated = True
                    break
            offset, size = unpack(buf, pos - buf_at)
            if offset == MDF_END_FLAG:
                break
            if offset < 0 or size <= 0 or size > MAX_RECORD or offset + size > FILE_LIMIT:
                raise BadInputError(f"{self.path}: flattened record at file offset 0x{pos:x} has offset "
                                    f"{offset} and size {size}")
            if len(starts) + len(late_s) >= MAX_RECORDS:
                raise BadInputError(f"{self.path}: more than {MAX_RECORDS} flattened records")
            data = pos + MDF_DATA_HEADER_SIZE
            pos = data + size
            if pos > file_size:
                self.truncated = True
                size = file_size - data
                if size <= 0:
                    break
            end = offset + size
            if offset >= top:             # in order: overlaps no record before it
                starts.append(offset)
                ends.append(end)
                fpos.append(data)
                top = end
            else:
                if len(late_s) >= MAX_LATE_RECORDS:
                    raise BadInputError(f"{self.path}: more than {MAX_LATE_RECORDS} flattened records out of "
                                        f"order (the next at file offset 0x{pos - size - MDF_DATA_HEADER_SIZE:x}); "
                                        "makedumpfile writes a few")
                late_s.append(offset)
                late_e.append(end)
                late_f.append(data)
                if end > top:
                    top = end
            if self.truncated:
                break
        self.records = len(starts) + len(late_s)
        if late_s:
            starts, ends, fpos = _overlay((starts, ends, fpos), _resolve(late_s, late_e, late_f))
        self.starts, self.ends, self.fpos = starts, ends, fpos
        self.size = ends[-1] if ends else 0

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
            data = read_at(self.fd, e - s, src, self.path)
            out[s - offset:s - offset + len(data)] = data
            i += 1
        return bytes(out)

    def data_extents(self, offset: int, length: int) -> list[tuple[int, int]]:
        """The ranges of [offset, offset+length) of the rebuilt file that records cover (the rest
        reads as zeros); adjacent ones merged."""
        end = min(offset + length, self.size)
        out: list[tuple[int, int]] = []
        i = bisect.bisect_right(self.ends, offset)
        while i < len(self.starts) and self.starts[i] < end:
            s, e = max(self.starts[i], offset), min(self.ends[i], end)
            if out and out[-1][1] == s:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
            i += 1
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
