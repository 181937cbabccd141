"""Files that are never half-written: temporary name, fsync, rename; sparse copies.

Every output is first written as `.NAME.XXXXXXXX.tmp` beside NAME (create_temporary), and
its writer holds an exclusive flock on it until the rename.  A writer killed on the way
(SIGKILL, the host going down) leaves that file - a dump may be gigabytes - and the lock
dies with it, so the next writer of NAME removes every sibling temporary of NAME that
nobody holds locked, and says so on stderr (remove_stale_temporaries).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import shutil
import stat
import sys
from typing import BinaryIO, Iterator

from meminfo_abi.errors import BadInputError, DumpIOError
from s390_machine.units import human

# .NAME. + 8 of these + .tmp: the names tempfile.mkstemp made before, so what an older
# version left behind is recognised too.
_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_TEMP_RANDOM = 8
_TEMP_SUFFIX = ".tmp"
_random = random.SystemRandom()


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
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
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


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[BinaryIO]:
    """Write `path` under a temporary name in the same directory; rename only on success."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise BadInputError(f"output directory {directory} does not exist")
    tmp, fd = create_temporary(directory, os.path.basename(path))
    lock = os.dup(fd)                          # keeps the flock until after the rename
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(lock)


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
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(lock)


def _fsync_dir(directory: str) -> None:
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


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the data extents of a file (SEEK_DATA/SEEK_HOLE)."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size)
        pos = end


def open_input(path: str, noun: str = "file", verb: str | None = None) -> int:
    """A read-only fd on `path`.  A missing path, or a directory the OS refuses, is bad input
    (one line, "not a NOUN"); any other refusal is a DumpIOError "cannot VERB PATH: reason"
    when `verb` is given, else the OSError itself."""
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise BadInputError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise BadInputError(f"{path} is a directory, not a {noun}") from None
    except OSError as exc:
        if verb is None:
            raise
        raise DumpIOError(f"cannot {verb} {path}: {exc.strerror or exc}") from None


def pwrite_all(fd: int, data, offset: int) -> None:
    """Write all of `data` at `offset` (os.pwrite may write less than it was given)."""
    mv = memoryview(data)
    while mv:
        n = os.pwrite(fd, mv, offset)
        mv = mv[n:]
        offset += n


def sparse_copy(src: str, dst_fh: BinaryIO, chunk: int = 1 << 22, progress=None) -> int:
    """Copy `src` into the open file `dst_fh`, keeping holes; returns the size copied."""
    fd = open_input(src)
    try:
        size = os.fstat(fd).st_size
        out = dst_fh.fileno()
        os.ftruncate(out, size)
        for start, end in data_extents(fd, size):
            pos = start
            while pos < end:
                n = min(chunk, end - pos)
                data = os.pread(fd, n, pos)
                if not data:
                    raise DumpIOError(f"{src} ended early at offset {pos}")
                if data.count(0) != len(data):
                    os.pwrite(out, data, pos)
                if progress:
                    progress(len(data))
                pos += len(data)
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
