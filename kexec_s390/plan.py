"""Where kexec-s390 puts things: the segment plan and the patched parameter area (kexec-tools' kexec/arch/s390 (kexec -p with the legacy syscall)).

kernel  file[0x10000:] at 0x10000            (+ crash base for -p)
initrd  at align_up(max(8 MiB, kernel file size), 1 MiB)   (+ crash base)
parmarea in the kernel buffer: INITRD_START (unshifted: what the kdump kernel
sees after the swap), INITRD_SIZE, OLDMEM_BASE/SIZE for -p, COMMAND_LINE
(limit from the image's max_command_line_size, 896 when 0).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field

from dumpkit.errors import BadInputError
from dumpkit.fileio import os_open_input
from meminfo_abi.meminfo import SEGMENT_KIND_INITRD, SEGMENT_KIND_KERNEL
from meminfo_abi.parmarea import (
    COMMAND_LINE_OFFS, IMAGE_ENTRY, IMAGE_ENTRY_KDUMP, IMAGE_READ_OFFSET, INITRD_SIZE_OFFS,
    INITRD_START_OFFS, OLDMEM_BASE_OFFS, OLDMEM_SIZE_OFFS,
)
from meminfo_abi.kernel_image import KernelImage
from meminfo_abi.kexec import KEXEC_ARCH_S390, KEXEC_ON_CRASH, LoadSegment, segment_checksums

PAGE = 4096
MIB = 1 << 20
INITRD_MIN_ORIGIN = 0x800000


def align_up(v: int, a: int) -> int:
    return (v + a - 1) // a * a


@dataclass
class LoadPlan:
    kdump: bool
    crash_base: int
    crash_size: int
    entry: int
    flags: int
    segments: list[LoadSegment]
    command_line: str | None
    initrd_start: int = 0
    initrd_size: int = 0
    notes: list[str] = field(default_factory=list)

    def describe(self, with_checksums: bool = True) -> list[dict]:
        rows = []
        for i, s in enumerate(self.segments):
            row = {"index": i, "what": s.kind_name, "mem": s.mem, "memsz": s.memsz, "bufsz": s.bufsz,
                   "source": s.path or "kernel buffer (patched)"}
            if with_checksums:
                h = hashlib.sha256()
                row["csum"] = segment_checksums(s, h)
                row["sha256"] = h.hexdigest()
            rows.append(row)
        return rows


def build_command_line(image: KernelImage, command_line: list[str], append: list[str],
                       reuse: str | None, kdump: bool) -> str | None:
    """kexec-tools concatenates every --command-line/--append with spaces; --reuse-cmdline starts
    from the running kernel's line (without crashkernel=, which a kdump kernel must not have)."""
    parts: list[str] = []
    if reuse is not None:
        words = reuse.split()
        if kdump:
            words = [w for w in words if not w.startswith("crashkernel=")]
        parts.append(" ".join(words))
    parts += [c for c in command_line if c]
    parts += [a for a in append if a]
    if reuse is None and not command_line and not append:
        return None
    line = " ".join(p for p in parts if p)
    limit = image.command_line_limit
    if len(line.encode()) > limit - 1:
        raise BadInputError(f"command line of {len(line.encode())} bytes is too long: the kernel takes at most "
                            f"{limit - 1}")
    return line


def plan_load(image: KernelImage, initrd: str | None, command_line: str | None, *, kdump: bool,
              crash_base: int = 0, crash_size: int = 0) -> LoadPlan:
    base = crash_base if kdump else 0
    kernel = bytearray(image.data)
    notes = []
    # initrd
    initrd_origin = initrd_size = 0
    if initrd is not None:
        if not os.path.exists(initrd):
            raise BadInputError(f"initrd {initrd} does not exist")
        if os.path.isdir(initrd):
            raise BadInputError(f"{initrd} is a directory, not an initrd")
        os.close(os_open_input(initrd, noun="initrd"))   # a FIFO is refused at once, never waited on
        initrd_size = os.path.getsize(initrd)
        initrd_origin = align_up(max(INITRD_MIN_ORIGIN, image.size), MIB)
    # parameter area, patched in the kernel buffer (offsets relative to 0x10000)
    def put(off: int, value: int) -> None:   # the buffer starts at 0x10000: index = kexec-tools offset
        struct.pack_into(">Q", kernel, off, value)
    put(INITRD_START_OFFS, initrd_origin if initrd is not None else 0)
    put(INITRD_SIZE_OFFS, initrd_size)
    if kdump:
        put(OLDMEM_BASE_OFFS, crash_base)
        put(OLDMEM_SIZE_OFFS, crash_size)
    if command_line is not None:
        limit = image.command_line_limit
        encoded = command_line.encode()
        if len(encoded) > limit - 1:
            raise BadInputError(f"command line of {len(encoded)} bytes is too long: the kernel takes at most "
                                f"{limit - 1}")
        kernel[COMMAND_LINE_OFFS:COMMAND_LINE_OFFS + limit] = bytes(limit)
        kernel[COMMAND_LINE_OFFS:COMMAND_LINE_OFFS + len(encoded)] = encoded
    segments = [LoadSegment(mem=base + IMAGE_READ_OFFSET, memsz=align_up(len(kernel), PAGE),
                            kind=SEGMENT_KIND_KERNEL, bufsz=len(kernel), data=bytes(kernel), name="kernel")]
    if initrd is not None:
        segments.append(LoadSegment(mem=base + initrd_origin, memsz=align_up(max(initrd_size, 1), PAGE),
                                    kind=SEGMENT_KIND_INITRD, bufsz=initrd_size, path=initrd, name="initrd"))
    if kdump:
        end = max(s.mem + s.memsz for s in segments)
        if end > crash_base + crash_size:
            need = end - crash_base
            raise BadInputError(
                f"not enough crashkernel memory: the segments need {need >> 20} MiB "
                f"(up to 0x{end - 1:x}), the crashkernel has {crash_size >> 20} MiB")
        entry, flags = IMAGE_ENTRY_KDUMP, KEXEC_ON_CRASH | KEXEC_ARCH_S390
    else:
        entry, flags = IMAGE_ENTRY, KEXEC_ARCH_S390
    return LoadPlan(kdump, crash_base, crash_size, entry, flags, segments, command_line,
                    initrd_origin if initrd is not None else 0, initrd_size, notes)
