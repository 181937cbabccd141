"""ELF64 core-file headers as s390x dumps use them (big-endian, EM_S390), declared once.

Only what dump files need: Elf64_Ehdr, Elf64_Phdr, Elf64_Shdr, and a bounded
reader of the program headers and PT_NOTE contents of an untrusted file.
Readers accept the quirks real writers have (QEMU 7.2: e_ehsize 8, section
headers before the program headers); writers emit what readelf/gdb expect.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from construct import Bytes, Const, Int8ub, Int16ub, Int32ub, Int64ub, Padding, Struct

from dumpkit.errors import BadInputError

ELFMAG = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2MSB = 2
EV_CURRENT = 1
ELFOSABI_NONE = 0
ET_CORE = 4
EM_S390 = 22
PT_NULL, PT_LOAD, PT_NOTE = 0, 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
PN_XNUM = 0xFFFF
EHDR_SIZE = 64
PHDR_SIZE = 56
SHDR_SIZE = 64
MAX_PHDRS = 1 << 16          # bound for untrusted files (more needs PN_XNUM, still bounded)
MAX_NOTES_BYTES = 64 << 20   # bound for the PT_NOTE contents we read into memory

Elf64_Ehdr = Struct(
    "e_ident_mag" / Const(ELFMAG),
    "e_ident_class" / Int8ub,
    "e_ident_data" / Int8ub,
    "e_ident_version" / Int8ub,
    "e_ident_osabi" / Int8ub,
    "e_ident_abiversion" / Int8ub,
    Padding(7),
    "e_type" / Int16ub,
    "e_machine" / Int16ub,
    "e_version" / Int32ub,
    "e_entry" / Int64ub,
    "e_phoff" / Int64ub,
    "e_shoff" / Int64ub,
    "e_flags" / Int32ub,
    "e_ehsize" / Int16ub,
    "e_phentsize" / Int16ub,
    "e_phnum" / Int16ub,
    "e_shentsize" / Int16ub,
    "e_shnum" / Int16ub,
    "e_shstrndx" / Int16ub,
)

Elf64_Phdr = Struct(
    "p_type" / Int32ub,
    "p_flags" / Int32ub,
    "p_offset" / Int64ub,
    "p_vaddr" / Int64ub,
    "p_paddr" / Int64ub,
    "p_filesz" / Int64ub,
    "p_memsz" / Int64ub,
    "p_align" / Int64ub,
)

Elf64_Shdr = Struct(
    "sh_name" / Int32ub,
    "sh_type" / Int32ub,
    "sh_flags" / Int64ub,
    "sh_addr" / Int64ub,
    "sh_offset" / Int64ub,
    "sh_size" / Int64ub,
    "sh_link" / Int32ub,
    "sh_info" / Int32ub,
    "sh_addralign" / Int64ub,
    "sh_entsize" / Int64ub,
)

_PHDR_BULK = struct.Struct(">IIQQQQQQ")      # Elf64_Phdr, for reading many at once
assert _PHDR_BULK.size == Elf64_Phdr.sizeof() == PHDR_SIZE

ElfIdent = Struct("magic" / Bytes(4), "ei_class" / Int8ub, "ei_data" / Int8ub)


# e_flags of a core file that lacks memory of the dumped system (makedumpfile and crash use bit 0)
DUMP_ELF_INCOMPLETE = 0x1


def ehdr_bytes(phnum: int, phoff: int = EHDR_SIZE, shoff: int = 0, shnum: int = 0, flags: int = 0) -> bytes:
    return Elf64_Ehdr.build(dict(
        e_ident_class=ELFCLASS64, e_ident_data=ELFDATA2MSB, e_ident_version=EV_CURRENT,
        e_ident_osabi=ELFOSABI_NONE, e_ident_abiversion=0, e_type=ET_CORE, e_machine=EM_S390,
        e_version=EV_CURRENT, e_entry=0, e_phoff=phoff, e_shoff=shoff, e_flags=flags,
        e_ehsize=EHDR_SIZE, e_phentsize=PHDR_SIZE, e_phnum=min(phnum, PN_XNUM),
        e_shentsize=SHDR_SIZE if shnum else 0, e_shnum=shnum, e_shstrndx=0,
    ))


def phdr_bytes(p_type: int, offset: int, vaddr: int, paddr: int, filesz: int, memsz: int,
               flags: int = 0, align: int = 0) -> bytes:
    # Elf64_Phdr's fields in its order, packed in bulk: a dump of many segments (thousands of
    # PT_LOADs for a filtered terabyte) builds its program headers in milliseconds
    return _PHDR_BULK.pack(p_type, flags, offset, vaddr, paddr, filesz, memsz, align)


assert phdr_bytes(1, 2, 3, 4, 5, 6, 7, 8) == Elf64_Phdr.build(dict(
    p_type=1, p_flags=7, p_offset=2, p_vaddr=3, p_paddr=4, p_filesz=5, p_memsz=6, p_align=8))


@dataclass
class Phdr:
    p_type: int
    p_flags: int
    p_offset: int
    p_vaddr: int
    p_paddr: int
    p_filesz: int
    p_memsz: int
    p_align: int


@dataclass
class CoreHeaders:
    ehdr: object
    phdrs: list[Phdr]
    file_size: int


def is_s390x_core_ident(head: bytes) -> bool:
    return len(head) >= 20 and head[:4] == ELFMAG and head[4] == ELFCLASS64 and head[5] == ELFDATA2MSB


def read_core_headers(fh: BinaryIO, name: str = "ELF file") -> CoreHeaders:
    """Ehdr + Phdrs of a big-endian ELF64 s390x core, every count and offset bounded."""
    size = os.fstat(fh.fileno()).st_size
    fh.seek(0)
    head = fh.read(EHDR_SIZE)
    if len(head) < EHDR_SIZE or head[:4] != ELFMAG:
        raise BadInputError(f"{name} is not an ELF file")
    if head[4] != ELFCLASS64 or head[5] != ELFDATA2MSB:
        raise BadInputError(f"{name} is not a big-endian 64-bit ELF file (class {head[4]}, data {head[5]})")
    eh = Elf64_Ehdr.parse(head)
    if eh.e_machine != EM_S390:
        raise BadInputError(f"{name} is an ELF file for machine {eh.e_machine}, not s390 (22)")
    if eh.e_type != ET_CORE:
        raise BadInputError(f"{name} is not an ELF core file (e_type {eh.e_type})")
    phnum = eh.e_phnum
    if phnum == PN_XNUM:  # real count in section header 0's sh_info
        if eh.e_shoff == 0 or eh.e_shoff + SHDR_SIZE > size:
            raise BadInputError(f"{name}: e_phnum is PN_XNUM but section header 0 is missing")
        fh.seek(eh.e_shoff)
        phnum = Elf64_Shdr.parse(fh.read(SHDR_SIZE)).sh_info
    if eh.e_phentsize != PHDR_SIZE and phnum:
        raise BadInputError(f"{name}: program header size {eh.e_phentsize}, expected {PHDR_SIZE}")
    if phnum > MAX_PHDRS:
        raise BadInputError(f"{name}: {phnum} program headers, more than the {MAX_PHDRS} this reader accepts")
    if eh.e_phoff + phnum * PHDR_SIZE > size:
        raise BadInputError(f"{name}: {phnum} program headers at 0x{eh.e_phoff:x} do not fit the file "
                            f"({size} bytes)")
    fh.seek(eh.e_phoff)
    raw = fh.read(phnum * PHDR_SIZE)
    if len(raw) != phnum * PHDR_SIZE:
        raise BadInputError(f"{name}: program headers at 0x{eh.e_phoff:x} are cut short")
    # bulk-parsed (65536 headers through construct take seconds): the same fields as Elf64_Phdr
    phdrs = [Phdr(*fields) for fields in _PHDR_BULK.iter_unpack(raw)]
    return CoreHeaders(eh, phdrs, size)


def read_note_segments(fh: BinaryIO, headers: CoreHeaders, name: str = "ELF file") -> bytes:
    """The concatenated PT_NOTE contents (bounded; a note segment past the end is an error).

    Every byte of the file is read as notes at most once: PT_NOTE segments that overlap
    (65,000 headers over the same 996 bytes once made 5.4 M notes) are refused."""
    notes = []
    total = 0
    for i, p in enumerate(headers.phdrs):
        if p.p_type != PT_NOTE or not p.p_filesz:
            continue
        if p.p_offset + p.p_filesz > headers.file_size:
            raise BadInputError(f"{name}: PT_NOTE at 0x{p.p_offset:x}+0x{p.p_filesz:x} is past the end of the file")
        total += p.p_filesz
        if total > MAX_NOTES_BYTES:
            raise BadInputError(f"{name}: notes larger than {MAX_NOTES_BYTES >> 20} MiB")
        notes.append((p.p_offset, p.p_filesz, i))
    ordered = sorted(notes)
    for (a, na, ia), (b, nb, ib) in zip(ordered, ordered[1:]):
        if b < a + na:
            raise BadInputError(f"{name}: PT_NOTE {ib} (file offsets 0x{b:x}+0x{nb:x}) overlaps PT_NOTE {ia} "
                                f"(0x{a:x}+0x{na:x})")
    out = bytearray()
    for off, size, _ in notes:
        fh.seek(off)
        out += fh.read(size)
    return bytes(out)
