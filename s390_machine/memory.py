"""Absolute storage of the simulated machine: a raw, sparse memory image behind mmap.

The image is byte-for-byte what QEMU's `pmemsave 0 SIZE` writes: absolute
address N is file offset N.  Nothing here reads the image into memory; reads
return slices of the mapping, writes go straight into it, and holes of the
sparse file are found with SEEK_DATA/SEEK_HOLE.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Iterator

from dumpkit.errors import BadInputError, DumpIOError
from dumpkit.fileio import Closeable, pread_full, punch_hole, pwrite_all
from meminfo_abi.lowcore import LOWCORE_SIZE

PAGE_SIZE = 4096
MIB = 1 << 20
BIG_WRITE = 256 << 10
BIG_READ = 4 << 10              # reads from a page on go through the file: a mapped read faults its
                                # neighbours in too (fault-around), so a reader of many short runs (a
                                # filtered dump) would map most of the image into its RSS


class PhysicalMemory(Closeable):
    """Absolute storage [0, size) of one machine."""

    def __init__(self, path: str | os.PathLike, writable: bool = False, expected_size: int | None = None,
                 fd: int | None = None, size: int | None = None):
        """`fd`: an image the caller opened (and checked) already, taken over; `size`: map only
        the first `size` bytes (a machine whose image was grown by an unfinished hotplug)."""
        self.path = os.fspath(path)
        self.writable = writable
        self.journal = None         # a Transaction: the old bytes of every write are journaled first
        if fd is not None:
            self._fd = fd
        else:
            try:
                self._fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)
            except FileNotFoundError:
                raise BadInputError(f"memory image {self.path} does not exist") from None
            except IsADirectoryError:
                raise BadInputError(f"memory image {self.path} is a directory") from None
        self.size = os.fstat(self._fd).st_size if size is None else size
        if expected_size is not None and self.size != expected_size:
            os.close(self._fd)
            raise BadInputError(
                f"memory image {self.path} has {self.size} bytes, the machine has {expected_size} "
                "(truncated or wrong image)"
            )
        if self.size == 0:
            os.close(self._fd)
            raise BadInputError(f"memory image {self.path} is empty")
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        try:
            self._map = mmap.mmap(self._fd, self.size, mmap.MAP_SHARED, prot)
        except (OSError, ValueError, OverflowError) as exc:
            os.close(self._fd)
            raise DumpIOError(f"cannot map memory image {self.path}: {exc}") from None
        self._view = memoryview(self._map)

    # -- lifetime -------------------------------------------------------------
    def close(self) -> None:
        if self._map is None:
            return
        self._view.release()
        self._map.close()
        os.close(self._fd)
        self._map = None


    def flush(self) -> None:
        """Make storage durable: fdatasync (on Linux it also covers stores through the mapping)."""
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            raise DumpIOError(f"flushing memory image {self.path}: {exc.strerror or exc}") from None

    def fileno(self) -> int:
        return self._fd

    # -- byte access ----------------------------------------------------------
    def _check(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > self.size:
            raise BadInputError(
                f"absolute address range 0x{addr:x}+0x{length:x} is outside memory of 0x{self.size:x} bytes"
            )

    def contains(self, addr: int, length: int = 1) -> bool:
        return 0 <= addr and length >= 0 and addr + length <= self.size

    def view(self, addr: int, length: int) -> memoryview:
        """A zero-copy view; valid until close()."""
        self._check(addr, length)
        return self._view[addr : addr + length]

    def read(self, addr: int, length: int) -> bytes:
        self._check(addr, length)
        if length >= BIG_READ:    # large reads through the file: no mapping, no RSS, no page faults
            data = pread_full(self._fd, length, addr)
            if len(data) < length:
                raise BadInputError(f"memory image {self.path} ended at 0x{addr + len(data):x}")
            return data
        return self._map[addr : addr + length]

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        self._check(addr, view.nbytes)
        self._pwrite(addr, view)

    def _pwrite(self, addr: int, view: memoryview) -> None:
        """Every write goes through the file, never through the mapping: storing into a hole of
        the mapping on a full file system kills the process with SIGBUS, pwrite says ENOSPC
        (and the page cache keeps the mapping coherent)."""
        if self.journal is not None:
            self.journal.before_write(self, addr, view.nbytes)
        try:
            pwrite_all(self._fd, view, addr)
        except OSError as exc:
            raise DumpIOError(f"writing memory image {self.path} at 0x{addr:x}: {exc.strerror or exc}") from None

    def copy_from_file(self, fd: int, offset: int, addr: int, length: int) -> None:
        """Copy `length` bytes of file `fd` at `offset` into storage at `addr`, in the kernel
        (copy_file_range; the page cache keeps it coherent with the mapping)."""
        self._check(addr, length)
        if self.journal is not None:
            self.journal.before_write(self, addr, length)
        done = 0
        while done < length:
            try:
                n = os.copy_file_range(fd, self._fd, length - done, offset + done, addr + done)
            except OSError:
                n = -1
            if n <= 0:  # not supported here, or the source ended: fall back / report
                data = os.pread(fd, min(length - done, 1 << 22), offset + done)
                if not data:
                    raise EOFError(f"source ended {length - done} bytes early")
                self._pwrite(addr + done, memoryview(data))
                n = len(data)
            done += n

    def fill(self, addr: int, length: int, byte: int = 0) -> None:
        """Set a range to one byte value; zeroing a range of holes stays sparse."""
        self._check(addr, length)
        chunk = bytes([byte]) * min(length, MIB)
        end = addr + length
        while addr < end:
            n = min(len(chunk), end - addr)
            if byte == 0 and self._is_hole(addr, n):
                addr += n
                continue
            self._pwrite(addr, memoryview(chunk)[:n])
            addr += n

    def punch_hole(self, addr: int, length: int) -> None:
        """Make a range a hole again (fallocate PUNCH_HOLE); zeros where the file system cannot."""
        self._check(addr, length)
        if self.journal is not None:
            self.journal.before_write(self, addr, length)
        if length and not punch_hole(self._fd, addr, length):
            self.fill(addr, length, 0)

    def _is_hole(self, addr: int, length: int) -> bool:
        for start, end in self.data_ranges(addr, addr + length):
            return False
        return True

    def read_u16(self, addr: int) -> int:
        return struct.unpack_from(">H", self._map, self._ok(addr, 2))[0]

    def read_u32(self, addr: int) -> int:
        return struct.unpack_from(">I", self._map, self._ok(addr, 4))[0]

    def read_u64(self, addr: int) -> int:
        return struct.unpack_from(">Q", self._map, self._ok(addr, 8))[0]

    def write_u16(self, addr: int, value: int) -> None:
        self._pwrite(self._ok(addr, 2), memoryview(struct.pack(">H", value)))

    def write_u32(self, addr: int, value: int) -> None:
        self._pwrite(self._ok(addr, 4), memoryview(struct.pack(">I", value)))

    def write_u64(self, addr: int, value: int) -> None:
        self._pwrite(self._ok(addr, 8), memoryview(struct.pack(">Q", value)))

    def _ok(self, addr: int, length: int) -> int:
        self._check(addr, length)
        return addr

    # -- sparseness -----------------------------------------------------------
    def data_ranges(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
        """Yield (start, end) of ranges that may hold data (SEEK_DATA/SEEK_HOLE);
        the whole range if the file system cannot tell."""
        end = self.size if end is None else min(end, self.size)
        pos = start
        while pos < end:
            try:
                data = os.lseek(self._fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos (or SEEK_DATA unsupported)
                return
            if data >= end:
                return
            hole = os.lseek(self._fd, data, os.SEEK_HOLE)
            yield max(data, start), min(hole, end)
            pos = hole


def real_to_absolute(addr: int, prefix: int) -> int:
    """Prefixing (z/Architecture): real [0, 8K) <-> absolute [prefix, prefix+8K)."""
    if addr < LOWCORE_SIZE:
        return addr + prefix
    if prefix <= addr < prefix + LOWCORE_SIZE:
        return addr - prefix
    return addr
