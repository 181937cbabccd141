"""`vmcore mount`: any dump the readers accept as a read-only file DIR/dump.elf (or, with -f kdump,
DIR/dump.kdump, with -f s390, DIR/dump.s390), made on demand.

The idea of `zgetdump -m`: no copy and no tool that needs to know the source format.  At mount
time only the headers are computed: the ELF headers and notes (the writer's own layout,
vmcore.formats.elf), the kdump file's header, sub-header and notes with the page runs its
bitmaps and descriptors are computed from per read (uncompressed pages: a compressed file's
descriptors hold each page's compressed size and offset, known only after compressing every
page before it; `vmcore convert -f kdump --compress none` writes the same file), or the flat
s390 dump's header, its end marker and the CPUs' save areas
laid over their lowcores (as vmcore.formats.s390's writer does).  Every read of the file is then
served from the dump model: header bytes from memory, memory bytes from the chunks' sources
(a device, a volume set, a compressed dump inflates just the units a read touches), zero chunks
and the gaps between segments as zeros.  The file's bytes are those `vmcore convert -f FMT`
writes.  A source that fails a read answers that read with EIO; the mount goes on.

Compressed sources are read in their own units, and the units inflated for one read are kept
for the next in an LRU bounded by bytes (`--cache-size`, 64 MiB by default): the 1 MiB zlib
units of an extended s390 dump, the pages of a kdump-compressed file.  A read inflates just the
units it touches (no read-ahead: a page costs its unit); every other source is read as asked
(the kernel's page cache keeps plain files).

The FUSE side uses mfusepy (the optional extra `[mount]`, over the system's libfuse3).  The mount
runs in a background process of its own session, so it outlives the shell that started it;
`vmcore umount DIR` ends it.
"""
from __future__ import annotations

import bisect
import errno
from collections import OrderedDict
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from typing import Any, Callable

from dumpkit.errors import BadInputError, DumpToolError, UnsupportedError, UsageError
from vmcore.formats.elf import file_head, plan_layout
from vmcore.model import KIND_RAM, Dump, MemChunk

FILE_NAMES = {"elf": "dump.elf", "kdump": "dump.kdump", "s390": "dump.s390"}
DEFAULT_CACHE = 64 << 20                    # bytes of inflated units a mount keeps
ENTRY_COST = 160                            # what keeping one unit costs beyond its bytes (key, links)


class ByteLru:
    """Values by key; once their bytes pass `budget`, the least recently used go first.
    A value larger than the whole budget is handed out but not kept (budget 0: no cache)."""

    def __init__(self, budget: int = DEFAULT_CACHE):
        if budget < 0:
            raise UsageError(f"cache size {budget} is negative")
        self.budget = budget
        self.used = 0
        self.items: OrderedDict[Any, bytes] = OrderedDict()
        self.hits = self.misses = self.dropped = 0

    def get(self, key: Any) -> bytes | None:
        value = self.items.get(key)
        if value is None:
            self.misses += 1
            return None
        self.items.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Any, value: bytes) -> None:
        if len(value) + ENTRY_COST > self.budget or key in self.items:
            return
        self.items[key] = value
        self.used += len(value) + ENTRY_COST
        while self.used > self.budget:
            _k, old = self.items.popitem(last=False)
            self.used -= len(old) + ENTRY_COST
            self.dropped += 1

    def stats(self) -> dict:
        return {"budget": self.budget, "bytes": self.used, "units": len(self.items), "hits": self.hits,
                "misses": self.misses, "dropped": self.dropped}


def _units_of(source: Any) -> tuple[Any, int, int, Callable[[int, int], list[bytes]]] | None:
    """(unit owner, offset of the source in it, unit size, load(first, count) -> units) for a
    source whose bytes are inflated unit by unit (MemorySource.units, vmcore/model.py); None for
    one read as it is."""
    units = getattr(source, "units", None)
    return units() if units is not None else None


class ChunkReader:
    """Reads one RAM chunk for the view: through the unit cache when its source inflates units."""

    def __init__(self, chunk: MemChunk, cache: ByteLru):
        self.chunk = chunk
        self.cache = cache
        self.units = _units_of(chunk.source)

    def read(self, offset: int, length: int) -> bytes:
        if self.units is None:
            return self.chunk.source.read(offset, length)
        owner, base, unit, load = self.units
        a = base + offset
        first, last = a // unit, (a + length - 1) // unit
        got: dict[int, bytes] = {}
        missing: list[int] = []
        for i in range(first, last + 1):
            value = self.cache.get((id(owner), i))
            if value is None:
                missing.append(i)
            else:
                got[i] = value
        run_start = 0
        for j in range(1, len(missing) + 1):         # consecutive missing units load in one call
            if j == len(missing) or missing[j] != missing[j - 1] + 1:
                i0 = missing[run_start]
                for k, value in enumerate(load(i0, j - run_start)):
                    got[i0 + k] = value
                    self.cache.put((id(owner), i0 + k), value)
                run_start = j
        data = b"".join(got[i] for i in range(first, last + 1))
        s = a - first * unit
        if s + length > len(data):
            raise DumpToolError(f"{getattr(self.chunk.source, 'name', 'source')}: unit {first} is short")
        return data[s:s + length]


class _Memory:
    """The RAM chunks of a dump, each read through its ChunkReader (made on first use), under
    one lock: the readers keep file positions and caches."""

    def __init__(self, chunks: list[MemChunk], cache_size: int):
        self.chunks = chunks
        self.cache = ByteLru(cache_size)
        self._readers: dict[int, ChunkReader] = {}
        self._lock = threading.Lock()
        self._starts: list[int] | None = None

    def reader(self, i: int) -> ChunkReader:
        r = self._readers.get(i)
        if r is None:
            r = self._readers[i] = ChunkReader(self.chunks[i], self.cache)
        return r

    def read(self, i: int, offset: int, length: int) -> bytes:
        with self._lock:
            return self.reader(i).read(offset, length)

    def fill(self, out: bytearray, at: int, a: int, b: int) -> None:
        """Memory [a, b) into out[at:]: what the chunks hold; everything else stays as it is."""
        if self._starts is None:
            self._starts = [c.start for c in self.chunks]
        i = max(bisect.bisect_right(self._starts, a) - 1, 0)
        while i < len(self.chunks) and self.chunks[i].start < b:
            c = self.chunks[i]
            s, e = max(a, c.start), min(b, c.end)
            if s < e:
                out[at + s - a:at + e - a] = self.read(i, s - c.start, e - s)
            i += 1


class KdumpView:
    """The bytes `vmcore convert -f kdump --compress none` would write, computed for each read:
    the header, sub-header and notes from memory, bitmaps and page descriptors from the page runs
    (vmcore.formats.kdump.lazy.LazyKdump), the shared zero page, then the data pages read from
    the dump's RAM chunks.  A dump with memory left out is served as `--allow-incomplete` writes
    it: flagged incomplete, its missing pages with empty descriptors."""

    def __init__(self, dump: Dump, cache_size: int = DEFAULT_CACHE):
        from vmcore.formats.kdump.lazy import LazyKdump
        self.dump = dump
        self.plan = LazyKdump(dump, allow_incomplete=True)      # flagged, as the ELF view keeps the gaps
        self.size = self.plan.size
        self.memory = _Memory([c for c in dump.chunks if c.kind == KIND_RAM], cache_size)
        self.cache = self.memory.cache

    def read(self, offset: int, length: int) -> bytes:
        from meminfo_abi.diskdump import PAGE_DESC_SIZE
        plan, lay, ps = self.plan, self.plan.lay, self.plan.ps
        end = min(offset + length, self.size)
        if offset < 0 or offset >= end:
            return b""
        out = bytearray(end - offset)

        def region(lo: int, hi: int) -> tuple[int, int]:
            return max(offset, lo), min(end, hi)

        s, e = region(0, lay.offset_bitmap1)
        if s < e:
            out[s - offset:e - offset] = plan.head[s:e]
        for which, base in ((1, lay.offset_bitmap1), (2, lay.offset_bitmap2)):
            s, e = region(base, base + plan.half)
            if s < e:
                out[s - offset:e - offset] = plan.bitmap(which, s - base, e - s)
        s, e = region(lay.offset_desc, lay.offset_data)
        if s < e:
            r0, r1 = (s - lay.offset_desc) // PAGE_DESC_SIZE, -(-(e - lay.offset_desc) // PAGE_DESC_SIZE)
            descs = plan.descriptors(r0, r1 - r0)
            at = lay.offset_desc + r0 * PAGE_DESC_SIZE
            out[s - offset:e - offset] = descs[s - at:e - at]
        base = lay.offset_data + ps                 # the zero page stays zero; the data pages follow
        s, e = region(base, self.size)
        if s < e:
            d0, d1 = (s - base) // ps, -(-(e - base) // ps)
            pos = base + d0 * ps                    # file offset of the run being filled
            for a, b in plan.data_pfns(d0, d1 - d0):
                lo, hi = max(s, pos), min(e, pos + (b - a) * ps)
                self.memory.fill(out, lo - offset, a * ps + lo - pos, a * ps + hi - pos)
                pos += (b - a) * ps
        return bytes(out)


class ElfView:
    """The bytes `vmcore convert -f elf` would write, computed for each read."""

    def __init__(self, dump: Dump, cache_size: int = DEFAULT_CACHE):
        self.dump = dump
        lay = plan_layout(dump)
        self.head = file_head(dump, lay) + lay.notes
        self.size = lay.file_size
        self.loads = lay.loads                      # (chunk, file offset), in file order
        self._offsets = [off for _c, off in self.loads]
        self.memory = _Memory([c for c, _off in self.loads], cache_size)
        self.cache = self.memory.cache

    def _reader(self, i: int) -> ChunkReader:
        return self.memory.reader(i)

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        if offset < 0 or offset >= end:
            return b""
        out = bytearray(end - offset)
        if offset < len(self.head):
            piece = self.head[offset:end]
            out[:len(piece)] = piece
        i = max(bisect.bisect_right(self._offsets, offset) - 1, 0)
        while i < len(self.loads) and self.loads[i][1] < end:
            chunk, off = self.loads[i]
            s, e = max(offset, off), min(end, off + chunk.size)
            if s < e and chunk.kind == KIND_RAM:
                out[s - offset:e - offset] = self.memory.read(i, s - off, e - s)
            i += 1
        return bytes(out)


class S390View:
    """The bytes `vmcore convert -f s390` would write (the flat s390 dump), computed for each read:
    header, memory at file offset header + address (gaps as zeros, the CPUs' save areas laid
    over it), end marker."""

    def __init__(self, dump: Dump, cache_size: int = DEFAULT_CACHE):
        from meminfo_abi.s390_dump import DF_S390_HDR_SIZE, build_end_marker
        from vmcore.formats.s390 import plan_s390, refuse_absent
        self.dump = dump
        refuse_absent(dump, "mount it as ELF, -f elf, to keep the gap")
        plan = plan_s390(dump)
        header, self.mem_size, self.overlays = plan.header, plan.mem_size, plan.overlays
        self.tail = build_end_marker(plan.end_tod) if dump.attrs.complete else b""
        self.head_size = DF_S390_HDR_SIZE
        self.head = header.ljust(self.head_size, b"\0")
        self.size = self.head_size + self.mem_size + len(self.tail)
        self.memory = _Memory([c for c in dump.chunks if c.kind == KIND_RAM], cache_size)
        self.cache = self.memory.cache

    def _memory(self, out: bytearray, at: int, a: int, b: int) -> None:
        """Memory [a, b) into out[at:]: the RAM chunks, the overlays; everything else stays zero."""
        self.memory.fill(out, at, a, b)
        for addr, data in self.overlays:
            s, e = max(a, addr), min(b, addr + len(data))
            if s < e:
                out[at + s - a:at + e - a] = data[s - addr:e - addr]

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        if offset < 0 or offset >= end:
            return b""
        out = bytearray(end - offset)
        if offset < self.head_size:
            piece = self.head[offset:end]
            out[:len(piece)] = piece
        mem_end = self.head_size + self.mem_size
        s, e = max(offset, self.head_size), min(end, mem_end)
        if s < e:
            self._memory(out, s - offset, s - self.head_size, e - self.head_size)
        if end > mem_end:
            s = max(offset, mem_end)
            out[s - offset:] = self.tail[s - mem_end:end - mem_end]
        return bytes(out)


VIEWS = {"elf": ElfView, "kdump": KdumpView, "s390": S390View}


def _operations(view: ElfView | KdumpView | S390View, name: str, ready: Callable[[], None]):
    import mfusepy

    now = time.time()
    file_attrs = {"st_mode": stat.S_IFREG | 0o400, "st_nlink": 1, "st_size": view.size,
                  "st_uid": os.getuid(), "st_gid": os.getgid(),
                  "st_atime": now, "st_mtime": now, "st_ctime": now, "st_blocks": (view.size + 511) // 512}
    dir_attrs = {"st_mode": stat.S_IFDIR | 0o500, "st_nlink": 2, "st_uid": os.getuid(), "st_gid": os.getgid(),
                 "st_atime": now, "st_mtime": now, "st_ctime": now}

    class DumpFS(mfusepy.Operations):
        use_ns = False

        def init(self, path):
            ready()

        def getattr(self, path, fh=None):
            if path == "/":
                return dir_attrs
            if path == "/" + name:
                return file_attrs
            raise mfusepy.FuseOSError(errno.ENOENT)

        def readdir(self, path, fh):
            return [".", "..", name]

        def open(self, path, flags):
            if path != "/" + name:
                raise mfusepy.FuseOSError(errno.ENOENT)
            if flags & (os.O_WRONLY | os.O_RDWR):
                raise mfusepy.FuseOSError(errno.EROFS)
            return 0

        def read(self, path, size, offset, fh):
            try:
                return view.read(offset, size)
            except (DumpToolError, OSError):
                raise mfusepy.FuseOSError(errno.EIO) from None

    return DumpFS()


def _check_mountpoint(directory: str) -> str:
    directory = os.path.abspath(directory)
    if not os.path.isdir(directory):
        raise UsageError(f"mount point {directory} is not a directory")
    if os.path.ismount(directory):
        raise UsageError(f"{directory} is already a mount point (vmcore umount {directory})")
    if os.listdir(directory):
        raise UsageError(f"mount point {directory} is not empty")
    return directory


def _need_fuse():
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        raise UnsupportedError("vmcore mount needs mfusepy and libfuse3: pip install 's390-dumptools[mount]' "
                               f"and Debian's fuse3 ({exc})") from None
    if not os.path.exists("/dev/fuse"):
        raise UnsupportedError("vmcore mount needs /dev/fuse (the fuse kernel module)")


def mount(open_dump: Callable[[], Dump], directory: str, fmt: str = "elf", foreground: bool = False,
          cache_size: int = DEFAULT_CACHE) -> dict:
    """Mount the dump `open_dump()` gives at `directory`; return once the file can be read.
    `cache_size`: bytes of inflated units kept between reads (0: none).

    In the background (the default) a child process in a session of its own opens the dump
    and serves it; the parent waits for its word (mounted, or the one-line error) and returns."""
    if fmt not in FILE_NAMES:
        raise UsageError(f"-f {fmt}: a mount shows {', '.join(FILE_NAMES)}")
    ByteLru(cache_size)                          # a bad size is a usage error here, not in the child
    directory = _check_mountpoint(directory)
    _need_fuse()
    name = FILE_NAMES[fmt]
    if foreground:
        _serve(open_dump, directory, name, lambda: None, cache_size, fmt)
        return {"mountpoint": directory, "file": os.path.join(directory, name)}
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:                                 # the mount process
        os.close(rfd)
        os.setsid()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        code = 0
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):               # errors travel through the pipe, not the terminal
                os.dup2(devnull, fd)

            def ready() -> None:
                os.write(wfd, b"ok\n")
                os.close(wfd)

            _serve(open_dump, directory, name, ready, cache_size, fmt)
        except BaseException as exc:              # reported through the pipe, one line
            code = getattr(exc, "exit_code", 3)
            try:
                os.write(wfd, f"{code} {' '.join(str(exc).split()) or type(exc).__name__}\n".encode())
            except OSError:
                pass
        os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as fh:
        word = fh.readline().decode(errors="replace").strip()
    if word != "ok":
        os.waitpid(pid, 0)
        code, _, message = word.partition(" ")
        err = DumpToolError(message or "the mount process ended without a word")
        err.exit_code = int(code) if code.isdigit() else 3
        raise err
    return {"mountpoint": directory, "file": os.path.join(directory, name), "pid": pid}


def _serve(open_dump: Callable[[], Dump], directory: str, name: str, ready: Callable[[], None],
           cache_size: int = DEFAULT_CACHE, fmt: str = "elf") -> None:
    import mfusepy
    dump = open_dump()
    try:
        view = VIEWS[fmt](dump, cache_size)
        ops = _operations(view, name, ready)
        mfusepy.FUSE(ops, directory, foreground=True, ro=True, nothreads=False,
                     fsname="vmcore", subtype="vmcore", default_permissions=True)
    finally:
        dump.close()


def umount(directory: str, timeout: float = 10.0) -> dict:
    """Unmount a `vmcore mount`; its process ends with it."""
    directory = os.path.abspath(directory)
    if not os.path.ismount(directory):
        raise UsageError(f"{directory} is not mounted")
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    cmd = [tool, "-u", directory] if tool else ["umount", directory]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BadInputError(f"cannot unmount {directory}: {' '.join(proc.stderr.split()) or proc.returncode}")
    deadline = time.monotonic() + timeout
    while os.path.ismount(directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"mountpoint": directory, "unmounted": not os.path.ismount(directory)}
