"""Reading s390x kernel images the way kexec-tools' s390 "image" loader does, with real checks.

A raw s390 kernel image (arch/s390/boot/bzImage, Debian's /boot/vmlinuz-*-s390x)
is a memory image starting at absolute 0: IPL PSW at 0, entry 0x10000,
"S390EP" at 0x10008, kdump entry 0x10010, parameter area at 0x10400.
kexec loads file[0x10000:] at 0x10000.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from meminfo_abi.elfcore import ELFMAG, Elf64_Ehdr
from dumpkit.errors import BadInputError
from dumpkit.fileio import os_open_input
from meminfo_abi.parmarea import (
    EP_OFFSET, EP_STRING, HEAD_END, IMAGE_READ_OFFSET, PARMAREA, PARMAREA_FIXED_SIZE, ParmArea,
    command_line_limit,
)

MAX_IMAGE = 1 << 31
ELF_MACHINES = {3: "x86 (i386)", 62: "x86-64", 183: "AArch64", 40: "ARM", 21: "PowerPC64", 20: "PowerPC",
                243: "RISC-V", 2: "SPARC", 8: "MIPS", 22: "s390"}


@dataclass
class KernelImage:
    path: str
    size: int
    data: bytes                    # file[0x10000:], what kexec loads at 0x10000
    has_s390ep: bool
    max_command_line_size: int     # from the image's parameter area (0 = legacy 896)
    command_line: str              # the image's built-in command line
    version: str | None            # the string the parmarea's kernel_version points to

    @property
    def command_line_limit(self) -> int:
        return command_line_limit(self.max_command_line_size)

    @property
    def kernel_size(self) -> int:
        return self.size


def _classify_foreign(head: bytes, path: str) -> None:
    if head[:4] == ELFMAG:
        if len(head) < 64:
            raise BadInputError(f"{path} is a truncated ELF file")
        if head[4] == 2 and head[5] == 2:
            machine = Elf64_Ehdr.parse(head[:64]).e_machine
        else:
            order = "<" if head[5] == 1 else ">"
            machine = struct.unpack_from(order + "H", head, 18)[0]
        name = ELF_MACHINES.get(machine, f"machine {machine}")
        if machine == 22:
            raise BadInputError(f"{path} is an s390 ELF vmlinux; kexec_load takes the raw image "
                                "(arch/s390/boot/bzImage or /boot/vmlinuz-*)")
        raise BadInputError(f"{path} is an ELF file for {name}, not an s390x kernel image")
    if head[:2] == b"MZ":
        if len(head) > 0x206 and head[0x202:0x206] == b"HdrS":
            raise BadInputError(f"{path} is an x86 bzImage, not an s390x kernel image")
        if len(head) > 0x3C and head[0x38:0x3C] == b"ARM\x64":
            raise BadInputError(f"{path} is an arm64 Image, not an s390x kernel image")
        raise BadInputError(f"{path} is a PE/EFI executable, not an s390x kernel image")
    if head[:2] == b"\x1f\x8b":
        raise BadInputError(f"{path} is gzip-compressed data (an initrd?), not an s390x kernel image")


def read_kernel_image(path: str) -> KernelImage:
    if not os.path.exists(path):
        raise BadInputError(f"kernel image {path} does not exist")
    if os.path.isdir(path):
        raise BadInputError(f"{path} is a directory, not a kernel image")
    try:
        with os.fdopen(os_open_input(path, noun="kernel image"), "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise BadInputError(f"kernel image {path} is empty")
            if size > MAX_IMAGE:
                raise BadInputError(f"{path} has {size} bytes: far larger than any s390 kernel image")
            head = fh.read(min(size, 0x1000))
            _classify_foreign(head, path)
            fh.seek(0)
            whole = fh.read()
    except OSError as exc:
        raise BadInputError(f"cannot read kernel image {path}: {exc.strerror}") from None
    return parse_kernel_image(whole, path)


def parse_kernel_image(whole: bytes, path: str = "kernel image") -> KernelImage:
    """The checks of read_kernel_image on bytes already in memory (e.g. read from a dump device)."""
    size = len(whole)
    if size == 0:
        raise BadInputError(f"kernel image {path} is empty")
    _classify_foreign(whole[:0x1000], path)
    if size < HEAD_END:
        raise BadInputError(f"kernel image {path} is truncated: {size} bytes, an s390 kernel image "
                            f"has at least 0x{HEAD_END:x}")
    has_ep = whole[EP_OFFSET:EP_OFFSET + 6] == EP_STRING
    if not has_ep:
        psw_mask = struct.unpack_from(">I", whole, 0)[0]
        if psw_mask & 0xFFF7FFFF != 0 or whole[8:10] not in (b"\x02\x00", b"\x00\x00"):
            raise BadInputError(f"{path} has no S390EP header at 0x10008 and no s390 IPL PSW at 0: "
                                "not an s390x kernel image")
    parm = ParmArea.parse(whole[PARMAREA:PARMAREA + PARMAREA_FIXED_SIZE])
    if parm.max_command_line_size > 1 << 20:
        raise BadInputError(f"{path}: parameter area max_command_line_size 0x{parm.max_command_line_size:x} "
                            "is not plausible")
    limit = command_line_limit(parm.max_command_line_size)
    cl_off = PARMAREA + PARMAREA_FIXED_SIZE
    builtin = whole[cl_off:cl_off + limit].split(b"\0", 1)[0].decode("ascii", "replace")
    version = None
    if parm.kernel_version:
        if parm.kernel_version >= size:
            raise BadInputError(f"kernel image {path} is truncated: its version string is at "
                                f"0x{parm.kernel_version:x}, the file ends at 0x{size:x}")
        version = whole[parm.kernel_version:parm.kernel_version + 256].split(b"\0", 1)[0].decode("ascii", "replace")
    return KernelImage(path=path, size=size, data=whole[IMAGE_READ_OFFSET:], has_s390ep=has_ep,
                       max_command_line_size=parm.max_command_line_size, command_line=builtin,
                       version=version)
