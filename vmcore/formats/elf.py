"""ELF core dumps of s390x: what /proc/vmcore, zgetdump and QEMU dump-guest-memory write.

Writer (the kdump kernel's ELF core header: arch/s390/kernel/crash_dump.c, include/uapi/linux/elf.h, the layout the s390 kdump kernel gives /proc/vmcore):
  ELF64 big-endian ET_CORE EM_S390, program headers at 64: one PT_NOTE, then one
  PT_LOAD per ram/zero chunk (p_vaddr = p_paddr = physical start, p_filesz =
  p_memsz = size, flags RWX, p_align 4096, p_offset congruent to the address
  modulo 4096 so readelf/gdb accept it).  Notes: NT_PRPSINFO, the note set of
  every CPU (boot CPU first, pr_pid 1, 2, ...), the VMCOREINFO note.  With 65535
  or more program headers e_phnum is PN_XNUM and section header 0 holds the
  count (sh_info).  Zero pages and source holes become file holes; the file is
  written under a temporary name and renamed when complete.  Absent ranges (filtered
  or missing) are left out of the PT_LOADs; an incomplete source sets e_flags
  DUMP_ELF_INCOMPLETE (0x1, makedumpfile's and crash's flag), which the reader reports.

Reader: accepts the above and QEMU's output, including QEMU 7.2's quirks
(section headers before the program headers, the second one little-endian;
e_ehsize 8; pr_pid little-endian; no VMCOREINFO or PRPSINFO note).  The
physical address of a PT_LOAD is p_paddr (QEMU puts virtual addresses into
p_vaddr when paging is on).  A file shorter than its segments gives absent
chunks and an incomplete dump that names the missing ranges.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Callable


from meminfo_abi.elfcore import (
    DUMP_ELF_INCOMPLETE,
    EHDR_SIZE,
    EM_S390,
    ET_CORE,
    ELFCLASS64,
    ELFDATA2MSB,
    ELFMAG,
    PF_R,
    PF_W,
    PF_X,
    PHDR_SIZE,
    PN_XNUM,
    PT_LOAD,
    PT_NOTE,
    SHDR_SIZE,
    Elf64_Shdr,
    ehdr_bytes,
    phdr_bytes,
    read_core_headers,
    read_note_segments,
)
from meminfo_abi.elfnotes import (
    NOTE_NAME_CORE,
    NOTE_NAME_VMCOREINFO,
    NT_PRSTATUS,
    PRSTATUS_PID_OFFSET,
    cpu_notes,
    cpus_from_intact_notes,
    read_notes,
    prpsinfo_note,
    vmcoreinfo_note,
)
from dumpkit.errors import BadInputError, DumpIOError, DumpToolError, UsageError
from dumpkit.fileio import atomic_file, open_input_file, pwrite_all
from vmcore.formats.entry import FormatWriter, reader_error
from vmcore.model import (
    ADDRESS_LIMIT,
    DEFAULT_BLOCK,
    KIND_ABSENT,
    KIND_RAM,
    KIND_ZERO,
    Dump,
    DumpAttrs,
    FileSource,
    MemChunk,
    copy_memory,
)

FORMAT_NAME = "elf"
SEGMENT_ALIGN = 4096
LOAD_FLAGS = PF_R | PF_W | PF_X
Progress = Callable[[int], None] | None


# ---------------------------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------------------------

@dataclass
class ElfLayout:
    """Where everything goes in the output file."""

    phnum: int
    shoff: int                    # 0 unless PN_XNUM is needed
    notes_offset: int
    notes: bytes
    loads: list[tuple[MemChunk, int]]    # (chunk, p_offset)
    file_size: int


def build_notes(dump: Dump, todpreg_size: int = 4) -> bytes:
    """The PT_NOTE contents: PRPSINFO, per-CPU notes (pr_pid 1, 2, ...), VMCOREINFO."""
    parts = [prpsinfo_note()]
    for i, regs in enumerate(dump.cpus):
        parts.append(cpu_notes(regs, pid=i + 1, todpreg_size=todpreg_size))
    if dump.attrs.vmcoreinfo_raw is not None:
        parts.append(vmcoreinfo_note(dump.attrs.vmcoreinfo_raw))
    return b"".join(parts)


def plan_layout(dump: Dump, todpreg_size: int = 4) -> ElfLayout:
    loads_chunks = [c for c in dump.chunks if c.kind in (KIND_RAM, KIND_ZERO)]
    phnum = 1 + len(loads_chunks)
    pos = EHDR_SIZE + phnum * PHDR_SIZE
    shoff = 0
    if phnum >= PN_XNUM:
        shoff = pos
        pos += SHDR_SIZE
    notes = build_notes(dump, todpreg_size)
    notes_offset = pos
    pos = -(-(pos + len(notes)) // SEGMENT_ALIGN) * SEGMENT_ALIGN
    loads = []
    for c in loads_chunks:
        off = pos + (c.start - pos) % SEGMENT_ALIGN     # p_offset == p_vaddr modulo p_align
        loads.append((c, off))
        pos = off + c.size
    return ElfLayout(phnum, shoff, notes_offset, notes, loads, pos)


def file_head(dump: Dump, lay: ElfLayout) -> bytes:
    """The ELF header, the program headers (and the PN_XNUM section header) of a layout: the
    bytes before the notes, for the writer and for a mounted view alike."""
    # what the source lacks (absent chunks) is left out of the PT_LOADs, as makedumpfile leaves out
    # excluded pages; an incomplete source is flagged in e_flags, as makedumpfile and crash do
    flags = 0 if dump.attrs.complete else DUMP_ELF_INCOMPLETE
    headers = [ehdr_bytes(lay.phnum, shoff=lay.shoff, shnum=1 if lay.shoff else 0, flags=flags)]
    headers.append(phdr_bytes(PT_NOTE, lay.notes_offset, 0, 0, len(lay.notes), len(lay.notes)))
    for c, off in lay.loads:
        headers.append(phdr_bytes(PT_LOAD, off, c.start, c.start, c.size, c.size,
                                  flags=LOAD_FLAGS, align=SEGMENT_ALIGN))
    if lay.shoff:
        # PN_XNUM: section header 0 (SHT_NULL) carries the real program header count
        headers.append(Elf64_Shdr.build(dict(sh_name=0, sh_type=0, sh_flags=0, sh_addr=0, sh_offset=0,
                                             sh_size=0, sh_link=0, sh_info=lay.phnum, sh_addralign=0,
                                             sh_entsize=0)))
    head = b"".join(headers)
    assert len(head) == lay.notes_offset
    return head


def write_elf(dump: Dump, path: str | os.PathLike, progress: Progress = None, *,
              block_size: int = DEFAULT_BLOCK, todpreg_size: int = 4) -> ElfLayout:
    """Write `dump` as an s390x ELF core file (sparse, atomic, streamed)."""
    path = os.fspath(path)
    lay = plan_layout(dump, todpreg_size)
    head = file_head(dump, lay)
    try:
        with atomic_file(path) as fh:
            fd = fh.fileno()
            pwrite_all(fd, head + lay.notes, 0)
            copy_memory(dump, fd, [(c.start, c.end, off) for c, off in lay.loads], progress, block_size=block_size)
            os.ftruncate(fd, lay.file_size)
    except DumpToolError:
        raise
    except OSError as exc:
        raise DumpIOError(f"cannot write {path}: {exc.strerror or exc}") from None
    return lay




# ---------------------------------------------------------------------------------------------
# reader
# ---------------------------------------------------------------------------------------------

def probe_head(head: bytes) -> bool:
    """ELF magic, class 64, big-endian, ET_CORE, EM_S390."""
    if len(head) < 20 or head[:4] != ELFMAG or head[4] != ELFCLASS64 or head[5] != ELFDATA2MSB:
        return False
    e_type, e_machine = struct.unpack_from(">HH", head, 16)
    return e_type == ET_CORE and e_machine == EM_S390


def _quirks(ehdr, notes) -> list[str]:
    out = []
    if ehdr.e_ehsize != EHDR_SIZE:
        out.append(f"e_ehsize {ehdr.e_ehsize} (QEMU 7.2 writes 8)")
    if ehdr.e_shoff and ehdr.e_shoff < ehdr.e_phoff:
        out.append("section headers before the program headers (QEMU)")
    for n in notes:
        if n.name == NOTE_NAME_CORE and n.type == NT_PRSTATUS and len(n.desc) >= PRSTATUS_PID_OFFSET + 4:
            raw = n.desc[PRSTATUS_PID_OFFSET:PRSTATUS_PID_OFFSET + 4]
            be, le = int.from_bytes(raw, "big"), int.from_bytes(raw, "little")
            if be > 0xFFFF and 0 < le <= 0xFFFF:
                out.append("pr_pid little-endian (QEMU 7.2)")
                break
    return out


def read_elf(path: str | os.PathLike) -> Dump:
    path = os.fspath(path)
    fh: BinaryIO = open_input_file(path, noun="dump")
    base: FileSource | None = None
    chunks: list[MemChunk] = []
    try:
        with fh:
            if not probe_head(fh.read(64)):
                raise BadInputError(f"{path} is not an s390x ELF core dump (ELF64 big-endian ET_CORE EM_S390)")
            headers = read_core_headers(fh, path)
            notes, notes_error = read_notes(read_note_segments(fh, headers, path), f"{path} PT_NOTE")
            base = FileSource(path, 0, headers.file_size, name=path)
        cpus, cpu_error = cpus_from_intact_notes(notes, f"{path} PT_NOTE")
        for i, regs in enumerate(cpus):
            regs.address = i
        attrs = DumpAttrs(format=FORMAT_NAME, origin=path)
        attrs.extra["elf_notes"] = len(notes)
        attrs.extra["program_headers"] = len(headers.phdrs)
        if notes_error or cpu_error:        # damaged notes are named and counted, never dropped silently
            attrs.extra["notes_error"] = "; ".join(e for e in (notes_error, cpu_error) if e)
        quirks = _quirks(headers.ehdr, notes)
        if quirks:
            attrs.extra["quirks"] = quirks
        missing = _load_chunks(base, headers, path, chunks)
        if headers.ehdr.e_flags & DUMP_ELF_INCOMPLETE:
            attrs.mark_incomplete(f"{path} was written incomplete (e_flags DUMP_ELF_INCOMPLETE): memory its "
                                  "source lacked is left out of its PT_LOADs")
        if missing:
            attrs.mark_incomplete(f"{path} is truncated: " + "; ".join(missing[:3])
                                  + (f"; and {len(missing) - 3} more" if len(missing) > 3 else ""))
        dump = Dump(chunks, cpus, attrs)
        base.close()           # every chunk holds its own reference to the descriptor
        base = None
        note = next((n for n in notes if n.name == NOTE_NAME_VMCOREINFO), None)
        if note is not None:
            try:
                attrs.set_vmcoreinfo(note.desc, "ELF note")
            except BadInputError as exc:       # a bad note does not hide the memory
                attrs.extra["vmcoreinfo_error"] = f"VMCOREINFO note at offset 0x{note.offset:x}: {exc}"
        if attrs.vmcoreinfo_raw is None:
            dump.fill_vmcoreinfo_from_memory()
        return dump
    except BaseException as exc:
        for c in chunks:
            if c.source is not None:
                c.source.close()
        if base is not None:
            base.close()
        raise reader_error(exc, path, "ELF dump") from None


def _load_chunks(base: FileSource, headers, path: str, chunks: list[MemChunk]) -> list[str]:
    """Append the chunks of every PT_LOAD to `chunks` (sorted); return what is missing."""
    loads = [(i, p) for i, p in enumerate(headers.phdrs) if p.p_type == PT_LOAD and p.p_memsz]
    # QEMU and the kernel fill p_paddr; a producer leaving every p_paddr 0 is read by p_vaddr
    use_vaddr = len(loads) > 1 and all(p.p_paddr == 0 for _, p in loads)
    segs = []
    for i, p in loads:
        phys = p.p_vaddr if use_vaddr else p.p_paddr
        if p.p_filesz > p.p_memsz:
            raise BadInputError(f"{path}: PT_LOAD {i} has p_filesz 0x{p.p_filesz:x} > p_memsz 0x{p.p_memsz:x}")
        if phys + p.p_memsz > ADDRESS_LIMIT:
            raise BadInputError(f"{path}: PT_LOAD {i} at 0x{phys:x}+0x{p.p_memsz:x} passes the end of the "
                                "64-bit address space")
        segs.append((phys, i, p))
    segs.sort(key=lambda s: s[0])
    for (a, ia, pa), (b, ib, pb) in zip(segs, segs[1:]):
        if b < a + pa.p_memsz:
            raise BadInputError(f"{path}: PT_LOAD {ib} (0x{b:x}-0x{b + pb.p_memsz - 1:x}) overlaps PT_LOAD {ia} "
                                f"(0x{a:x}-0x{a + pa.p_memsz - 1:x})")
    missing: list[str] = []
    size = headers.file_size
    for phys, i, p in segs:
        avail = max(0, min(p.p_filesz, size - p.p_offset))
        if avail:
            chunks.append(MemChunk(phys, avail, base.region(p.p_offset, avail, name=path), KIND_RAM))
        if avail < p.p_filesz:
            lo, hi = phys + avail, phys + p.p_filesz
            chunks.append(MemChunk(lo, hi - lo, None, KIND_ABSENT))
            missing.append(f"PT_LOAD {i} physical 0x{lo:x}-0x{hi - 1:x} (file offsets 0x{p.p_offset + avail:x}-"
                           f"0x{p.p_offset + p.p_filesz - 1:x}) lies past the end of the file "
                           f"(0x{size:x} bytes)")
        if p.p_memsz > p.p_filesz:
            chunks.append(MemChunk(phys + p.p_filesz, p.p_memsz - p.p_filesz, None, KIND_ZERO))
    return missing


class ElfReader:
    name = FORMAT_NAME
    description = "ELF core (s390x: /proc/vmcore, zgetdump, QEMU dump-guest-memory)"

    def probe(self, fh, head: bytes) -> bool:
        return probe_head(head)

    def open(self, path: str | os.PathLike, **opts) -> Dump:
        if opts:
            raise UsageError(f"the ELF reader takes no options ({', '.join(opts)})")
        return read_elf(path)


READER = ElfReader()
WRITER = FormatWriter(FORMAT_NAME, "ELF core (s390x, as /proc/vmcore and zgetdump -f elf)", write_elf)
