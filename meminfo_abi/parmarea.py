"""The s390 kernel image header (S390EP) and the kernel parameter area at 0x10400.

arch/s390/include/asm/setup.h (struct parmarea) and kexec-tools' kexec/arch/s390.  A raw s390 kernel image is a memory image starting at
absolute 0; kexec reads it from file offset 0x10000 and places it at 0x10000.
"""

from __future__ import annotations

from construct import Bytes, Const, Int8ub, Int64ub, Padding, Struct

IMAGE_READ_OFFSET = 0x10000      # kexec-tools IMAGE_READ_OFFSET
IMAGE_ENTRY = 0x10000            # STARTUP_NORMAL_OFFSET
IMAGE_ENTRY_KDUMP = 0x10010      # STARTUP_KDUMP_OFFSET
EP_OFFSET = 0x10008              # "S390EP" magic
EP_STRING = b"S390EP"
PARMAREA = 0x10400               # struct parmarea
EARLY_SCCB_OFFSET = 0x11000
HEAD_END = 0x12000

# Offsets inside the parameter area (kexec-tools names, relative to the image at 0x10000)
INITRD_START_OFFS = 0x408
INITRD_SIZE_OFFS = 0x410
OLDMEM_BASE_OFFS = 0x418
OLDMEM_SIZE_OFFS = 0x420
MAX_COMMAND_LINESIZE_OFFS = 0x430
COMMAND_LINE_OFFS = 0x480
LEGACY_COMMAND_LINE_SIZE = 896

# Absolute addresses of the same fields once the image sits at 0x10000
PARM_INITRD_START = IMAGE_ENTRY + INITRD_START_OFFS
PARM_INITRD_SIZE = IMAGE_ENTRY + INITRD_SIZE_OFFS
PARM_OLDMEM_BASE = IMAGE_ENTRY + OLDMEM_BASE_OFFS
PARM_OLDMEM_SIZE = IMAGE_ENTRY + OLDMEM_SIZE_OFFS
PARM_MAX_COMMAND_LINE_SIZE = IMAGE_ENTRY + MAX_COMMAND_LINESIZE_OFFS
PARM_COMMAND_LINE = IMAGE_ENTRY + COMMAND_LINE_OFFS

# struct parmarea (fixed part, 0x80 bytes) followed by command_line[]
ParmArea = Struct(
    "ipl_device" / Int64ub,             # 0x10400
    "initrd_start" / Int64ub,           # 0x10408
    "initrd_size" / Int64ub,            # 0x10410
    "oldmem_base" / Int64ub,            # 0x10418
    "oldmem_size" / Int64ub,            # 0x10420
    "kernel_version" / Int64ub,         # 0x10428
    "max_command_line_size" / Int64ub,  # 0x10430
    Padding(0x48),                      # 0x10438-0x1047F
)
PARMAREA_FIXED_SIZE = 0x80

# The entry-point header at 0x10000: 8 bytes of code, "S390EP", two bytes.
S390EPHeader = Struct(
    "startup_normal" / Bytes(8),        # 0x10000
    "magic" / Const(EP_STRING),         # 0x10008
    "ep_version" / Int8ub,              # 0x1000E (observed 0x00)
    "ep_count" / Int8ub,                # 0x1000F number of valid entry points (observed 0x01)
    "startup_kdump" / Bytes(16),        # 0x10010 kdump entry
)
S390EP_HEADER_SIZE = 0x20


def command_line_limit(max_command_line_size: int) -> int:
    """Bytes available for the command line including its NUL (896 when the field is 0)."""
    return max_command_line_size or LEGACY_COMMAND_LINE_SIZE


def read_command_line(mem) -> str | None:
    """The kernel command line in the parameter area, if it looks like one."""
    if PARM_COMMAND_LINE + 1 > mem.size:
        return None
    limit = command_line_limit(mem.read_u64(PARM_MAX_COMMAND_LINE_SIZE))
    limit = min(limit, 1 << 16, mem.size - PARM_COMMAND_LINE)
    raw = mem.read(PARM_COMMAND_LINE, limit).split(b"\0", 1)[0]
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def oldmem_pieces(addr: int, length: int, base: int, size: int, total: int):
    """The swap a kdump start makes, as a map: old (crashed) memory [0, size) lives at the
    crashkernel [base, base + size) after it, and what was in the crashkernel lives at [0, size).

    Yields (address, where, n) pieces of [addr, addr + length): the n bytes at `address` of
    one side of the swap are found at `where` on the other (the map is its own inverse);
    everything else, up to `total`, stays where it is.  The one swap map of the suite: the
    kdump kernel's old memory, the production view of a stand-alone dump that caught a kdump
    kernel, and its CPUs, all read through it."""
    end = addr + length
    while addr < end:
        if base <= addr < base + size:
            stop, where = base + size, addr - base
        elif addr < size:
            stop, where = size, addr + base
        else:
            stop, where = (base if addr < base else total), addr
        n = min(end, stop) - addr
        yield addr, where, n
        addr += n
