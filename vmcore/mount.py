"""`vmcore mount`: any dump the readers accept as a read-only file DIR/dump.elf, made on demand.

The idea of `zgetdump -m`: no copy and no tool that needs to know the source format.  At mount
time only the ELF headers and notes are computed (the writer's own layout, vmcore.formats.elf);
every read of the file is served from the dump model: header bytes from memory, PT_LOAD bytes
from `Dump.read` of the source (a device, a volume set, a compressed dump inflates just the
units a read touches), zero chunks and the gaps between segments as zeros.  A source that fails
a read answers that read with EIO; the mount goes on.

The FUSE side uses mfusepy (the optional extra `[mount]`, over the system's libfuse3).  The mount
runs in a background process of its own session, so it outlives the shell that started it;
`vmcore umount DIR` ends it.
"""
from __future__ import annotations

import bisect
import errno
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from typing import Callable

from dumpkit.errors import BadInputError, DumpToolError, UnsupportedError, UsageError
from vmcore.formats.elf import file_head, plan_layout
from vmcore.model import KIND_RAM, Dump

FILE_NAMES = {"elf": "dump.elf"}


class ElfView:
    """The bytes `vmcore convert -f elf` would write, computed for each read."""

    def __init__(self, dump: Dump):
        self.dump = dump
        lay = plan_layout(dump)
        self.head = file_head(dump, lay) + lay.notes
        self.size = lay.file_size
        self.loads = lay.loads                      # (chunk, file offset), in file order
        self._offsets = [off for _c, off in self.loads]
        self._lock = threading.Lock()               # the readers keep file positions and caches

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
                with self._lock:
                    data = self.dump.read(chunk.start + (s - off), e - s)
                out[s - offset:e - offset] = data
            i += 1
        return bytes(out)


def _operations(view: ElfView, name: str, ready: Callable[[], None]):
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


def mount(open_dump: Callable[[], Dump], directory: str, fmt: str = "elf", foreground: bool = False) -> dict:
    """Mount the dump `open_dump()` gives at `directory`; return once the file can be read.

    In the background (the default) a child process in a session of its own opens the dump
    and serves it; the parent waits for its word (mounted, or the one-line error) and returns."""
    if fmt not in FILE_NAMES:
        raise UsageError(f"-f {fmt}: a mount shows {', '.join(FILE_NAMES)}")
    directory = _check_mountpoint(directory)
    _need_fuse()
    name = FILE_NAMES[fmt]
    if foreground:
        _serve(open_dump, directory, name, lambda: None)
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

            _serve(open_dump, directory, name, ready)
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


def _serve(open_dump: Callable[[], Dump], directory: str, name: str, ready: Callable[[], None]) -> None:
    import mfusepy
    dump = open_dump()
    try:
        view = ElfView(dump)
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
