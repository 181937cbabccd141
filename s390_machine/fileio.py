"""Files that are never half-written: temporary name, fsync, rename; sparse copies."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import BinaryIO, Iterator

from meminfo_abi.errors import BadInputError, DumpIOError


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[BinaryIO]:
    """Write `path` under a temporary name in the same directory; rename only on success."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise BadInputError(f"output directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())       # as if created with open(): mkstemp says 0600
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
    try:
        yield tmp
        os.rename(tmp, path)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


def sparse_copy(src: str, dst_fh: BinaryIO, chunk: int = 1 << 22, progress=None) -> int:
    """Copy `src` into the open file `dst_fh`, keeping holes; returns the size copied."""
    try:
        fd = os.open(src, os.O_RDONLY)
    except FileNotFoundError:
        raise BadInputError(f"{src} does not exist") from None
    except IsADirectoryError:
        raise BadInputError(f"{src} is a directory, not a file") from None
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
