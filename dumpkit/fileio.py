"""Files that are never half-written: temporary name, fsync, rename; sparse copies.

Every output file is first written as `.NAME.XXXXXXXX.tmp` beside NAME (create_temporary), and
its writer holds an exclusive flock on it until the rename.  A writer killed on the way
(SIGKILL, the host going down) leaves that file - a dump may be gigabytes - and the lock
dies with it, so the next writer of NAME removes every sibling temporary of NAME that
nobody holds locked, and says so on stderr (remove_stale_temporaries).

Outputs go where the user points and nowhere else (atomic_file): a symlink is written
through to its target (the link stays), a FIFO or device is written through as a stream
(formats that need seeking refuse it), `-` is standard output.  Dump files are created
0600, whatever the umask: a dump holds every secret the crashed system had.  check_output
is the CLIs' check before writing: no silent overwrite, and an input is never an output.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import random
import re
import shutil
import signal
import stat
import sys
import threading
from typing import BinaryIO, Callable, Iterable, Iterator

from dumpkit.errors import BadInputError, DumpIOError, UsageError
from dumpkit.parallel import ordered_map
from dumpkit.units import human

# .NAME. + 8 of these + .tmp: the names tempfile.mkstemp made before, so what an older
# version left behind is recognised too.
_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_TEMP_RANDOM = 8
_TEMP_SUFFIX = ".tmp"
_random = random.SystemRandom()
FILE_MODE = 0o600        # outputs are private (makedumpfile creates its dumps 0600 too)
STDOUT = "-"             # the output name that means standard output


class Closeable:
    """An object that holds descriptors until close(); a with block closes it too (the mixin of
    the dump model, the machine and its memory, a device dump)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def temporary_name_pattern(name: str) -> re.Pattern:
    """The names create_temporary gives temporaries of target `name` (and of no other target:
    the random part has a fixed length and no dot)."""
    return re.compile(re.escape(f".{name}.") + f"[{_TEMP_CHARS}]{{{_TEMP_RANDOM}}}" + re.escape(_TEMP_SUFFIX))


def create_temporary(directory: str, name: str, *, is_dir: bool = False) -> tuple[str, int]:
    """Create the temporary file (or directory) for target `name` in `directory`, locked.

    Returns (path, fd): fd holds the exclusive flock and must stay open until the
    temporary is renamed into place or removed.  Stale temporaries of the same target are
    removed first."""
    remove_stale_temporaries(directory, name)
    for _ in range(100):
        rand = "".join(_random.choices(_TEMP_CHARS, k=_TEMP_RANDOM))
        path = os.path.join(directory, f".{name}.{rand}{_TEMP_SUFFIX}")
        try:
            if is_dir:
                os.mkdir(path, 0o700)             # as mkdtemp: the machine directory stays private
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            else:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:
            continue
        if not is_dir:
            with contextlib.suppress(OSError):
                os.fchmod(fd, FILE_MODE)       # 0600 whatever the umask took away
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)     # blocks only while a remover holds it, for a moment
        except OSError:
            pass                               # no locks here: a remover cannot lock it either
        if _same_file(path, fd):
            return path, fd
        # A remover running beside us took it for stale between our create and our lock
        # (it can only be removed unlocked); take another name.
        os.close(fd)
    raise DumpIOError(f"cannot create a temporary file for {name} in {directory}")


def remove_stale_temporaries(directory: str, name: str) -> list[tuple[str, int]]:
    """Remove the temporaries of target `name` in `directory` that no living writer holds
    locked (left by a run that was killed); one line on stderr for each.  Temporaries of
    other targets, locked ones and anything that is not a plain file or directory are never
    touched.  Returns [(file name, bytes freed)]."""
    pattern = temporary_name_pattern(name)
    try:
        entries = [e for e in os.listdir(directory) if pattern.fullmatch(e)]
    except OSError:
        return []
    removed = []
    for entry in sorted(entries):
        path = os.path.join(directory, entry)
        fd = _open_for_lock(path)
        if fd is None:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue                       # a writer is alive (or no locks here: cannot tell)
            if not _same_file(path, fd):       # removed and the name reused meanwhile
                continue
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                freed = _tree_allocated(path)
                shutil.rmtree(path)
            else:
                freed = st.st_blocks * 512
                os.unlink(path)
        except OSError:
            continue
        finally:
            os.close(fd)
        removed.append((entry, freed))
        print(f"removed stale temporary {entry} ({human(freed)}) left by an interrupted run", file=sys.stderr)
    return removed


def _open_for_lock(path: str) -> int | None:
    """An fd to flock `path` through, if it is a plain file or directory we may open."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    if stat.S_ISDIR(st.st_mode):
        tries = [os.O_RDONLY | os.O_DIRECTORY]
    elif stat.S_ISREG(st.st_mode):
        tries = [os.O_RDWR, os.O_RDONLY]       # NFS emulates flock with POSIX locks: needs write
    else:
        return None
    for mode in tries:
        try:
            return os.open(path, mode | flags)
        except PermissionError:
            continue
        except OSError:
            return None
    return None


def _same_file(path: str, fd: int) -> bool:
    try:
        a, b = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _tree_allocated(path: str) -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


_STREAM_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                 stat.S_IFSOCK: "a socket"}


def _stat_output(path: str) -> os.stat_result | None:
    """stat() of an output path through its symlinks; None if nothing is there (a dangling link
    included: it is written through, its target created)."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadInputError(f"output {path}: too many levels of symbolic links") from None
        if exc.errno == errno.ENOTDIR:
            raise BadInputError(f"output {path}: a component of the path is not a directory") from None
        raise DumpIOError(f"cannot use output {path}: {exc.strerror or exc}") from None


def output_kind(path: str | os.PathLike) -> str:
    """What writing `path` means: "stdout" (`-`), "stream" (a FIFO, device or socket, written
    through, sequentially), "file" (an existing regular file) or "new"; a directory is bad input."""
    path = os.fspath(path)
    if path == STDOUT:
        return "stdout"
    if not os.path.basename(path.rstrip("/")) or path.endswith("/") and not os.path.isdir(path):
        raise UsageError(f"output {path!r} names no file")
    st = _stat_output(path)
    if st is None:
        return "new"
    if stat.S_ISDIR(st.st_mode):
        raise BadInputError(f"output {path} is a directory")
    if stat.S_ISREG(st.st_mode):
        return "file"
    return "stream"


def is_stream_output(path) -> bool:
    """Whether a writer to `path` can only write sequentially (stdout, a FIFO, a device)."""
    return not hasattr(path, "write") and output_kind(path) in ("stdout", "stream")


def stream_description(path: str) -> str:
    """'standard output', or 'PATH (a FIFO)' / 'PATH (a character device)' ..."""
    if path == STDOUT:
        return "standard output"
    try:
        what = _STREAM_KINDS.get(stat.S_IFMT(os.stat(path).st_mode), "a stream")
    except OSError:
        what = "a stream"
    return f"{path} ({what})"


def _identity(path: str) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of `path` through its symlinks, and of the files directly in it when it is
    a directory (a machine directory is read as a whole); empty if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return set()
    ids = {(st.st_dev, st.st_ino)}
    if stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(OSError):
            for e in os.scandir(path):
                with contextlib.suppress(OSError):
                    s = e.stat()
                    ids.add((s.st_dev, s.st_ino))
    return ids


def check_output(path: str | os.PathLike, *, force: bool = False, inputs=(), what: str = "output") -> str:
    """What a CLI checks before it writes `path` (one line, exit 2, when refused): the output is
    not the same file as any input (same device and inode, through symlinks and hard links);
    an existing regular file is replaced only with `force`.  Returns output_kind(path)."""
    path = os.fspath(path)
    kind = output_kind(path)
    if kind == "new" or kind == "stdout":
        return kind
    st = os.stat(path)
    me = (st.st_dev, st.st_ino)
    for src in inputs:
        if src is None:
            continue
        for one in ([src] if isinstance(src, (str, os.PathLike)) else src):
            if me in _identity(os.fspath(one)):
                raise UsageError(f"{what} {path} is the input {os.fspath(one)}: refusing to write over what is "
                                 "being read")
    if kind == "file" and not force:
        raise UsageError(f"{what} {path} already exists ({human(st.st_size)}); give --force to replace it")
    return kind


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", *, seekable: bool = True) -> Iterator[BinaryIO]:
    """Open the output `path` where the user points, never anywhere else.

    A regular file (or a new one) is written under a temporary name in the same directory
    (0600), fsync'ed and renamed into place only on success; a symlink is written through to its
    target, which the rename replaces, so the link stays.  A FIFO, device or `-` (standard output)
    is written through, in order: a writer that needs to seek (`seekable`) is refused there
    (UsageError, exit 2) before anything is written."""
    path = os.fspath(path)
    kind = output_kind(path)
    if kind in ("stdout", "stream"):
        if seekable:
            raise UsageError(f"cannot write this format to {stream_description(path)}: it is written with seeks "
                             "and needs a regular file (kdump streams there in makedumpfile's flattened format)")
        with _stream(path, mode, kind) as fh:
            yield fh
        return
    target = os.path.realpath(path) if os.path.islink(path) else path
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise BadInputError(f"output directory {directory} does not exist")
    tmp, fh, lock = None, None, -1
    try:
        with signals_held():                  # a signal in here would leave a temporary nobody removes
            tmp, fd = create_temporary(directory, os.path.basename(target))
            try:
                lock = os.dup(fd)              # keeps the flock until after the rename
                fh = os.fdopen(fd, mode)
            except BaseException:
                os.close(fd)
                raise
        yield fh
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        os.replace(tmp, target)
        fsync_dir(directory)
    except BaseException:
        with signals_held():
            if fh is not None:
                with contextlib.suppress(OSError):
                    fh.close()
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        raise
    finally:
        if lock >= 0:
            os.close(lock)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP back while a temporary is removed (delivered right after)."""
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _stream(path: str, mode: str, kind: str) -> Iterator[BinaryIO]:
    """A FIFO, device or standard output, written through (no temporary, nothing renamed)."""
    if kind == "stdout":
        sys.stdout.flush()
        fd = os.dup(sys.stdout.fileno())
        if os.isatty(fd):
            os.close(fd)
            raise UsageError("standard output is a terminal: redirect it to a file or a pipe")
    else:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)     # a FIFO: waits for its reader, as a shell would
        except OSError as exc:
            raise DumpIOError(f"cannot open {path}: {exc.strerror or exc}") from None
    fh = os.fdopen(fd, mode)
    try:
        yield fh
        fh.flush()
        with contextlib.suppress(OSError):     # pipes and character devices take no fsync (EINVAL)
            os.fsync(fh.fileno())
        fh.close()
    except BaseException:
        with contextlib.suppress(OSError):     # the error that stopped the writer is the one to report
            fh.close()
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path, "w") as fh:
        fh.write(text)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[str]:
    """Build a directory under a temporary name beside `path`; rename it into place on success."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise BadInputError(f"parent directory {parent} does not exist")
    if os.path.lexists(path):
        raise BadInputError(f"{path} already exists")
    tmp, lock = create_temporary(parent, os.path.basename(path), is_dir=True)
    try:
        yield tmp
        os.rename(tmp, path)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(lock)


def fsync_dir(directory: str) -> None:
    """fsync a directory (a rename or a new name in it is durable); errors are ignored."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def data_extents(fd: int, size: int, start: int = 0) -> Iterator[tuple[int, int]]:
    """(start, end) of the data extents of a file in [start, size) (SEEK_DATA/SEEK_HOLE); holes
    read as zeros.  Where the file system cannot tell, the rest is all data."""
    pos = start
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:        # ENXIO: nothing but a hole up to the end
                yield pos, size
            return
        if data >= size:
            return
        try:
            hole = os.lseek(fd, data, os.SEEK_HOLE)
        except OSError:
            hole = size
        yield data, min(hole, size)
        pos = hole


def os_open_input(path: str | os.PathLike, flags: int = os.O_RDONLY, noun: str = "file") -> int:
    """os.open for an input that never waits: opened without blocking, then a FIFO, socket or
    character device is refused at once (BadInputError); the OS's refusals are raised as they are."""
    path = os.fspath(path)
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        check_seekable_input(path, fd, noun)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_input(path: str, noun: str = "file", verb: str | None = None) -> int:
    """A read-only fd on `path`.  A missing path, or a directory the OS refuses, is bad input
    (one line, "not a NOUN"); so is a FIFO, socket or character device, refused at once (opened
    without blocking: a FIFO nobody writes never hangs a reader); any other refusal is a
    DumpIOError "cannot VERB PATH: reason" when `verb` is given, else the OSError itself."""
    try:
        return os_open_input(path, noun=noun)
    except FileNotFoundError:
        raise BadInputError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise BadInputError(f"{path} is a directory, not a {noun}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadInputError(f"{path}: too many levels of symbolic links") from None
        if verb is None:
            raise
        raise DumpIOError(f"cannot {verb} {path}: {exc.strerror or exc}") from None


def check_seekable_input(path: str, fd: int, noun: str = "file") -> None:
    """Refuse (bad input, one line) an input that cannot be read at any offset: a FIFO, socket or
    character device (stdin among them).  Regular files, directories and block devices pass."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode):
        what = _STREAM_KINDS.get(stat.S_IFMT(mode), "a stream")
        raise BadInputError(f"{path} is {what}, which cannot be read at any offset: give the {noun} as a "
                            "regular file or a block device")


def open_input_file(path: str | os.PathLike, noun: str = "file", verb: str = "open") -> BinaryIO:
    """open(path, "rb") for an input, with open_input's checks (no FIFO waits forever)."""
    return os.fdopen(open_input(os.fspath(path), noun, verb), "rb")


def pwrite_all(fd: int, data, offset: int) -> None:
    """Write all of `data` at `offset` (os.pwrite may write less than it was given)."""
    mv = memoryview(data).cast("B")
    while mv:
        n = os.pwrite(fd, mv, offset)
        mv = mv[n:]
        offset += n


def read_at(fd: int, length: int, offset: int, path: str) -> bytes:
    """pread_full, an OSError made a DumpIOError naming `path` and the offset (exit 5)."""
    try:
        return pread_full(fd, length, offset)
    except OSError as exc:
        raise DumpIOError(f"{path}: read at file offset 0x{offset:x} failed: {exc.strerror or exc}") from None


def pread_full(fd: int, length: int, offset: int) -> bytes:
    """Up to `length` bytes at `offset`: fewer only where the file ends (os.pread may return
    less than asked, and at most 2 GiB at a time)."""
    parts = []
    while length > 0:
        data = os.pread(fd, min(length, 1 << 30), offset)
        if not data:
            break
        parts.append(data)
        offset += len(data)
        length -= len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _whole_if_nonzero(data) -> list[tuple[int, int]]:
    """The runs of a block worth writing when nothing finer is known: all of it, unless all zero."""
    raw = data if isinstance(data, (bytes, bytearray)) else bytes(data)
    return [(0, len(raw))] if raw.count(0) != len(raw) else []


DIRECT_MIN = 64 << 10            # runs this long go past the page cache (write_sparse direct=True)


class DirectWriter:
    """The O_DIRECT side of an output file: the aligned middle of a large write goes from an
    aligned buffer of the writing thread straight to the device, past the page cache (no page
    cache pages to fill, account and write back: a durable copy at a fraction of the CPU).
    Where the file system has no O_DIRECT (tmpfs) or refuses a write, less is written this way
    and the caller writes the rest through the page cache; the output's fsync makes both
    durable."""

    ALIGN = 4096                     # offsets, lengths and buffers (any logical block size up to it)
    BOUNCE = 4 << 20

    def __init__(self, fd: int):
        self.fd: int | None = None
        self.refused = False
        self._local = threading.local()
        flag = getattr(os, "O_DIRECT", 0)
        if flag and os.path.isdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                self.fd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | flag | os.O_CLOEXEC)

    def write(self, data: memoryview, offset: int) -> int:
        """Write `data` (whole ALIGN blocks at an ALIGN offset) directly; the bytes written so from
        its start (0 where O_DIRECT is not to be had: then never again for this file).  Threads
        may call it at once: the descriptor stays open until close(), after the last write."""
        pos = 0
        while self.fd is not None and not self.refused and pos < len(data):
            buf = getattr(self._local, "buf", None)
            if buf is None:
                buf = self._local.buf = memoryview(mmap.mmap(-1, self.BOUNCE))   # page aligned
            n = min(self.BOUNCE, len(data) - pos)
            buf[:n] = data[pos:pos + n]
            try:
                done = os.pwrite(self.fd, buf[:n], offset + pos)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.refused = True      # the file system takes no direct writes after all
                break
            pos += done - done % self.ALIGN
            if done != n:
                break                    # short (the device is full?): the rest through the cache
        return pos

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


def write_sparse(fd: int, blocks: Iterable[tuple[int, object, int]], nonzero: Callable | None = None, *,
                 progress: Callable[[int], None] | None = None, writeback: "Writeback | None" = None,
                 workers: int = 2, direct: bool = False) -> None:
    """The one sparse copy of the suite: every writer of memory or of a file's data uses it.

    `blocks` yields (file offset, data, bytes done): `data` (a buffer, or None for a stretch
    that only counts as done) is written at the offset, but only its `nonzero(data)` runs (a
    list of (start, end); default: all of it unless it is all zero), so zero pages stay holes;
    progress(bytes done) follows in order.  Writing runs on `workers` threads (pwrite releases
    the GIL) while the next blocks are read, two blocks in flight per worker; what was written
    is handed to `writeback` in order, so the fsync at the end finds little left to do.
    `direct`: runs of DIRECT_MIN bytes or more go past the page cache where the file system
    allows (DirectWriter), for outputs that are fsynced at the end anyway."""
    find = nonzero or _whole_if_nonzero
    direct_out = DirectWriter(fd) if direct else None
    align = DirectWriter.ALIGN

    def put(block: tuple[int, object, int]) -> tuple[list[tuple[int, int]], int]:
        offset, data, done = block
        written = []
        if data is not None:
            mv = memoryview(data).cast("B")
            for s, e in find(data):
                if direct_out is not None and e - s >= DIRECT_MIN:
                    a = min(e, s + (-(offset + s)) % align)          # the aligned middle [a, b)
                    b = max(a, e - (offset + e) % align)
                    n = direct_out.write(mv[a:b], offset + a) if b > a else 0
                    if n:
                        for x, y in ((s, a), (a + n, e)):            # edges through the cache
                            if y > x:
                                pwrite_all(fd, mv[x:y], offset + x)
                                written.append((offset + x, y - x))
                        continue
                pwrite_all(fd, mv[s:e], offset + s)
                written.append((offset + s, e - s))
        return written, done

    try:
        with contextlib.closing(ordered_map(put, blocks, workers)) as results:
            for written, done in results:
                if writeback is not None:
                    for offset, length in written:
                        writeback.wrote(offset, length)
                if progress and done:
                    progress(done)
    finally:
        if direct_out is not None:
            direct_out.close()
    if writeback is not None:
        writeback.flush()


def sparse_copy(src: str, dst_fh: BinaryIO, chunk: int = 1 << 22, progress=None) -> int:
    """Copy `src` into the open file `dst_fh`, keeping holes (and making all-zero chunks holes);
    returns the size copied."""
    fd = open_input(src)
    try:
        size = os.fstat(fd).st_size
        out = dst_fh.fileno()
        os.ftruncate(out, size)

        def blocks() -> Iterator[tuple[int, bytes, int]]:
            for start, end in data_extents(fd, size):
                for pos in range(start, end, chunk):
                    data = pread_full(fd, min(chunk, end - pos), pos)
                    if len(data) < min(chunk, end - pos):
                        raise DumpIOError(f"{src} ended early at offset {pos + len(data)}")
                    yield pos, data, len(data)

        write_sparse(out, blocks(), progress=progress, writeback=Writeback(out))
        return size
    finally:
        os.close(fd)


def _libc_sync_file_range():
    """libc's sync_file_range (Linux), or None."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        return fn
    except (OSError, AttributeError):
        return None


_SYNC_FILE_RANGE = _libc_sync_file_range()
SYNC_FILE_RANGE_WRITE = 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_COLLAPSE_RANGE = 0x01, 0x02, 0x08


def _fallocate(fd: int, mode: int, offset: int, length: int) -> bool:
    """libc's fallocate(2) with a mode; False where there is none or the file system refuses."""
    try:
        import ctypes

        fallocate = ctypes.CDLL(None, use_errno=True).fallocate
        fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    except (OSError, AttributeError):
        return False
    return fallocate(fd, mode, offset, length) == 0


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Make [offset, offset + length) a hole, the file's size kept; False where the file system
    cannot (the caller writes zeros then)."""
    return _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)


def collapse_range(fd: int, offset: int, length: int) -> bool:
    """Remove [offset, offset + length) from the file, what follows moving down (fallocate's
    COLLAPSE_RANGE: ext4 and XFS move extents, no data is copied; block-aligned ranges that end
    before the end of the file).  False where the file system cannot: nothing changed then."""
    return _fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, offset, length)


def start_writeback(fd: int, offset: int, length: int, drop: bool = False) -> None:
    """Start the kernel's writeback of [offset, offset + length) without waiting for it.

    `drop` also asks the kernel to forget the pages once clean (POSIX_FADV_DONTNEED, which
    starts writeback itself): for outputs nobody reads back soon, so a dump does not fill the
    page cache.  Otherwise sync_file_range(SYNC_FILE_RANGE_WRITE) keeps them cached.  Errors
    do not matter here: the fsync that follows reports them."""
    with contextlib.suppress(OSError, AttributeError):
        if drop or _SYNC_FILE_RANGE is None:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        else:
            _SYNC_FILE_RANGE(fd, offset, length, SYNC_FILE_RANGE_WRITE)


class Writeback:
    """Hands written ranges of a big output to writeback as they accumulate (every `chunk`
    bytes), so the fsync before the rename, the end marker or the return finds little left to
    do.  The one writeback helper of the suite: dump writers (drop=True, see start_writeback)
    and the memory image of a kexec load (drop=False) use it."""

    def __init__(self, fd: int, chunk: int = 64 << 20, drop: bool = True):
        self.fd, self.chunk, self.drop = fd, chunk, drop
        self._low: int | None = None
        self._high = 0
        self._dirty = 0

    def wrote(self, offset: int, length: int) -> None:
        self._low = offset if self._low is None else min(self._low, offset)
        self._high = max(self._high, offset + length)
        self._dirty += length
        if self._dirty >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if self._low is not None:
            start_writeback(self.fd, self._low, self._high - self._low, self.drop)
        self._low, self._high, self._dirty = None, 0, 0
