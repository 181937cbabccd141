"""s390x ELF core notes: note encoding and the per-CPU register note payloads.

the kdump kernel's ELF core header: arch/s390/kernel/crash_dump.c, include/uapi/linux/elf.h (what the s390 kdump kernel writes into /proc/vmcore's
PT_NOTE segment) and QEMU dump-guest-memory for s390x: QEMU's dump/dump.c and target/s390x/arch_dump.c (QEMU dump-guest-memory).

Note = Elf64_Nhdr {namesz, descsz, type} (12 bytes, big-endian), the name with
its NUL padded to 4 bytes, the descriptor padded to 4 bytes.  The kdump kernel
writes, per CPU: PRSTATUS, PRFPREG ("CORE"), then TIMER, TODCMP, TODPREG, CTRS,
PREFIX and, with the vector facility, VXRS_HIGH then VXRS_LOW ("LINUX").
Readers must not rely on that order: QEMU writes the "LINUX" notes in another
one, and kernels before ~4.1 named them "CORE".  Only "a PRSTATUS note starts a
CPU" holds for every producer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from construct import (
    Array,
    Bytes,
    ConstructError,
    Default,
    Int8sb,
    Int16ub,
    Int32sb,
    Int32ub,
    Int64sb,
    Int64ub,
    Padding,
    PaddedString,
    Struct,
)

from meminfo_abi.cpu import CpuRegs
from dumpkit.errors import BadInputError
from meminfo_abi.flat import FlatLayout
from meminfo_abi.lowcore import VX_SAVE_AREA_SIZE

# -- ELF constants ------------------------------------------------------------------
EM_S390 = 22

NT_PRSTATUS = 1
NT_PRFPREG = 2
NT_FPREGSET = NT_PRFPREG          # the same type under its other name
NT_PRPSINFO = 3
NT_S390_HIGH_GPRS = 0x300
NT_S390_TIMER = 0x301
NT_S390_TODCMP = 0x302
NT_S390_TODPREG = 0x303
NT_S390_CTRS = 0x304
NT_S390_PREFIX = 0x305
NT_S390_LAST_BREAK = 0x306
NT_S390_SYSTEM_CALL = 0x307
NT_S390_TDB = 0x308
NT_S390_VXRS_LOW = 0x309
NT_S390_VXRS_HIGH = 0x30A
NT_S390_GS_CB = 0x30B
NT_S390_PV_CPU_DATA = 0x30E
NT_VMCOREINFO = 0                 # the VMCOREINFO note's n_type

NOTE_NAME_CORE = "CORE"
NOTE_NAME_LINUX = "LINUX"
NOTE_NAME_VMCOREINFO = "VMCOREINFO"

NHDR_SIZE = 12
NOTE_TERMINATOR = bytes(NHDR_SIZE)   # namesz = descsz = type = 0, ends the kdump note list
# Bound for untrusted note lists: the s390 kdump kernel writes 9 notes per CPU and 2 more, and
# s390 kernels run at most 512 CPUs (NR_CPUS), QEMU 248; 65536 notes is ~7000 CPUs.  A list of
# empty 12-byte notes reaches it in 768 KiB.
MAX_NOTES = 1 << 16

# -- layouts --------------------------------------------------------------------------
Elf64_Nhdr = Struct(
    "n_namesz" / Int32ub,
    "n_descsz" / Int32ub,
    "n_type" / Int32ub,
)

_Timeval = Struct(
    "tv_sec" / Default(Int64sb, 0),
    "tv_usec" / Default(Int64sb, 0),
)

# struct elf_prstatus on s390x, 336 bytes (ELF note encoding: include/uapi/linux/elf.h, arch/s390/kernel/crash_dump.c)
NtPrstatus = Struct(
    "pr_info" / Struct(                                   # +0   siginfo head
        "si_signo" / Default(Int32sb, 0),
        "si_code" / Default(Int32sb, 0),
        "si_errno" / Default(Int32sb, 0),
    ),
    "pr_cursig" / Default(Int16ub, 0),                    # +12
    Padding(2),
    "pr_sigpend" / Default(Int64ub, 0),                   # +16
    "pr_sighold" / Default(Int64ub, 0),                   # +24
    "pr_pid" / Default(Int32ub, 0),                       # +32  CPU counter (1-based) in kdump
    "pr_ppid" / Default(Int32ub, 0),                      # +36
    "pr_pgrp" / Default(Int32ub, 0),                      # +40
    "pr_sid" / Default(Int32ub, 0),                       # +44
    "pr_utime" / _Timeval,                                # +48
    "pr_stime" / _Timeval,                                # +64
    "pr_cutime" / _Timeval,                               # +80
    "pr_cstime" / _Timeval,                               # +96
    "pr_reg" / Struct(                                    # +112 s390_regs (elf_gregset_t)
        "psw" / Struct("mask" / Default(Int64ub, 0), "addr" / Default(Int64ub, 0)),
        "gprs" / Default(Array(16, Int64ub), [0] * 16),   # +128
        "acrs" / Default(Array(16, Int32ub), [0] * 16),   # +256
        "orig_gpr2" / Default(Int64ub, 0),                # +320
    ),
    "pr_fpvalid" / Default(Int32ub, 0),                   # +328
    Padding(4),                                           # +332
)
NT_PRSTATUS_SIZE = 336
PRSTATUS_PID_OFFSET = 32
PRSTATUS_PSW_OFFSET = 112
PRSTATUS_GPRS_OFFSET = 128
PRSTATUS_ACRS_OFFSET = 256

# NT_PRFPREG / NT_FPREGSET: s390_fp_regs, 136 bytes
NtPrfpreg = Struct(
    "fpc" / Default(Int32ub, 0),
    Padding(4),
    "fprs" / Default(Array(16, Int64ub), [0] * 16),
)
NT_PRFPREG_SIZE = 136

# struct elf_prpsinfo on s390x, 136 bytes
NtPrpsinfo = Struct(
    "pr_state" / Default(Int8sb, 0),                      # +0
    "pr_sname" / Default(PaddedString(1, "ascii"), ""),   # +1
    "pr_zomb" / Default(Int8sb, 0),                       # +2
    "pr_nice" / Default(Int8sb, 0),                       # +3
    Padding(4),
    "pr_flag" / Default(Int64ub, 0),                      # +8
    "pr_uid" / Default(Int32ub, 0),                       # +16
    "pr_gid" / Default(Int32ub, 0),                       # +20
    "pr_pid" / Default(Int32sb, 0),                       # +24
    "pr_ppid" / Default(Int32sb, 0),                      # +28
    "pr_pgrp" / Default(Int32sb, 0),                      # +32
    "pr_sid" / Default(Int32sb, 0),                       # +36
    "pr_fname" / Default(PaddedString(16, "ascii"), ""),  # +40
    "pr_psargs" / Default(PaddedString(80, "ascii"), ""),  # +56
)
NT_PRPSINFO_SIZE = 136

NtS390Timer = Struct("timer" / Int64ub)                  # CPU timer
NtS390Todcmp = Struct("todcmp" / Int64ub)                # clock comparator (save-area value as is)
NtS390Todpreg = Struct("todpreg" / Int32ub)              # TOD programmable register (see note below)
NtS390Ctrs = Struct("ctrs" / Array(16, Int64ub))         # CR0-15
NtS390Prefix = Struct("prefix" / Int32ub)
NtS390LastBreak = Struct("last_break" / Int64ub)
NtS390VxrsLow = Struct("vxrs_low" / Array(16, Bytes(8)))     # rightmost halves of V0-15
NtS390VxrsHigh = Struct("vxrs_high" / Array(16, Bytes(16)))  # V16-31
# Kernels ~4.8-5.18 wrote an 8-byte TODPREG note: the 4-byte register followed by the
# next 4 bytes of the save area (the upper half of the CPU timer).  Readers take the
# first 4 bytes of any TODPREG descriptor of at least 4 bytes.
TODPREG_SIZES = (4, 8)

# minimum descriptor sizes of the notes the reader interprets
_MIN_DESC = {
    NT_PRSTATUS: NT_PRSTATUS_SIZE,
    NT_PRFPREG: NT_PRFPREG_SIZE,
    NT_S390_TIMER: 8,
    NT_S390_TODCMP: 8,
    NT_S390_TODPREG: 4,
    NT_S390_CTRS: 128,
    NT_S390_PREFIX: 4,
    NT_S390_LAST_BREAK: 8,
    NT_S390_VXRS_LOW: 128,
    NT_S390_VXRS_HIGH: 256,
}

_TYPE_NAMES = {
    NT_PRSTATUS: "NT_PRSTATUS",
    NT_PRFPREG: "NT_PRFPREG",
    NT_PRPSINFO: "NT_PRPSINFO",
    NT_S390_HIGH_GPRS: "NT_S390_HIGH_GPRS",
    NT_S390_TIMER: "NT_S390_TIMER",
    NT_S390_TODCMP: "NT_S390_TODCMP",
    NT_S390_TODPREG: "NT_S390_TODPREG",
    NT_S390_CTRS: "NT_S390_CTRS",
    NT_S390_PREFIX: "NT_S390_PREFIX",
    NT_S390_LAST_BREAK: "NT_S390_LAST_BREAK",
    NT_S390_SYSTEM_CALL: "NT_S390_SYSTEM_CALL",
    NT_S390_TDB: "NT_S390_TDB",
    NT_S390_VXRS_LOW: "NT_S390_VXRS_LOW",
    NT_S390_VXRS_HIGH: "NT_S390_VXRS_HIGH",
    NT_S390_GS_CB: "NT_S390_GS_CB",
    NT_S390_PV_CPU_DATA: "NT_S390_PV_CPU_DATA",
}


def note_type_name(n_type: int) -> str:
    """A readable name for a core note type (hex for unknown ones)."""
    return _TYPE_NAMES.get(n_type, f"0x{n_type:x}")


# the hot-path (struct) form of each layout above, derived from its declaration (meminfo_abi/flat.py)
_NHDR = FlatLayout(Elf64_Nhdr).struct

# -- encoding -------------------------------------------------------------------------
def _align4(n: int) -> int:
    return (n + 3) & ~3


def _name_bytes(name: bytes | str) -> bytes:
    try:
        raw = name.encode("ascii") if isinstance(name, str) else bytes(name)
    except UnicodeEncodeError:
        raise BadInputError(f"ELF note name {name!r} is not ASCII") from None
    if not raw:
        return b""                       # namesz 0: no name at all
    if raw.endswith(b"\0"):
        return raw                       # caller already gave the NUL (and maybe extra padding)
    return raw + b"\0"


def note_size(name: bytes | str, descsz: int) -> int:
    """Bytes one note takes: header, padded name, padded descriptor."""
    return NHDR_SIZE + _align4(len(_name_bytes(name))) + _align4(descsz)


def build_note(name: bytes | str, n_type: int, desc: bytes) -> bytes:
    """One ELF note: big-endian Elf64_Nhdr, name incl. NUL padded to 4, desc padded to 4.

    A name that already ends with NUL bytes is taken as is (n_namesz = its length),
    so QEMU-style names padded to 8 can be produced; an empty name gives n_namesz 0.
    """
    nm = _name_bytes(name)
    desc = bytes(desc)
    try:
        hdr = Elf64_Nhdr.build(dict(n_namesz=len(nm), n_descsz=len(desc), n_type=n_type))
    except ConstructError as exc:
        raise BadInputError(f"cannot build ELF note type {n_type!r}: {exc}") from None
    return (
        hdr
        + nm + bytes(_align4(len(nm)) - len(nm))
        + desc + bytes(_align4(len(desc)) - len(desc))
    )


@dataclass
class Note:
    name: str
    type: int
    desc: bytes
    offset: int          # offset of the note header in the data given to iter_notes

    def __repr__(self) -> str:  # short: descs can be large
        return f"Note({self.name!r}, {note_type_name(self.type)}, {len(self.desc)} bytes @0x{self.offset:x})"


def iter_notes(data: bytes | bytearray | memoryview, limit: int = MAX_NOTES) -> Iterator[Note]:
    """Walk a PT_NOTE segment's bytes.

    Stops at the end of the data or at an all-zero 12-byte header (the kdump
    terminator).  A header, name or descriptor reaching past the data raises
    BadInputError naming the note's offset, and so does a note past the `limit`-th.
    The padding after the last descriptor may be missing; trailing bytes shorter
    than a header must be zero.
    """
    mv = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    end = len(mv)
    off = 0
    count = 0
    unpack = _NHDR.unpack_from
    while off < end:
        left = end - off
        if left < NHDR_SIZE:
            if any(mv[off:end]):
                raise BadInputError(f"ELF note at offset 0x{off:x}: {left} trailing bytes, too short for a note header")
            return
        namesz, descsz, n_type = unpack(mv, off)
        if namesz == 0 and descsz == 0 and n_type == 0:
            return
        count += 1
        if count > limit:
            raise BadInputError(f"ELF notes: more than {limit} notes (the next at offset 0x{off:x}); "
                                "no s390 dump has that many")
        name_off = off + NHDR_SIZE
        name_end = name_off + _align4(namesz)
        if name_end > end:
            raise BadInputError(
                f"ELF note at offset 0x{off:x}: name size {namesz} reaches past the note data ({end} bytes)"
            )
        desc_off = name_end
        desc_end = desc_off + descsz
        if desc_end > end:
            raise BadInputError(
                f"ELF note at offset 0x{off:x}: descriptor size {descsz} reaches past the note data ({end} bytes)"
            )
        raw_name = bytes(mv[name_off : name_off + namesz])
        name = raw_name.split(b"\0", 1)[0].decode("ascii", errors="replace")
        yield Note(name=name, type=n_type, desc=bytes(mv[desc_off:desc_end]), offset=off)
        off = min(desc_off + _align4(descsz), end)


def read_notes(data: bytes | bytearray | memoryview, where: str) -> tuple[list[Note], str | None]:
    """Every note up to the first damaged one, and the damage (None when there is none): named
    by offset and counted, so a reader keeps what is intact and reports the rest, whatever the
    dump format."""
    notes: list[Note] = []
    try:
        for n in iter_notes(data):
            notes.append(n)
    except BadInputError as exc:
        return notes, f"{where}: {exc}; {len(notes)} notes read before it, the rest dropped"
    return notes, None


def cpus_from_intact_notes(notes: list[Note], where: str, expected: int | None = None
                           ) -> tuple[list[CpuRegs], str | None]:
    """cpus_from_notes, with damage reported instead of raised: ([], why) when a CPU note cannot
    be parsed; a count below `expected` (the CPU count a header promises) is damage too."""
    try:
        cpus = cpus_from_notes(notes)
    except BadInputError as exc:
        return [], f"{where}: {exc}"
    if expected and len(cpus) < expected:
        return cpus, f"{where}: {len(cpus)} CPUs in the notes, the header counts {expected}"
    return cpus, None


# -- per-CPU notes (write) ------------------------------------------------------------
def _prstatus_desc(regs: CpuRegs, pid: int) -> bytes:
    return NtPrstatus.build(
        dict(
            pr_pid=pid,
            pr_reg=dict(
                psw=dict(mask=regs.psw_mask, addr=regs.psw_addr),
                gprs=list(regs.gprs),
                acrs=list(regs.acrs),
            ),
        )
    )


def cpu_notes(
    regs: CpuRegs,
    pid: int,
    todpreg_size: int = 4,
    core_name: str = NOTE_NAME_CORE,
    s390_name: str = NOTE_NAME_LINUX,
) -> bytes:
    """The note set of one CPU, in the order the s390 kdump kernel writes it.

    todpreg_size 8 reproduces kernels ~4.8-5.18 (register + upper half of the CPU
    timer); s390_name "CORE" reproduces kernels before ~4.1.
    """
    if todpreg_size not in TODPREG_SIZES:
        raise BadInputError(f"TODPREG note size must be 4 or 8, not {todpreg_size}")
    try:
        todpreg = NtS390Todpreg.build(dict(todpreg=regs.todpreg))
        if todpreg_size == 8:
            todpreg += Int32ub.build((regs.cpu_timer >> 32) & 0xFFFFFFFF)
        out = [
            build_note(core_name, NT_PRSTATUS, _prstatus_desc(regs, pid)),
            build_note(core_name, NT_PRFPREG, NtPrfpreg.build(dict(fpc=regs.fpc, fprs=list(regs.fprs)))),
            build_note(s390_name, NT_S390_TIMER, NtS390Timer.build(dict(timer=regs.cpu_timer))),
            build_note(s390_name, NT_S390_TODCMP, NtS390Todcmp.build(dict(todcmp=regs.clock_comparator))),
            build_note(s390_name, NT_S390_TODPREG, todpreg),
            build_note(s390_name, NT_S390_CTRS, NtS390Ctrs.build(dict(ctrs=list(regs.crs)))),
            build_note(s390_name, NT_S390_PREFIX, NtS390Prefix.build(dict(prefix=regs.prefix))),
        ]
        if regs.vxrs is not None:
            if len(regs.vxrs) != VX_SAVE_AREA_SIZE:
                raise BadInputError(f"vector registers have {len(regs.vxrs)} bytes, need {VX_SAVE_AREA_SIZE}")
            out.append(build_note(s390_name, NT_S390_VXRS_HIGH, regs.vxrs_high()))
            out.append(build_note(s390_name, NT_S390_VXRS_LOW, regs.vxrs_low()))
    except (ConstructError, TypeError, ValueError) as exc:
        raise BadInputError(f"CPU registers do not fit the ELF notes: {exc}") from None
    return b"".join(out)


def cpu_notes_size(vx: bool, todpreg_size: int = 4) -> int:
    """Bytes of one CPU's notes: 764 / 1188 (VX) with a 4-byte TODPREG, 768 / 1192 with 8."""
    core, linux = NOTE_NAME_CORE, NOTE_NAME_LINUX
    size = (
        note_size(core, NT_PRSTATUS_SIZE)
        + note_size(core, NT_PRFPREG_SIZE)
        + note_size(linux, 8)              # TIMER
        + note_size(linux, 8)              # TODCMP
        + note_size(linux, todpreg_size)   # TODPREG
        + note_size(linux, 128)            # CTRS
        + note_size(linux, 4)              # PREFIX
    )
    if vx:
        size += note_size(linux, 256) + note_size(linux, 128)
    return size


def prpsinfo_note() -> bytes:
    """The NT_PRPSINFO note the kdump kernel writes first (state 'R', fname "vmlinux")."""
    return build_note(NOTE_NAME_CORE, NT_PRPSINFO, NtPrpsinfo.build(dict(pr_sname="R", pr_fname="vmlinux")))


def vmcoreinfo_note(text: bytes) -> bytes:
    """The VMCOREINFO note: name "VMCOREINFO", n_type 0, desc = the KEY=VALUE text."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return build_note(NOTE_NAME_VMCOREINFO, NT_VMCOREINFO, text)


# -- per-CPU notes (read) -------------------------------------------------------------
_S390_NAMES = (NOTE_NAME_CORE, NOTE_NAME_LINUX)


# the notes read per CPU, in their struct form (a construct parse of NT_PRSTATUS takes ~0.2 ms)
_FLAT = {layout: FlatLayout(layout) for layout in (
    NtPrstatus, NtPrfpreg, NtS390Timer, NtS390Todcmp, NtS390Todpreg, NtS390Ctrs, NtS390Prefix,
    NtS390LastBreak, NtS390VxrsLow, NtS390VxrsHigh)}


def _parse(layout: Struct, note: Note) -> dict:
    need = _MIN_DESC[note.type]
    if len(note.desc) < need:
        raise BadInputError(
            f"ELF note {note_type_name(note.type)} at offset 0x{note.offset:x} has {len(note.desc)} "
            f"descriptor bytes, needs {need}"
        )
    return _FLAT[layout].parse(note.desc)


# the notes that carry one CpuRegs field: type -> (layout, its field, the CpuRegs attribute)
_ONE_FIELD_NOTES = {
    NT_S390_TIMER: (NtS390Timer, "timer", "cpu_timer"),
    NT_S390_TODCMP: (NtS390Todcmp, "todcmp", "clock_comparator"),
    NT_S390_TODPREG: (NtS390Todpreg, "todpreg", "todpreg"),
    NT_S390_CTRS: (NtS390Ctrs, "ctrs", "crs"),
    NT_S390_PREFIX: (NtS390Prefix, "prefix", "prefix"),
    NT_S390_LAST_BREAK: (NtS390LastBreak, "last_break", "last_break"),
}


def cpus_from_notes(notes: Iterable[Note]) -> list[CpuRegs]:
    """Register state of every CPU in a note list.

    Each "CORE" NT_PRSTATUS starts a CPU; the other CPU notes ("CORE" or "LINUX",
    any order) fill the current CPU.  Notes before the first PRSTATUS, unknown
    types and unknown names are ignored.  pr_pid is not used (QEMU 7.2 wrote it
    little-endian), so CpuRegs.address stays 0; the prefix comes from NT_S390_PREFIX.
    Fields without a note stay 0; vxrs is set only when both VXRS halves are present.
    """
    cpus: list[CpuRegs] = []
    halves: list[dict[str, bytes]] = []
    cur: CpuRegs | None = None
    for note in notes:
        if note.name not in _S390_NAMES:
            continue
        t = note.type
        if t == NT_PRSTATUS:
            if note.name != NOTE_NAME_CORE:
                continue
            reg = _parse(NtPrstatus, note)["pr_reg"]
            cur = CpuRegs(
                psw_mask=reg["psw"]["mask"],
                psw_addr=reg["psw"]["addr"],
                gprs=reg["gprs"],
                acrs=reg["acrs"],
            )
            cpus.append(cur)
            halves.append({})
            continue
        if cur is None or t not in _MIN_DESC:
            continue
        if t == NT_PRFPREG:
            if note.name != NOTE_NAME_CORE:
                continue
            fp = _parse(NtPrfpreg, note)
            cur.fpc = fp["fpc"]
            cur.fprs = fp["fprs"]
        elif t in _ONE_FIELD_NOTES:
            layout, field, attr = _ONE_FIELD_NOTES[t]
            setattr(cur, attr, _parse(layout, note)[field])
        elif t == NT_S390_VXRS_LOW:
            halves[-1]["low"] = b"".join(_parse(NtS390VxrsLow, note)["vxrs_low"])
        elif t == NT_S390_VXRS_HIGH:
            halves[-1]["high"] = b"".join(_parse(NtS390VxrsHigh, note)["vxrs_high"])
    for regs, h in zip(cpus, halves):
        if "low" in h and "high" in h:
            regs.vxrs = CpuRegs.vxrs_from_parts(regs.fprs, h["low"], h["high"])
    return cpus
