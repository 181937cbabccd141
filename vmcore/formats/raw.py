"""Raw memory images: absolute address N is file offset N (QEMU `pmemsave 0 SIZE`, memory.img).

A raw image has no header, so it cannot be recognised by its content: plain
images are opened only when the format is named, `open_dump(path, fmt="raw")`.
What the probe does claim is a machine directory (machine.json + memory.img):
its memory with the CPUs of machine.json, boot CPU first.

CPU registers of a plain image come from `cpus_from`: a machine directory, its
machine.json, or a QEMU dump-guest-memory ELF file of the same guest.
VMCOREINFO is looked up in memory (lowcore 0xE18 / 0xE0C).

The writer produces such an image (sparse): gaps between chunks and zero
chunks become holes; absent ranges make it refuse unless allow_incomplete.
"""

from __future__ import annotations

import os
from typing import Callable

from meminfo_abi.cpu import CpuRegs
from dumpkit.errors import BadInputError, DumpIOError, DumpToolError, IncompleteDumpError, UsageError
from dumpkit.fileio import atomic_file, os_open_input
from vmcore.formats.entry import FormatWriter
from vmcore.model import (
    DEFAULT_BLOCK,
    KIND_RAM,
    Dump,
    DumpAttrs,
    FileSource,
    MemChunk,
    MemoryImageSource,
    copy_memory,
)

FORMAT_NAME = "raw"
Progress = Callable[[int], None] | None


def _boot_first(state) -> list[CpuRegs]:
    cpus = list(state.cpus)
    cpus.sort(key=lambda c: (c.address != state.ipl_cpu, c.address))
    return cpus


# A machine directory is the simulator's: reading one acts on a machine, so the simulator is
# imported there and only there (a plain raw image needs none of it).

def is_machine_dir(path: str) -> bool:
    if not os.path.isdir(path):
        return False
    from s390_machine.state import STATE_FILE
    return os.path.isfile(os.path.join(path, STATE_FILE))


def cpus_from(spec: str | os.PathLike) -> list[CpuRegs]:
    """CPU registers from a machine directory, a machine.json or a QEMU ELF dump."""
    spec = os.fspath(spec)
    from s390_machine.state import STATE_FILE, load_state
    if os.path.isdir(spec):
        return _boot_first(load_state(spec))
    if os.path.basename(spec) == STATE_FILE:
        return _boot_first(load_state(os.path.dirname(os.path.abspath(spec))))
    from vmcore.formats import elf

    try:
        with os.fdopen(os_open_input(spec), "rb") as fh:
            head = fh.read(64)
    except FileNotFoundError:
        raise BadInputError(f"{spec} does not exist") from None
    except OSError as exc:
        raise DumpIOError(f"cannot read {spec}: {exc.strerror or exc}") from None
    if not elf.probe_head(head):
        raise BadInputError(f"{spec}: CPU registers come from a machine directory, machine.json or an s390x "
                            "ELF dump (QEMU dump-guest-memory)")
    with elf.read_elf(spec) as dump:
        if not dump.cpus:
            raise BadInputError(f"{spec} has no NT_PRSTATUS notes (no CPU registers)")
        return dump.cpus


def read_raw(path: str | os.PathLike, cpus_from_path: str | os.PathLike | None = None) -> Dump:
    path = os.fspath(path)
    attrs = DumpAttrs(format=FORMAT_NAME, origin=path)
    if os.path.isdir(path):
        from s390_machine.memory import PhysicalMemory
        from s390_machine.state import MEMORY_FILE, load_state
        state = load_state(path)
        mem = PhysicalMemory(os.path.join(path, MEMORY_FILE), expected_size=state.memory_size)
        source = MemoryImageSource(mem, owns=True)
        cpus = _boot_first(state)
        attrs.extra.update(machine_status=state.status, ipl_cpu=state.ipl_cpu)
        if state.crashkernel is not None:
            attrs.extra["crashkernel"] = {"base": state.crashkernel.base, "size": state.crashkernel.size}
    else:
        source = FileSource(path)
        cpus = []
        if source.size == 0:
            source.close()
            raise BadInputError(f"raw memory image {path} is empty")
    try:
        if cpus_from_path is not None:
            cpus = cpus_from(cpus_from_path)
            attrs.extra["cpus_from"] = os.fspath(cpus_from_path)
        dump = Dump([MemChunk(0, source.size, source, KIND_RAM)], cpus, attrs)
        dump.fill_vmcoreinfo_from_memory()
        return dump
    except BaseException:
        source.close()
        raise


class RawReader:
    name = FORMAT_NAME
    description = "raw memory image (QEMU pmemsave; a machine directory); plain images only with -f raw"

    def probe(self, fh, head: bytes) -> bool:
        # only a machine directory identifies itself; a headerless image never does
        path = getattr(fh, "name", None)
        return isinstance(path, str) and getattr(fh, "is_dir", False) and is_machine_dir(path)

    def open(self, path: str | os.PathLike, cpus_from: str | os.PathLike | None = None, **opts) -> Dump:
        if opts:
            raise UsageError(f"the raw reader takes only cpus_from ({', '.join(opts)} given)")
        return read_raw(path, cpus_from)


def write_raw(dump: Dump, path: str | os.PathLike, progress: Progress = None, *, allow_incomplete: bool = False,
              block_size: int = DEFAULT_BLOCK) -> int:
    """Write [0, dump.size) as a sparse raw image; returns its size."""
    path = os.fspath(path)
    absent = dump.absent_ranges()
    if absent and not allow_incomplete:
        s, e = absent[0]
        raise IncompleteDumpError(f"the dump lacks physical 0x{s:x}-0x{e - 1:x} (and {len(absent) - 1} more "
                                  "ranges); a raw image would show zeros there (allow_incomplete to accept)")
    try:
        with atomic_file(path) as fh:
            fd = fh.fileno()
            copy_memory(dump, fd, [(0, dump.size, 0)], progress, block_size=block_size)
            os.ftruncate(fd, dump.size)
    except DumpToolError:
        raise
    except OSError as exc:
        raise DumpIOError(f"cannot write {path}: {exc.strerror or exc}") from None
    return dump.size




READER = RawReader()
WRITER = FormatWriter(FORMAT_NAME, "raw memory image (absolute address = file offset, sparse)", write_raw)
