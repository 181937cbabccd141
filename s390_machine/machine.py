"""The simulated s390x system: absolute storage (memory.img) + state (machine.json).

Every tool acts on a Machine the way firmware, a dumper or a kernel acts on a
real one: through absolute storage, per-CPU prefixed (real) storage, and the
CPUs' registers.  Changes to the state are written atomically; changes to
storage go straight into the image (callers validate before they write).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys

from meminfo_abi.cpu import CpuRegs
from dumpkit.errors import BadInputError, DumpIOError
from meminfo_abi.lowcore import LC_OS_INFO, LC_VMCORE_INFO, LOWCORE_SIZE
from meminfo_abi.meminfo import MeminfoReport, check_meminfo
from dumpkit.fileio import Closeable, atomic_write_text, remove_stale_temporaries
from s390_machine.memory import PhysicalMemory, real_to_absolute
from s390_machine.txn import KINDS, TXN_FILE, lock_directory, open_journal_fd, read_journal
from s390_machine.state import MEMORY_FILE, STATE_FILE, MachineState, dump_state, load_state


READ, WRITE = "read", "write"


class Machine(Closeable):
    def __init__(self, path: str, state: MachineState, memory: PhysicalMemory):
        self.path = path
        self.state = state
        self.memory = memory
        self.mode = READ
        self.recovered: str | None = None     # what a writing open did to an interrupted change
        self.interrupted: str | None = None   # what a reading open found (and left alone)
        self.txn = None                       # the transaction in progress (Machine.transaction)
        self._lock: int | None = None

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str, wait: bool = True) -> "Machine":
        """Open a machine to read it (mode "read": a shared lock, nothing is ever written, an
        interrupted change is left alone and named in `interrupted` for the command to report) or to change it ("write": an
        exclusive lock for as long as it is open; an interrupted change is rolled back or
        completed first).  Both check machine.json, the memory image (never through a symlink,
        a regular file of the declared size) and any journal before touching anything.
        `wait`=False: fail at once (exit code 5) when another command holds the lock."""
        if mode not in (READ, WRITE):
            raise ValueError(f"Machine.open mode {mode!r}: use 'read' or 'write'")
        path = os.fspath(path)
        writing = mode == WRITE
        lock = lock_directory(path, exclusive=writing, wait=wait)
        try:
            machine = cls._open_locked(path, writing)
        except BaseException:
            os.close(lock)
            raise
        machine._lock = lock
        machine.mode = mode
        return machine

    @classmethod
    def _open_locked(cls, path: str, writing: bool) -> "Machine":
        from s390_machine import kexec
        state = load_state(path)
        mem_path = os.path.join(path, MEMORY_FILE)
        try:
            fd = os.open(mem_path, (os.O_RDWR if writing else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
                         | os.O_NONBLOCK)
        except FileNotFoundError:
            raise BadInputError(f"{path} is not a machine directory (no {MEMORY_FILE})") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BadInputError(f"{mem_path} is a symbolic link, not a memory image: refusing to "
                                    "follow it") from None
            raise DumpIOError(f"cannot open {mem_path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BadInputError(f"{mem_path} is not a regular file")
            image_size = st.st_size
            # every journal is read and bounded before anything is replayed
            load = kexec.find_interrupted_load(path, state.memory_size, writing)
            tfd = open_journal_fd(os.path.join(path, TXN_FILE), writing)
            info = None
            try:
                if tfd is not None:
                    info = read_journal(tfd, os.path.join(path, TXN_FILE), state.memory_size, image_size,
                                        committed=state.transaction)
                    if info.txn_id == state.transaction and image_size != state.memory_size:
                        raise BadInputError(f"{mem_path} has {image_size} bytes but the machine has "
                                            f"{state.memory_size}")
                elif image_size != state.memory_size:
                    raise BadInputError(
                        f"{mem_path} has {image_size} bytes but the machine has {state.memory_size} "
                        f"({'truncated' if image_size < state.memory_size else 'oversized'} memory image)")
                if load is not None and info is not None and info.records:
                    raise BadInputError(f"{path} holds two interrupted changes (a kexec load and a "
                                        f"{info.kind}): refusing to touch it")
                owned, fd = fd, -1                  # PhysicalMemory owns it now, failing or not
                memory = PhysicalMemory(mem_path, writable=writing, fd=owned, size=state.memory_size)
                machine = cls(path, state, memory)
                if not writing:
                    notes = []
                    if load is not None:
                        notes.append("interrupted kexec load; the next writing command rolls it back")
                    if info is not None and info.records:
                        notes.append(info.describe())
                    if notes:                 # the command reports it (show, status) or refuses
                        machine.interrupted = "; ".join(notes)
                    return machine
                try:
                    # what a killed writer left beside them (nobody else holds the lock now)
                    remove_stale_temporaries(path, STATE_FILE)
                    remove_stale_temporaries(path, TXN_FILE)
                    remove_stale_temporaries(path, kexec.JOURNAL_FILE)   # a load killed before its journal counted
                    if load is not None:
                        lfd, entries = load
                        load = None
                        machine.recovered = kexec.roll_back_load(path, lfd, entries, memory)
                    if tfd is not None:
                        machine.recovered = machine._recover(info, tfd)
                        tfd = None
                    if machine.recovered:
                        print(f"{path}: {machine.recovered}", file=sys.stderr)
                except BaseException:
                    machine.close_memory()
                    raise
                return machine
            finally:
                if load is not None:
                    os.close(load[0])
                if tfd is not None:
                    os.close(tfd)
        finally:
            if fd >= 0:
                os.close(fd)

    def _recover(self, info, tfd: int) -> str | None:
        """Finish what a killed writer left (we hold the exclusive lock)."""
        from s390_machine.txn import Transaction, roll_back
        txn = Transaction.resume(self.path, tfd, info, self.state.memory_size)
        what = KINDS.get(info.kind, info.kind)
        if info.txn_id == self.state.transaction:
            txn.finish()
            return f"the interrupted {what} had committed (machine.json names it): removed its journal"
        if not info.records:
            txn.finish()
            return f"removed the journal of an interrupted {what} that had changed nothing"
        if info.forward:
            from s390_machine.crash import finish_swap
            finish_swap(self, txn, info)
            return f"completed an interrupted {what}: the crashkernel swap is done, kdump started"
        roll_back(info, tfd, self.memory, self.memory.fileno(), self.state.memory_size)
        txn.finish()
        return f"rolled back an interrupted {what} ({len(info.records)} records restored)"

    def remap(self) -> None:
        """Map the image again after its size changed (memory hotplug)."""
        old = self.memory
        self.memory = PhysicalMemory(old.path, writable=old.writable, fd=os.dup(old.fileno()),
                                     size=self.state.memory_size)
        old.close()

    def close_memory(self) -> None:
        self.memory.close()

    def close(self) -> None:
        self.memory.close()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


    # -- transactions -----------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, kind: str):
        """Every change inside is journaled first; save_state() commits.  An exception before
        the commit restores storage and state at once (or, when even that fails, leaves the
        journal for the next writer); after the swap began, the next writer completes it."""
        from s390_machine.txn import Transaction, read_journal, roll_back
        if self.mode != WRITE:
            raise RuntimeError("a transaction needs a machine opened for writing")
        assert self.txn is None
        txn = Transaction.begin(self.path, self.state.memory_size, kind)
        self.txn = txn
        self.memory.journal = txn
        try:
            yield txn
            if self.state.transaction != txn.id:
                self.save_state()
        finally:
            committed = self.state.transaction == txn.id
            self.memory.journal = None
            self.txn = None
            if committed:
                txn.finish()
            elif not txn.forward:
                try:
                    info = read_journal(txn.fd, txn.path, txn.memory_size, os.fstat(self.memory.fileno()).st_size)
                    roll_back(info, txn.fd, self.memory, self.memory.fileno(), txn.memory_size)
                    self.state.memory_size = txn.memory_size
                except BaseException:
                    txn.close()           # the journal stays: the next writer rolls back
                else:
                    txn.finish()
            else:
                txn.close()               # the next writer completes the swap

    # -- state ------------------------------------------------------------------------
    def save_state(self) -> None:
        """Write machine.json atomically; inside a transaction this is its commit point (storage
        is flushed first, the state names the transaction)."""
        if self.mode != WRITE:
            raise RuntimeError("save_state on a machine opened for reading")
        if self.txn is None:
            atomic_write_text(os.path.join(self.path, STATE_FILE), dump_state(self.state))
            return
        self.memory.flush()
        before, self.state.transaction = self.state.transaction, self.txn.id
        try:
            atomic_write_text(os.path.join(self.path, STATE_FILE), dump_state(self.state))
        except BaseException:
            self.state.transaction = before
            raise

    @property
    def cpus(self) -> list[CpuRegs]:
        return self.state.cpus

    def cpu(self, address: int) -> CpuRegs:
        return self.state.cpu(address)

    # -- storage --------------------------------------------------------------------
    def read_real(self, cpu: CpuRegs, addr: int, length: int) -> bytes:
        """Real storage as `cpu` sees it: prefixing applied, split at the prefix boundaries."""
        out = bytearray()
        bounds = sorted({LOWCORE_SIZE, cpu.prefix, cpu.prefix + LOWCORE_SIZE})
        while length > 0:
            nxt = next((b for b in bounds if b > addr), addr + length)
            n = min(length, nxt - addr)
            out += self.memory.read(real_to_absolute(addr, cpu.prefix), n)
            addr += n
            length -= n
        return bytes(out)

    def lowcore_address(self, cpu: CpuRegs) -> int:
        return cpu.prefix

    @property
    def meminfo_pointer(self) -> int:
        return self.memory.read_u64(LC_OS_INFO)

    @property
    def vmcoreinfo_note_pointer(self) -> int:
        return self.memory.read_u64(LC_VMCORE_INFO)

    def meminfo_report(self, verify_segments: bool = True) -> MeminfoReport:
        return check_meminfo(self.memory, verify_segments=verify_segments)
