"""Library functions behind `s390-machine`: create, import, describe."""

from __future__ import annotations

import os

from meminfo_abi.cpu import CpuRegs
from meminfo_abi.elfcore import read_core_headers, read_note_segments
from meminfo_abi.elfnotes import cpus_from_notes, iter_notes
from dumpkit.errors import BadInputError
from meminfo_abi.locate import find_vmcoreinfo
from meminfo_abi.lowcore import LOWCORE_SIZE
from meminfo_abi.parmarea import read_command_line
from dumpkit.fileio import atomic_directory, atomic_write_text, sparse_copy
from s390_machine.machine import Machine
from s390_machine.memory import PhysicalMemory
from s390_machine.state import MEMORY_FILE, STATE_FILE, Crashkernel, MachineState, dump_state
from s390_machine.synth import SynthOptions, synthesize, validate


def create_machine(path: str, opts: SynthOptions, progress=None) -> str:
    """A new directory with a synthesized production system; nothing is left on failure.
    progress(n) is called as n more bytes of data are written."""
    validate(opts)
    with atomic_directory(path) as tmp:
        mem_path = os.path.join(tmp, MEMORY_FILE)
        with open(mem_path, "wb") as fh:
            fh.truncate(opts.memory_size)           # sparse: holes cost nothing
        with PhysicalMemory(mem_path, writable=True) as mem:
            state = synthesize(mem, opts, progress)
            mem.flush()
        atomic_write_text(os.path.join(tmp, STATE_FILE), dump_state(state))
    return path


def cpus_from_qemu_elf(path: str) -> list[CpuRegs]:
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise BadInputError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise BadInputError(f"{path} is a directory, not an ELF dump") from None
    with fh:
        headers = read_core_headers(fh, path)
        notes = read_note_segments(fh, headers, path)
    cpus = cpus_from_notes(iter_notes(notes))
    if not cpus:
        raise BadInputError(f"{path} has no NT_PRSTATUS notes (no CPU registers)")
    for i, c in enumerate(cpus):
        c.address = i
    return cpus


def import_machine(path: str, raw: str, cpus_from: str | None = None, cpus: int = 1,
                   progress=None) -> str:
    """Wrap an existing raw memory image (QEMU pmemsave) as a machine (the image is copied, sparse)."""
    if not os.path.exists(raw):
        raise BadInputError(f"memory image {raw} does not exist")
    if os.path.isdir(raw):
        raise BadInputError(f"memory image {raw} is a directory")
    size = os.stat(raw).st_size
    if size < 2 * LOWCORE_SIZE or size % 4096:
        raise BadInputError(f"memory image {raw} has {size} bytes: not a whole number of pages "
                            "holding at least the lowcore (truncated?)")
    regs = cpus_from_qemu_elf(cpus_from) if cpus_from else [CpuRegs(address=i) for i in range(cpus)]
    with atomic_directory(path) as tmp:
        mem_path = os.path.join(tmp, MEMORY_FILE)
        with open(mem_path, "wb") as fh:
            sparse_copy(raw, fh, progress=progress)
        with PhysicalMemory(mem_path) as mem:
            state = MachineState(memory_size=size, cpus=regs)
            found = find_vmcoreinfo(mem)
            from meminfo_abi.locate import read_meminfo
            mi = read_meminfo(mem)
            if mi is not None and mi.crashkernel_addr and mi.crashkernel_size:
                state.crashkernel = Crashkernel(mi.crashkernel_addr, mi.crashkernel_size)
            state.kernel = {
                "origin": "imported",
                "image": os.path.abspath(raw),
                "release": found.info.osrelease if found else None,
                "command_line": read_command_line(mem),
                "cpus_from": os.path.abspath(cpus_from) if cpus_from else None,
            }
        state.record("imported", f"{raw} ({size} bytes), CPUs from {cpus_from or 'nowhere (zero registers)'}")
        atomic_write_text(os.path.join(tmp, STATE_FILE), dump_state(state))
    return path


def describe(path: str, wait: bool = True) -> dict:
    """Everything `show` prints, as plain data (read only: an interrupted change is named in
    "interrupted", never rolled back here)."""
    with Machine.open(path, "read", wait=wait) as m:
        st = m.state
        rep = m.meminfo_report()
        found = find_vmcoreinfo(m.memory)
        allocated = os.stat(os.path.join(path, MEMORY_FILE)).st_blocks * 512
        return {
            "machine": os.path.abspath(path),
            "memory_size": st.memory_size,
            "memory_allocated": allocated,
            "status": st.status,
            "ipl_cpu": st.ipl_cpu,
            "crashkernel": None if st.crashkernel is None else
            {"base": st.crashkernel.base, "size": st.crashkernel.size},
            "kernel": st.kernel,
            "vmcoreinfo": None if found is None else
            {"source": found.source, "address": found.address, "osrelease": found.info.osrelease,
             "keys": len(found.info.entries)},
            "cpus": [{"address": c.address, "prefix": c.prefix, "psw_mask": c.psw_mask,
                      "psw_addr": c.psw_addr, "state": st.cpu_states.get(c.address, "operating"),
                      "vector": c.vxrs is not None} for c in st.cpus],
            "meminfo": rep.to_json(),
            "events": st.events,
            "interrupted": m.interrupted,
        }


def recover(path: str, wait: bool = True) -> str:
    """Open the machine for writing: an interrupted change is rolled back or completed."""
    with Machine.open(path, "write", wait=wait) as m:
        return m.recovered or "nothing to recover"
