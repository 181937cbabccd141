"""The kdump (second) kernel: it builds the ELF core header itself and serves /proc/vmcore.

Given a machine whose kdump kernel was started (by the production kernel's panic or by the
stand-alone dumper), this does what arch/s390/kernel/crash_dump.c does:
  - OLDMEM base/size from the parameter area (0x10418 / 0x10420);
  - old memory through the swap map: old [0, size) now lives at [base, base+size) and vice versa;
  - the old meminfo through lowcore 0xE18 (read through the swap map);
  - the boot CPU's registers from the old absolute 0x1200 save area, every other CPU's from the
    save area in its old prefix page, vector registers from the machine-check extended save areas;
  - memory detection: every old memory range but the old crashkernel;
  - VMCOREINFO from meminfo entry 0 if its checksum holds, else the note at old lowcore 0xE0C.
The result is a Dump (vmcore/model.py): any writer saves it, ProcVmcore serves it as the file.
"""

from __future__ import annotations

from meminfo_abi.cpu import CpuRegs, cpu_from_lowcore
from dumpkit.errors import BadInputError
from meminfo_abi.locate import find_vmcoreinfo, read_meminfo
from meminfo_abi.parmarea import PARM_OLDMEM_BASE, PARM_OLDMEM_SIZE, oldmem_pieces
from s390_machine.machine import Machine
from s390_machine.state import STATUS_KDUMP
from vmcore.formats.elf import plan_layout
from vmcore.model import KIND_RAM, Dump, DumpAttrs, MappedSource, MemChunk


class OldMem:
    """Old (crashed) absolute storage as the kdump kernel reads it: the swap undone."""

    def __init__(self, memory, base: int, size: int):
        self.memory = memory
        self.base, self.crash_size = base, size
        self.size = memory.size

    def _pieces(self, addr: int, length: int):
        """(old address, real address, length) pieces, clipped at size and base+size."""
        return oldmem_pieces(addr, length, self.base, self.crash_size, self.size)

    def read(self, addr: int, length: int) -> bytes:
        if addr < 0 or addr + length > self.size:
            raise BadInputError(f"old memory 0x{addr:x}+0x{length:x} is outside 0x{self.size:x}")
        return b"".join(self.memory.read(real, n) for _old, real, n in self._pieces(addr, length))

    def data_ranges(self, start: int, end: int):
        for old, real, n in self._pieces(start, end - start):
            for s, e in self.memory.data_ranges(real, real + n):
                yield old + (s - real), old + (e - real)


def oldmem_range(machine: Machine) -> tuple[int, int]:
    mem = machine.memory
    return mem.read_u64(PARM_OLDMEM_BASE), mem.read_u64(PARM_OLDMEM_SIZE)


def collect_cpus(machine: Machine, old: OldMem) -> list[CpuRegs]:
    """Boot CPU first (old absolute 0x1200), then the others by ascending CPU address (their old
    prefix page's save area); CPUs whose prefix is 0 have no save area and are left out."""
    st = machine.state
    boot = st.cpu(st.ipl_cpu)
    cpus = [cpu_from_lowcore(old, 0, address=boot.address, vector=boot.vxrs is not None)]
    for c in sorted(st.cpus, key=lambda c: c.address):
        if c.address == boot.address or not c.prefix:
            continue
        cpus.append(cpu_from_lowcore(old, c.prefix, address=c.address, vector=c.vxrs is not None))
    return [c for c in cpus if c.prefix]


def kdump_dump(machine: Machine) -> Dump:
    """The kdump kernel's view of the crashed system, as a Dump (no memory is copied)."""
    st = machine.state
    if st.status != STATUS_KDUMP:
        raise BadInputError(f"the machine is {st.status}: no kdump kernel is running "
                            "(crash it with `s390-machine panic` or `sadump ipl`)")
    base, size = oldmem_range(machine)
    mem = machine.memory
    if not base or not size:
        raise BadInputError("OLDMEM base/size in the parameter area (0x10418/0x10420) are zero: "
                            "this kernel was not started as a kdump kernel")
    if base % 4096 or size % 4096 or base < size or base + size > mem.size:
        raise BadInputError(f"OLDMEM base 0x{base:x} size 0x{size:x} do not describe a crashkernel "
                            f"inside memory of 0x{mem.size:x} bytes")
    old = OldMem(mem, base, size)
    mi = read_meminfo(old)
    if mi is None:
        raise BadInputError("no valid meminfo in old memory (lowcore 0xE18): cannot verify the crashkernel")
    if (mi.crashkernel_addr, mi.crashkernel_size) != (base, size):
        raise BadInputError(
            f"OLDMEM base/size 0x{base:x}/0x{size:x} are inconsistent with meminfo's crashkernel "
            f"0x{mi.crashkernel_addr:x}/0x{mi.crashkernel_size:x}")
    # memory detection: all old memory (the machine's current size) minus the old crashkernel
    ranges = [(0, base), (base + size, mem.size)]
    chunks = []
    for start, end in ranges:
        if end <= start:
            continue
        src = MappedSource(lambda off, n, s=start: old.read(s + off, n), end - start,
                           data_ranges_fn=lambda a, b, s=start: ((x - s, y - s) for x, y in old.data_ranges(s + a, s + b)),
                           name=f"oldmem 0x{start:x}-0x{end - 1:x}")
        chunks.append(MemChunk(start, end - start, src, KIND_RAM))
    attrs = DumpAttrs(format="proc-vmcore", format_version="s390 kdump", origin=machine.path)
    attrs.extra.update({"oldmem_base": base, "oldmem_size": size, "crashkernel_excluded": [base, base + size]})
    found = find_vmcoreinfo(old)
    if found is not None:
        attrs.set_vmcoreinfo(found.raw, found.source)
    return Dump(chunks, collect_cpus(machine, old), attrs)


class ProcVmcore:
    """/proc/vmcore: random-access read(offset, size) over ELF header + notes + old memory,
    laid out like the ELF writer lays out a file, without copying memory."""

    def __init__(self, dump: Dump):
        from meminfo_abi.elfcore import PT_LOAD, PT_NOTE, ehdr_bytes, phdr_bytes
        from vmcore.formats.elf import LOAD_FLAGS, SEGMENT_ALIGN
        self.dump = dump
        self.layout = lay = plan_layout(dump)
        head = [ehdr_bytes(lay.phnum)]
        head.append(phdr_bytes(PT_NOTE, lay.notes_offset, 0, 0, len(lay.notes), len(lay.notes)))
        for c, off in lay.loads:
            head.append(phdr_bytes(PT_LOAD, off, c.start, c.start, c.size, c.size, flags=LOAD_FLAGS,
                                   align=SEGMENT_ALIGN))
        self._head = b"".join(head) + lay.notes
        self.size = lay.file_size
        self._loads = [(off, off + c.size, c) for c, off in lay.loads]

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise BadInputError("negative offset or length")
        end = min(offset + length, self.size)
        out = bytearray()
        pos = offset
        while pos < end:
            if pos < len(self._head):
                n = min(end, len(self._head)) - pos
                out += self._head[pos:pos + n]
            else:
                seg = next(((s, e, c) for s, e, c in self._loads if s <= pos < e), None)
                if seg is None:                     # padding between notes and the first load
                    nxt = min((s for s, _e, _c in self._loads if s > pos), default=end)
                    n = min(end, nxt) - pos
                    out += bytes(n)
                else:
                    s, e, c = seg
                    n = min(end, e) - pos
                    out += self.dump.read(c.start + (pos - s), n)
            pos += n
        return bytes(out)


PROC_VMCORE = "/proc/vmcore"


def open_proc_vmcore(path: str = PROC_VMCORE) -> Dump:
    """The running kdump kernel's /proc/vmcore (an ELF core file the kernel builds: every old
    memory range, one prstatus and the s390 register notes per CPU, VMCOREINFO) as a Dump."""
    import os
    if not os.path.exists(path):
        raise BadInputError(f"{path} does not exist: this is no kdump kernel (give --machine DIR for a "
                            f"simulated one)")
    from vmcore.formats import open_dump
    return open_dump(path, fmt="elf")
