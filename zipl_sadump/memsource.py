"""What the full dump reads: the machine's memory in 1 MiB units, zero MiBs skipped.

``_MemorySource`` serves the units of a memory image (holes found with SEEK_DATA/SEEK_HOLE
are zero without being read; zero checks through a small read-only mapping window;
uncompressed data copied to the device with copy_file_range); ``_scan`` yields the non-zero
MiBs in order, ``_events`` groups them into dump segments, ``_estimate`` says what the rest
of a dump would need.  The fd helpers report errors as one line with the path.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from typing import Callable, Iterable, Iterator

import native
from dumpkit.errors import DumpIOError
from meminfo_abi.s390_dump import DUMP_SEGM_HDR_SIZE, MIB

ProgressFn = Callable[[int], None]


def _pwrite_all(fd: int, data, offset: int, path: str) -> None:
    view = memoryview(data).cast("B")
    try:
        while view.nbytes:
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n
    except OSError as exc:
        raise DumpIOError(f"writing {path} at 0x{offset:x}: {exc.strerror or exc}") from None


def _pread(fd: int, n: int, offset: int) -> bytes:
    try:
        return os.pread(fd, n, offset)
    except OSError as exc:
        raise DumpIOError(f"reading at 0x{offset:x}: {exc.strerror or exc}") from None


def _fsync(fd: int, path: str) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        raise DumpIOError(f"fsync of {path}: {exc.strerror or exc}") from None


class _MemorySource:
    """1 MiB units of memory [0, mem_size) for the dump, without keeping memory mapped in this process.

    With a memory image file (PhysicalMemory.path): zero checks look at the data through a
    small read-only mapping window (data MiBs usually differ from zero in their first bytes),
    and uncompressed data goes to the device with copy_file_range (one copy, in the kernel).
    Anything else with size/read(addr, n) is read through read()."""

    WINDOW = 64 * MIB

    def __init__(self, memory, mem_size: int):
        self.memory = memory
        self.mem_size = mem_size
        self.mibs = mem_size // MIB
        path = getattr(memory, "path", None)
        self._fd = None
        if isinstance(path, str) and os.path.isfile(path):
            with contextlib.suppress(OSError):
                self._fd = os.open(path, os.O_RDONLY)
        self._file_size = os.fstat(self._fd).st_size if self._fd is not None else mem_size
        self._map = None
        self._map_start = -1
        self._map_len = 0
        self._copy_ok = self._fd is not None and hasattr(os, "copy_file_range")

    @property
    def can_copy(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        self._unmap()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
            self._map_start = -1

    def candidate_mibs(self, start: int, end: int) -> Iterator[int]:
        """MiB numbers in [start, end) that may hold data (all of them if holes are unknown)."""
        ranges = getattr(self.memory, "data_ranges", None)
        if ranges is None:
            yield from range(start, end)
            return
        last = start - 1
        for s, e in ranges(start * MIB, end * MIB):
            first = max(s // MIB, last + 1)
            stop = min(-(-e // MIB), end)
            for m in range(first, stop):
                yield m
            last = max(last, stop - 1)

    def is_zero(self, mib: int) -> bool:
        addr = mib * MIB
        if self._fd is None:
            return native.is_zero(self.read(mib))
        if addr >= self._file_size:
            return True
        if not self._map_start <= addr < self._map_start + self._map_len:
            self._unmap()
            start = addr - addr % self.WINDOW
            length = min(self.WINDOW, self._file_size - start)
            try:
                self._map = mmap.mmap(self._fd, length, mmap.MAP_SHARED, mmap.PROT_READ, offset=start)
            except OSError as exc:
                raise DumpIOError(f"mapping memory at 0x{start:x}: {exc.strerror or exc}") from None
            self._map_start, self._map_len = start, length
        lo = addr - self._map_start
        hi = min(lo + MIB, self._map_len)
        whole = memoryview(self._map)
        try:
            part = whole[lo:hi]
            try:
                return native.is_zero(part)
            finally:
                part.release()
        finally:
            whole.release()

    def read(self, mib: int) -> bytes:
        addr = mib * MIB
        if self._fd is None:
            data = bytes(self.memory.read(addr, MIB))
        else:
            try:
                data = os.pread(self._fd, MIB, addr)
            except OSError as exc:
                raise DumpIOError(f"reading memory at 0x{addr:x}: {exc.strerror or exc}") from None
        if len(data) != MIB:
            data = data.ljust(MIB, b"\0")
        return data

    def readinto(self, buf: bytearray, mib: int) -> bytearray:
        if self._fd is None:
            buf[:] = self.read(mib)
            return buf
        addr = mib * MIB
        try:
            n = os.preadv(self._fd, [buf], addr)
        except OSError as exc:
            raise DumpIOError(f"reading memory at 0x{addr:x}: {exc.strerror or exc}") from None
        if n != MIB:
            buf[n:] = bytes(MIB - n)
        return buf

    def copy_to(self, mib: int, out_fd: int, out_off: int, path: str) -> None:
        """Copy 1 MiB of memory to `out_fd` at `out_off` (in the kernel when it can)."""
        src_off, left = mib * MIB, MIB
        while left and self._copy_ok:
            try:
                n = os.copy_file_range(self._fd, out_fd, left, src_off, out_off)
            except OSError as exc:
                if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
                    self._copy_ok = False
                    break
                raise DumpIOError(f"copying memory at 0x{src_off:x} to {path}: {exc.strerror or exc}") from None
            if n == 0:                      # the image ends early: the rest is zero
                _pwrite_all(out_fd, bytes(left), out_off, path)
                return
            src_off += n
            out_off += n
            left -= n
        if left:
            data = _pread(self._fd, left, src_off).ljust(left, b"\0")
            _pwrite_all(out_fd, data, out_off, path)


class _Peekable:
    def __init__(self, it: Iterable):
        self._it = iter(it)
        self._head: list = []

    def peek(self):
        if not self._head:
            try:
                self._head.append(next(self._it))
            except StopIteration:
                return None
        return self._head[0]

    def next(self):
        if self._head:
            return self._head.pop()
        try:
            return next(self._it)
        except StopIteration:
            return None


def _scan(src, start: int, end: int, progress: ProgressFn | None, mode: str) -> Iterator[tuple[int, object]]:
    """(mib, data) of every non-zero MiB in [start, end), in order; progress in memory bytes.

    mode "copy": data is None (the writer copies from the source); "reuse": one buffer is
    refilled for every MiB (consume it before asking for the next); "fresh": a new bytes each."""
    done = start
    if mode == "copy" and not getattr(src, "can_copy", False):
        mode = "reuse"
    buf = bytearray(MIB) if mode == "reuse" else None
    for m in src.candidate_mibs(start, end):
        if mode == "copy":
            data, nonzero = None, not src.is_zero(m)
        else:
            data = src.readinto(buf, m) if mode == "reuse" else src.read(m)
            nonzero = not native.is_zero(data)
        if progress:
            progress((m + 1 - done) * MIB)
        done = m + 1
        if nonzero:
            yield m, data
    if progress and done < end:
        progress((end - done) * MIB)


def _events(scan: _Peekable, maxlen: Callable[[], int | None]):
    """Segment events from the non-zero MiBs: ("begin", mib), ("unit", mib, data), ("end", start, count, last).
    Yields ("none",) when no non-zero MiB is left at all.  `maxlen()` (MiBs, None = no limit)
    is asked at the start of each segment."""
    first = scan.next()
    if first is None:
        yield ("none",)
        return
    while True:
        m, data = first
        limit = maxlen()
        yield ("begin", m)
        yield ("unit", m, data)
        count = 1
        while limit is None or count < limit:
            nxt = scan.peek()
            if nxt is None or nxt[0] != m + count:
                break
            scan.next()
            yield ("unit", nxt[0], nxt[1])
            count += 1
        last = scan.peek() is None
        yield ("end", m, count, last)
        if last:
            return
        first = scan.next()


def _estimate(src, start: int, end: int, maxlen: int | None) -> int:
    """Stream bytes (segment headers + data, uncompressed) for the MiBs that may hold data in [start, end)."""
    total = 0
    run_start = prev = None
    for m in src.candidate_mibs(start, end):
        if prev is None or m != prev + 1 or (maxlen and m - run_start >= maxlen):
            total += DUMP_SEGM_HDR_SIZE
            run_start = m
        total += MIB
        prev = m
    return total
