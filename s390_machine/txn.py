"""One writer at a time, and every change to a machine a transaction.

The lock.  Every command that opens a machine flocks its directory: a shared lock
to read it, an exclusive one to change it, held for the whole run (Machine.open to
close).  A command that finds the lock taken says so on stderr and waits, or with
`wait=False` (`--no-wait`) fails at once with exit code 5.  machine.json is read
only once the lock is held, so no writer saves over another's work.  Dump devices
a command writes to are flocked the same way (lock_file).

The journal.  A change to storage and state (unload, hotplug, panic, `sadump ipl`)
runs inside a Transaction: `transaction.journal` beside memory.img, fsynced and
renamed into place before storage is touched, then one record per change, fsynced
before the change is made:

  UNDO addr len + old bytes    the range held these bytes (rolled back in reverse order)
  HOLE addr len                the range was a hole (punched again)
  GROW old new                 the image was extended from old to new bytes (truncated back)
  SWAP + JSON                  the crashkernel swap began: from here on the transaction is
                               completed (rolled forward), never rolled back; the JSON holds
                               the swap's parameters and the machine state to commit
  CHNK addr len + old bytes    one chunk of the swap in flight: the low half's old bytes

The commit point is the rename of machine.json naming the transaction's id
("transaction"); the journal is removed after it.  The next writer that finds a
journal: committed -> removes it; a SWAP record -> completes the swap from the last
CHNK and commits the recorded state; otherwise -> restores every UNDO/HOLE/GROW and
removes it (storage and state exactly as before).  A reader only reports it.

Every record is bounded against the memory size before anything is read into memory
or written: a crafted journal is refused with one line, never replayed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
import struct
import sys
import zlib
from dataclasses import dataclass, field

from dumpkit.errors import BadInputError, DumpIOError
from dumpkit.fileio import fsync_dir

PAGE = 4096
TXN_FILE = "transaction.journal"
TXN_MAGIC = b"S390TXN1"
_HEAD = struct.Struct(">8sIIQ16s16s")     # magic, version, reserved, memory size, id, kind
_REC = struct.Struct(">4sIQQI")           # tag, reserved, address, length, crc32 (header with crc 0 + payload)
TAGS = (b"UNDO", b"HOLE", b"GROW", b"SWAP", b"CHNK")
MAX_SWAP_JSON = 16 << 20                  # the SWAP record's JSON (machine state with its event log)
KINDS = {"panic": "panic", "sadump-ipl": "sadump ipl", "hotplug": "hotplug", "unload": "kexec unload",
         "reipl": "re-IPL record"}


# -- locks ------------------------------------------------------------------------------------

def _flock(fd: int, exclusive: bool, wait: bool, what: str) -> None:
    op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        fcntl.flock(fd, op | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    except OSError:
        return                                  # no locks on this file system: nothing to wait for
    if not wait:
        raise DumpIOError(f"{what} is in use by another command (--no-wait)")
    print(f"waiting for {what}: another command is {'using' if exclusive else 'changing'} it", file=sys.stderr)
    try:
        fcntl.flock(fd, op)
    except OSError as exc:
        raise DumpIOError(f"cannot lock {what}: {exc.strerror}") from None


def lock_directory(path: str, exclusive: bool, wait: bool = True) -> int:
    """An fd on the machine directory holding its lock (close it to release)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BadInputError(f"{path} is not a machine directory (no such directory)") from None
    except NotADirectoryError:
        raise BadInputError(f"{path} is not a machine directory (not a directory)") from None
    except OSError as exc:
        raise DumpIOError(f"cannot open machine {path}: {exc.strerror}") from None
    return _locked(fd, exclusive, wait, f"machine {path}")


def lock_file(path: str, exclusive: bool, wait: bool = True, what: str = "dump device") -> int | None:
    """An fd on `path` holding its lock, or None when it cannot be opened (its reader reports that)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    return _locked(fd, exclusive, wait, f"{what} {path}")


def _locked(fd: int, exclusive: bool, wait: bool, what: str) -> int:
    """`fd` once it holds the lock; closed when it cannot get it."""
    try:
        _flock(fd, exclusive, wait, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


# -- the journal on disk ----------------------------------------------------------------------

@dataclass
class Record:
    tag: bytes
    addr: int
    length: int
    payload_at: int             # file offset of the payload
    payload_len: int


@dataclass
class JournalInfo:
    """A validated journal: what it says, nothing replayed yet."""
    path: str
    txn_id: str
    kind: str
    records: list[Record] = field(default_factory=list)
    swap: dict | None = None            # the SWAP record's JSON
    grow: tuple[int, int] | None = None

    @property
    def forward(self) -> bool:
        return self.swap is not None

    def describe(self) -> str:
        what = KINDS.get(self.kind, self.kind)
        if self.forward:
            return f"interrupted {what} (crashkernel swap under way); the next writing command completes it"
        return f"interrupted {what}; the next writing command rolls it back"


def _payload_len(tag: bytes, length: int) -> int:
    return length if tag in (b"UNDO", b"CHNK") else 0


def _crc(tag: bytes, addr: int, length: int, payload) -> int:
    return zlib.crc32(payload, zlib.crc32(_REC.pack(tag, 0, addr, length, 0)))


def open_journal_fd(path: str, writable: bool) -> int | None:
    """The journal's fd (never through a symlink, only a regular file), or None if there is none."""
    try:
        fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadInputError(f"{path}: an interrupted change left this journal, which cannot be opened: "
                            f"{exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadInputError(f"{path} is not a regular file: refusing to use it as a journal")
    return fd


def read_journal(fd: int, path: str, memory_size: int, image_size: int,
                 committed: str | None = None) -> JournalInfo:
    """Parse and bound every record (addresses inside memory, lengths inside the file); a torn
    last record (cut short or failing its CRC: it was never fsynced, so its change never began)
    is ignored; anything else wrong refuses the machine."""
    size = os.fstat(fd).st_size

    def bad(why: str) -> BadInputError:
        return BadInputError(f"{path}: damaged transaction journal ({why}); refusing to touch the machine")

    head = os.pread(fd, _HEAD.size, 0)
    if len(head) != _HEAD.size:
        raise bad("no header")
    magic, version, _r, msize, txn, kind = _HEAD.unpack(head)
    if magic != TXN_MAGIC or version != 1:
        raise bad("not a transaction journal")
    if committed is not None and txn.rstrip(b"\0") == committed.encode():
        # machine.json names it: committed, nothing in it will be replayed
        return JournalInfo(path, committed, kind.rstrip(b"\0").decode("ascii", "replace"))
    if msize != memory_size:
        raise bad(f"written for 0x{msize:x} bytes of memory, the machine has 0x{memory_size:x}")
    try:
        info = JournalInfo(path, txn.rstrip(b"\0").decode("ascii"), kind.rstrip(b"\0").decode("ascii"))
    except UnicodeDecodeError:
        raise bad("header names no transaction") from None
    if not info.txn_id.isalnum() or info.kind not in KINDS:
        raise bad("header names no transaction")
    pos = _HEAD.size
    while pos < size:
        raw = os.pread(fd, _REC.size, pos)
        if len(raw) < _REC.size:
            break                                           # torn tail
        tag, _r, addr, length, crc = _REC.unpack(raw)
        if tag not in TAGS:
            raise bad(f"unknown record at offset {pos}")
        plen = _payload_len(tag, length) if tag != b"SWAP" else length
        if tag == b"SWAP" and length > MAX_SWAP_JSON:
            raise bad(f"swap record of {length} bytes")
        if pos + _REC.size + plen > size:
            break                                           # torn tail
        if tag in (b"UNDO", b"HOLE", b"CHNK"):
            if length == 0 or addr + length > memory_size:
                raise bad(f"range 0x{addr:x}+0x{length:x} is outside memory of 0x{memory_size:x} bytes")
        if tag == b"CHNK" and length > 64 << 20:
            raise bad(f"swap chunk of 0x{length:x} bytes")
        if tag == b"GROW" and not (addr == memory_size and length > addr and image_size in (addr, length)):
            raise bad(f"image growth 0x{addr:x} -> 0x{length:x} does not match memory 0x{memory_size:x} "
                      f"and image 0x{image_size:x}")
        c = zlib.crc32(_REC.pack(tag, 0, addr, length, 0))
        for off in range(0, plen, 1 << 20):
            c = zlib.crc32(os.pread(fd, min(1 << 20, plen - off), pos + _REC.size + off), c)
        if c != crc:
            if pos + _REC.size + plen == size:
                break                                       # torn tail
            raise bad(f"record at offset {pos} fails its CRC")
        rec = Record(tag, addr, length, pos + _REC.size, plen)
        if tag == b"SWAP":
            if info.swap is not None:
                raise bad("two swap records")
            try:
                info.swap = json.loads(os.pread(fd, plen, rec.payload_at))
                _check_swap(info.swap, memory_size)
            except (ValueError, TypeError, KeyError) as exc:
                raise bad(f"swap record: {exc}") from None
        elif tag == b"GROW":
            info.grow = (addr, length)
        elif tag == b"CHNK" and info.swap is None:
            raise bad("swap chunk before the swap record")
        info.records.append(rec)
        pos += _REC.size + plen
    if info.grow is None and image_size != memory_size:
        raise bad(f"the memory image has 0x{image_size:x} bytes, the machine 0x{memory_size:x}")
    return info


def _check_swap(d: dict, memory_size: int) -> None:
    base, size = int(d["base"]), int(d["size"])
    if not (0 < size <= base and base + size <= memory_size and base % PAGE == 0 and size % PAGE == 0):
        raise ValueError(f"crashkernel 0x{base:x}+0x{size:x} does not fit memory")
    regions = d["regions"]
    if not isinstance(regions, list) or len(regions) > 1024:
        raise ValueError("bad region list")
    for r in regions:
        s, n = int(r[0]), int(r[1])
        if s < base or n < 0 or s + n > base + size:
            raise ValueError(f"region 0x{s:x}+0x{n:x} outside the crashkernel")
    if len([int(v) for v in d["oldmem"]]) != 2:
        raise ValueError("bad oldmem")
    if not isinstance(d["state"], dict):
        raise ValueError("no machine state")



def _io(what: str, exc: OSError) -> DumpIOError:
    return DumpIOError(f"{what}: {exc.strerror or exc}")


class Transaction:
    """The journal of one change in progress (see the module docstring)."""

    def __init__(self, directory: str, fd: int, txn_id: str, kind: str, memory_size: int):
        self.memory_size = memory_size
        self.dir = directory
        self.path = os.path.join(directory, TXN_FILE)
        self.fd = fd
        self.id = txn_id
        self.kind = kind
        self.forward = False
        self.saved: set[int] = set()            # pages whose old bytes are journaled

    @classmethod
    def begin(cls, directory: str, memory_size: int, kind: str) -> "Transaction":
        from dumpkit.fileio import create_temporary
        txn_id = secrets.token_hex(8)
        try:
            tmp, fd = create_temporary(directory, TXN_FILE)
        except OSError as exc:
            raise _io(f"cannot create the transaction journal in {directory}", exc) from None
        try:
            os.write(fd, _HEAD.pack(TXN_MAGIC, 1, 0, memory_size, txn_id.encode(), kind.encode()))
            os.fsync(fd)
            os.rename(tmp, os.path.join(directory, TXN_FILE))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            os.close(fd)
            raise _io(f"cannot write the transaction journal in {directory}", exc) from None
        fsync_dir(directory)
        return cls(directory, fd, txn_id, kind, memory_size)

    @classmethod
    def resume(cls, directory: str, fd: int, info: JournalInfo, memory_size: int) -> "Transaction":
        t = cls(directory, fd, info.txn_id, info.kind, memory_size)
        t.forward = info.forward
        return t

    def _append(self, tag: bytes, addr: int, length: int, payload=b"", sync: bool = True) -> None:
        try:
            end = os.lseek(self.fd, 0, os.SEEK_END)
            rec = _REC.pack(tag, 0, addr, length, _crc(tag, addr, length, payload))
            from dumpkit.fileio import pwrite_all
            pwrite_all(self.fd, rec, end)
            if len(payload):
                pwrite_all(self.fd, payload, end + _REC.size)
            if sync:
                os.fdatasync(self.fd)
        except OSError as exc:
            raise _io(f"cannot write the transaction journal {self.path}", exc) from None

    # -- before a change --------------------------------------------------------------------
    def before_write(self, mem, addr: int, length: int) -> None:
        """Journal the old bytes of [addr, addr+length) (whole pages, each once)."""
        if self.forward or length <= 0:
            return
        first, last = addr // PAGE, (addr + length - 1) // PAGE
        if all(p in self.saved for p in range(first, last + 1)):
            return
        p = first
        while p <= last:
            if p in self.saved:
                p += 1
                continue
            q = p
            while q + 1 <= last and q + 1 not in self.saved and q + 1 - p < 1024:
                q += 1
            start, end = p * PAGE, min((q + 1) * PAGE, mem.size)
            pos = start
            for ds, de in mem.data_ranges(start, end):
                if ds > pos:
                    self._append(b"HOLE", pos, ds - pos, sync=False)
                self._append(b"UNDO", ds, de - ds, mem.read(ds, de - ds), sync=False)
                pos = de
            if pos < end:
                self._append(b"HOLE", pos, end - pos, sync=False)
            p = q + 1
        try:
            os.fdatasync(self.fd)           # the old bytes are durable before the first new one
        except OSError as exc:
            raise _io(f"cannot write the transaction journal {self.path}", exc) from None
        self.saved.update(range(first, last + 1))

    def grow(self, old: int, new: int) -> None:
        self._append(b"GROW", old, new)

    def begin_swap(self, params: dict) -> None:
        """From here on the transaction is completed, never rolled back."""
        payload = json.dumps(params).encode()
        self._append(b"SWAP", 0, len(payload), payload)
        self.forward = True

    def chunk(self, addr: int, old_low) -> None:
        self._append(b"CHNK", addr, len(old_low), old_low)

    # -- the end ------------------------------------------------------------------------------
    def finish(self) -> None:
        """Committed (or restored): the journal goes."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        fsync_dir(self.dir)
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


# -- recovery ---------------------------------------------------------------------------------

def roll_back(info: JournalInfo, fd: int, mem, image_fd: int, memory_size: int) -> None:
    """Restore every UNDO/HOLE in reverse order, truncate a grown image back; storage flushed."""
    for rec in reversed(info.records):
        if rec.tag == b"UNDO":
            for off in range(0, rec.length, 1 << 20):
                n = min(1 << 20, rec.length - off)
                data = os.pread(fd, n, rec.payload_at + off)
                if len(data) != n:
                    raise BadInputError(f"{info.path}: transaction journal is cut short")
                mem.write(rec.addr + off, data)
        elif rec.tag == b"HOLE":
            mem.punch_hole(rec.addr, rec.length)
    mem.flush()
    if info.grow is not None:
        try:
            os.ftruncate(image_fd, info.grow[0])
            os.fsync(image_fd)
        except OSError as exc:
            raise _io("truncating the memory image back", exc) from None


def last_chunk(info: JournalInfo, fd: int) -> tuple[int, bytes] | None:
    chunks = [r for r in info.records if r.tag == b"CHNK"]
    if not chunks:
        return None
    r = chunks[-1]
    return r.addr, os.pread(fd, r.length, r.payload_at)
