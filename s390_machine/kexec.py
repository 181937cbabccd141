"""The production kernel's side of kexec_load(2) for kdump, the seed's way (the July 2011 kdump-for-s390 patch series).

No page tables for the crashkernel memory: every segment is copied straight
into absolute storage (plain memory-image writes, streamed), each segment's
CKSM and the purgatory-order SHA-256 are computed on the way, and the
segments are recorded in the meminfo block: a kexec segment table at crash
base + 0x2000 (the purgatory window, unused by s390 kernels) behind meminfo
entry 200, and the page's checksum.

All or nothing: every check runs before the first byte is written, and what a
load overwrites is journaled on disk first, so that an I/O error halfway restores
storage and a load that is killed is rolled back by the next command that opens the
machine for writing (Machine.open, mode "write"); a reading command only reports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from meminfo_abi.checksum import csum_partial
from dumpkit.errors import BadInputError, DumpIOError
from meminfo_abi.locate import read_meminfo
from meminfo_abi.lowcore import LC_OS_INFO
from meminfo_abi.meminfo import (
    MEMINFO_KEXEC_SEGMENTS, SEGMENT_KIND_PURGATORY,
    KexecSegment, KexecSegmentTable, MemInfo,
)
from dumpkit.fileio import Writeback, create_temporary, fsync_dir, signals_held
from meminfo_abi.kexec import (
    CHUNK, KEXEC_ARCH_MASK, KEXEC_ARCH_S390, KEXEC_ON_CRASH, SEGTAB_AREA, SEGTAB_OFFSET,
    LoadSegment, validate_segments,
)

if TYPE_CHECKING:                     # machine.py opens a machine with this module's roll-back
    from s390_machine.machine import Machine

WRITEBACK_EVERY = 8 << 20             # start writeback of loaded storage every so many bytes

@dataclass
class LoadResult:
    table: KexecSegmentTable
    table_addr: int
    replaced: bool
    bytes_loaded: int = 0
    checks: list[str] = field(default_factory=list)


JOURNAL_FILE = "kexec-load.journal"        # beside memory.img while a load changes storage
JOURNAL_MAGIC = b"S390KJNL"
JOURNAL_END = b"KJNL-END"
_JOURNAL_HEAD = struct.Struct(">8sIIQ")      # magic, version, reserved, memory size
_JOURNAL_ENTRY = struct.Struct(">QQq")       # address, length, offset of the old bytes (-1: was a hole)
_JOURNAL_FOOT = struct.Struct(">QI4x8s")     # index offset, entry count, end magic


class _Journal:
    """Old contents of what a load overwrites (only ranges that hold data), to undo a load.

    It is on disk, fsynced and renamed into place (JOURNAL_FILE) before storage is touched,
    and removed once the new storage is flushed: a load that fails restores it at once; a
    load that dies on the way (SIGKILL, power loss) is rolled back by the next writing
    Machine.open (find_interrupted_load, roll_back_load); a reading one only reports it.
    The loader holds the machine's exclusive lock for its whole run, so nobody else opens
    the machine while the load runs."""

    def __init__(self, machine: Machine):
        self.mem = machine.memory
        self.dir = machine.path
        self.path = os.path.join(machine.path, JOURNAL_FILE)
        self.committed = False
        # created locked (an uncommitted journal left by a killed load is stale: removed here);
        # SIGINT/SIGTERM/SIGHUP wait until the journal is ours to remove
        self.tmp = None
        try:
            with signals_held():
                self.tmp, fd = create_temporary(machine.path, JOURNAL_FILE)
                self.fh = os.fdopen(fd, "w+b")
            self.fh.write(_JOURNAL_HEAD.pack(JOURNAL_MAGIC, 1, 0, self.mem.size))
        except BaseException:
            if self.tmp is not None:
                self.close()
            raise
        self.entries: list[tuple[int, int, int]] = []   # (addr, length, journal offset); -1 = was a hole

    def save(self, addr: int, length: int) -> None:
        pos = addr
        for start, end in self.mem.data_ranges(addr, addr + length):
            if start > pos:
                self.entries.append((pos, start - pos, -1))
            off = self.fh.seek(0, os.SEEK_END)
            for p in range(start, end, CHUNK):
                self.fh.write(self.mem.view(p, min(CHUNK, end - p)))
            self.entries.append((start, end - start, off))
            pos = end
        if pos < addr + length:
            self.entries.append((pos, addr + length - pos, -1))

    def commit(self) -> None:
        """Make the journal durable under its final name (before the first write to storage)."""
        index = self.fh.seek(0, os.SEEK_END)
        self.fh.write(b"".join(_JOURNAL_ENTRY.pack(*e) for e in self.entries))
        self.fh.write(_JOURNAL_FOOT.pack(index, len(self.entries), JOURNAL_END))
        self.fh.flush()
        os.fsync(self.fh.fileno())
        with signals_held():                   # renamed and known to be: one step for a signal
            os.rename(self.tmp, self.path)
            self.committed = True
        fsync_dir(self.dir)

    def restore(self) -> None:
        _restore(self.mem, self.fh, self.entries)

    def discard(self) -> None:
        """Forget the journal (storage is consistent: loaded and flushed, or restored)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path if self.committed else self.tmp)
        fsync_dir(self.dir)
        self.committed = False
        self.fh.close()

    def close(self) -> None:
        """Drop a journal that was never committed (storage untouched)."""
        if not self.committed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
        with contextlib.suppress(OSError):     # flushing what is left may fail again (ENOSPC)
            self.fh.close()


def _restore(mem, fh, entries: list[tuple[int, int, int]]) -> None:
    for addr, length, off in reversed(entries):
        if off < 0:
            mem.punch_hole(addr, length)
            continue
        fh.seek(off)
        for p in range(addr, addr + length, CHUNK):
            n = min(CHUNK, addr + length - p)
            data = fh.read(n)
            if len(data) != n:
                raise DumpIOError(f"kexec load journal is cut short at 0x{p:x}")
            mem.write(p, data)
    mem.flush()



def find_interrupted_load(directory: str, memory_size: int, writable: bool):
    """The journal of a kexec load that died after it began to change storage: (fd, entries),
    every entry checked against the machine's memory before anything is replayed, or None.
    Never through a symlink, only a regular file; a damaged or crafted journal is refused."""
    from s390_machine.txn import open_journal_fd
    path = os.path.join(directory, JOURNAL_FILE)
    fd = open_journal_fd(path, writable)
    if fd is None:
        return None
    try:
        return fd, _read_journal(fd, path, memory_size)
    except BaseException:
        os.close(fd)
        raise


def roll_back_load(directory: str, fd: int, entries, mem) -> str:
    """Restore what the interrupted load overwrote (the caller holds the machine's lock), remove
    its journal and any journal of a load that died before it touched storage."""
    with os.fdopen(fd, "rb") as fh:
        _restore(mem, fh, entries)
    os.unlink(os.path.join(directory, JOURNAL_FILE))
    fsync_dir(directory)
    return f"rolled back an interrupted kexec load ({len(entries)} ranges restored)"


def _read_journal(fd: int, path: str, memory_size: int) -> list[tuple[int, int, int]]:
    size = os.fstat(fd).st_size

    def bad(why: str) -> BadInputError:
        return BadInputError(f"{path}: damaged kexec load journal ({why}); refusing to touch the machine, "
                             "whose memory image may hold a half-loaded kdump")

    head = os.pread(fd, _JOURNAL_HEAD.size, 0)
    if size < _JOURNAL_HEAD.size + _JOURNAL_FOOT.size or head[:8] != JOURNAL_MAGIC:
        raise bad("not a kexec load journal")
    _magic, version, _r, msize = _JOURNAL_HEAD.unpack(head)
    if version != 1 or msize != memory_size:
        raise bad(f"written for 0x{msize:x} bytes of memory, the machine has 0x{memory_size:x}")
    index, count, end = _JOURNAL_FOOT.unpack(os.pread(fd, _JOURNAL_FOOT.size, size - _JOURNAL_FOOT.size))
    if end != JOURNAL_END or index < _JOURNAL_HEAD.size or \
            index + count * _JOURNAL_ENTRY.size + _JOURNAL_FOOT.size != size:
        raise bad("its index does not fit the file")
    raw = os.pread(fd, count * _JOURNAL_ENTRY.size, index)
    entries = [_JOURNAL_ENTRY.unpack_from(raw, i * _JOURNAL_ENTRY.size) for i in range(count)]
    for addr, length, off in entries:
        if length <= 0 or addr + length > memory_size:
            raise bad(f"range 0x{addr:x}+0x{length:x} is outside memory of 0x{memory_size:x} bytes")
        if off != -1 and not (_JOURNAL_HEAD.size <= off and off + length <= index):
            raise bad(f"old bytes at offset {off} lie outside the journal's data")
    return entries


def _crash_region(machine: Machine) -> tuple[int, int, MemInfo, int]:
    ck = machine.state.crashkernel
    if ck is None or ck.size == 0:
        raise BadInputError("no crashkernel memory is reserved on this machine "
                            "(boot it with crashkernel=SIZE[@BASE])")
    mi = read_meminfo(machine.memory)
    if mi is None:
        raise BadInputError("the machine has no valid meminfo block at lowcore 0xE18; "
                            "a kdump load cannot be secured")
    if (mi.crashkernel_addr, mi.crashkernel_size) != (ck.base, ck.size):
        raise BadInputError(
            f"meminfo names crashkernel 0x{mi.crashkernel_addr:x}+0x{mi.crashkernel_size:x}, the kernel "
            f"reserved 0x{ck.base:x}+0x{ck.size:x}")
    return ck.base, ck.size, mi, machine.memory.read_u64(LC_OS_INFO)


def _copy_segment(mem, seg: LoadSegment, pool: "_BufferPool") -> Iterator[tuple[int, memoryview, object]]:
    """Copy a segment's buffer into storage chunk by chunk; yields (address, chunk, token) once
    each chunk is in storage, so it is checksummed without reading storage back.  File chunks
    live in pool buffers: `pool.release(token)` when done with them."""
    pos = seg.mem
    for chunk in seg.chunks(CHUNK, None if seg.path is None else pool.get):
        mem.write(pos, chunk)
        yield pos, chunk, None if seg.path is None else chunk.obj
        pos += len(chunk)


class _BufferPool:
    """A few reused chunk buffers: no fresh allocation (and page faults) per chunk."""

    def __init__(self, count: int = 8, size: int = CHUNK):
        import queue
        self._free: "queue.Queue" = queue.Queue()
        self._left, self._size = count, size

    def get(self) -> bytearray:
        if self._free.empty() and self._left:   # allocate lazily: a small load touches one buffer
            self._left -= 1
            return bytearray(self._size)
        return self._free.get()

    def release(self, token) -> None:
        if token is not None:
            self._free.put(token)


class _Hasher:
    """SHA-256 on a second thread (hashlib releases the GIL), so digesting overlaps copying;
    pool buffers go back to the pool once digested."""

    def __init__(self, pool: _BufferPool):
        import queue
        import threading
        self._h = hashlib.sha256()
        self._pool = pool
        self._q: "queue.Queue" = queue.Queue()
        self._t = threading.Thread(target=self._work, daemon=True)
        self.result = b""

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            data, token = item
            self._h.update(data)
            self._pool.release(token)

    def update(self, data, token=None) -> None:
        self._q.put((data, token))

    def __enter__(self) -> "_Hasher":
        self._t.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._q.put(None)
        self._t.join()
        if exc_type is None:
            self.result = self._h.digest()


def kexec_load(machine: Machine, entry: int, segments: list[LoadSegment], flags: int,
               progress: Callable[[int], None] | None = None,
               fail_after: int | None = None) -> LoadResult:
    """Load kdump segments into the machine's crashkernel memory and record them in meminfo.

    `fail_after` (tests only) raises an I/O error after that many bytes were copied."""
    if flags & KEXEC_ARCH_MASK not in (0, KEXEC_ARCH_S390):
        raise BadInputError(f"kexec_load flags 0x{flags:x} name another architecture than s390")
    if not flags & KEXEC_ON_CRASH:
        raise BadInputError("only kdump loads (KEXEC_ON_CRASH, -p) can be simulated on a machine")
    base, size, mi, mi_addr = _crash_region(machine)
    validate_segments(segments, base, size)
    mem = machine.memory
    table_addr = base + SEGTAB_OFFSET
    replaced = not mi.entries[MEMINFO_KEXEC_SEGMENTS].empty

    copied = 0
    journal = None
    try:
        journal = _Journal(machine)
        for s in segments:
            journal.save(s.mem, s.memsz)
        journal.save(table_addr, SEGTAB_AREA)
        journal.save(mi_addr, 4096)
        journal.commit()
    except BaseException as exc:
        if journal is not None:
            if journal.committed:               # storage is not touched yet: nothing to restore
                journal.discard()
            else:
                journal.close()
        if isinstance(exc, OSError):
            what = "write" if journal is not None else "create"
            raise DumpIOError(f"cannot {what} the kexec load journal in {machine.path}: {exc.strerror}") from None
        raise
    try:
        # invalidate first: a crash during the load must never find a half-loaded kdump intact
        mi.clear_entry(MEMINFO_KEXEC_SEGMENTS)
        mem.write(mi_addr, mi.to_bytes())

        recorded = []
        pool = _BufferPool()
        # start writeback as we copy, so the final flush finds little left (a memory image file)
        wb = Writeback(mem.fileno(), WRITEBACK_EVERY, drop=False) if hasattr(mem, "fileno") else None
        with _Hasher(pool) as digest:
            for s in segments:
                total = 0
                hashed = s.kind != SEGMENT_KIND_PURGATORY
                for pos, data, token in _copy_segment(mem, s, pool):
                    n = len(data)
                    if wb:
                        wb.wrote(pos, n)
                    total = csum_partial(data, total)
                    if hashed:
                        digest.update(data, token)
                    else:
                        pool.release(token)
                    copied += n
                    if progress:
                        progress(n)
                    if fail_after is not None and copied >= fail_after:
                        raise DumpIOError(f"simulated I/O error after {copied} bytes")
                if s.memsz > s.bufsz:
                    mem.fill(s.mem + s.bufsz, s.memsz - s.bufsz, 0)
                    if hashed:
                        digest.update(bytes(s.memsz - s.bufsz))
                recorded.append(KexecSegment(s.mem, s.memsz, s.bufsz, total, s.kind))
        table = KexecSegmentTable(entry=entry, segments=recorded, sha256=digest.result)
        raw = table.to_bytes()
        mem.fill(table_addr, SEGTAB_AREA, 0)
        mem.write(table_addr, raw)
        mi.set_data_entry(MEMINFO_KEXEC_SEGMENTS, table_addr, raw)
        mem.write(mi_addr, mi.to_bytes())
        mem.flush()
    except BaseException:
        try:
            journal.restore()
        except BaseException:
            journal.fh.close()          # keep the journal: the next writing Machine.open rolls back
            raise
        journal.discard()
        raise
    journal.discard()
    machine.state.record("kexec_load", f"{len(segments)} segments, {copied} bytes, entry 0x{entry:x}"
                         + (" (replaced the previous kdump)" if replaced else ""))
    machine.save_state()
    return LoadResult(table, table_addr, replaced, copied)


def kexec_unload(machine: Machine) -> bool:
    """Forget the loaded kdump: clear meminfo entry 200 and the table. Returns whether one was loaded."""
    base, _size, mi, mi_addr = _crash_region(machine)
    was = not mi.entries[MEMINFO_KEXEC_SEGMENTS].empty
    with machine.transaction("unload"):
        mi.clear_entry(MEMINFO_KEXEC_SEGMENTS)
        machine.memory.write(mi_addr, mi.to_bytes())
        machine.memory.fill(base + SEGTAB_OFFSET, SEGTAB_AREA, 0)
        machine.state.record("kexec_unload", "kdump unloaded" if was else "nothing was loaded")
        machine.save_state()
    return was
