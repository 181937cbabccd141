"""The one dump model every format reads into and writes from.

Memory below, meaning above: a Dump is an ordered list of memory chunks, each a
physical range with a *source* that reads its bytes lazily and can tell which
parts may hold data; above that sit the CPUs and a few attributes (format,
vmcoreinfo, time, completeness).  Every command reads memory only through
`Dump.read(addr, length)` and streams through `Dump.iter_data()`; no command
knows which file format the bytes came from.

Chunk kinds:
  "ram"     bytes come from the chunk's source
  "zero"    the range is in the dump and reads as zeros (no source needed)
  "absent"  the range belongs to the dumped system but is missing from the dump
            (truncated file, unreadable volume); reading it raises
            IncompleteDumpError naming the range
Addresses between chunks are not part of the dump; reading them raises
BadInputError naming the address.

Sources are addressed relative to their own start (offset 0 = the chunk's
first byte).  `data_ranges(start, end)` yields the sub-ranges that may hold
non-zero bytes; everything else reads as zero, so writers skip holes without
reading them and a 4 TiB dump costs what its data costs.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Protocol, runtime_checkable

from meminfo_abi.cpu import CpuRegs
from dumpkit.errors import BadInputError, DumpIOError, DumpToolError, IncompleteDumpError
from meminfo_abi.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo
from native import nonzero_ranges
from dumpkit.fileio import Closeable, Writeback, data_extents, open_input, read_at, write_sparse
from dumpkit.ranges import Range, merge_touching, range_text, subtract

PAGE_SIZE = 4096
ADDRESS_LIMIT = 1 << 64          # physical addresses are 64-bit
FILE_LIMIT = (1 << 63) - 1       # off_t
MAX_READ = 1 << 30               # one read() returns at most 1 GiB; stream bigger ranges
DEFAULT_BLOCK = 4 << 20          # block size of iter_data: a few MiB keeps RSS bounded

# makedumpfile's dump level bits and what each leaves out (the -d help's words)
DUMP_LEVEL_CLASSES = ((0x01, "zero"), (0x02, "cache"), (0x04, "cache private"), (0x08, "user"),
                      (0x10, "free"))
DL_ZERO_ONLY = 0x01

KIND_RAM = "ram"
KIND_ZERO = "zero"
KIND_ABSENT = "absent"
KINDS = (KIND_RAM, KIND_ZERO, KIND_ABSENT)


# ---------------------------------------------------------------------------------------------
# memory sources
# ---------------------------------------------------------------------------------------------


def open_dump_fd(path: str, what: str = "open") -> int:
    """A read-only fd on a dump file; a missing file or a directory is bad input (one line),
    anything else the OS refuses an I/O error."""
    fd = open_input(path, "dump", what)
    if stat.S_ISDIR(os.fstat(fd).st_mode):        # os.open takes a directory without complaint
        os.close(fd)
        raise BadInputError(f"{path} is a directory, not a dump")
    return fd


def read_head(path: str, n: int) -> bytes:
    """The first `n` bytes of a dump file (fewer if it is shorter), errors as open_dump_fd."""
    fd = open_dump_fd(path, "read")
    try:
        return read_at(fd, n, 0, path)
    finally:
        os.close(fd)

@runtime_checkable
class MemorySource(Protocol):
    """Lazily readable bytes [0, size) behind one memory chunk.

    A source whose bytes are stored in compressed units (the s390 reader's 1 MiB zlib units,
    the kdump reader's pages) may also offer `units()` -> (owner, offset of this source in the
    owner's units, unit size, load(first, count) -> list of unit bytes), or None; readers that
    keep their own cache (vmcore mount) read through it."""

    def read(self, offset: int, length: int) -> bytes: ...

    def data_ranges(self, start: int, end: int) -> Iterator[Range]: ...

    def close(self) -> None: ...


def _check_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"{what} must be an integer, not {type(value).__name__}")
    return value


class _SizedSource:
    """Bounds checking shared by the sources with a fixed size."""

    size: int
    name: str = "source"

    def _check(self, offset: int, length: int) -> None:
        _check_int(offset, "offset")
        _check_int(length, "length")
        if offset < 0 or length < 0 or offset + length > self.size:
            raise BadInputError(
                f"{self.name}: range 0x{offset:x}+0x{length:x} is outside its 0x{self.size:x} bytes"
            )

    def _clip(self, start: int, end: int) -> Range:
        return max(0, start), min(self.size, end)

    def close(self) -> None:
        pass


class _SharedFd:
    """One open file descriptor shared by several FileSources (closed with the last one)."""

    def __init__(self, fd: int, owned: bool, path: str):
        self.fd = fd
        self.owned = owned
        self.path = path
        self.refs = 1

    def release(self) -> None:
        self.refs -= 1
        if self.refs == 0 and self.owned:
            os.close(self.fd)


class FileSource(_SizedSource):
    """`size` bytes of a file starting at `file_offset`, read with pread.

    `file` is a path (opened read-only and closed by close()) or an open file
    descriptor (left open).  `region()` makes further sources over the same
    descriptor, so a dump with many chunks holds one descriptor.  Holes of a
    sparse file are found with SEEK_DATA/SEEK_HOLE.
    """

    def __init__(self, file: str | os.PathLike | int, file_offset: int = 0, size: int | None = None,
                 name: str | None = None):
        if isinstance(file, int) and not isinstance(file, bool):
            shared = _SharedFd(file, owned=False, path=name or f"fd {file}")
        else:
            path = os.fspath(file)
            fd = open_input(path, verb="open")
            shared = _SharedFd(fd, owned=True, path=path)
        try:
            self._init(shared, file_offset, size, name)
        except BaseException:
            shared.release()
            raise

    def _init(self, shared: _SharedFd, file_offset: int, size: int | None, name: str | None) -> None:
        self._shared = shared
        _check_int(file_offset, "file offset")
        if size is None:
            try:
                size = max(0, os.fstat(shared.fd).st_size - file_offset)
            except OSError as exc:
                raise DumpIOError(f"cannot stat {shared.path}: {exc.strerror or exc}") from None
        _check_int(size, "size")
        if file_offset < 0 or size < 0 or file_offset + size > FILE_LIMIT:
            raise BadInputError(
                f"{shared.path}: file region 0x{file_offset:x}+0x{size:x} is not a valid file range"
            )
        self.file_offset = file_offset
        self.size = size
        self.name = name or shared.path
        self._closed = False

    @property
    def path(self) -> str:
        return self._shared.path

    def region(self, file_offset: int, size: int, name: str | None = None) -> "FileSource":
        """Another source over the same descriptor (absolute file offset)."""
        new = FileSource.__new__(FileSource)
        self._shared.refs += 1
        try:
            new._init(self._shared, file_offset, size, name or self.name)
        except BaseException:
            self._shared.release()
            raise
        return new

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        pos = self.file_offset + offset
        data = read_at(self._shared.fd, length, pos, self.path)
        if len(data) < length:
            raise IncompleteDumpError(f"{self.path} ends before file offset 0x{pos + len(data):x} "
                                      f"(0x{length - len(data):x} bytes missing; truncated?)")
        return data

    def data_ranges(self, start: int, end: int) -> Iterator[Range]:
        start, end = self._clip(start, end)
        if start >= end:
            return
        base = self.file_offset
        for s, e in data_extents(self._shared.fd, base + end, base + start):
            yield s - base, e - base

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._shared.release()


class MemoryImageSource(_SizedSource):
    """A range of a machine's PhysicalMemory (raw memory image behind mmap)."""

    def __init__(self, memory, base: int = 0, size: int | None = None, owns: bool = False):
        self.memory = memory
        self.base = _check_int(base, "base")
        self.size = memory.size - base if size is None else _check_int(size, "size")
        if base < 0 or self.size < 0 or base + self.size > memory.size:
            raise BadInputError(f"memory image range 0x{base:x}+0x{self.size:x} is outside its "
                                f"0x{memory.size:x} bytes")
        self.owns = owns
        self.name = f"memory image {getattr(memory, 'path', '')}".strip()

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return bytes(self.memory.read(self.base + offset, length))

    def data_ranges(self, start: int, end: int) -> Iterator[Range]:
        start, end = self._clip(start, end)
        if start >= end:
            return
        for s, e in self.memory.data_ranges(self.base + start, self.base + end):
            yield s - self.base, e - self.base

    def close(self) -> None:
        if self.owns:
            self.memory.close()


class ZeroSource(_SizedSource):
    """Reads as zeros, holds no data."""

    def __init__(self, size: int = ADDRESS_LIMIT):
        self.size = _check_int(size, "size")
        self.name = "zero source"

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        if length > MAX_READ:
            raise BadInputError(f"read of 0x{length:x} bytes is larger than 0x{MAX_READ:x}; stream it")
        return bytes(length)

    def data_ranges(self, start: int, end: int) -> Iterator[Range]:
        return iter(())


class BytesSource(_SizedSource):
    """Bytes held in memory (small dumps built in tests, notes, headers)."""

    def __init__(self, data: bytes | bytearray | memoryview, name: str = "bytes"):
        self.data = bytes(data)
        self.size = len(self.data)
        self.name = name

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return self.data[offset:offset + length]

    def data_ranges(self, start: int, end: int) -> Iterator[Range]:
        start, end = self._clip(start, end)
        if start >= end:
            return
        for s, e in nonzero_ranges(memoryview(self.data)[start:end], 1):
            yield start + s, start + e


class MappedSource(_SizedSource):
    """A computed view: `read_fn(offset, length) -> bytes` over [0, size).

    `data_ranges_fn(start, end)` tells where data may be (default: everywhere);
    `close_fn()` releases what the view holds.  The kdump swap map is one.
    """

    def __init__(self, read_fn: Callable[[int, int], bytes], size: int,
                 data_ranges_fn: Callable[[int, int], Iterable[Range]] | None = None,
                 close_fn: Callable[[], None] | None = None, name: str = "mapped view"):
        self._read_fn = read_fn
        self._ranges_fn = data_ranges_fn
        self._close_fn = close_fn
        self.size = _check_int(size, "size")
        self.name = name

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        data = self._read_fn(offset, length)
        if len(data) != length:
            raise DumpIOError(f"{self.name}: read of 0x{length:x} bytes at 0x{offset:x} returned {len(data)}")
        return bytes(data)

    def data_ranges(self, start: int, end: int) -> Iterator[Range]:
        start, end = self._clip(start, end)
        if start >= end:
            return
        if self._ranges_fn is None:
            yield start, end
            return
        for s, e in self._ranges_fn(start, end):
            s, e = max(s, start), min(e, end)
            if s < e:
                yield s, e

    def close(self) -> None:
        if self._close_fn is not None:
            fn, self._close_fn = self._close_fn, None
            fn()


# ---------------------------------------------------------------------------------------------
# chunks, attributes, dump
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemChunk:
    """Physical range [start, start + size) of the dumped system and where its bytes are."""

    start: int
    size: int
    source: MemorySource | None = None
    kind: str = KIND_RAM

    def __post_init__(self) -> None:
        _check_int(self.start, "chunk start")
        _check_int(self.size, "chunk size")
        if self.kind not in KINDS:
            raise BadInputError(f"memory chunk kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.start < 0 or self.size <= 0 or self.start + self.size > ADDRESS_LIMIT:
            raise BadInputError(f"memory chunk 0x{self.start:x}+0x{self.size:x} is not a valid physical range")
        if self.kind == KIND_RAM:
            if self.source is None:
                raise BadInputError(f"ram chunk at 0x{self.start:x} has no source")
            src_size = getattr(self.source, "size", None)
            if src_size is not None and src_size < self.size:
                raise BadInputError(f"ram chunk 0x{self.start:x}+0x{self.size:x} is larger than its source "
                                    f"(0x{src_size:x} bytes)")

    @property
    def end(self) -> int:
        return self.start + self.size

    def describe(self) -> str:
        return f"{self.kind} 0x{self.start:x}-0x{self.end - 1:x}"


@dataclass
class DumpAttrs:
    format: str = "unknown"
    format_version: str | int | None = None
    arch: str = "s390x"
    page_size: int = PAGE_SIZE
    vmcoreinfo_raw: bytes | None = None
    vmcoreinfo: VmcoreInfo | None = None
    vmcoreinfo_source: str | None = None     # "ELF note", "meminfo entry 0", "lowcore 0xE0C note", ...
    timestamp: datetime | None = None
    complete: bool = True
    incomplete_reason: str | None = None
    origin: str | None = None                # path the dump was read from
    extra: dict = field(default_factory=dict)
    # filtering (makedumpfile -d N): pages left out on purpose are not missing.  `excluded` holds
    # the physical ranges of absent chunks that the dump level left out; a dump with only those
    # absent ranges is complete at its dump level.
    dump_level: int | None = None
    excluded: list = field(default_factory=list)

    def set_vmcoreinfo(self, raw: bytes, source: str) -> None:
        """Record the VMCOREINFO text; PAGESIZE and CRASHTIME fill page_size and timestamp."""
        info = parse_vmcoreinfo(raw)
        self.vmcoreinfo_raw = bytes(raw)
        self.vmcoreinfo = info
        self.vmcoreinfo_source = source
        try:
            ps = info.page_size
        except DumpToolError:
            ps = None
        if ps and 512 <= ps <= (1 << 20) and ps & (ps - 1) == 0:
            self.page_size = ps
        if self.timestamp is None:
            try:
                t = info.crashtime
                if t is not None:
                    self.timestamp = datetime.fromtimestamp(t, timezone.utc)
            except (DumpToolError, ValueError, OverflowError, OSError):
                pass

    @property
    def excluded_pages(self) -> int:
        ps = self.page_size or PAGE_SIZE
        return sum(-(-(e - s) // ps) for s, e in self.excluded)

    def filtered_text(self) -> str | None:
        """'dump level N, M pages excluded (zero, cache, ...)', or None for an unfiltered dump."""
        if not self.dump_level or self.dump_level <= DL_ZERO_ONLY and not self.excluded:
            return None
        classes = ", ".join(name for bit, name in DUMP_LEVEL_CLASSES if self.dump_level & bit)
        return f"dump level {self.dump_level}, {self.excluded_pages} pages excluded ({classes})"

    def mark_incomplete(self, reason: str) -> None:
        self.complete = False
        self.incomplete_reason = reason if not self.incomplete_reason else f"{self.incomplete_reason}; {reason}"

    def to_json(self) -> dict:
        return {
            "format": self.format,
            "format_version": self.format_version,
            "arch": self.arch,
            "page_size": self.page_size,
            "vmcoreinfo_source": self.vmcoreinfo_source,
            "osrelease": self.vmcoreinfo.osrelease if self.vmcoreinfo else None,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "complete": self.complete,
            "incomplete_reason": self.incomplete_reason,
            "dump_level": self.dump_level,
            "excluded_pages": self.excluded_pages,
            "filtered": self.filtered_text(),
            "origin": self.origin,
            "extra": self.extra,
        }


class Dump(Closeable):
    """Memory chunks + CPUs + attributes; reads are physical and lazy.

    Anything with `.size` and `.read(addr, length)` works with meminfo_abi's
    locate/check functions, so they take a Dump directly.
    """

    def __init__(self, chunks: Iterable[MemChunk], cpus: Iterable[CpuRegs] = (), attrs: DumpAttrs | None = None,
                 resources: Iterable[Any] = ()):
        self.chunks: list[MemChunk] = list(chunks)
        self.cpus: list[CpuRegs] = list(cpus)
        self.attrs = attrs or DumpAttrs()
        self._resources = list(resources)       # extra things with close() (files, machines)
        self._closed = False
        prev = None
        for c in self.chunks:
            if not isinstance(c, MemChunk):
                raise BadInputError(f"dump memory must be MemChunks, not {type(c).__name__}")
            if prev is not None and c.start < prev.end:
                what = "overlaps" if c.start >= prev.start else "comes before"
                raise BadInputError(f"memory chunk {c.describe()} {what} chunk {prev.describe()} "
                                    "(chunks must be sorted and must not overlap)")
            prev = c
        self._starts = [c.start for c in self.chunks]
        missing = self.missing_ranges()
        if missing and self.attrs.complete:
            self.attrs.mark_incomplete("missing " + range_text(missing, noun="physical"))

    # -- shape ----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """End of the last chunk: the dumped system's memory size."""
        return self.chunks[-1].end if self.chunks else 0

    @property
    def present_bytes(self) -> int:
        """Bytes of ram and zero chunks (what a writer walks; the progress total)."""
        return sum(c.size for c in self.chunks if c.kind != KIND_ABSENT)

    def absent_ranges(self) -> list[Range]:
        """Every range not in the dump although the system had it: missing or filtered out."""
        return [(c.start, c.end) for c in self.chunks if c.kind == KIND_ABSENT]

    def missing_ranges(self) -> list[Range]:
        """Absent ranges the dump level does not explain: cut short, unreadable, lost."""
        return subtract(self.absent_ranges(), sorted(self.attrs.excluded))

    def is_excluded(self, addr: int) -> bool:
        return any(s <= addr < e for s, e in self.attrs.excluded)

    def chunk_at(self, addr: int) -> MemChunk | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.chunks[i].end:
            return self.chunks[i]
        return None

    def _first_index(self, addr: int) -> int:
        """Index of the first chunk ending after addr."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0 or self.chunks[i].end <= addr:
            i += 1
        return i

    # -- reading --------------------------------------------------------------------------
    def read(self, addr: int, length: int) -> bytes:
        """Physical bytes [addr, addr+length), across chunk borders."""
        _check_int(addr, "address")
        _check_int(length, "length")
        if addr < 0 or length < 0 or addr + length > ADDRESS_LIMIT:
            raise BadInputError(f"physical range 0x{addr:x}+0x{length:x} is not valid")
        if length > MAX_READ:
            raise BadInputError(f"read of 0x{length:x} bytes is larger than 0x{MAX_READ:x}; stream it with iter_data")
        if length == 0:
            return b""
        out = []
        pos, end = addr, addr + length
        i = self._first_index(pos)
        while pos < end:
            c = self.chunks[i] if i < len(self.chunks) else None
            if c is None or c.start > pos:
                stop = min(end, c.start) if c is not None else end
                raise BadInputError(f"physical address 0x{pos:x} is not in the dump (no memory at "
                                    f"0x{pos:x}-0x{stop - 1:x}; dump size 0x{self.size:x})")
            n = min(end, c.end) - pos
            if c.kind == KIND_RAM:
                out.append(c.source.read(pos - c.start, n))
            elif c.kind == KIND_ZERO:
                out.append(bytes(n))
            elif self.is_excluded(pos):
                raise BadInputError(f"physical range 0x{pos:x}-0x{pos + n - 1:x} was filtered out of the dump "
                                    f"(dump level {self.attrs.dump_level})")
            else:
                why = f" ({self.attrs.incomplete_reason})" if self.attrs.incomplete_reason else ""
                raise IncompleteDumpError(f"physical range 0x{pos:x}-0x{pos + n - 1:x} is missing from the "
                                          f"dump{why}")
            pos += n
            i += 1
        return out[0] if len(out) == 1 else b"".join(out)

    def data_ranges(self, start: int = 0, end: int | None = None) -> Iterator[Range]:
        """Physical ranges that may hold non-zero bytes (ram chunks only), merged."""
        end = self.size if end is None else min(end, self.size)
        yield from merge_touching((s, e) for _c, s, e in self._chunk_data(start, end, align=1))

    def _chunk_data(self, start: int, end: int, align: int) -> Iterator[tuple[MemChunk, int, int]]:
        """(chunk, s, e) data ranges per ram chunk, widened to `align` inside the chunk."""
        if start >= end:
            return
        for i in range(self._first_index(start), len(self.chunks)):
            c = self.chunks[i]
            if c.start >= end:
                return
            if c.kind != KIND_RAM:
                continue
            lo, hi = max(start, c.start), min(end, c.end)
            pending: Range | None = None
            for s, e in c.source.data_ranges(lo - c.start, hi - c.start):
                s = max(lo, (c.start + s) // align * align)
                e = min(hi, -(-(c.start + e) // align) * align)
                if s >= e:
                    continue
                if pending and s <= pending[1]:
                    pending = (pending[0], max(pending[1], e))
                    continue
                if pending:
                    yield c, pending[0], pending[1]
                pending = (s, e)
            if pending:
                yield c, pending[0], pending[1]

    def iter_data(self, block_size: int = DEFAULT_BLOCK, start: int = 0,
                  end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(address, bytes) blocks covering every byte that may be non-zero in [start, end).

        Blocks never cross a chunk border, are at most block_size long and start
        on page boundaries except where a chunk does not; nothing outside the
        sources' data ranges is read.  A source with a `read_unit` (bytes) that
        fits in block_size is read along its units instead.
        """
        ps = self.attrs.page_size or PAGE_SIZE
        if block_size <= 0 or block_size % ps:
            raise BadInputError(f"block size {block_size} is not a positive multiple of the page size {ps}")
        end = self.size if end is None else min(end, self.size)
        for c, s, e in self._chunk_data(start, end, align=ps):
            # a source that hands out whole units of its own without a copy (inflated zlib units)
            # is read a unit at a time, along its units
            unit = getattr(c.source, "read_unit", 0)
            bs, base = (unit, c.start) if 0 < unit <= block_size else (block_size, 0)
            pos = s
            while pos < e:
                n = min(e, base + ((pos - base) // bs + 1) * bs) - pos
                yield pos, c.source.read(pos - c.start, n)
                pos += n

    def iter_pages(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(address, bytes) of every page in [start, end) that is not all zero.

        A page cut by an unaligned chunk border comes as its parts.
        """
        ps = self.attrs.page_size or PAGE_SIZE
        for addr, data in self.iter_data(start=start, end=end):
            for s, e in nonzero_ranges(data, ps):
                for off in range(s, e, ps):
                    yield addr + off, data[off:min(e, off + ps)]

    # -- meaning --------------------------------------------------------------------------
    def fill_vmcoreinfo_from_memory(self) -> bool:
        """Find VMCOREINFO in memory (meminfo entry 0 or the note at lowcore 0xE0C) when the
        format brought none; True when the dump has it afterwards."""
        if self.attrs.vmcoreinfo_raw is not None:
            return True
        from meminfo_abi.locate import find_vmcoreinfo

        try:
            found = find_vmcoreinfo(self)
        except DumpToolError as exc:
            self.attrs.extra["vmcoreinfo_error"] = str(exc)
            return False
        if found is None:
            self.attrs.extra["vmcoreinfo_error"] = "no VMCOREINFO through lowcore 0xE18 or 0xE0C"
            return False
        self.attrs.set_vmcoreinfo(found.raw, f"{found.source} at 0x{found.address:x}")
        return True

    @property
    def vmcoreinfo(self) -> dict[str, str] | None:
        """VMCOREINFO as KEY -> value text (found in memory when the format carries none)."""
        self.fill_vmcoreinfo_from_memory()
        return dict(self.attrs.vmcoreinfo.entries) if self.attrs.vmcoreinfo is not None else None

    # -- output ---------------------------------------------------------------------------
    def write(self, path: str | os.PathLike, fmt: str = "elf", progress: Callable[[int], None] | None = None,
              **opts: Any) -> Any:
        """Write this dump in another format: elf, kdump or s390 (vmcore.formats.write_dump)."""
        from vmcore.formats import write_dump
        return write_dump(self, path, fmt, progress=progress, **opts)

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        seen: set[int] = set()
        for c in self.chunks:
            if c.source is not None and id(c.source) not in seen:
                seen.add(id(c.source))
                c.source.close()
        for r in self._resources:
            r.close()


    def __repr__(self) -> str:
        return (f"Dump({self.attrs.format}, {len(self.chunks)} chunks, size 0x{self.size:x}, "
                f"{len(self.cpus)} CPUs{'' if self.attrs.complete else ', incomplete'})")


def copy_memory(dump: Dump, fd: int, spans: Iterable[tuple[int, int, int]],
                progress: Callable[[int], None] | None = None, *, block_size: int = DEFAULT_BLOCK,
                writeback: Writeback | None = None) -> None:
    """Write the memory of `dump` into the output `fd`, sparse: every (start, end, file offset)
    span puts physical [start, end) at file offset + (address - start).  Only the sources' data
    ranges are read and only their non-zero pages written (zero pages, zero chunks and holes
    stay file holes); progress(n) counts every byte of the spans.  The writers of ELF, raw and
    s390 files all copy memory through here (dumpkit.fileio.write_sparse below)."""
    ps = dump.attrs.page_size or PAGE_SIZE

    def blocks() -> Iterator[tuple[int, Any, int]]:
        for start, end, base in spans:
            done = start
            for addr, data in dump.iter_data(block_size, start, end):
                yield base + addr - start, data, addr + len(data) - done
                done = addr + len(data)
            if end > done:
                yield base + done - start, None, end - done

    write_sparse(fd, blocks(), lambda data: nonzero_ranges(data, ps), progress=progress,
                 writeback=Writeback(fd) if writeback is None else writeback, direct=True)


def page_digests(dump: Dump, start: int = 0, end: int | None = None) -> dict[int, str]:
    """sha256 (hex) of every non-zero page in [start, end), keyed by page address.

    All-zero pages, holes and zero chunks are left out, so two dumps of the same
    memory compare equal whatever their formats do with zeros.
    """
    ps = dump.attrs.page_size or PAGE_SIZE
    hashers: dict[int, Any] = {}
    for addr, data in dump.iter_data(start=start, end=end):
        mv = memoryview(data)
        for s, e in nonzero_ranges(mv, ps):
            for off in range(s, e, ps):
                page = (addr + off) // ps * ps
                h = hashers.get(page)
                if h is None:
                    h = hashers[page] = hashlib.sha256()
                h.update(mv[off:min(e, off + ps)])
    return {page: h.hexdigest() for page, h in hashers.items()}
